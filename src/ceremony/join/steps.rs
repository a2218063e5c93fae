//! The repair steps, pure: frost's repairable scheme (`keys::repairable`) for a new
//! cosigner's identifier, one protocol step per function, and the public checks around it.
//!
//! - The helpers are the `t` lowest member ids ([`helpers`]), so every host picks the same.
//! - Each helper splits `ζ_i·s_i` into one random delta per helper ([`deltas`]); each helper
//!   sums the deltas it received into its sigma ([`sigma`]), which only the new cosigner
//!   gets; the new cosigner's share is the sum of the sigmas ([`repaired`]).
//! - The new cosigner's verifying share is public: the Lagrange interpolation at its
//!   identifier of `t` members' verifying shares ([`extended`]), so every host derives the
//!   same extended public key package, and the new cosigner checks its repaired share
//!   against it (frost's part 3 does not: a wrong sigma would go unnoticed until a refresh
//!   or a signing failed).
//!
//! The extended package is what frost's DKG-based refresh needs (its old package must hold
//! every participant's verifying share); the refresh that follows makes every delta and
//! sigma sent here worthless.

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::repairable::{self, Delta, Sigma};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage, VerifyingShare};
use frost_ed25519::{Ed25519Sha512, Identifier};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::ceremony::abort::Abort;
use crate::ceremony::dkg::id;
use crate::cluster::PeerId;
use crate::threshold::messages::peer_of;

/// The members that help: the `t` lowest ids, so every host agrees without a message.
pub fn helpers(members: &[PeerId], threshold: u16) -> Vec<PeerId> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.truncate(usize::from(threshold));
    sorted
}

/// The members of a public key package, ascending.
pub fn members(pkp: &PublicKeyPackage) -> Vec<PeerId> {
    pkp.verifying_shares().keys().filter_map(peer_of).collect()
}

/// The public key package extended by `joiner`'s verifying share, interpolated from the
/// helpers' verifying shares; every host computes the same one from the same package.
pub fn extended(pkp: &PublicKeyPackage, joiner: PeerId) -> Result<PublicKeyPackage, Abort> {
    let t = pkp
        .min_signers()
        .ok_or_else(|| Abort::local("the public key package has no threshold"))?;
    let current = members(pkp);
    if current.contains(&joiner) {
        return Err(Abort::local(format!(
            "cosigner {joiner} is already a member of this key"
        )));
    }
    let helpers = helpers(&current, t);
    if helpers.len() < usize::from(t) {
        return Err(Abort::local(format!(
            "the key has {} cosigners, fewer than its threshold {t}",
            current.len()
        )));
    }
    let set: BTreeSet<Identifier> = helpers.iter().map(|p| id(*p)).collect::<Result<_, _>>()?;
    let x = id(joiner)?;
    let mut sum = curve25519_dalek::EdwardsPoint::default();
    for i in &set {
        let share = pkp
            .verifying_shares()
            .get(i)
            .ok_or_else(|| Abort::local("a helper has no verifying share"))?;
        let lambda = frost_core::compute_lagrange_coefficient::<Ed25519Sha512>(&set, Some(x), *i)
            .map_err(|e| Abort::local(format!("interpolation failed: {e}")))?;
        sum += share.to_element() * lambda;
    }
    let mut shares = pkp.verifying_shares().clone();
    shares.insert(x, VerifyingShare::new(sum));
    Ok(PublicKeyPackage::new(shares, *pkp.verifying_key(), Some(t)))
}

/// Helper step 1: our share split into one delta per helper (frost's encoding, in wiping
/// buffers), ours included. Each goes to that helper alone.
pub fn deltas<R: RngCore + CryptoRng>(
    key_package: &KeyPackage,
    helpers: &[PeerId],
    joiner: PeerId,
    rng: &mut R,
) -> Result<BTreeMap<PeerId, Zeroizing<Vec<u8>>>, Abort> {
    let ids: Vec<Identifier> = helpers.iter().map(|p| id(*p)).collect::<Result<_, _>>()?;
    let out =
        repairable::repair_share_part1::<Ed25519Sha512, R>(&ids, key_package, rng, id(joiner)?)
            .map_err(|e| Abort::local(format!("repair part 1 failed: {e}")))?;
    out.into_iter()
        .map(|(i, delta)| {
            let peer = peer_of(&i).ok_or_else(|| Abort::local("a helper has no cosigner id"))?;
            Ok((peer, Zeroizing::new(delta.serialize())))
        })
        .collect()
}

/// Decodes the delta `from` sent us.
pub fn decode_delta(from: PeerId, bytes: &[u8]) -> Result<Delta, Abort> {
    Delta::deserialize(bytes)
        .map_err(|e| Abort::culprit(from, format!("its repair delta is invalid: {e}")))
}

/// Helper step 2: the sum of the deltas every helper sent us (ours included), for the new
/// cosigner alone (frost's encoding).
pub fn sigma(
    helpers: &[PeerId],
    received: &BTreeMap<PeerId, Delta>,
) -> Result<Zeroizing<Vec<u8>>, Abort> {
    let deltas: Vec<Delta> = helpers
        .iter()
        .map(|h| {
            received
                .get(h)
                .copied()
                .ok_or_else(|| Abort::local(format!("no repair delta from cosigner {h}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Zeroizing::new(
        repairable::repair_share_part2(&deltas).serialize(),
    ))
}

/// Decodes the sigma `from` sent us.
pub fn decode_sigma(from: PeerId, bytes: &[u8]) -> Result<Sigma, Abort> {
    Sigma::deserialize(bytes)
        .map_err(|e| Abort::culprit(from, format!("its repair sigma is invalid: {e}")))
}

/// The new cosigner's step: its share from every helper's sigma, checked against the
/// verifying share the extended package gives it. A mismatch means a helper sent a wrong
/// sigma (or a delta to another helper); which one cannot be told from here.
pub fn repaired(
    joiner: PeerId,
    helpers: &[PeerId],
    sigmas: &BTreeMap<PeerId, Sigma>,
    extended: &PublicKeyPackage,
) -> Result<KeyPackage, Abort> {
    let list: Vec<Sigma> = helpers
        .iter()
        .map(|h| {
            sigmas
                .get(h)
                .copied()
                .ok_or_else(|| Abort::local(format!("no repair sigma from cosigner {h}")))
        })
        .collect::<Result<_, _>>()?;
    let x = id(joiner)?;
    let kp = repairable::repair_share_part3(&list, x, extended)
        .map_err(|e| Abort::local(format!("repair part 3 failed: {e}")))?;
    if extended.verifying_shares().get(&x) != Some(kp.verifying_share()) {
        return Err(Abort::local(format!(
            "the share repaired from the sigmas of cosigners {} does not match cosigner \
             {joiner}'s public verifying share: a helper sent a wrong value (nothing is \
             written; run the join again, and if it fails again check those hosts)",
            crate::threshold::key_share::members_list(helpers)
        )));
    }
    Ok(kp)
}

#[cfg(test)]
mod tests;
