//! The key phase of a Horcrux import, pure: a host's shard becomes its FROST key package,
//! its verifying share is its contribution, and from every host's verifying share the group's
//! public key package is built, once it is proven that the shares lie on one polynomial of
//! degree `t - 1` through the validator key (so every `t` of them interpolate to it).

use std::collections::{BTreeMap, BTreeSet};

use frost_ed25519::keys::{KeyPackage, PublicKeyPackage, VerifyingShare};
use frost_ed25519::{Ed25519Sha512, Identifier, VerifyingKey};

use super::shard::HorcruxShard;
use crate::ceremony::abort::Abort;
use crate::cluster::PeerId;
use crate::threshold::messages::identifier_of;

fn id(peer: PeerId) -> Result<Identifier, Abort> {
    identifier_of(peer).ok_or_else(|| Abort::local(format!("cosigner {peer} has no identifier")))
}

/// Our key package: the shard's share under our identifier, checked against the validator
/// key the ceremony expects.
pub fn own_key_package(
    me: PeerId,
    shard: &HorcruxShard,
    expected_key: &[u8; 32],
    threshold: u16,
) -> Result<KeyPackage, Abort> {
    if shard.id != me {
        return Err(Abort::local(format!(
            "the shard has Horcrux id {}, but this is cosigner {me}: every cosigner must import \
             the shard with its own number (Horcrux's cosigner_{me}), or the directories were \
             copied to the wrong hosts",
            shard.id
        )));
    }
    if shard.public_key != *expected_key {
        return Err(Abort::local(format!(
            "the shard is for validator key {}, but this cluster was made for {} \
             (split-key --horcrux-pubkey): wrong shard file or wrong directory",
            hex::encode(shard.public_key),
            hex::encode(expected_key)
        )));
    }
    let verifying_key = VerifyingKey::deserialize(expected_key)
        .map_err(|e| Abort::local(format!("the validator key is not a valid point: {e}")))?;
    Ok(KeyPackage::new(
        id(me)?,
        shard.share,
        VerifyingShare::from(shard.share),
        verifying_key,
        threshold,
    ))
}

/// The contribution a host broadcasts: its verifying share `s·B`, 32 bytes.
pub fn encode_contribution(key_package: &KeyPackage) -> Result<Vec<u8>, Abort> {
    key_package
        .verifying_share()
        .serialize()
        .map_err(|e| Abort::local(format!("cannot encode our verifying share: {e}")))
}

/// Decodes `from`'s verifying share (frost checks it is a valid prime-order point).
pub fn decode_contribution(from: PeerId, bytes: &[u8]) -> Result<VerifyingShare, Abort> {
    VerifyingShare::deserialize(bytes)
        .map_err(|e| Abort::culprit(from, format!("its verifying share is invalid: {e}")))
}

/// Whether the verifying shares of `ids` lie on one polynomial of degree `t - 1` whose value
/// at 0 is `key`: the first `t` fix it, and `key` and every other share must match its
/// Lagrange interpolation. With exactly `t` shares there is nothing to cross-check but `key`.
fn consistent(
    ids: &[PeerId],
    shares: &BTreeMap<PeerId, VerifyingShare>,
    key: &VerifyingKey,
    t: u16,
) -> Result<bool, Abort> {
    let t = usize::from(t);
    if ids.len() < t {
        return Ok(false);
    }
    let base: Vec<(Identifier, VerifyingShare)> = ids[..t]
        .iter()
        .map(|p| Ok((id(*p)?, shares[p])))
        .collect::<Result<_, Abort>>()?;
    let set: BTreeSet<Identifier> = base.iter().map(|(i, _)| *i).collect();
    let at = |x: Option<Identifier>| -> Result<curve25519_dalek::EdwardsPoint, Abort> {
        let mut sum = curve25519_dalek::EdwardsPoint::default();
        for (i, share) in &base {
            let lambda = frost_core::compute_lagrange_coefficient::<Ed25519Sha512>(&set, x, *i)
                .map_err(|e| Abort::local(format!("interpolation failed: {e}")))?;
            sum += share.to_element() * lambda;
        }
        Ok(sum)
    };
    if at(None)? != key.to_element() {
        return Ok(false);
    }
    for p in &ids[t..] {
        if at(Some(id(*p)?))? != shares[p].to_element() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The group's public key package from every host's verifying share, once they are proven
/// to share `key` with threshold `t`. If they are not, the one host whose share is off the
/// polynomial the others define is named, when that can be told (n > t and a single host).
pub fn public_key_package(
    shares: &BTreeMap<PeerId, VerifyingShare>,
    key: &[u8; 32],
    t: u16,
) -> Result<PublicKeyPackage, Abort> {
    let verifying_key = VerifyingKey::deserialize(key)
        .map_err(|e| Abort::local(format!("the validator key is not a valid point: {e}")))?;
    let ids: Vec<PeerId> = shares.keys().copied().collect();
    if !consistent(&ids, shares, &verifying_key, t)? {
        let mut culprits = Vec::new();
        for &suspect in &ids {
            let others: Vec<PeerId> = ids.iter().copied().filter(|p| *p != suspect).collect();
            if consistent(&others, shares, &verifying_key, t)? {
                culprits.push(suspect);
            }
        }
        return Err(match culprits.as_slice() {
            [culprit] => Abort::culprit(
                *culprit,
                format!(
                    "its shard is not a share of validator key {}: the other cosigners' shards \
                     agree on the key and its share is off their polynomial (a wrong or \
                     damaged shard file, or another split's)",
                    hex::encode(key)
                ),
            ),
            _ => Abort::local(format!(
                "the cosigners' shards are not {t}-of-{} shares of validator key {}: {}; check \
                 every host's shard file (Horcrux's cosigner_<id>/<chain-id>_shard.json)",
                ids.len(),
                hex::encode(key),
                match ids.len() > usize::from(t) {
                    true => "more than one shard is wrong, or they come from different splits",
                    false =>
                        "a shard is wrong, and with as many shards as the threshold it \
                              cannot be told which",
                }
            )),
        });
    }
    let by_id = shares
        .iter()
        .map(|(p, s)| Ok((id(*p)?, *s)))
        .collect::<Result<BTreeMap<_, _>, Abort>>()?;
    Ok(PublicKeyPackage::new(by_id, verifying_key, Some(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::scalar::Scalar;
    use frost_ed25519::keys::SigningShare;
    use rand_core::{OsRng, RngCore};
    use sha2::{Digest, Sha512};

    /// Shards dealt as unit410's `DealShares(ExpandSecret(seed), t, n)` deals them (see the
    /// module docs of `horcrux`): coefficient 0 the clamped, unreduced SHA-512 half, random
    /// coefficients below l, Horner's rule mod l at x = 1..=n, little-endian.
    fn deal_like_horcrux(seed: &[u8; 32], t: u16, n: u16) -> Vec<HorcruxShard> {
        let digest = Sha512::digest(seed);
        let mut a = [0u8; 32];
        a.copy_from_slice(&digest[..32]);
        a[0] &= 248;
        a[31] &= 127;
        a[31] |= 64;
        let mut coefficients = vec![Scalar::from_bytes_mod_order(a)];
        for _ in 1..t {
            let mut wide = [0u8; 64];
            OsRng.fill_bytes(&mut wide);
            coefficients.push(Scalar::from_bytes_mod_order_wide(&wide));
        }
        let public_key = ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes();
        (1..=n)
            .map(|x| {
                let mut share = coefficients[usize::from(t) - 1];
                for c in coefficients[..usize::from(t) - 1].iter().rev() {
                    share = share * Scalar::from(u64::from(x)) + c;
                }
                HorcruxShard {
                    id: x,
                    public_key,
                    share: SigningShare::deserialize(&share.to_bytes()).unwrap(),
                }
            })
            .collect()
    }

    fn shares_of(shards: &[HorcruxShard], t: u16) -> BTreeMap<PeerId, VerifyingShare> {
        shards
            .iter()
            .map(|s| {
                let kp = own_key_package(s.id, s, &s.public_key, t).unwrap();
                let bytes = encode_contribution(&kp).unwrap();
                (s.id, decode_contribution(s.id, &bytes).unwrap())
            })
            .collect()
    }

    #[test]
    fn horcrux_shards_give_the_validator_key_and_sign_under_it() {
        let seed = [3u8; 32];
        for (t, n) in [(2, 3), (3, 5), (3, 3)] {
            let shards = deal_like_horcrux(&seed, t, n);
            let key = shards[0].public_key;
            let pkp = public_key_package(&shares_of(&shards, t), &key, t).unwrap();
            assert_eq!(pkp.verifying_key().serialize().unwrap(), key.to_vec());
            // Any t of them sign under the original key.
            let kps: BTreeMap<Identifier, KeyPackage> = shards
                .iter()
                .map(|s| {
                    (
                        id(s.id).unwrap(),
                        own_key_package(s.id, s, &key, t).unwrap(),
                    )
                })
                .collect();
            let signers: Vec<Identifier> = kps.keys().rev().take(usize::from(t)).copied().collect();
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for i in &signers {
                let (nn, c) = frost_ed25519::round1::commit(kps[i].signing_share(), &mut OsRng);
                nonces.insert(*i, nn);
                commitments.insert(*i, c);
            }
            let package = frost_ed25519::SigningPackage::new(commitments, b"horcrux");
            let sig_shares = signers
                .iter()
                .map(|i| {
                    (
                        *i,
                        frost_ed25519::round2::sign(&package, &nonces[i], &kps[i]).unwrap(),
                    )
                })
                .collect();
            let signature = frost_ed25519::aggregate(&package, &sig_shares, &pkp).unwrap();
            let bytes: [u8; 64] = signature.serialize().unwrap().try_into().unwrap();
            ed25519_dalek::VerifyingKey::from_bytes(&key)
                .unwrap()
                .verify_strict(b"horcrux", &ed25519_dalek::Signature::from_bytes(&bytes))
                .unwrap();
        }
    }

    #[test]
    fn a_wrong_shard_is_named_and_two_are_reported() {
        let shards = deal_like_horcrux(&[4; 32], 3, 5);
        let key = shards[0].public_key;
        let other = deal_like_horcrux(&[4; 32], 3, 5);
        let mut shares = shares_of(&shards, 3);
        // Host 4 holds a shard of the same key from another split.
        shares.insert(4, shares_of(&other, 3)[&4]);
        let err = public_key_package(&shares, &key, 3).unwrap_err();
        assert_eq!(err.named(), vec![4], "{err}");
        shares.insert(2, shares_of(&other, 3)[&2]);
        let err = public_key_package(&shares, &key, 3).unwrap_err();
        assert!(
            err.named().is_empty() && err.to_string().contains("more than one"),
            "{err}"
        );
        // With n = t nothing can be cross-checked but the key, and nobody can be named.
        let tight = deal_like_horcrux(&[4; 32], 2, 2);
        let mut shares = shares_of(&tight, 2);
        shares.insert(2, shares_of(&deal_like_horcrux(&[4; 32], 2, 2), 2)[&2]);
        assert!(public_key_package(&shares, &key, 2)
            .unwrap_err()
            .named()
            .is_empty());
    }

    #[test]
    fn a_shard_of_another_host_or_key_is_refused_locally() {
        let shards = deal_like_horcrux(&[6; 32], 2, 3);
        let key = shards[0].public_key;
        let err = own_key_package(1, &shards[1], &key, 2).unwrap_err();
        assert!(err.to_string().contains("Horcrux id 2"), "{err}");
        let err = own_key_package(2, &shards[1], &[9; 32], 2).unwrap_err();
        assert!(err.to_string().contains("wrong shard file"), "{err}");
        assert_eq!(
            decode_contribution(3, &[0xff; 32]).unwrap_err().named(),
            vec![3]
        );
    }
}
