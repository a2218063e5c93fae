//! The refresh steps, pure: frost's DKG-based refresh (`keys::refresh::refresh_dkg_*`) for
//! one cosigner. It is the DKG of [`crate::ceremony::dkg`] with a polynomial whose constant
//! term is zero: every cosigner deals shares of zero, and each adds what it receives to its
//! old share. The group key stays, every share changes, and the threshold cannot change.

use std::collections::BTreeMap;

use frost_ed25519::keys::dkg::{round1, round2};
use frost_ed25519::keys::refresh as frost_refresh;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::ceremony::abort::Abort;
use crate::ceremony::dkg::{blamed, by_identifier, id, part2_output};
use crate::ceremony::machine::OldShare;
use crate::cluster::PeerId;

/// Part 1: our polynomial of zero and the round-1 package to broadcast.
pub fn part1<R: RngCore + CryptoRng>(
    me: PeerId,
    members: u16,
    threshold: u16,
    rng: &mut R,
) -> Result<(round1::SecretPackage, round1::Package), Abort> {
    frost_refresh::refresh_dkg_part1(id(me)?, members, threshold, rng)
        .map_err(|e| Abort::local(format!("refresh part 1 failed: {e}")))
}

/// Part 2: each peer's secret round-2 package (frost's encoding, in wiping buffers).
#[allow(clippy::type_complexity)]
pub fn part2(
    secret: round1::SecretPackage,
    received: &BTreeMap<PeerId, round1::Package>,
) -> Result<(round2::SecretPackage, BTreeMap<PeerId, Zeroizing<Vec<u8>>>), Abort> {
    let by_id = by_identifier(received)?;
    part2_output(
        frost_refresh::refresh_dkg_part2(secret, &by_id),
        "refresh round-1 package",
        "refresh part 2",
    )
}

/// Part 3: checks every received share of zero against its sender's commitment and adds
/// them to our old share; the public key package then lists only the cosigners that took
/// part (a refresh without a cosigner removes it).
pub fn shares(
    secret: &round2::SecretPackage,
    round1: &BTreeMap<PeerId, round1::Package>,
    round2: &BTreeMap<PeerId, round2::Package>,
    old: &OldShare,
) -> Result<(KeyPackage, PublicKeyPackage), Abort> {
    let r1 = by_identifier(round1)?;
    let r2 = by_identifier(round2)?;
    frost_refresh::refresh_dkg_shares(
        secret,
        &r1,
        &r2,
        old.public_key_package.clone(),
        old.key_package.clone(),
    )
    .map_err(|e| match e.culprits().first() {
        Some(culprit) => Abort::culprit(
            blamed(culprit),
            format!("the refresh share it sent us does not match its commitment: {e}"),
        ),
        None => Abort::local(format!("refresh part 3 failed: {e}")),
    })
}

/// The group key of a public key package, as the validator's 32-byte public key.
pub fn group_key(pkp: &PublicKeyPackage) -> Result<[u8; 32], Abort> {
    pkp.verifying_key()
        .serialize()
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| Abort::local("cannot encode the group key"))
}
