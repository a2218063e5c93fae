//! The messages cosigners exchange to sign together, as serde types.
//!
//! The cluster transport encodes these with bincode and adds its own version byte; this module
//! only fixes their shape and the conversions to and from frost types. FROST values travel in
//! their smallest canonical form (a commitment is two 32-byte points, a share one 32-byte
//! scalar) and are decoded with frost's own `deserialize`, which validates them (canonical
//! scalars, prime-order non-identity points). No message names its sender: the transport hands
//! the authenticated [`PeerId`] of the connection to the handler separately.

use std::collections::BTreeMap;

use frost_ed25519::round1::{NonceCommitment, SigningCommitments};
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::Identifier;
use serde::{Deserialize, Serialize};

use super::epoch::EpochId;

/// A cosigner's number in the cluster, as in `cosigner.toml` and the key share: 1..=n. It is
/// also its FROST identifier (the dealer splits with `IdentifierList::Default`).
pub type PeerId = u16;

/// Most commitments one request may ask for, and most a response may carry. Matches the
/// per-coordinator bound of the nonce pool: asking for more would only evict fresh ones.
pub const MAX_COMMITMENTS_PER_MESSAGE: u16 = 64;

/// Largest sign bytes a participant accepts. A vote extension may reach about 9.8 KiB
/// (privval-protocol.md); votes and proposals are a few hundred bytes.
pub const MAX_SIGN_BYTES: usize = 16 * 1024;

/// A bound the transport can give bincode for one encoded message: two sign parts of maximal
/// size plus commitments for a generous cluster, with room to spare.
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

/// The FROST identifier of a cosigner number; `None` for 0, which FROST forbids.
pub fn identifier_of(peer: PeerId) -> Option<Identifier> {
    Identifier::try_from(peer).ok()
}

/// The cosigner number of a FROST identifier, if it is one of the small default identifiers.
pub fn peer_of(id: &Identifier) -> Option<PeerId> {
    // A default identifier is the scalar 1..=n, serialized little-endian in 32 bytes.
    let bytes = id.serialize();
    let (low, high) = bytes.split_at_checked(2)?;
    if high.iter().any(|b| *b != 0) {
        return None;
    }
    let peer = u16::from_le_bytes([low[0], low[1]]);
    (identifier_of(peer).as_ref() == Some(id)).then_some(peer)
}

/// Why a wire value could not be turned into the frost value it stands for (not a frame error:
/// those are the cluster transport's `WireError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A commitment is not two valid points of the prime-order group.
    #[error("invalid nonce commitment: {0}")]
    Commitment(String),
    /// A signature share is not a canonical scalar.
    #[error("invalid signature share: {0}")]
    Share(String),
}

/// One participant's round-one commitments on the wire: hiding then binding point, each a
/// 32-byte compressed Edwards point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Commitment {
    /// The hiding nonce's commitment, `D = d·B`.
    pub hiding: [u8; 32],
    /// The binding nonce's commitment, `E = e·B`.
    pub binding: [u8; 32],
}

impl std::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Enough to tell commitments apart in logs.
        write!(f, "Commitment({}..)", hex::encode(&self.hiding[..6]))
    }
}

impl Commitment {
    /// The wire form of FROST's commitments; fails if frost cannot give two 32-byte points.
    pub fn from_frost(c: &SigningCommitments) -> Result<Commitment, DecodeError> {
        let point = |n: &NonceCommitment| -> Result<[u8; 32], DecodeError> {
            let bytes = n
                .serialize()
                .map_err(|e| DecodeError::Commitment(e.to_string()))?;
            bytes
                .try_into()
                .map_err(|_| DecodeError::Commitment("point is not 32 bytes".into()))
        };
        Ok(Commitment {
            hiding: point(c.hiding())?,
            binding: point(c.binding())?,
        })
    }

    /// Decodes and validates both points (about 80 µs).
    pub fn to_frost(&self) -> Result<SigningCommitments, DecodeError> {
        let point = |b: &[u8; 32]| {
            NonceCommitment::deserialize(b).map_err(|e| DecodeError::Commitment(e.to_string()))
        };
        Ok(SigningCommitments::new(
            point(&self.hiding)?,
            point(&self.binding)?,
        ))
    }
}

/// A signature share on the wire: the 32-byte little-endian scalar.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share(pub [u8; 32]);

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share({}..)", hex::encode(&self.0[..6]))
    }
}

impl Share {
    /// The wire form of FROST's share; fails if frost does not give 32 bytes.
    pub fn from_frost(s: &SignatureShare) -> Result<Share, DecodeError> {
        s.serialize()
            .try_into()
            .map(Share)
            .map_err(|_| DecodeError::Share("share is not 32 bytes".into()))
    }

    /// Decodes the scalar; rejects a non-canonical one.
    pub fn to_frost(&self) -> Result<SignatureShare, DecodeError> {
        SignatureShare::deserialize(&self.0).map_err(|e| DecodeError::Share(e.to_string()))
    }
}

/// One message to sign and the commitment each chosen participant contributes to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignPart {
    /// Canonical sign bytes (varint length prefix included); every participant parses them.
    pub sign_bytes: Vec<u8>,
    /// For every chosen participant (the receiver included), the commitment it handed the
    /// coordinator earlier.
    pub commitments: BTreeMap<PeerId, Commitment>,
}

/// "Sign this with the nonces behind these commitments."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignRequest {
    /// The coordinator's generation of shares: a participant of another refuses
    /// ([`RefusalKind::Epoch`]), so a signing never mixes shares of two generations.
    pub epoch: EpochId,
    /// The vote or proposal.
    pub vote: SignPart,
    /// The vote extension of a non-nil precommit: same participants, different commitments.
    pub extension: Option<SignPart>,
    /// Per participant, the commitments the coordinator expects to use in its next signings.
    /// A participant validates the others' after answering, so that a later request finds
    /// them decoded already and point validation stays off the signing path.
    pub upcoming: BTreeMap<PeerId, Vec<Commitment>>,
}

/// A [`SignPart`] whose commitments are decoded and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedPart {
    /// The exact bytes to sign (canonical vote, proposal or vote extension).
    pub sign_bytes: Vec<u8>,
    /// Every participant's commitments for this part, decoded and validated.
    pub commitments: BTreeMap<PeerId, SigningCommitments>,
}

/// A [`SignRequest`] whose commitments are decoded and validated: what a participant signs
/// from. A coordinator hands its own participant this form directly, since its inventory
/// validated every commitment on arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRequest {
    /// The vote or proposal.
    pub vote: DecodedPart,
    /// The vote extension of a non-nil precommit.
    pub extension: Option<DecodedPart>,
}

/// A participant's shares for one [`SignRequest`], and commitments to refill the coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResponse {
    /// The participant's share of the vote or proposal signature.
    pub share: Share,
    /// Present exactly when the request had an extension part.
    pub extension_share: Option<Share>,
    /// Fresh commitments for the coordinator's next signings.
    pub commitments: Vec<Commitment>,
}

/// What kind of problem made a participant refuse; lets the coordinator decide whether to
/// retry elsewhere, refresh its commitments or give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The request is malformed or inconsistent (bad points, ids, counts, sizes).
    BadRequest,
    /// A commitment of ours is unknown to us: already used, evicted, or issued before a
    /// restart or to another coordinator. The coordinator should drop its commitments for us.
    UnknownCommitment,
    /// The sign bytes are not canonical, or the extension does not belong to the vote.
    SignBytes,
    /// Double-sign protection said no (regression or conflicting signature).
    Watermark,
    /// The watermark could not be stored durably, so nothing was released.
    Storage,
    /// A failure on our side that the request did not cause.
    Internal,
    /// This cosigner has just started and has not yet learnt from its peers what the
    /// validator signed while it was away; it releases no share until it has.
    CatchingUp,
    /// The participant sees two live processes with the requester's identity (a copied
    /// cosigner directory) and serves neither until one is gone; the reason names both
    /// addresses. The requester is one of the two: it has a twin.
    Duplicate,
    /// The coordinator and this participant hold shares of different generations (one of
    /// them missed a refresh, or runs on a restored backup).
    Epoch,
}

/// A participant's "no", with a reason the coordinator can log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {reason}")]
pub struct Refusal {
    /// What went wrong, for the coordinator's log.
    pub reason: String,
    /// What kind of problem it is, which decides what the coordinator does next.
    pub kind: RefusalKind,
}

impl Refusal {
    /// A refusal of `kind`, with `reason` for the log.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            kind,
        }
    }
}

/// An Ed25519 signature on the wire (serde has no 64-byte arrays): R, then s.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSignature {
    /// The commitment `R`, a compressed Edwards point.
    pub r: [u8; 32],
    /// The scalar `s`, little endian.
    pub s: [u8; 32],
}

impl WireSignature {
    /// Splits a 64-byte signature into `R` and `s`.
    pub fn from_bytes(signature: &[u8; 64]) -> WireSignature {
        let (r, s) = signature.split_at(32);
        let mut wire = WireSignature {
            r: [0; 32],
            s: [0; 32],
        };
        wire.r.copy_from_slice(r);
        wire.s.copy_from_slice(s);
        wire
    }

    /// The 64-byte signature, `R` then `s`.
    pub fn to_bytes(self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&self.r);
        bytes[32..].copy_from_slice(&self.s);
        bytes
    }
}

impl std::fmt::Debug for WireSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireSignature({}..)", hex::encode(&self.r[..6]))
    }
}

/// A signature the validator made: the sign bytes and the aggregated signature, and for a
/// precommit with a vote extension the extension's too. A coordinator tells every peer of each
/// one it makes, and peers report the highest they know to a cosigner catching up. The
/// receiver believes none of it until the signature verifies under the validator key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorSignature {
    /// The canonical sign bytes of the vote or proposal.
    pub sign_bytes: Vec<u8>,
    /// The validator's signature over them.
    pub signature: WireSignature,
    /// A precommit's canonical vote extension and its signature.
    pub extension: Option<(Vec<u8>, WireSignature)>,
}

/// What a cosigner asks a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// "Give me fresh commitments to use when I coordinate."
    Commitments {
        /// How many commitments the coordinator wants.
        count: u16,
    },
    /// "Sign this with the commitments you gave me": one share for each part.
    Sign(SignRequest),
    /// "The validator signed this": raise your watermark to it.
    Signed(ValidatorSignature),
    /// "What are the highest signatures of the validator you know, per chain?"
    HighestSigned,
    /// A key ceremony's request (`cosigner dkg`, `cosigner import-horcrux`). A signing
    /// cosigner refuses it; a cosigner in a ceremony refuses everything else.
    Ceremony(crate::ceremony::CeremonyRequest),
}

/// A peer's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterResponse {
    /// Fresh commitments, as many as asked or fewer.
    Commitments(Vec<Commitment>),
    /// The shares for a [`ClusterRequest::Sign`].
    Signed(SignResponse),
    /// The participant will not sign; says why.
    Refused(Refusal),
    /// The answer to [`ClusterRequest::Signed`]: received (and checked later, off every
    /// signing's path).
    Noted,
    /// The answer to [`ClusterRequest::HighestSigned`]: at most one per chain.
    HighestSigned(Vec<ValidatorSignature>),
    /// The answer to [`ClusterRequest::Ceremony`].
    Ceremony(crate::ceremony::CeremonyResponse),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::epoch::EpochId;
    use rand_core::OsRng;

    #[test]
    fn peer_ids_map_to_default_identifiers_and_back() {
        for peer in [1u16, 2, 7, 255, 256, 65535] {
            let id = identifier_of(peer).unwrap();
            assert_eq!(peer_of(&id), Some(peer));
        }
        assert!(identifier_of(0).is_none());
        let derived = Identifier::derive(b"cosigner-a").unwrap();
        assert_eq!(peer_of(&derived), None);
    }

    #[test]
    fn commitment_round_trips_and_rejects_bad_points() {
        let (shares, _) = frost_ed25519::keys::generate_with_dealer(
            3,
            2,
            frost_ed25519::keys::IdentifierList::Default,
            OsRng,
        )
        .unwrap();
        let share = shares.into_values().next().unwrap();
        let (_nonces, c) = frost_ed25519::round1::commit(share.signing_share(), &mut OsRng);
        let wire = Commitment::from_frost(&c).unwrap();
        assert_eq!(wire.to_frost().unwrap(), c);
        let encoded = bincode::serialize(&wire).unwrap();
        assert_eq!(encoded.len(), 64);
        assert_eq!(bincode::deserialize::<Commitment>(&encoded).unwrap(), wire);

        // The identity point and a non-point are both refused by frost's validation.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let bad = Commitment {
            hiding: identity,
            binding: wire.binding,
        };
        assert!(matches!(bad.to_frost(), Err(DecodeError::Commitment(_))));
        let not_a_point = Commitment {
            hiding: wire.hiding,
            binding: [0xff; 32],
        };
        assert!(not_a_point.to_frost().is_err());
    }

    #[test]
    fn a_two_signer_request_stays_small() {
        let c = Commitment {
            hiding: [1; 32],
            binding: [2; 32],
        };
        let part = SignPart {
            sign_bytes: vec![0; 150],
            commitments: [(1, c), (2, c)].into(),
        };
        let req = ClusterRequest::Sign(SignRequest {
            epoch: EpochId([0; 32]),
            vote: part,
            extension: None,
            upcoming: Default::default(),
        });
        // 150 B of sign bytes plus two 64-byte commitments, the 32-byte key epoch, plus
        // small framing; frost's stock SigningPackage encoding of the same is 360 B.
        let len = bincode::serialize(&req).unwrap().len();
        assert!(len <= 150 + 2 * 66 + 32 + 32, "{len} bytes");
        let resp = ClusterResponse::Signed(SignResponse {
            share: Share([3; 32]),
            extension_share: None,
            commitments: vec![c],
        });
        assert!(bincode::serialize(&resp).unwrap().len() <= 32 + 64 + 24);
    }

    #[test]
    fn non_canonical_share_is_refused() {
        assert!(Share([0xff; 32]).to_frost().is_err());
        assert!(Share([0; 32]).to_frost().is_ok());
    }
}
