//! The cluster fuzz target's harness: frames from a coordinator, decoded as the transport
//! decodes them and served by a real participant of a 2-of-3 group against a real sign state
//! on disk, in the steps `signer::threshold` serves a peer with.
//!
//! Random bytes almost never hold a commitment the participant issued, so the signing path
//! would stay out of reach. The input therefore names commitments instead of carrying them: a
//! commitment whose binding point is all zero (never a valid one) is a reference, replaced by
//! the real commitment number `hiding[0]` (modulo how many there are) of its owner: for the
//! participant, those it issued in this run (four up front, then those its answers hand
//! out); for the other two cosigners, a few valid ones made once. Any other commitment is used
//! as it came, so invalid points stay reachable too.
//!
//! Input: `coordinator (u8) ‖ frame ‖ frame ‖ …`, each frame as the wire carries it.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use frost_ed25519::keys::{generate_with_dealer, IdentifierList, KeyPackage, PublicKeyPackage};
use frost_ed25519::{round1, Identifier, SigningPackage};
use rand_core::OsRng;

use crate::threshold::epoch::EpochId;

use super::fuzz::{sign_bytes, SignBytesOutcome};
use super::{open_state, scratch_dir, watermarks, CHAIN};
use crate::cluster::wire;
use crate::consensus::canonical::{parse, parse_extension, same_except_timestamp};
use crate::consensus::{SignDoc, Step};
use crate::sign_state::{check, Position, SignState};
use crate::threshold::messages::{
    identifier_of, ClusterRequest, Commitment, PeerId, Refusal, RefusalKind, Share, SignPart,
    SignRequest, SignResponse, MAX_COMMITMENTS_PER_MESSAGE,
};
use crate::threshold::nonces::DEFAULT_MAX_OUTSTANDING;
use crate::threshold::participant::{record, Participant};

/// The participant under test; cosigners 1 and 3 are its peers.
pub const OWN_ID: PeerId = 2;
const THRESHOLD: u16 = 2;
const MEMBERS: [PeerId; 3] = [1, 2, 3];
/// Commitments the participant issues to the coordinator before the first frame.
const ISSUED_UP_FRONT: u16 = 4;
/// Valid commitments made once for each of the other cosigners.
const OTHERS_COMMITMENTS: usize = 4;

struct Group {
    key_package: KeyPackage,
    public_key_package: PublicKeyPackage,
    others: BTreeMap<PeerId, Vec<Commitment>>,
}

/// Dealt once per process: dealing and point generation would dominate every run.
fn group() -> &'static Group {
    static GROUP: OnceLock<Group> = OnceLock::new();
    GROUP.get_or_init(|| {
        let (shares, public_key_package) =
            generate_with_dealer(3, THRESHOLD, IdentifierList::Default, OsRng)
                .unwrap_or_else(|e| panic!("dealing failed: {e}"));
        let mut key_package = None;
        let mut others = BTreeMap::new();
        for peer in MEMBERS {
            let share = identifier_of(peer)
                .and_then(|id| shares.get(&id))
                .unwrap_or_else(|| panic!("no share for cosigner {peer}"));
            let package = KeyPackage::try_from(share.clone())
                .unwrap_or_else(|e| panic!("bad key package: {e}"));
            if peer == OWN_ID {
                key_package = Some(package);
                continue;
            }
            let made = (0..OTHERS_COMMITMENTS)
                .map(|_| {
                    let (_, c) = round1::commit(package.signing_share(), &mut OsRng);
                    Commitment::from_frost(&c).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect();
            others.insert(peer, made);
        }
        Group {
            key_package: key_package.unwrap_or_else(|| panic!("no key package of our own")),
            public_key_package,
            others,
        }
    })
}

/// A reference to real commitment `index` of whichever cosigner it stands for.
pub fn commitment_ref(index: u8) -> Commitment {
    let mut hiding = [0u8; 32];
    hiding[0] = index;
    Commitment {
        hiding,
        binding: [0; 32],
    }
}

/// A [`cluster_participant`] input: `requests` from `coordinator`, framed for the wire.
pub fn cluster_input(coordinator: u8, requests: &[ClusterRequest]) -> Vec<u8> {
    let mut input = vec![coordinator];
    for request in requests {
        let frame = wire::encode(request).unwrap_or_else(|e| panic!("cannot frame: {e}"));
        input.extend_from_slice(&frame);
    }
    input
}

/// What the participant did with one input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSummary {
    /// Frame bodies that decoded as a request.
    pub requests: usize,
    /// Frame bodies that did not.
    pub undecodable: usize,
    /// Commitments handed out in answer to commitment requests.
    pub commitments_issued: usize,
    /// Sign requests answered with a share, and those of them with an extension share.
    pub released: usize,
    /// Of those, the ones that carried an extension share too.
    pub released_with_extension: usize,
    /// The refusals of sign requests, in order.
    pub refusals: Vec<RefusalKind>,
}

/// One run: a fresh participant, nonce pool and state file; what was released so far.
struct Run<'g> {
    group: &'g Group,
    participant: Participant,
    coordinator: PeerId,
    dir: tempfile::TempDir,
    /// The state on disk before the current request.
    state: SignState,
    /// Our commitments issued in this run, for references to pick from.
    ours: Vec<Commitment>,
    /// Our commitments whose nonces a signing consumed.
    burnt: HashSet<Commitment>,
    released: Vec<SignDoc>,
    summary: ClusterSummary,
}

/// Cluster messages through a real participant. Every frame body that decodes re-encodes to
/// one that decodes the same. A Commitments request is answered within the bounds. A share is
/// released only if the request's sign bytes (and extension's) parse canonically, the share
/// verifies for exactly those bytes and commitments, the sign state on disk then holds that
/// document's position and the document (or one differing only in timestamp), the pure
/// rules agree, no earlier release in the run conflicts with it or lies above it, and none of
/// its nonces served before. A refusal leaves the state on disk as it was (unless a failure
/// on our side came after recording), and the watermark refuses only what the rules refuse.
pub fn cluster_participant(data: &[u8]) -> ClusterSummary {
    let Some((&coordinator, mut frames)) = data.split_first() else {
        return ClusterSummary::default();
    };
    let group = group();
    let participant = Participant::new(
        OWN_ID,
        group.key_package.clone(),
        group.public_key_package.clone(),
        THRESHOLD,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = scratch_dir();
    drop(open_state(dir.path(), true).unwrap_or_else(|e| panic!("{e}")));
    let coordinator = PeerId::from(coordinator);
    let ours = participant
        .handle_commitments(coordinator, ISSUED_UP_FRONT, &mut OsRng)
        .unwrap_or_default();
    let mut run = Run {
        group,
        participant,
        coordinator,
        dir,
        state: SignState::fresh(),
        ours,
        burnt: HashSet::new(),
        released: Vec::new(),
        summary: ClusterSummary::default(),
    };
    while let Some((header, rest)) = frames.split_first_chunk::<{ wire::HEADER_LEN }>() {
        // A bad header or a short body ends the stream, as the transport resets it.
        let Ok(len) = wire::decode_header(*header) else {
            break;
        };
        let Some((body, rest)) = rest.split_at_checked(len) else {
            break;
        };
        frames = rest;
        match wire::decode_body::<ClusterRequest>(body) {
            Ok(request) => run.serve(request),
            Err(_) => run.summary.undecodable += 1,
        }
    }
    assert!(run.participant.outstanding(coordinator) <= DEFAULT_MAX_OUTSTANDING);
    run.summary
}

impl Run<'_> {
    fn serve(&mut self, request: ClusterRequest) {
        self.summary.requests += 1;
        let frame = wire::encode(&request).unwrap_or_else(|e| panic!("cannot re-encode: {e}"));
        let again = wire::decode_body::<ClusterRequest>(&frame[wire::HEADER_LEN..]);
        assert_eq!(
            again.as_ref().ok(),
            Some(&request),
            "re-encoding decodes differently"
        );
        match request {
            ClusterRequest::Commitments { count } => self.commitments(count),
            ClusterRequest::Sign(mut request) => {
                self.splice(&mut request);
                self.sign(request);
            }
            ClusterRequest::Signed(report) => self.reported(&report),
            // Answered from memory: nothing to check beyond decoding.
            ClusterRequest::HighestSigned => {}
            // Not for a signing participant, which refuses it without looking inside.
            ClusterRequest::Ceremony(_) => {}
        }
    }

    /// A peer's report of a signature of the validator: no input can carry a valid one (that
    /// would be a forgery), so the check that guards the watermark must refuse every one.
    fn reported(&mut self, report: &crate::threshold::messages::ValidatorSignature) {
        let key = self.group.public_key_package.verifying_key().serialize();
        let key = key
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok())
            .unwrap_or_else(|| panic!("the group key is a valid Ed25519 key"));
        let verified = crate::sign_state::ValidatorSigned::verify(
            &report.sign_bytes,
            report.signature.to_bytes(),
            &key,
        );
        assert!(
            verified.is_err(),
            "a forged signature of the validator was accepted"
        );
    }

    fn commitments(&mut self, count: u16) {
        let member = self.participant.is_member(self.coordinator);
        match self
            .participant
            .handle_commitments(self.coordinator, count, &mut OsRng)
        {
            Ok(issued) => {
                assert!(member, "commitments issued to a stranger");
                assert!(issued.len() <= usize::from(count.min(MAX_COMMITMENTS_PER_MESSAGE)));
                self.summary.commitments_issued += issued.len();
                self.ours.extend(issued);
            }
            Err(refusal) => assert!(!member, "a member was refused commitments: {refusal}"),
        }
        let outstanding = self.participant.outstanding(self.coordinator);
        assert!(
            outstanding <= DEFAULT_MAX_OUTSTANDING,
            "{outstanding} nonces kept"
        );
    }

    /// Replaces references by real commitments (see the module doc).
    fn splice(&self, request: &mut SignRequest) {
        // An all-zero epoch stands for the group's (which is random per run); any other is
        // kept, and refused.
        if request.epoch == EpochId([0; 32]) {
            request.epoch = self.participant.epoch();
        }
        let real = |owner: PeerId, c: &mut Commitment| {
            let pool = if owner == OWN_ID {
                &self.ours[..]
            } else {
                self.group.others.get(&owner).map_or(&[][..], |v| &v[..])
            };
            if c.binding == [0; 32] && !pool.is_empty() {
                *c = pool[usize::from(c.hiding[0]) % pool.len()];
            }
        };
        let parts = std::iter::once(&mut request.vote).chain(request.extension.as_mut());
        for part in parts {
            for (owner, c) in part.commitments.iter_mut() {
                real(*owner, c);
            }
        }
        for (owner, list) in request.upcoming.iter_mut() {
            for c in list.iter_mut() {
                real(*owner, c);
            }
        }
    }

    /// Serves a sign request as `signer::threshold` serves a peer's, then checks the outcome
    /// against the state on disk.
    fn sign(&mut self, mut request: SignRequest) {
        let upcoming = std::mem::take(&mut request.upcoming);
        let state = open_state(self.dir.path(), false).unwrap_or_else(|e| panic!("{e}"));
        let watermarks = watermarks(state);
        let coordinator = self.coordinator;
        let participant = &self.participant;
        let result = (|| -> Result<SignResponse, Refusal> {
            let decoded = participant.decode_request(coordinator, &request)?;
            let prepared = participant.prepare(coordinator, &decoded)?;
            let recorded = record(&watermarks, prepared.doc());
            let unreleased = participant.sign(prepared);
            let (share, extension_share) = unreleased?.release(recorded?)?;
            let commitments =
                participant.refill(coordinator, extension_share.is_some(), &mut OsRng)?;
            Ok(SignResponse {
                share,
                extension_share,
                commitments,
            })
        })();
        drop(watermarks);
        if !upcoming.is_empty() {
            participant.learn_upcoming(coordinator, &upcoming);
        }
        let after = open_state(self.dir.path(), false)
            .unwrap_or_else(|e| panic!("the state file does not reopen: {e}"))
            .snapshot();
        let ours: Vec<Commitment> = std::iter::once(&request.vote)
            .chain(request.extension.as_ref())
            .filter_map(|part| part.commitments.get(&OWN_ID).copied())
            .collect();
        match result {
            Ok(response) => self.released(&request, response, &ours, &after),
            Err(refusal) => self.refused(&request, &refusal, &ours, &after),
        }
        self.state = after;
    }

    fn released(
        &mut self,
        request: &SignRequest,
        response: SignResponse,
        ours: &[Commitment],
        after: &SignState,
    ) {
        let doc = parse(&request.vote.sign_bytes)
            .unwrap_or_else(|e| panic!("a share for sign bytes that do not parse: {e}"));
        assert_eq!(doc.sign_bytes, request.vote.sign_bytes);
        assert_ne!(sign_bytes(&doc.sign_bytes), SignBytesOutcome::Rejected);
        assert_eq!(doc.chain_id, CHAIN, "a share for a chain we do not serve");
        assert!(
            check(&self.state, &doc).is_ok(),
            "the rules refuse what was released"
        );
        self.verify_share(&request.vote, &response.share);
        assert_eq!(
            response.extension_share.is_some(),
            request.extension.is_some()
        );
        if let (Some(part), Some(share)) = (&request.extension, &response.extension_share) {
            let ext = parse_extension(&part.sign_bytes)
                .unwrap_or_else(|e| panic!("an extension share for bytes that do not parse: {e}"));
            assert_eq!(sign_bytes(&part.sign_bytes), SignBytesOutcome::Extension);
            assert!(doc.hrs.step == Step::Precommit && doc.block_id.is_some());
            assert_eq!(
                (ext.chain_id.as_str(), ext.height, ext.round),
                (doc.chain_id.as_str(), doc.hrs.height, doc.hrs.round)
            );
            self.verify_share(part, share);
            self.summary.released_with_extension += 1;
        }

        // Persist before release: the state on disk holds this very document's position.
        assert_eq!(after.position(), Position::of(&doc.hrs), "state on disk");
        let held = after.last.as_ref().map(|l| &l.doc);
        assert!(
            held.is_some_and(|l| l.sign_bytes == doc.sign_bytes || same_except_timestamp(l, &doc)),
            "the state on disk holds {held:?}, not the released {doc:?}"
        );
        assert!(
            after.position() >= self.state.position(),
            "the watermark went down"
        );

        // No double sign and no regression within the run; one nonce, one share.
        for earlier in &self.released {
            assert!(
                Position::of(&earlier.hrs) <= Position::of(&doc.hrs),
                "regression"
            );
            if earlier.hrs == doc.hrs {
                assert!(
                    earlier.sign_bytes == doc.sign_bytes || same_except_timestamp(earlier, &doc),
                    "double sign: {earlier:?} and {doc:?}"
                );
            }
        }
        for c in ours {
            assert!(self.burnt.insert(*c), "a nonce served twice: {c:?}");
        }
        let refill = 1 + usize::from(response.extension_share.is_some());
        assert_eq!(response.commitments.len(), refill, "refill");
        self.ours.extend(response.commitments);
        self.released.push(doc);
        self.summary.released += 1;
    }

    fn refused(
        &mut self,
        request: &SignRequest,
        refusal: &Refusal,
        ours: &[Commitment],
        after: &SignState,
    ) {
        self.summary.refusals.push(refusal.kind);
        let past_prepare = matches!(
            refusal.kind,
            RefusalKind::Watermark | RefusalKind::Storage | RefusalKind::Internal
        );
        if past_prepare {
            // The nonces were burnt before the watermark was asked.
            self.burnt.extend(ours.iter().copied());
        }
        if !matches!(refusal.kind, RefusalKind::Storage | RefusalKind::Internal) {
            assert_eq!(after, &self.state, "a {refusal} changed the state on disk");
        }
        if refusal.kind == RefusalKind::Watermark {
            let doc = parse(&request.vote.sign_bytes)
                .unwrap_or_else(|e| panic!("the watermark saw bytes that do not parse: {e}"));
            if doc.chain_id == CHAIN {
                assert!(
                    check(&self.state, &doc).is_err(),
                    "the watermark refused what the rules allow: {refusal}"
                );
            }
        }
    }

    /// The share is ours, for exactly this part's sign bytes and commitments.
    fn verify_share(&self, part: &SignPart, share: &Share) {
        let commitments = part
            .commitments
            .iter()
            .map(|(peer, c)| {
                let id: Identifier =
                    identifier_of(*peer).unwrap_or_else(|| panic!("signer {peer} released"));
                let c = c.to_frost().unwrap_or_else(|e| panic!("signed with {e}"));
                (id, c)
            })
            .collect();
        let package = SigningPackage::new(commitments, &part.sign_bytes);
        let pkp = &self.group.public_key_package;
        let id = identifier_of(OWN_ID).unwrap_or_else(|| panic!("no identifier"));
        let verifying_share = pkp
            .verifying_shares()
            .get(&id)
            .unwrap_or_else(|| panic!("no verifying share"));
        let share = share.to_frost().unwrap_or_else(|e| panic!("{e}"));
        frost_core::verify_signature_share(
            id,
            verifying_share,
            &share,
            &package,
            pkp.verifying_key(),
        )
        .unwrap_or_else(|e| panic!("the released share does not verify: {e}"));
    }
}
