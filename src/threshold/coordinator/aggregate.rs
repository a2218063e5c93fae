//! Turning shares into the signature: the group commitment (computed while the shares are on
//! their way, and used by this cosigner's own participant for its share), the sum of the
//! shares verified strictly under the group key, and frost's own aggregation, which names the
//! culprits, when that fails.

use std::collections::BTreeMap;

use frost_core::Ciphersuite;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::round1::{SigningCommitments, SigningNonces};
use frost_ed25519::round2::SignatureShare;
use frost_ed25519::{CheaterDetection, Ed25519Sha512, SigningPackage};

use crate::threshold::messages::{identifier_of, peer_of, PeerId};

/// The group commitment of one message (RFC 9591 §4.4-4.5), with the package and binding
/// factors it came from: the coordinator needs R, and its own participant the rest, to make
/// its share without computing them a second time in this process.
#[derive(Clone)]
pub struct GroupCommitment {
    package: SigningPackage,
    binding_factors: frost_core::BindingFactorList<Ed25519Sha512>,
    commitment: frost_core::GroupCommitment<Ed25519Sha512>,
    r: [u8; 32],
}

impl std::fmt::Debug for GroupCommitment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupCommitment({})", hex::encode(self.r))
    }
}

impl GroupCommitment {
    /// R, the first half of the signature.
    pub fn r(&self) -> &[u8; 32] {
        &self.r
    }

    /// Round 2 (RFC 9591 §5.2) for this process's own participant: its share of `package`
    /// with these binding factors and group commitment, by frost's own steps and checks of
    /// `round2::sign` (Ed25519 has no pre-sign hooks). `None` if they were computed for
    /// another package: then the caller signs the usual way.
    pub fn own_share(
        &self,
        package: &SigningPackage,
        nonces: &SigningNonces,
        key_package: &KeyPackage,
    ) -> Option<Result<SignatureShare, frost_ed25519::Error>> {
        if *package != self.package {
            return None;
        }
        let id = key_package.identifier();
        let share = || {
            if package.signing_commitments().len() < usize::from(*key_package.min_signers()) {
                return Err(frost_ed25519::Error::IncorrectNumberOfCommitments);
            }
            let ours = package
                .signing_commitments()
                .get(id)
                .ok_or(frost_ed25519::Error::MissingCommitment)?;
            if nonces.commitments() != ours {
                return Err(frost_ed25519::Error::IncorrectCommitment);
            }
            let binding_factor = self
                .binding_factors
                .get(id)
                .ok_or(frost_ed25519::Error::UnknownIdentifier)?
                .clone();
            let lambda = frost_core::derive_interpolating_value(id, package)?;
            let challenge = <Ed25519Sha512 as Ciphersuite>::challenge(
                &self.commitment.clone().to_element(),
                key_package.verifying_key(),
                package.message(),
            )?;
            Ok(<Ed25519Sha512 as Ciphersuite>::compute_signature_share(
                &self.commitment,
                nonces,
                binding_factor,
                lambda,
                key_package,
                challenge,
            ))
        };
        Some(share())
    }
}

/// The group commitment for `sign_bytes` and these commitments, by frost's own functions.
pub(super) fn group_commitment(
    sign_bytes: &[u8],
    commitments: &BTreeMap<PeerId, SigningCommitments>,
    public_key_package: &PublicKeyPackage,
) -> Result<GroupCommitment, AggregateError> {
    let package = signing_package(sign_bytes, commitments, public_key_package)?;
    let frost = |e: frost_ed25519::Error| AggregateError::Frost(e.to_string());
    let binding_factors =
        frost_core::compute_binding_factor_list(&package, public_key_package.verifying_key(), &[])
            .map_err(frost)?;
    let commitment =
        frost_core::compute_group_commitment(&package, &binding_factors).map_err(frost)?;
    let r = commitment.clone().to_element().compress().to_bytes();
    Ok(GroupCommitment {
        package,
        binding_factors,
        commitment,
        r,
    })
}

/// R and the sum of the shares as an Ed25519 signature, if it verifies strictly.
pub(super) fn assemble(
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

pub(super) fn group_key(
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
    /// Participants asked who sent no share.
    #[error("no share from {0:?}")]
    MissingShares(Vec<PeerId>),
    /// Shares from participants who were not asked.
    #[error("shares from {0:?}, who were not asked")]
    UnexpectedShares(Vec<PeerId>),
    /// A participant is not in the public key package.
    #[error("participant {0} is not a member of the group")]
    UnknownParticipant(PeerId),
    /// The culprits sent shares that do not verify; retry without them.
    #[error("invalid signature shares from {culprits:?}")]
    InvalidShares {
        /// The participants whose shares failed verification.
        culprits: Vec<PeerId>,
    },
    /// frost-ed25519 could not aggregate the shares; carries its reason.
    #[error("aggregation failed: {0}")]
    Frost(String),
    /// The aggregate is not a strictly valid Ed25519 signature under the group key.
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
