//! The coordinator's pure logic: which commitments it holds, whom it asks, and how it turns
//! shares into a signature.
//!
//! Participants hand the coordinator commitments ahead of time; the [`CommitmentInventory`]
//! keeps them (validated once, on arrival, off the signing path) until a signing uses them.
//! For one signing the coordinator picks itself plus the fastest peers
//! ([`choose_participants`]), builds the request ([`build_request`]), collects the answers in a
//! [`SigningSession`] and [`aggregate`]s them. Sending and waiting belong to the caller.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use frost_ed25519::keys::PublicKeyPackage;
use frost_ed25519::round1::SigningCommitments;
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{CheaterDetection, SigningPackage};

use super::messages::{
    identifier_of, peer_of, Commitment, DecodedPart, DecodedRequest, PeerId, SignPart, SignRequest,
    SignResponse, WireError,
};

/// Commitments kept per participant unless configured otherwise. Participants keep more
/// nonces per coordinator than this (see [`super::nonces::DEFAULT_MAX_OUTSTANDING`]), so a
/// commitment in this inventory is not evicted at the participant.
pub const DEFAULT_MAX_PER_PARTICIPANT: usize = 64;

/// Commitments of each participant announced in a request as coming next: what the next
/// signing uses, a vote and its extension.
pub const UPCOMING_PER_PARTICIPANT: usize = 2;

/// Commitments each participant has handed us, oldest first, each validated on arrival.
#[derive(Debug)]
pub struct CommitmentInventory {
    max_per_participant: usize,
    by_participant: BTreeMap<PeerId, VecDeque<(Commitment, SigningCommitments)>>,
}

impl Default for CommitmentInventory {
    fn default() -> Self {
        CommitmentInventory::new(DEFAULT_MAX_PER_PARTICIPANT)
    }
}

impl CommitmentInventory {
    /// An inventory keeping at most `max_per_participant` (at least 1) per participant.
    pub fn new(max_per_participant: usize) -> CommitmentInventory {
        CommitmentInventory {
            max_per_participant: max_per_participant.max(1),
            by_participant: BTreeMap::new(),
        }
    }

    /// Validates and stores commitments `participant` handed us (all or none). Beyond the
    /// bound the oldest are dropped, as the participant drops their nonces.
    pub fn add(
        &mut self,
        participant: PeerId,
        commitments: &[Commitment],
    ) -> Result<(), WireError> {
        let decoded = commitments
            .iter()
            .map(|c| Ok((*c, c.to_frost()?)))
            .collect::<Result<Vec<_>, WireError>>()?;
        self.add_decoded(participant, decoded);
        Ok(())
    }

    /// Stores commitments that need no validation: this cosigner's own, as it made them.
    pub fn add_decoded(
        &mut self,
        participant: PeerId,
        decoded: Vec<(Commitment, SigningCommitments)>,
    ) {
        let queue = self.by_participant.entry(participant).or_default();
        for entry in decoded {
            if queue.len() >= self.max_per_participant {
                queue.pop_front();
            }
            queue.push_back(entry);
        }
    }

    /// Removes and returns the oldest commitment of `participant`.
    pub fn take_one(&mut self, participant: PeerId) -> Option<(Commitment, SigningCommitments)> {
        let queue = self.by_participant.get_mut(&participant)?;
        let taken = queue.pop_front();
        if queue.is_empty() {
            self.by_participant.remove(&participant);
        }
        taken
    }

    /// The next `count` commitments of `participant` in the order signings will use them.
    pub fn upcoming(&self, participant: PeerId, count: usize) -> Vec<Commitment> {
        self.by_participant
            .get(&participant)
            .map(|queue| queue.iter().take(count).map(|(wire, _)| *wire).collect())
            .unwrap_or_default()
    }

    pub fn available(&self, participant: PeerId) -> usize {
        self.by_participant
            .get(&participant)
            .map_or(0, VecDeque::len)
    }

    /// Drops every commitment of `participant`, e.g. after it answered "unknown commitment"
    /// (it restarted) or its connection was re-established.
    pub fn clear(&mut self, participant: PeerId) {
        self.by_participant.remove(&participant);
    }
}

/// A peer the coordinator could ask, with what it knows about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: PeerId,
    /// Recent round-trip time; zero for ourselves.
    pub rtt: Duration,
    /// Commitments of this peer in our inventory.
    pub available: usize,
}

/// Ourselves plus the `threshold - 1` fastest other candidates that have enough commitments
/// (one, or two with a vote extension) and are not excluded; ourselves first. `None` if
/// we are excluded, lack commitments ourselves (we must be among `candidates`), or too few
/// peers qualify.
pub fn choose_participants(
    self_id: PeerId,
    threshold: u16,
    candidates: &[Candidate],
    excluded: &BTreeSet<PeerId>,
    with_extension: bool,
) -> Option<Vec<PeerId>> {
    let needed = if with_extension { 2 } else { 1 };
    let usable = |c: &&Candidate| c.available >= needed && !excluded.contains(&c.id);
    let threshold = usize::from(threshold);
    if threshold == 0 {
        return None;
    }
    candidates.iter().filter(usable).find(|c| c.id == self_id)?;
    let mut peers: Vec<&Candidate> = candidates
        .iter()
        .filter(usable)
        .filter(|c| c.id != self_id)
        .collect();
    peers.sort_by_key(|c| (c.rtt, c.id));
    let mut seen = BTreeSet::new();
    peers.retain(|c| seen.insert(c.id));
    if peers.len() < threshold - 1 {
        return None;
    }
    let mut chosen = vec![self_id];
    chosen.extend(peers.iter().take(threshold - 1).map(|c| c.id));
    Some(chosen)
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("no participants")]
    NoParticipants,
    #[error("participant {0} is listed twice")]
    Duplicate(PeerId),
    #[error("participant {0} has no FROST identifier")]
    InvalidId(PeerId),
    #[error("not enough commitments from participant {0}")]
    NotEnoughCommitments(PeerId),
}

/// Takes one commitment per participant (two with an extension) out of `inventory` and
/// builds the request every participant receives, plus the session that collects answers.
/// Takes nothing unless every participant has enough commitments.
pub fn build_request(
    inventory: &mut CommitmentInventory,
    participants: &[PeerId],
    vote_sign_bytes: Vec<u8>,
    extension_sign_bytes: Option<Vec<u8>>,
) -> Result<(SignRequest, SigningSession), BuildError> {
    if participants.is_empty() {
        return Err(BuildError::NoParticipants);
    }
    let needed = if extension_sign_bytes.is_some() { 2 } else { 1 };
    let mut seen = BTreeSet::new();
    for p in participants {
        if !seen.insert(*p) {
            return Err(BuildError::Duplicate(*p));
        }
        identifier_of(*p).ok_or(BuildError::InvalidId(*p))?;
        if inventory.available(*p) < needed {
            return Err(BuildError::NotEnoughCommitments(*p));
        }
    }
    let mut take = |p: PeerId| {
        inventory
            .take_one(p)
            .ok_or(BuildError::NotEnoughCommitments(p))
    };
    let mut vote = Half::new(vote_sign_bytes);
    let mut extension = extension_sign_bytes.map(Half::new);
    for p in participants {
        let (wire, decoded) = take(*p)?;
        vote.wire.insert(*p, wire);
        vote.commitments.insert(*p, decoded);
        if let Some(ext) = &mut extension {
            let (wire, decoded) = take(*p)?;
            ext.wire.insert(*p, wire);
            ext.commitments.insert(*p, decoded);
        }
    }
    let upcoming = participants
        .iter()
        .map(|p| (*p, inventory.upcoming(*p, UPCOMING_PER_PARTICIPANT)))
        .collect();
    let request = SignRequest {
        vote: vote.part(),
        extension: extension.as_ref().map(Half::part),
        upcoming,
    };
    let session = SigningSession {
        vote: vote.into_session_part(),
        extension: extension.map(Half::into_session_part),
        answered: BTreeSet::new(),
    };
    Ok((request, session))
}

/// One message being built: sign bytes and commitments in both forms.
struct Half {
    sign_bytes: Vec<u8>,
    wire: BTreeMap<PeerId, Commitment>,
    commitments: BTreeMap<PeerId, SigningCommitments>,
}

impl Half {
    fn new(sign_bytes: Vec<u8>) -> Half {
        Half {
            sign_bytes,
            wire: BTreeMap::new(),
            commitments: BTreeMap::new(),
        }
    }

    fn part(&self) -> SignPart {
        SignPart {
            sign_bytes: self.sign_bytes.clone(),
            commitments: self.wire.clone(),
        }
    }

    fn into_session_part(self) -> SessionPart {
        SessionPart {
            sign_bytes: self.sign_bytes,
            commitments: self.commitments,
            shares: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug)]
struct SessionPart {
    sign_bytes: Vec<u8>,
    commitments: BTreeMap<PeerId, SigningCommitments>,
    shares: BTreeMap<PeerId, SignatureShare>,
}

/// Why an answer does not fit the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("peer {0} was not asked")]
    NotAsked(PeerId),
    #[error("peer {0} already answered")]
    AlreadyAnswered(PeerId),
    #[error("peer {0} sent no extension share although one was asked")]
    MissingExtensionShare(PeerId),
    #[error("peer {0} sent an extension share nobody asked for")]
    UnexpectedExtensionShare(PeerId),
    #[error("peer {peer}: {error}")]
    BadShare { peer: PeerId, error: WireError },
}

/// The signature(s) one signing produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signatures {
    pub vote: [u8; 64],
    pub extension: Option<[u8; 64]>,
}

/// One attempt at a signing: who was asked with which commitments, and who answered.
#[derive(Clone, Debug)]
pub struct SigningSession {
    vote: SessionPart,
    extension: Option<SessionPart>,
    answered: BTreeSet<PeerId>,
}

impl SigningSession {
    /// The participants asked, in id order.
    pub fn participants(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.vote.commitments.keys().copied()
    }

    /// Participants that have not answered yet.
    pub fn pending(&self) -> Vec<PeerId> {
        self.participants()
            .filter(|p| !self.answered.contains(p))
            .collect()
    }

    /// The request as the participants receive it, with the commitments already decoded:
    /// for this cosigner's own participant.
    pub fn decoded_request(&self) -> DecodedRequest {
        let part = |p: &SessionPart| DecodedPart {
            sign_bytes: p.sign_bytes.clone(),
            commitments: p.commitments.clone(),
        };
        DecodedRequest {
            vote: part(&self.vote),
            extension: self.extension.as_ref().map(part),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.answered.len() == self.vote.commitments.len()
    }

    /// Records the answer of `from` (the authenticated peer it came from). Its fresh
    /// commitments are the caller's to add to the inventory.
    pub fn accept(&mut self, from: PeerId, response: &SignResponse) -> Result<(), SessionError> {
        if !self.vote.commitments.contains_key(&from) {
            return Err(SessionError::NotAsked(from));
        }
        if self.answered.contains(&from) {
            return Err(SessionError::AlreadyAnswered(from));
        }
        let decode = |s: &super::messages::Share| {
            s.to_frost()
                .map_err(|error| SessionError::BadShare { peer: from, error })
        };
        let share = decode(&response.share)?;
        let ext_share = match (&self.extension, &response.extension_share) {
            (Some(_), Some(s)) => Some(decode(s)?),
            (None, None) => None,
            (Some(_), None) => return Err(SessionError::MissingExtensionShare(from)),
            (None, Some(_)) => return Err(SessionError::UnexpectedExtensionShare(from)),
        };
        self.vote.shares.insert(from, share);
        if let (Some(ext), Some(s)) = (&mut self.extension, ext_share) {
            ext.shares.insert(from, s);
        }
        self.answered.insert(from);
        Ok(())
    }

    /// The group commitment of every message of this signing. It depends only on the
    /// commitments and the message, so the caller computes it while the shares are on their
    /// way, and [`SigningSession::finish`] then only adds up the shares.
    pub fn precompute(
        &self,
        public_key_package: &PublicKeyPackage,
    ) -> Result<Precomputed, AggregateError> {
        let part =
            |p: &SessionPart| group_commitment(&p.sign_bytes, &p.commitments, public_key_package);
        Ok(Precomputed {
            vote: part(&self.vote)?,
            extension: self.extension.as_ref().map(part).transpose()?,
        })
    }

    /// Aggregates the shares into the final signature(s), each verified strictly under the
    /// group key. With the group commitments precomputed that is a sum and a verification; if
    /// that signature does not verify (or nothing was precomputed), frost's own aggregation
    /// runs and names the participants whose shares are invalid.
    pub fn finish(
        &self,
        public_key_package: &PublicKeyPackage,
        precomputed: Option<&Precomputed>,
    ) -> Result<Signatures, AggregateError> {
        let group_key = group_key(public_key_package)?;
        let part = |p: &SessionPart, r: Option<&[u8; 32]>| {
            r.and_then(|r| assemble(r, &p.shares, &p.sign_bytes, &group_key))
                .map_or_else(
                    || aggregate(&p.sign_bytes, &p.commitments, &p.shares, public_key_package),
                    Ok,
                )
        };
        let vote = part(&self.vote, precomputed.map(|pre| &pre.vote))?;
        let extension = match &self.extension {
            None => None,
            Some(e) => Some(part(e, precomputed.and_then(|pre| pre.extension.as_ref()))?),
        };
        Ok(Signatures { vote, extension })
    }
}

/// The group commitments (the signature's R) of one signing, computed ahead of the shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precomputed {
    vote: [u8; 32],
    extension: Option<[u8; 32]>,
}

/// The group commitment R for `sign_bytes` and these commitments (RFC 9591 §4.4-4.5), by
/// frost's own functions.
fn group_commitment(
    sign_bytes: &[u8],
    commitments: &BTreeMap<PeerId, SigningCommitments>,
    public_key_package: &PublicKeyPackage,
) -> Result<[u8; 32], AggregateError> {
    let package = signing_package(sign_bytes, commitments, public_key_package)?;
    let frost = |e: frost_ed25519::Error| AggregateError::Frost(e.to_string());
    let binding_factors =
        frost_core::compute_binding_factor_list(&package, public_key_package.verifying_key(), &[])
            .map_err(frost)?;
    let r = frost_core::compute_group_commitment(&package, &binding_factors).map_err(frost)?;
    Ok(r.to_element().compress().to_bytes())
}

/// R and the sum of the shares as an Ed25519 signature, if it verifies strictly.
fn assemble(
    r: &[u8; 32],
    shares: &BTreeMap<PeerId, SignatureShare>,
    sign_bytes: &[u8],
    group_key: &ed25519_dalek::VerifyingKey,
) -> Option<[u8; 64]> {
    let mut z = curve25519_dalek::Scalar::ZERO;
    for share in shares.values() {
        let bytes: [u8; 32] = share.serialize().try_into().ok()?;
        z += Option::<curve25519_dalek::Scalar>::from(
            curve25519_dalek::Scalar::from_canonical_bytes(bytes),
        )?;
    }
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(r);
    signature[32..].copy_from_slice(z.as_bytes());
    group_key
        .verify_strict(
            sign_bytes,
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .ok()
        .map(|()| signature)
}

fn group_key(
    public_key_package: &PublicKeyPackage,
) -> Result<ed25519_dalek::VerifyingKey, AggregateError> {
    let key: [u8; 32] = public_key_package
        .verifying_key()
        .serialize()
        .map_err(|e| AggregateError::NotStrict(e.to_string()))?
        .try_into()
        .map_err(|_| AggregateError::NotStrict("group key is not 32 bytes".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|e| AggregateError::NotStrict(e.to_string()))
}

/// The frost signing package of one message, every participant checked to be a member.
fn signing_package(
    sign_bytes: &[u8],
    commitments: &BTreeMap<PeerId, SigningCommitments>,
    public_key_package: &PublicKeyPackage,
) -> Result<SigningPackage, AggregateError> {
    let commitments = commitments
        .iter()
        .map(|(p, c)| Ok((member_identifier(*p, public_key_package)?, *c)))
        .collect::<Result<BTreeMap<_, _>, AggregateError>>()?;
    Ok(SigningPackage::new(commitments, sign_bytes))
}

fn member_identifier(
    peer: PeerId,
    public_key_package: &PublicKeyPackage,
) -> Result<frost_ed25519::Identifier, AggregateError> {
    identifier_of(peer)
        .filter(|id| public_key_package.verifying_shares().contains_key(id))
        .ok_or(AggregateError::UnknownParticipant(peer))
}

/// Why shares did not make a valid signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("no share from {0:?}")]
    MissingShares(Vec<PeerId>),
    #[error("shares from {0:?}, who were not asked")]
    UnexpectedShares(Vec<PeerId>),
    #[error("participant {0} is not a member of the group")]
    UnknownParticipant(PeerId),
    /// The culprits sent shares that do not verify; retry without them.
    #[error("invalid signature shares from {culprits:?}")]
    InvalidShares { culprits: Vec<PeerId> },
    #[error("aggregation failed: {0}")]
    Frost(String),
    #[error("the aggregate signature does not verify strictly: {0}")]
    NotStrict(String),
}

/// Combines `shares` for `sign_bytes` into an Ed25519 signature, checking it with frost's own
/// verification (which names culprits on failure) and with `verify_strict` under the group key
/// as a validator would.
pub fn aggregate(
    sign_bytes: &[u8],
    commitments: &BTreeMap<PeerId, SigningCommitments>,
    shares: &BTreeMap<PeerId, SignatureShare>,
    public_key_package: &PublicKeyPackage,
) -> Result<[u8; 64], AggregateError> {
    let missing: Vec<PeerId> = commitments
        .keys()
        .filter(|p| !shares.contains_key(p))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(AggregateError::MissingShares(missing));
    }
    let unexpected: Vec<PeerId> = shares
        .keys()
        .filter(|p| !commitments.contains_key(p))
        .copied()
        .collect();
    if !unexpected.is_empty() {
        return Err(AggregateError::UnexpectedShares(unexpected));
    }
    let package = signing_package(sign_bytes, commitments, public_key_package)?;
    let shares = shares
        .iter()
        .map(|(p, s)| Ok((member_identifier(*p, public_key_package)?, *s)))
        .collect::<Result<BTreeMap<_, _>, AggregateError>>()?;
    // All culprits at once, so that one retry can leave all of them out.
    let signature = frost_ed25519::aggregate_custom(
        &package,
        &shares,
        public_key_package,
        CheaterDetection::AllCheaters,
    )
    .map_err(|e| {
        let culprits: Vec<PeerId> = e.culprits().iter().filter_map(peer_of).collect();
        if culprits.is_empty() {
            AggregateError::Frost(e.to_string())
        } else {
            AggregateError::InvalidShares { culprits }
        }
    })?;
    let bytes: [u8; 64] = signature
        .serialize()
        .map_err(|e| AggregateError::Frost(e.to_string()))?
        .try_into()
        .map_err(|_| AggregateError::Frost("signature is not 64 bytes".into()))?;
    group_key(public_key_package)?
        .verify_strict(sign_bytes, &ed25519_dalek::Signature::from_bytes(&bytes))
        .map_err(|e| AggregateError::NotStrict(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step;
    use crate::threshold::messages::{ClusterRequest, ClusterResponse, RefusalKind, Share};
    use crate::threshold::participant::testkit::*;
    use crate::threshold::participant::Participant;
    use rand_core::OsRng;

    const CHAIN: &str = "test-chain";

    /// A coordinator (cosigner `self_id`) with its inventory filled by every member, each
    /// exchange passed through bincode.
    fn fill(group: &[Participant], self_id: PeerId, count: u16) -> CommitmentInventory {
        let mut inventory = CommitmentInventory::default();
        for p in group {
            let ClusterRequest::Commitments { count } =
                wire(&ClusterRequest::Commitments { count })
            else {
                panic!("request changed shape on the wire");
            };
            let answer = wire(&ClusterResponse::Commitments(
                p.handle_commitments(self_id, count, &mut OsRng).unwrap(),
            ));
            let ClusterResponse::Commitments(commitments) = answer else {
                panic!("response changed shape on the wire");
            };
            inventory.add(p.id(), &commitments).unwrap();
        }
        inventory
    }

    fn candidates(
        group: &[Participant],
        inventory: &CommitmentInventory,
        self_id: PeerId,
    ) -> Vec<Candidate> {
        group
            .iter()
            .map(|p| Candidate {
                id: p.id(),
                rtt: if p.id() == self_id {
                    Duration::ZERO
                } else {
                    Duration::from_millis(u64::from(p.id()))
                },
                available: inventory.available(p.id()),
            })
            .collect()
    }

    /// Sends `request` to every participant of `session` through bincode and records answers.
    fn run(
        group: &[Participant],
        self_id: PeerId,
        request: &SignRequest,
        session: &mut SigningSession,
        inventory: &mut CommitmentInventory,
        watermarks: &[RecordingWatermark],
    ) {
        for p in session.participants().collect::<Vec<_>>() {
            let i = usize::from(p) - 1;
            let ClusterRequest::Sign(req) = wire(&ClusterRequest::Sign(request.clone())) else {
                panic!("request changed shape on the wire");
            };
            let answer = match group[i].handle_sign(self_id, &req, &watermarks[i], &mut OsRng) {
                Ok(r) => ClusterResponse::Signed(r),
                Err(r) => ClusterResponse::Refused(r),
            };
            match wire(&answer) {
                ClusterResponse::Signed(resp) => {
                    session.accept(p, &resp).unwrap();
                    inventory.add(p, &resp.commitments).unwrap();
                }
                other => panic!("participant {p} answered {other:?}"),
            }
        }
    }

    fn verify(pkp: &PublicKeyPackage, msg: &[u8], sig: &[u8; 64]) {
        let key: [u8; 32] = pkp.verifying_key().serialize().unwrap().try_into().unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .unwrap()
            .verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
            .unwrap();
    }

    fn full_flow(t: u16, n: u16, self_id: PeerId) {
        let (group, pkp) = group(t, n);
        let watermarks: Vec<_> = (0..n).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, self_id, 4);
        for height in 1..=3 {
            let cands = candidates(&group, &inventory, self_id);
            let chosen = choose_participants(self_id, t, &cands, &BTreeSet::new(), false).unwrap();
            assert_eq!(chosen.len(), usize::from(t));
            assert_eq!(chosen[0], self_id);
            let msg = vote_bytes(CHAIN, height, 0, Step::Prevote, Some("B"));
            let (request, mut session) =
                build_request(&mut inventory, &chosen, msg.clone(), None).unwrap();
            run(
                &group,
                self_id,
                &request,
                &mut session,
                &mut inventory,
                &watermarks,
            );
            assert!(session.is_complete());
            let sigs = session.finish(&pkp, None).unwrap();
            assert!(sigs.extension.is_none());
            verify(&pkp, &msg, &sigs.vote);
            // The fast path gives the very signature frost's aggregation gives.
            let pre = session.precompute(&pkp).unwrap();
            assert_eq!(session.finish(&pkp, Some(&pre)).unwrap(), sigs);
            // Every participant refilled what it used.
            for p in &chosen {
                assert_eq!(inventory.available(*p), 4);
            }
        }
    }

    #[test]
    fn a_request_announces_what_the_next_signing_uses() {
        let (group, _) = group(2, 3);
        let mut inventory = fill(&group, 1, 4);
        let chosen = vec![1, 2];
        let msg = vote_bytes(CHAIN, 4, 0, Step::Prevote, Some("B"));
        let (first, _) = build_request(&mut inventory, &chosen, msg.clone(), None).unwrap();
        let (second, _) = build_request(&mut inventory, &chosen, msg, None).unwrap();
        for p in &chosen {
            assert_eq!(first.upcoming[p].len(), UPCOMING_PER_PARTICIPANT);
            assert_eq!(first.upcoming[p][0], second.vote.commitments[p]);
        }
        assert!(
            !first.upcoming.contains_key(&3),
            "only the chosen are announced"
        );
    }

    #[test]
    fn two_of_three_full_flow() {
        full_flow(2, 3, 1);
        full_flow(2, 3, 3);
    }

    #[test]
    fn three_of_five_full_flow() {
        full_flow(3, 5, 2);
    }

    #[test]
    fn vote_and_extension_produce_two_valid_signatures() {
        let (group, pkp) = group(2, 3);
        let watermarks: Vec<_> = (0..3).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 4);
        let chosen = choose_participants(
            1,
            2,
            &candidates(&group, &inventory, 1),
            &BTreeSet::new(),
            true,
        )
        .unwrap();
        let vote = vote_bytes(CHAIN, 5, 1, Step::Precommit, Some("B"));
        let ext = ext_bytes(CHAIN, 5, 1, "hello");
        let (request, mut session) =
            build_request(&mut inventory, &chosen, vote.clone(), Some(ext.clone())).unwrap();
        let ext_part = request.extension.as_ref().unwrap();
        for p in &chosen {
            assert_ne!(request.vote.commitments[p], ext_part.commitments[p]);
        }
        run(
            &group,
            1,
            &request,
            &mut session,
            &mut inventory,
            &watermarks,
        );
        let sigs = session.finish(&pkp, None).unwrap();
        verify(&pkp, &vote, &sigs.vote);
        verify(&pkp, &ext, &sigs.extension.unwrap());
        assert_ne!(Some(sigs.vote), sigs.extension);
        let pre = session.precompute(&pkp).unwrap();
        assert_eq!(session.finish(&pkp, Some(&pre)).unwrap(), sigs);
    }

    #[test]
    fn garbage_share_names_the_culprit() {
        let (group, pkp) = group(3, 5);
        let watermarks: Vec<_> = (0..5).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 2);
        let chosen = vec![1, 3, 4];
        let msg = vote_bytes(CHAIN, 7, 0, Step::Prevote, Some("B"));
        let (request, mut session) = build_request(&mut inventory, &chosen, msg, None).unwrap();
        for p in &chosen {
            let i = usize::from(*p) - 1;
            let mut resp = group[i]
                .handle_sign(1, &request, &watermarks[i], &mut OsRng)
                .unwrap();
            if *p == 4 {
                resp.share = Share([7; 32]);
            }
            session.accept(*p, &wire(&resp)).unwrap();
        }
        assert_eq!(
            session.finish(&pkp, None).unwrap_err(),
            AggregateError::InvalidShares { culprits: vec![4] }
        );
        // With the group commitment precomputed, the bad sum fails strict verification and
        // frost's aggregation still names the culprit.
        let pre = session.precompute(&pkp).unwrap();
        assert_eq!(
            session.finish(&pkp, Some(&pre)).unwrap_err(),
            AggregateError::InvalidShares { culprits: vec![4] }
        );
    }

    #[test]
    fn a_wrong_precomputed_commitment_falls_back_to_frost() {
        let (group, pkp) = group(2, 3);
        let watermarks: Vec<_> = (0..3).map(|_| RecordingWatermark::default()).collect();
        let mut inventory = fill(&group, 1, 4);
        let chosen = vec![1, 2];
        let first = vote_bytes(CHAIN, 8, 0, Step::Prevote, Some("B"));
        let (_, other) = build_request(&mut inventory, &chosen, first, None).unwrap();
        let msg = vote_bytes(CHAIN, 9, 0, Step::Prevote, Some("B"));
        let (request, mut session) =
            build_request(&mut inventory, &chosen, msg.clone(), None).unwrap();
        run(
            &group,
            1,
            &request,
            &mut session,
            &mut inventory,
            &watermarks,
        );
        // The R of another signing makes a signature that does not verify.
        let wrong = other.precompute(&pkp).unwrap();
        let sigs = session.finish(&pkp, Some(&wrong)).unwrap();
        verify(&pkp, &msg, &sigs.vote);
        assert_eq!(sigs, session.finish(&pkp, None).unwrap());
    }

    #[test]
    fn reusing_a_request_is_refused_by_participants() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut inventory = fill(&group, 1, 1);
        let (request, _) = build_request(
            &mut inventory,
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Prevote, Some("B")),
            None,
        )
        .unwrap();
        group[1].handle_sign(1, &request, &wm, &mut OsRng).unwrap();
        let refused = group[1]
            .handle_sign(1, &request, &wm, &mut OsRng)
            .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::UnknownCommitment);
        // The coordinator's inventory no longer holds them either.
        assert_eq!(inventory.available(1), 0);
        assert_eq!(inventory.available(2), 0);
    }

    #[test]
    fn choose_prefers_fast_peers_with_commitments() {
        let c = |id, ms, available| Candidate {
            id,
            rtt: Duration::from_millis(ms),
            available,
        };
        let cands = [
            c(1, 0, 5),
            c(2, 30, 5),
            c(3, 10, 0),
            c(4, 20, 1),
            c(5, 5, 3),
        ];
        let none = BTreeSet::new();
        assert_eq!(
            choose_participants(1, 3, &cands, &none, false),
            Some(vec![1, 5, 4])
        );
        // With an extension, peer 4 (one commitment) no longer qualifies.
        assert_eq!(
            choose_participants(1, 3, &cands, &none, true),
            Some(vec![1, 5, 2])
        );
        let excluded: BTreeSet<_> = [5].into();
        assert_eq!(
            choose_participants(1, 3, &cands, &excluded, false),
            Some(vec![1, 4, 2])
        );
        assert_eq!(choose_participants(1, 4, &cands, &excluded, false), None);
        // We must take part ourselves.
        assert_eq!(choose_participants(1, 2, &cands, &[1].into(), false), None);
        assert_eq!(choose_participants(9, 2, &cands, &none, false), None);
        // A peer listed twice counts once.
        let twice = [c(1, 0, 5), c(2, 1, 5), c(3, 9, 5), c(2, 5, 5)];
        assert_eq!(
            choose_participants(1, 3, &twice, &none, false),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn inventory_is_fifo_and_bounded() {
        let (group, _) = group(2, 3);
        let issued = group[1].handle_commitments(1, 5, &mut OsRng).unwrap();
        let mut inventory = CommitmentInventory::new(3);
        inventory.add(2, &issued).unwrap();
        assert_eq!(inventory.available(2), 3);
        for expected in &issued[2..] {
            assert_eq!(inventory.take_one(2).unwrap().0, *expected);
        }
        assert!(inventory.take_one(2).is_none());

        let mut bad = issued[0];
        bad.hiding = [0xff; 32];
        assert!(inventory.add(2, &[issued[1], bad]).is_err());
        assert_eq!(inventory.available(2), 0);
    }

    #[test]
    fn build_takes_nothing_unless_everyone_has_enough() {
        let (group, _) = group(2, 3);
        let mut inventory = fill(&group, 1, 1);
        let err = build_request(
            &mut inventory,
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Precommit, Some("B")),
            Some(ext_bytes(CHAIN, 1, 0, "x")),
        )
        .unwrap_err();
        assert_eq!(err, BuildError::NotEnoughCommitments(1));
        assert_eq!(inventory.available(1), 1);
        assert_eq!(
            build_request(&mut inventory, &[1, 1], vec![], None).unwrap_err(),
            BuildError::Duplicate(1)
        );
    }

    #[test]
    fn session_rejects_strangers_duplicates_and_missing_parts() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut inventory = fill(&group, 1, 2);
        let (request, mut session) = build_request(
            &mut inventory,
            &[1, 2],
            vote_bytes(CHAIN, 1, 0, Step::Precommit, Some("B")),
            Some(ext_bytes(CHAIN, 1, 0, "x")),
        )
        .unwrap();
        let resp = group[1].handle_sign(1, &request, &wm, &mut OsRng).unwrap();
        assert_eq!(session.accept(3, &resp), Err(SessionError::NotAsked(3)));
        let mut without_ext = resp.clone();
        without_ext.extension_share = None;
        assert_eq!(
            session.accept(2, &without_ext),
            Err(SessionError::MissingExtensionShare(2))
        );
        session.accept(2, &resp).unwrap();
        assert_eq!(
            session.accept(2, &resp),
            Err(SessionError::AlreadyAnswered(2))
        );
        assert_eq!(session.pending(), vec![1]);
        assert!(!session.is_complete());
    }
}
