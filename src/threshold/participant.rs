//! One cosigner's side of threshold signing: deciding whether to release a signature share.
//!
//! A [`Participant`] answers requests from any coordinator (itself included) that arrive on an
//! authenticated connection. Before it releases a share it validates the commitments, parses
//! the sign bytes itself (never trusting coordinator metadata), burns the nonces it is asked to
//! use, and has the [`Watermark`] check and durably record the signature's position. No I/O
//! happens here: the watermark's storage and the transport live elsewhere.
//!
//! The steps are separate so that the caller can compute the share while the watermark is
//! being written ([`Participant::prepare`], then [`Participant::sign`] beside
//! [`Watermark::authorize`]): the share is computed into [`UnreleasedShares`], which give it up
//! only for the [`Recorded`] proof of that very document. [`Participant::handle_sign`] runs the
//! same steps one after the other.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::{round2, Identifier, SigningPackage};

use super::coordinator::{GroupCommitment, Precomputed, UPCOMING_PER_PARTICIPANT};
use super::epoch::EpochId;
use super::messages::{
    identifier_of, peer_of, Commitment, DecodedRequest, PeerId, Refusal, RefusalKind, Share,
    SignRequest, SignResponse, MAX_COMMITMENTS_PER_MESSAGE,
};
use super::nonces::{NoncePool, PooledNonce, DEFAULT_MAX_OUTSTANDING};
use crate::consensus::canonical;
use crate::consensus::SignDoc;
use crate::sign_state::Recorded;
use decode::{bad, check_extension_belongs, sign_bytes_refusal, unknown_commitment};
use upcoming::Upcoming;

mod decode;
mod upcoming;

/// Double-sign protection as the participant needs it.
pub trait Watermark {
    /// Decides whether `doc` may be signed under the FilePV rules and, if so, records the new
    /// watermark durably and returns the proof. Returns a refusal of kind
    /// [`RefusalKind::Watermark`] when the rules say no and [`RefusalKind::Storage`] when the
    /// watermark could not be stored; either way no share is released.
    fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal>;
}

/// Has `watermark` authorize and record `doc`, saying in a refusal whether the rules said no
/// or the write failed.
pub fn record<W: Watermark + ?Sized>(watermark: &W, doc: &SignDoc) -> Result<Recorded, Refusal> {
    watermark.authorize(doc).map_err(|r| Refusal {
        reason: match r.kind {
            RefusalKind::Storage => format!("watermark not stored: {}", r.reason),
            _ => format!("watermark refused: {}", r.reason),
        },
        kind: r.kind,
    })
}

/// Why key material cannot make a participant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParticipantError {
    /// The cosigner number is not a valid FROST identifier (0).
    #[error("cosigner id {0} is not a valid FROST identifier")]
    InvalidId(PeerId),
    /// The key package is another cosigner's.
    #[error("the key package belongs to another identifier than cosigner {0}")]
    WrongIdentifier(PeerId),
    /// The threshold given is not the key package's.
    #[error("threshold {given} does not match the key package's {in_package}")]
    ThresholdMismatch {
        /// The threshold given.
        given: u16,
        /// The key package's threshold.
        in_package: u16,
    },
    /// The public key package does not hold this key package's verifying share or group key.
    #[error("the public key package does not match the key package")]
    PackageMismatch,
    /// The public key package holds an identifier that is no cosigner number (a hashed one).
    #[error("the public key package holds an identifier that is no cosigner number")]
    NonDefaultIdentifier,
}

/// This cosigner as a signer: key material, the peers it knows, and its nonce pool.
pub struct Participant {
    own_id: PeerId,
    key_package: KeyPackage,
    public_key_package: PublicKeyPackage,
    threshold: u16,
    /// Our generation of shares; requests of another are refused.
    epoch: EpochId,
    /// Every cosigner of the group (ourselves included), from the public key package.
    members: BTreeMap<PeerId, Identifier>,
    nonces: Mutex<NoncePool>,
    /// Others' commitments that coordinators announced as upcoming, validated.
    upcoming: Upcoming,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("own_id", &self.own_id)
            .field("threshold", &self.threshold)
            .field("members", &self.members.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A request that passed every check, with its nonces already burnt: what is left is to
/// record the watermark and to sign, in either order or at once.
pub struct PreparedSign {
    doc: SignDoc,
    vote: PreparedPart,
    extension: Option<PreparedPart>,
}

struct PreparedPart {
    package: SigningPackage,
    // Boxed: a prepared request moves between threads, and its secret nonces must not.
    nonces: Box<SigningNonces>,
}

impl PreparedSign {
    /// The document the watermark must authorize, parsed from the sign bytes themselves.
    pub fn doc(&self) -> &SignDoc {
        &self.doc
    }
}

/// Shares computed for a document whose watermark may not be on disk yet.
pub struct UnreleasedShares {
    doc: SignDoc,
    share: Share,
    extension_share: Option<Share>,
}

impl UnreleasedShares {
    /// The shares, given the proof that this very document's watermark is on disk.
    pub fn release(self, recorded: Recorded) -> Result<(Share, Option<Share>), Refusal> {
        if recorded.doc() != &self.doc {
            return Err(Refusal::new(
                RefusalKind::Internal,
                "the watermark recorded another document than the one signed",
            ));
        }
        Ok((self.share, self.extension_share))
    }
}

impl Participant {
    /// Checks that the packages belong together and to cosigner `own_id`.
    pub fn new(
        own_id: PeerId,
        key_package: KeyPackage,
        public_key_package: PublicKeyPackage,
        threshold: u16,
    ) -> Result<Participant, ParticipantError> {
        let identifier = identifier_of(own_id).ok_or(ParticipantError::InvalidId(own_id))?;
        if *key_package.identifier() != identifier {
            return Err(ParticipantError::WrongIdentifier(own_id));
        }
        let in_package = *key_package.min_signers();
        if threshold != in_package || threshold < 2 {
            return Err(ParticipantError::ThresholdMismatch {
                given: threshold,
                in_package,
            });
        }
        if public_key_package
            .min_signers()
            .is_some_and(|m| m != threshold)
            || public_key_package.verifying_key() != key_package.verifying_key()
            || public_key_package.verifying_shares().get(&identifier)
                != Some(key_package.verifying_share())
        {
            return Err(ParticipantError::PackageMismatch);
        }
        let members = public_key_package
            .verifying_shares()
            .keys()
            .map(|id| {
                peer_of(id)
                    .map(|p| (p, *id))
                    .ok_or(ParticipantError::NonDefaultIdentifier)
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if members.len() < usize::from(threshold) {
            return Err(ParticipantError::PackageMismatch);
        }
        Ok(Participant {
            own_id,
            key_package,
            epoch: EpochId::of(&public_key_package),
            public_key_package,
            threshold,
            members,
            nonces: Mutex::new(NoncePool::new(DEFAULT_MAX_OUTSTANDING)),
            upcoming: Upcoming::default(),
        })
    }

    /// Replaces the nonce pool with an empty one keeping at most `max` nonces per coordinator.
    pub fn with_max_outstanding(mut self, max: usize) -> Participant {
        self.nonces = Mutex::new(NoncePool::new(max));
        self
    }

    /// This cosigner's identifier.
    pub fn id(&self) -> PeerId {
        self.own_id
    }

    /// Our generation of shares.
    pub fn epoch(&self) -> EpochId {
        self.epoch
    }

    /// How many cosigners must sign together (`t`).
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// Every cosigner's verifying share and the group key.
    pub fn public_key_package(&self) -> &PublicKeyPackage {
        &self.public_key_package
    }

    /// Whether `peer` is a cosigner of this group.
    pub fn is_member(&self, peer: PeerId) -> bool {
        self.members.contains_key(&peer)
    }

    /// Nonces issued to `coordinator` and not used yet.
    pub fn outstanding(&self, coordinator: PeerId) -> usize {
        self.pool().outstanding(coordinator)
    }

    /// Issues up to `count` fresh commitments (bounded by [`MAX_COMMITMENTS_PER_MESSAGE`] and
    /// the pool) that only `coordinator` can redeem.
    pub fn handle_commitments<R: RngCore + CryptoRng>(
        &self,
        coordinator: PeerId,
        count: u16,
        rng: &mut R,
    ) -> Result<Vec<Commitment>, Refusal> {
        Ok(self
            .commitments_with_decoded(coordinator, count, rng)?
            .into_iter()
            .map(|(wire, _)| wire)
            .collect())
    }

    /// As [`Participant::handle_commitments`], each commitment also decoded: for the
    /// coordinator in this same process, which need not decode what it made itself.
    pub fn commitments_with_decoded<R: RngCore + CryptoRng>(
        &self,
        coordinator: PeerId,
        count: u16,
        rng: &mut R,
    ) -> Result<Vec<(Commitment, SigningCommitments)>, Refusal> {
        if !self.is_member(coordinator) {
            return Err(bad(format!(
                "coordinator {coordinator} is not a member of this group"
            )));
        }
        self.pool()
            .issue(
                coordinator,
                count.min(MAX_COMMITMENTS_PER_MESSAGE).into(),
                self.key_package.signing_share(),
                rng,
            )
            .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))
    }

    /// Makes spare nonces until the pool has enough, so that sign responses hand out
    /// commitments without computing them. Call it off the signing path.
    pub fn replenish_spare<R: RngCore + CryptoRng>(&self, rng: &mut R) {
        while self.pool().spare_wanted() > 0 {
            // Generated outside the lock: signings must not wait behind it.
            match PooledNonce::generate(self.key_package.signing_share(), rng) {
                Ok(nonce) => self.pool().add_spare(nonce),
                Err(_) => return,
            }
        }
    }

    /// Decides on one sign request from `coordinator` (the authenticated peer it came from)
    /// and, if every check passes, returns our share(s) and fresh commitments.
    ///
    /// The order is what makes this safe: validate everything that is free to validate; then
    /// remove the nonces from the pool, so they can never serve twice whatever happens next;
    /// then have the watermark authorize and persist; only then sign.
    pub fn handle_sign<W, R>(
        &self,
        coordinator: PeerId,
        req: &SignRequest,
        watermark: &W,
        rng: &mut R,
    ) -> Result<SignResponse, Refusal>
    where
        W: Watermark + ?Sized,
        R: RngCore + CryptoRng,
    {
        let decoded = self.decode_request(coordinator, req)?;
        let prepared = self.prepare(coordinator, &decoded)?;
        let recorded = record(watermark, prepared.doc())?;
        let (share, extension_share) = self.sign(prepared)?.release(recorded)?;
        let commitments = self.refill(coordinator, extension_share.is_some(), rng)?;
        Ok(SignResponse {
            share,
            extension_share,
            commitments,
        })
    }

    /// Checks everything about a decoded request, learns from the sign bytes what it signs,
    /// and burns the nonces it names. After this the nonces are gone whatever happens.
    pub fn prepare(
        &self,
        coordinator: PeerId,
        req: &DecodedRequest,
    ) -> Result<PreparedSign, Refusal> {
        self.check_coordinator(coordinator)?;
        for (what, part) in std::iter::once(("vote", &req.vote))
            .chain(req.extension.as_ref().map(|e| ("extension", e)))
        {
            self.check_part(what, part)?;
        }

        // 1. The participant sets, and our commitments in them.
        let our_vote = *req
            .vote
            .commitments
            .get(&self.own_id)
            .ok_or_else(|| bad(format!("our id {} is not among the signers", self.own_id)))?;
        if req.vote.commitments.len() < usize::from(self.threshold) {
            return Err(bad(format!(
                "{} signers, fewer than the threshold {}",
                req.vote.commitments.len(),
                self.threshold
            )));
        }
        let our_ext = match &req.extension {
            None => None,
            Some(ext) => {
                if !ext.commitments.keys().eq(req.vote.commitments.keys()) {
                    return Err(bad("the extension's signers differ from the vote's"));
                }
                let ours = ext
                    .commitments
                    .get(&self.own_id)
                    .copied()
                    .ok_or_else(|| bad("our id is not among the extension's signers"))?;
                if ours == our_vote {
                    return Err(bad("the extension reuses the vote's commitment"));
                }
                Some(ours)
            }
        };

        // 2. Learn what we are asked to sign from the bytes themselves.
        let doc = canonical::parse(&req.vote.sign_bytes)
            .map_err(|e| sign_bytes_refusal(format!("vote sign bytes: {e}")))?;
        if doc.sign_bytes != req.vote.sign_bytes {
            return Err(sign_bytes_refusal(
                "vote sign bytes do not parse back to themselves",
            ));
        }
        if let Some(part) = &req.extension {
            let ext = canonical::parse_extension(&part.sign_bytes)
                .map_err(|e| sign_bytes_refusal(format!("extension sign bytes: {e}")))?;
            check_extension_belongs(&doc, &ext, &part.sign_bytes)?;
        }
        let vote_package = self.package(&req.vote)?;
        let ext_package = req
            .extension
            .as_ref()
            .map(|part| self.package(part))
            .transpose()?;

        // 3. Burn the nonces before anything can be signed.
        let (vote_nonces, ext_nonces) = {
            let mut pool = self.pool();
            let vote = pool.take(coordinator, &our_vote);
            let ext = our_ext.map(|c| pool.take(coordinator, &c));
            (vote, ext)
        };
        let vote_nonces = vote_nonces.ok_or_else(unknown_commitment)?;
        let extension = match (ext_package, ext_nonces) {
            (Some(package), Some(Some(nonces))) => Some(PreparedPart { package, nonces }),
            (Some(_), _) => return Err(unknown_commitment()),
            (None, _) => None,
        };
        Ok(PreparedSign {
            doc,
            vote: PreparedPart {
                package: vote_package,
                nonces: vote_nonces,
            },
            extension,
        })
    }

    /// Computes the shares of a prepared request; they leave only through
    /// [`UnreleasedShares::release`]. The nonces are dropped (and zeroized) here.
    pub fn sign(&self, prepared: PreparedSign) -> Result<UnreleasedShares, Refusal> {
        self.sign_with(prepared, None)
    }

    /// As [`Participant::sign`], for this cosigner's own coordinator, whose group commitments
    /// of the same packages (`precomputed`) spare computing them a second time; a package
    /// they were not computed for is signed the usual way.
    pub fn sign_with(
        &self,
        prepared: PreparedSign,
        precomputed: Option<&Precomputed>,
    ) -> Result<UnreleasedShares, Refusal> {
        let sign = |part: &PreparedPart, pre: Option<&GroupCommitment>| {
            let share = pre
                .and_then(|pre| pre.own_share(&part.package, &part.nonces, &self.key_package))
                .unwrap_or_else(|| round2::sign(&part.package, &part.nonces, &self.key_package))
                .map_err(|e| Refusal::new(RefusalKind::Internal, format!("round 2 failed: {e}")))?;
            Share::from_frost(&share)
                .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))
        };
        let share = sign(&prepared.vote, precomputed.map(Precomputed::vote))?;
        let extension_share = prepared
            .extension
            .as_ref()
            .map(|part| sign(part, precomputed.and_then(Precomputed::extension)))
            .transpose()?;
        Ok(UnreleasedShares {
            doc: prepared.doc,
            share,
            extension_share,
        })
    }

    /// Fresh commitments for `coordinator` to replace those a signing used.
    pub fn refill<R: RngCore + CryptoRng>(
        &self,
        coordinator: PeerId,
        with_extension: bool,
        rng: &mut R,
    ) -> Result<Vec<Commitment>, Refusal> {
        self.handle_commitments(coordinator, 1 + u16::from(with_extension), rng)
    }

    /// Validates the others' commitments `coordinator` announced as upcoming in a request,
    /// so that its next requests find them decoded. Call it after answering: it costs a point
    /// validation per commitment not seen before.
    pub fn learn_upcoming(
        &self,
        coordinator: PeerId,
        upcoming: &BTreeMap<PeerId, Vec<Commitment>>,
    ) {
        if !self.is_member(coordinator) {
            return;
        }
        let others = upcoming
            .iter()
            .filter(|(owner, _)| **owner != self.own_id && self.is_member(**owner))
            .flat_map(|(_, list)| list.iter().take(UPCOMING_PER_PARTICIPANT));
        self.upcoming.learn(coordinator, others);
    }

    fn pool(&self) -> MutexGuard<'_, NoncePool> {
        // Every pool operation removes a nonce before handing it out, so a panic while the
        // lock was held cannot have left a used nonce behind: the state stays safe to use.
        self.nonces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// In-memory fixtures shared by this module's and the coordinator's tests: dealt keys, a fake
/// sign-bytes format and a recording watermark.
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    pub(crate) use crate::consensus::Step;
    use crate::privval::messages::{
        self, SignedMsgType, Vote, WireBlockId as BlockId, WirePartSetHeader as PartSetHeader,
    };
    use crate::privval::sign_doc;
    use frost_ed25519::keys::{generate_with_dealer, IdentifierList};
    use rand_core::OsRng;
    use serde::{de::DeserializeOwned, Serialize};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Passes a message through bincode, as the transport does.
    pub(crate) fn wire<T: Serialize + DeserializeOwned>(value: &T) -> T {
        let bytes = bincode::serialize(value).unwrap();
        bincode::deserialize(&bytes).unwrap()
    }

    fn vote(height: i64, round: i64, step: Step, block: Option<&str>) -> Vote {
        use sha2::{Digest, Sha256};
        let block_id = block.map(|b| BlockId {
            hash: Sha256::digest(b.as_bytes()).to_vec(),
            part_set_header: Some(PartSetHeader {
                total: 1,
                hash: Sha256::digest(format!("parts of {b}").as_bytes()).to_vec(),
            }),
        });
        Vote {
            r#type: match step {
                Step::Prevote => SignedMsgType::Prevote as i32,
                _ => SignedMsgType::Precommit as i32,
            },
            height,
            round: round as i32,
            block_id,
            timestamp: Some(messages::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    /// Canonical vote sign bytes (prevote or precommit; `None` is a nil vote).
    pub(crate) fn vote_bytes(
        chain: &str,
        height: i64,
        round: i64,
        step: Step,
        block: Option<&str>,
    ) -> Vec<u8> {
        sign_doc::vote_sign_doc(chain, &vote(height, round, step, block))
            .unwrap()
            .sign_bytes
    }

    /// Canonical vote extension sign bytes.
    pub(crate) fn ext_bytes(chain: &str, height: i64, round: i64, extension: &str) -> Vec<u8> {
        let mut v = vote(height, round, Step::Precommit, Some("B"));
        v.extension = extension.as_bytes().to_vec();
        sign_doc::extension_sign_doc(chain, &v).unwrap().sign_bytes
    }

    /// Authorizes everything unless told to refuse; remembers what it authorized.
    #[derive(Default)]
    pub(crate) struct RecordingWatermark {
        pub refuse: AtomicBool,
        pub authorized: Mutex<Vec<SignDoc>>,
    }

    impl Watermark for RecordingWatermark {
        fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal> {
            if self.refuse.load(Ordering::SeqCst) {
                return Err(Refusal::new(
                    RefusalKind::Watermark,
                    format!("{} is below the watermark", doc.hrs),
                ));
            }
            self.authorized.lock().unwrap().push(doc.clone());
            Ok(Recorded::assume_recorded(doc))
        }
    }

    /// A freshly dealt t-of-n group: one participant per cosigner (ids 1..=n) using the fake
    /// sign-bytes parser.
    pub(crate) fn group(t: u16, n: u16) -> (Vec<Participant>, PublicKeyPackage) {
        let (shares, pkp) = generate_with_dealer(n, t, IdentifierList::Default, OsRng).unwrap();
        let participants = shares
            .into_iter()
            .map(|(id, share)| {
                let kp = KeyPackage::try_from(share).unwrap();
                Participant::new(peer_of(&id).unwrap(), kp, pkp.clone(), t).unwrap()
            })
            .collect();
        (participants, pkp)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::threshold::messages::SignPart;
    use rand_core::OsRng;
    use std::sync::atomic::Ordering;

    const CHAIN: &str = "test-chain";

    /// Commitments `coordinator` got from each of `signers`, as a request for `bytes`.
    fn part(
        group: &[Participant],
        coordinator: PeerId,
        signers: &[PeerId],
        bytes: Vec<u8>,
    ) -> SignPart {
        let commitments = signers
            .iter()
            .map(|s| {
                let p = &group[usize::from(*s) - 1];
                (
                    *s,
                    p.handle_commitments(coordinator, 1, &mut OsRng).unwrap()[0],
                )
            })
            .collect();
        SignPart {
            sign_bytes: bytes,
            commitments,
        }
    }

    fn precommit() -> Vec<u8> {
        vote_bytes(CHAIN, 10, 0, Step::Precommit, Some("B"))
    }

    fn vote_request(group: &[Participant], coordinator: PeerId, signers: &[PeerId]) -> SignRequest {
        SignRequest {
            epoch: group[0].epoch(),
            vote: part(group, coordinator, signers, precommit()),
            extension: None,
            upcoming: Default::default(),
        }
    }

    #[test]
    fn shares_are_released_only_for_the_record_of_their_own_document() {
        let (group, _) = group(2, 3);
        let req = vote_request(&group, 1, &[1, 2]);
        let decoded = group[1].decode_request(1, &wire(&req)).unwrap();
        let prepared = group[1].prepare(1, &decoded).unwrap();
        let mut other = prepared.doc().clone();
        other.hrs.height += 1;
        let unreleased = group[1].sign(prepared).unwrap();
        let refused = unreleased
            .release(Recorded::assume_recorded(&other))
            .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Internal);

        let req = vote_request(&group, 1, &[1, 2]);
        let prepared = group[1]
            .prepare(1, &group[1].decode_request(1, &wire(&req)).unwrap())
            .unwrap();
        let recorded = Recorded::assume_recorded(prepared.doc());
        let unreleased = group[1].sign(prepared).unwrap();
        let (_, extension_share) = unreleased.release(recorded).unwrap();
        assert!(extension_share.is_none());
    }

    #[test]
    fn signs_a_valid_request_and_refills() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = wire(&vote_request(&group, 1, &[1, 2]));
        let resp = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap();
        assert!(resp.extension_share.is_none());
        assert_eq!(resp.commitments.len(), 1);
        assert_eq!(group[1].outstanding(1), 1);
        let authorized = wm.authorized.lock().unwrap();
        assert_eq!(authorized.len(), 1);
        assert_eq!(authorized[0].hrs.height, 10);
    }

    #[test]
    fn a_request_of_another_key_epoch_is_refused_before_its_nonce_is_used() {
        let (other, _) = group(2, 3);
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut req = vote_request(&group, 1, &[1, 2]);
        req.epoch = other[0].epoch();
        let refused = group[1]
            .handle_sign(1, &wire(&req), &wm, &mut OsRng)
            .unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Epoch);
        assert!(
            refused.reason.contains(&group[1].epoch().to_string())
                && refused.reason.contains(&other[0].epoch().to_string()),
            "{refused}"
        );
        assert!(wm.authorized.lock().unwrap().is_empty());
        // The nonce is still there: the same request of the right epoch signs.
        req.epoch = group[0].epoch();
        group[1]
            .handle_sign(1, &wire(&req), &wm, &mut OsRng)
            .unwrap();
    }

    #[test]
    fn announced_upcoming_commitments_are_validated_once_and_used_once() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 2]);
        let coordinators = req.vote.commitments[&1];
        let ours = req.vote.commitments[&2];
        let garbage = Commitment {
            hiding: [0xff; 32],
            binding: [0xff; 32],
        };
        let upcoming = BTreeMap::from([(1, vec![coordinators, garbage]), (2, vec![ours])]);
        // A stranger's announcements are ignored; ours and invalid points are not kept.
        group[1].learn_upcoming(9, &upcoming);
        assert!(!group[1].upcoming.has(9, &coordinators));
        group[1].learn_upcoming(1, &upcoming);
        assert!(group[1].upcoming.has(1, &coordinators));
        assert!(!group[1].upcoming.has(1, &garbage));
        assert!(!group[1].upcoming.has(1, &ours));
        // Only the coordinator that announced it finds it validated.
        assert!(!group[1].upcoming.has(3, &coordinators));
        group[1]
            .handle_sign(1, &wire(&req), &wm, &mut OsRng)
            .unwrap();
        assert!(
            !group[1].upcoming.has(1, &coordinators),
            "used once, then gone"
        );
    }

    #[test]
    fn upcoming_commitments_are_bounded_per_coordinator() {
        let (group, _) = group(2, 3);
        for _ in 0..upcoming::UPCOMING_PER_COORDINATOR {
            let fresh = group[0].handle_commitments(1, 2, &mut OsRng).unwrap();
            group[1].learn_upcoming(1, &BTreeMap::from([(1, fresh)]));
        }
        assert_eq!(group[1].upcoming.len(1), upcoming::UPCOMING_PER_COORDINATOR);
    }

    #[test]
    fn a_nonce_serves_only_once() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 2]);
        group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap();
        let again = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(again.kind, RefusalKind::UnknownCommitment);
        assert!(again.reason.contains("unknown commitment"), "{again}");
        assert_eq!(wm.authorized.lock().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_requests_for_one_nonce_yield_one_share() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 2]);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| group[1].handle_sign(1, &req, &wm, &mut OsRng)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.kind == RefusalKind::UnknownCommitment));
    }

    #[test]
    fn a_commitment_issued_to_one_coordinator_is_refused_from_another() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 2]);
        let refused = group[1].handle_sign(3, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::UnknownCommitment);
        assert!(wm.authorized.lock().unwrap().is_empty());
        // The rightful coordinator can still use it: the misuse burnt nothing of coordinator 1's.
        group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap();
    }

    #[test]
    fn watermark_refusal_releases_nothing_and_burns_the_nonce() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        wm.refuse.store(true, Ordering::SeqCst);
        let req = vote_request(&group, 1, &[1, 2]);
        assert_eq!(group[1].outstanding(1), 1);
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::Watermark);
        assert!(
            refused.reason.starts_with("watermark refused: "),
            "{refused}"
        );
        assert_eq!(group[1].outstanding(1), 0);
        wm.refuse.store(false, Ordering::SeqCst);
        let again = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(again.kind, RefusalKind::UnknownCommitment);
    }

    #[test]
    fn extension_sharing_the_vote_commitment_is_refused_before_burning() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let vote = part(&group, 1, &[1, 2], precommit());
        let extension = SignPart {
            sign_bytes: ext_bytes(CHAIN, 10, 0, "x"),
            commitments: vote.commitments.clone(),
        };
        let req = SignRequest {
            epoch: group[0].epoch(),
            vote,
            extension: Some(extension),
            upcoming: Default::default(),
        };
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::BadRequest);
        assert!(refused.reason.contains("reuses"), "{refused}");
        assert!(wm.authorized.lock().unwrap().is_empty());
        assert_eq!(group[1].outstanding(1), 1);
    }

    #[test]
    fn fewer_than_threshold_signers_are_refused() {
        let (group, _) = group(3, 5);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 2]);
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::BadRequest);
        assert!(refused.reason.contains("threshold"), "{refused}");
        assert_eq!(group[1].outstanding(1), 1);
    }

    #[test]
    fn a_request_without_our_id_is_refused() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = vote_request(&group, 1, &[1, 3]);
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::BadRequest);
        assert!(refused.reason.contains("our id"), "{refused}");
    }

    #[test]
    fn unknown_signers_and_bad_points_are_refused() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let mut req = vote_request(&group, 1, &[1, 2]);
        let c = req.vote.commitments[&1];
        req.vote.commitments.insert(9, c);
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert!(refused.reason.contains("not a member"), "{refused}");

        let mut req = vote_request(&group, 1, &[1, 2]);
        req.vote.commitments.get_mut(&1).unwrap().binding = [0xff; 32];
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert!(
            refused.reason.contains("invalid nonce commitment"),
            "{refused}"
        );

        let refused = group[1]
            .handle_sign(7, &vote_request(&group, 1, &[1, 2]), &wm, &mut OsRng)
            .unwrap_err();
        assert!(refused.reason.contains("coordinator 7"), "{refused}");
        assert!(wm.authorized.lock().unwrap().is_empty());
    }

    #[test]
    fn unparsable_sign_bytes_are_refused() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = SignRequest {
            epoch: group[0].epoch(),
            vote: part(&group, 1, &[1, 2], b"not sign bytes".to_vec()),
            extension: None,
            upcoming: Default::default(),
        };
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert_eq!(refused.kind, RefusalKind::SignBytes);
        assert_eq!(group[1].outstanding(1), 1);
    }

    #[test]
    fn extension_must_belong_to_a_non_nil_precommit_of_the_same_vote() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let cases = [
            (
                vote_bytes(CHAIN, 10, 0, Step::Prevote, Some("B")),
                ext_bytes(CHAIN, 10, 0, "x"),
            ),
            (
                vote_bytes(CHAIN, 10, 0, Step::Precommit, None),
                ext_bytes(CHAIN, 10, 0, "x"),
            ),
            (precommit(), ext_bytes(CHAIN, 11, 0, "x")),
            (precommit(), ext_bytes(CHAIN, 10, 1, "x")),
            (precommit(), ext_bytes("other-chain", 10, 0, "x")),
        ];
        for (vote, ext) in cases {
            let req = SignRequest {
                epoch: group[0].epoch(),
                vote: part(&group, 1, &[1, 2], vote),
                extension: Some(part(&group, 1, &[1, 2], ext)),
                upcoming: Default::default(),
            };
            let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
            assert_eq!(refused.kind, RefusalKind::SignBytes, "{refused}");
        }
        assert!(wm.authorized.lock().unwrap().is_empty());
    }

    #[test]
    fn extension_signers_must_match_the_vote_signers() {
        let (group, _) = group(2, 3);
        let wm = RecordingWatermark::default();
        let req = SignRequest {
            epoch: group[0].epoch(),
            vote: part(&group, 1, &[1, 2], precommit()),
            extension: Some(part(&group, 1, &[2, 3], ext_bytes(CHAIN, 10, 0, "x"))),
            upcoming: Default::default(),
        };
        let refused = group[1].handle_sign(1, &req, &wm, &mut OsRng).unwrap_err();
        assert!(refused.reason.contains("differ"), "{refused}");
    }

    #[test]
    fn mismatched_key_material_is_rejected() {
        let (shares, pkp) = frost_ed25519::keys::generate_with_dealer(
            3,
            2,
            frost_ed25519::keys::IdentifierList::Default,
            OsRng,
        )
        .unwrap();
        let (_, other_pkp) = frost_ed25519::keys::generate_with_dealer(
            3,
            2,
            frost_ed25519::keys::IdentifierList::Default,
            OsRng,
        )
        .unwrap();
        let share = shares[&identifier_of(1).unwrap()].clone();
        let kp = KeyPackage::try_from(share).unwrap();
        assert_eq!(
            Participant::new(2, kp.clone(), pkp.clone(), 2).unwrap_err(),
            ParticipantError::WrongIdentifier(2)
        );
        assert!(matches!(
            Participant::new(1, kp.clone(), pkp.clone(), 3),
            Err(ParticipantError::ThresholdMismatch { .. })
        ));
        assert_eq!(
            Participant::new(1, kp.clone(), other_pkp, 2).unwrap_err(),
            ParticipantError::PackageMismatch
        );
        assert!(Participant::new(1, kp, pkp, 2).is_ok());
    }

    #[test]
    fn commitments_only_for_members() {
        let (group, _) = group(2, 3);
        assert!(group[0].handle_commitments(4, 1, &mut OsRng).is_err());
        let issued = group[0].handle_commitments(2, 1000, &mut OsRng).unwrap();
        assert_eq!(issued.len(), usize::from(MAX_COMMITMENTS_PER_MESSAGE));
    }
}
