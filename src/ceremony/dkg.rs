//! The DKG steps, pure: frost's `keys::dkg` parts 1 to 3 for one cosigner, with every
//! received package decoded by frost (which validates it) and every failure turned into an
//! [`Abort`] naming the cosigner it comes from.
//!
//! Identifiers are the cosigner numbers `1..=n` (`Identifier::try_from(u16)`), as the dealer
//! uses, so a DKG share file is read exactly like a dealt one.

use std::collections::BTreeMap;

use frost_ed25519::keys::dkg::{self, round1, round2};
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::abort::Abort;
use super::messages::MAX_PACKAGE_BYTES;
use crate::cluster::PeerId;
use crate::threshold::messages::{identifier_of, peer_of};

pub(crate) fn id(peer: PeerId) -> Result<Identifier, Abort> {
    identifier_of(peer).ok_or_else(|| Abort::local(format!("cosigner {peer} has no identifier")))
}

/// The cosigner a frost culprit stands for.
pub(crate) fn blamed(culprit: &Identifier) -> PeerId {
    peer_of(culprit).unwrap_or(0)
}

/// Part 1: our secret polynomial and the round-1 package to broadcast (frost's encoding).
pub(crate) fn part1<R: RngCore + CryptoRng>(
    me: PeerId,
    shares: u16,
    threshold: u16,
    rng: &mut R,
) -> Result<(round1::SecretPackage, round1::Package), Abort> {
    dkg::part1(id(me)?, shares, threshold, rng)
        .map_err(|e| Abort::local(format!("DKG part 1 failed: {e}")))
}

/// frost's canonical encoding of a round-1 package.
pub(crate) fn encode_round1(package: &round1::Package) -> Result<Vec<u8>, Abort> {
    package
        .serialize()
        .map_err(|e| Abort::local(format!("cannot encode a round-1 package: {e}")))
}

/// Decodes `from`'s round-1 package and checks what frost's part 2 would only report without
/// naming the sender: its commitment has one point per coefficient of a degree `t - 1`
/// polynomial (`points`: `t`, or `t - 1` for a refresh, whose constant term is not sent).
pub(crate) fn decode_round1(
    from: PeerId,
    bytes: &[u8],
    threshold: u16,
    points_expected: u16,
) -> Result<round1::Package, Abort> {
    if bytes.len() > MAX_PACKAGE_BYTES {
        return Err(Abort::culprit(
            from,
            format!("its round-1 package has {} bytes", bytes.len()),
        ));
    }
    let package = round1::Package::deserialize(bytes)
        .map_err(|e| Abort::culprit(from, format!("its round-1 package is invalid: {e}")))?;
    let points = package.commitment().coefficients().len();
    if points != usize::from(points_expected) {
        return Err(Abort::culprit(
            from,
            format!(
                "its round-1 commitment has {points} points; this ceremony of a \
                 {threshold}-of-n key needs {points_expected}"
            ),
        ));
    }
    Ok(package)
}

/// Part 2: checks every peer's proof of knowledge and makes each peer's secret round-2
/// package (frost's encoding, in wiping buffers).
#[allow(clippy::type_complexity)]
pub(crate) fn part2(
    secret: round1::SecretPackage,
    received: &BTreeMap<PeerId, round1::Package>,
) -> Result<(round2::SecretPackage, BTreeMap<PeerId, Zeroizing<Vec<u8>>>), Abort> {
    let by_id = by_identifier(received)?;
    part2_output(dkg::part2(secret, &by_id), "round-1 package", "DKG part 2")
}

/// Part 2's result, of a DKG or a refresh, as this host sends it: the culprit frost names is
/// blamed (`package`: what of it failed), the round-2 packages encoded per recipient.
#[allow(clippy::type_complexity)]
pub(crate) fn part2_output(
    result: Result<
        (
            round2::SecretPackage,
            BTreeMap<frost_ed25519::Identifier, round2::Package>,
        ),
        frost_ed25519::Error,
    >,
    package: &str,
    step: &str,
) -> Result<(round2::SecretPackage, BTreeMap<PeerId, Zeroizing<Vec<u8>>>), Abort> {
    let (secret2, outgoing) = result.map_err(|e| match e.culprits().first() {
        Some(culprit) => Abort::culprit(
            blamed(culprit),
            format!("its {package} fails frost's check: {e}"),
        ),
        None => Abort::local(format!("{step} failed: {e}")),
    })?;
    let mut packages = BTreeMap::new();
    for (to, package) in outgoing {
        let bytes = package
            .serialize()
            .map_err(|e| Abort::local(format!("cannot encode a round-2 package: {e}")))?;
        packages.insert(blamed(&to), Zeroizing::new(bytes));
    }
    Ok((secret2, packages))
}

/// Decodes the round-2 package `from` made for us.
pub(crate) fn decode_round2(from: PeerId, bytes: &[u8]) -> Result<round2::Package, Abort> {
    if bytes.len() > MAX_PACKAGE_BYTES {
        return Err(Abort::culprit(
            from,
            format!("its round-2 package has {} bytes", bytes.len()),
        ));
    }
    round2::Package::deserialize(bytes)
        .map_err(|e| Abort::culprit(from, format!("its round-2 package is invalid: {e}")))
}

/// Part 3: checks every received share against its sender's commitment and computes our key
/// package and the group's public key package.
pub(crate) fn part3(
    secret: &round2::SecretPackage,
    round1: &BTreeMap<PeerId, round1::Package>,
    round2: &BTreeMap<PeerId, round2::Package>,
) -> Result<(KeyPackage, PublicKeyPackage), Abort> {
    let r1 = by_identifier(round1)?;
    let r2 = by_identifier(round2)?;
    dkg::part3(secret, &r1, &r2).map_err(|e| match e.culprits().first() {
        Some(culprit) => Abort::culprit(
            blamed(culprit),
            format!("the secret share it sent us does not match its commitment: {e}"),
        ),
        None => Abort::local(format!("DKG part 3 failed: {e}")),
    })
}

/// Packages keyed by frost identifier instead of cosigner number.
pub(crate) fn by_identifier<T: Clone>(
    packages: &BTreeMap<PeerId, T>,
) -> Result<BTreeMap<Identifier, T>, Abort> {
    packages
        .iter()
        .map(|(peer, p)| Ok((id(*peer)?, p.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    /// Runs parts 1 and 2 for `n` cosigners; returns their secrets and packages.
    #[allow(clippy::type_complexity)]
    fn through_part2(
        t: u16,
        n: u16,
    ) -> (
        BTreeMap<PeerId, round2::SecretPackage>,
        BTreeMap<PeerId, round1::Package>,
        BTreeMap<PeerId, BTreeMap<PeerId, Zeroizing<Vec<u8>>>>,
    ) {
        let mut secrets1 = BTreeMap::new();
        let mut packages = BTreeMap::new();
        for me in 1..=n {
            let (s, p) = part1(me, n, t, &mut OsRng).unwrap();
            let decoded = decode_round1(me, &encode_round1(&p).unwrap(), t, t).unwrap();
            assert_eq!(decoded, p);
            secrets1.insert(me, s);
            packages.insert(me, p);
        }
        let mut secrets2 = BTreeMap::new();
        let mut outgoing = BTreeMap::new();
        for (me, s) in secrets1 {
            let others = packages
                .iter()
                .filter(|(p, _)| **p != me)
                .map(|(p, k)| (*p, k.clone()))
                .collect();
            let (s2, out) = part2(s, &others).unwrap();
            assert_eq!(out.len(), usize::from(n - 1));
            secrets2.insert(me, s2);
            outgoing.insert(me, out);
        }
        (secrets2, packages, outgoing)
    }

    fn others<T: Clone>(all: &BTreeMap<PeerId, T>, me: PeerId) -> BTreeMap<PeerId, T> {
        all.iter()
            .filter(|(p, _)| **p != me)
            .map(|(p, v)| (*p, v.clone()))
            .collect()
    }

    #[test]
    fn three_parts_give_every_cosigner_a_share_of_one_key() {
        let (secrets, round1, outgoing) = through_part2(2, 3);
        let mut keys = Vec::new();
        for (me, secret) in &secrets {
            let received: BTreeMap<PeerId, round2::Package> = outgoing
                .iter()
                .filter(|(from, _)| *from != me)
                .map(|(from, out)| (*from, decode_round2(*from, &out[me]).unwrap()))
                .collect();
            let (kp, pkp) = part3(secret, &others(&round1, *me), &received).unwrap();
            assert_eq!(kp.identifier(), &identifier_of(*me).unwrap());
            assert_eq!(pkp.min_signers(), Some(2));
            keys.push(pkp);
        }
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_bad_round2_share_names_its_sender() {
        let (secrets, round1, outgoing) = through_part2(2, 3);
        // Cosigner 3 sends cosigner 1 the share it made for cosigner 2.
        let mut received: BTreeMap<PeerId, round2::Package> = BTreeMap::new();
        received.insert(2, decode_round2(2, &outgoing[&2][&1]).unwrap());
        received.insert(3, decode_round2(3, &outgoing[&3][&2]).unwrap());
        let err = part3(&secrets[&1], &others(&round1, 1), &received).unwrap_err();
        assert_eq!(err.named(), vec![3], "{err}");
    }

    #[test]
    fn a_forged_proof_of_knowledge_names_its_sender() {
        let (_, mut round1, _) = through_part2(2, 3);
        // Cosigner 3 replays cosigner 2's package as its own: the proof is bound to the
        // sender's identifier, so it fails.
        round1.insert(3, round1[&2].clone());
        let (s1, _) = part1(1, 3, 2, &mut OsRng).unwrap();
        let err = part2(s1, &others(&round1, 1)).unwrap_err();
        assert_eq!(err.named(), vec![3], "{err}");
    }

    #[test]
    fn malformed_packages_name_their_sender() {
        let (_, p) = part1(2, 3, 2, &mut OsRng).unwrap();
        let bytes = encode_round1(&p).unwrap();
        assert_eq!(
            decode_round1(2, &bytes[..10], 2, 2).unwrap_err().named(),
            vec![2]
        );
        // A 3-of-n commitment in a 2-of-n ceremony.
        let (_, p3) = part1(2, 3, 3, &mut OsRng).unwrap();
        let err = decode_round1(2, &encode_round1(&p3).unwrap(), 2, 2).unwrap_err();
        assert!(err.to_string().contains("3 points"), "{err}");
        assert_eq!(decode_round2(3, &[0xff; 37]).unwrap_err().named(), vec![3]);
        let huge = vec![0; MAX_PACKAGE_BYTES + 1];
        assert_eq!(decode_round1(2, &huge, 2, 2).unwrap_err().named(), vec![2]);
    }
}
