//! A whole join in memory: 2-of-3, refresh without 3 (2-of-2 {1, 2}), repair for 4, then a
//! refresh of all three over the extended package.

use std::collections::BTreeMap;

use frost_ed25519::keys::dkg::round2;
use rand_core::OsRng;

use super::*;
use crate::ceremony::machine::tests::sign_with;
use crate::ceremony::machine::OldShare;
use crate::ceremony::refresh;

type Shares = BTreeMap<PeerId, KeyPackage>;

/// frost's DKG refresh among the holders of `old`, over `pkp`.
fn refresh_all(old: &Shares, pkp: &PublicKeyPackage) -> (Shares, PublicKeyPackage) {
    let n = u16::try_from(old.len()).unwrap();
    let t = pkp.min_signers().unwrap();
    let mut s1 = BTreeMap::new();
    let mut r1 = BTreeMap::new();
    for me in old.keys() {
        let (s, p) = refresh::part1(*me, n, t, &mut OsRng).unwrap();
        s1.insert(*me, s);
        r1.insert(*me, p);
    }
    let others = |me: PeerId| {
        r1.iter()
            .filter(|(p, _)| **p != me)
            .map(|(p, v)| (*p, v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut s2 = BTreeMap::new();
    let mut r2: BTreeMap<PeerId, BTreeMap<PeerId, round2::Package>> = BTreeMap::new();
    for (me, s) in s1 {
        let (secret, out) = refresh::part2(s, &others(me)).unwrap();
        s2.insert(me, secret);
        for (to, bytes) in out {
            let package = round2::Package::deserialize(&bytes).unwrap();
            r2.entry(to).or_default().insert(me, package);
        }
    }
    let mut new = BTreeMap::new();
    let mut new_pkp = None;
    for (me, kp) in old {
        let share = OldShare {
            key_package: kp.clone(),
            public_key_package: pkp.clone(),
            epoch: 0,
            seed_escrow: None,
        };
        let (k, p) = refresh::shares(&s2[me], &others(*me), &r2[me], &share).unwrap();
        new.insert(*me, k);
        if let Some(prev) = &new_pkp {
            assert_eq!(prev, &p, "every member makes the same package");
        }
        new_pkp = Some(p);
    }
    (new, new_pkp.unwrap())
}

/// The repair of `joiner` by the helpers among `shares`; `tamper` rewrites that helper's
/// sigma.
fn repair(
    shares: &Shares,
    pkp: &PublicKeyPackage,
    joiner: PeerId,
    tamper: Option<PeerId>,
) -> Result<KeyPackage, Abort> {
    let t = pkp.min_signers().unwrap();
    let helpers = helpers(&members(pkp), t);
    let mut to: BTreeMap<PeerId, BTreeMap<PeerId, Delta>> = BTreeMap::new();
    for h in &helpers {
        for (dest, bytes) in deltas(&shares[h], &helpers, joiner, &mut OsRng)? {
            to.entry(dest)
                .or_default()
                .insert(*h, decode_delta(*h, &bytes)?);
        }
    }
    let mut sigmas = BTreeMap::new();
    for h in &helpers {
        let mut bytes = sigma(&helpers, &to[h])?;
        if tamper == Some(*h) {
            bytes[0] ^= 1;
        }
        sigmas.insert(*h, decode_sigma(*h, &bytes)?);
    }
    repaired(joiner, &helpers, &sigmas, &extended(pkp, joiner)?)
}

/// 2-of-3 dealt, then refreshed without 3: the 2-of-2 {1, 2} of the README's example; also
/// every dealt share.
fn two_of_two() -> (Shares, PublicKeyPackage, Shares) {
    let key = crate::validator_key::ValidatorKey::from_seed(&[9; 32]);
    let dealt = crate::threshold::deal::deal(&key, 2, 3, &mut OsRng).unwrap();
    let files = dealt.share_files().to_vec();
    let dealt_shares: Shares = files
        .iter()
        .map(|f| (f.id, f.key_package.clone()))
        .collect();
    let pkp = files[0].public_key_package.clone();
    let old: Shares = dealt_shares
        .iter()
        .filter(|(id, _)| **id != 3)
        .map(|(i, k)| (*i, k.clone()))
        .collect();
    let (shares, pkp) = refresh_all(&old, &pkp);
    assert_eq!(members(&pkp), vec![1, 2]);
    (shares, pkp, dealt_shares)
}

#[test]
fn helpers_are_the_t_lowest_ids() {
    assert_eq!(helpers(&[5, 2, 9, 3], 2), vec![2, 3]);
    assert_eq!(helpers(&[1, 2], 2), vec![1, 2]);
}

#[test]
fn every_host_extends_the_package_alike_and_refuses_a_member() {
    let (_, pkp, _) = two_of_two();
    assert_eq!(extended(&pkp, 4).unwrap(), extended(&pkp, 4).unwrap());
    assert_eq!(members(&extended(&pkp, 4).unwrap()), vec![1, 2, 4]);
    assert!(extended(&pkp, 2).is_err());
}

#[test]
fn an_added_cosigner_signs_with_each_member_after_the_refresh() {
    let (shares, pkp, dealt) = two_of_two();
    let kp4 = repair(&shares, &pkp, 4, None).unwrap();
    let ext = extended(&pkp, 4).unwrap();
    // The repaired share already signs with a member, under the extended package.
    sign_with(&[&shares[&1], &kp4], &ext, b"m").unwrap();

    let mut with_4 = shares.clone();
    with_4.insert(4, kp4.clone());
    let (new, new_pkp) = refresh_all(&with_4, &ext);
    assert_eq!(new_pkp.verifying_key(), pkp.verifying_key(), "same key");
    assert_eq!(members(&new_pkp), vec![1, 2, 4]);
    for pair in [[1, 4], [2, 4], [1, 2]] {
        let sig = sign_with(&[&new[&pair[0]], &new[&pair[1]]], &new_pkp, b"m").unwrap();
        pkp.verifying_key().verify(b"m", &sig).unwrap();
    }
    // What the helpers sent (the repaired share) and every older share are worthless with
    // the new ones.
    assert!(sign_with(&[&new[&1], &kp4], &new_pkp, b"m").is_err());
    assert!(sign_with(&[&shares[&1], &new[&4]], &new_pkp, b"m").is_err());
    assert!(sign_with(&[&dealt[&3], &new[&4]], &new_pkp, b"m").is_err());
}

#[test]
fn a_tampered_sigma_is_caught_by_the_new_cosigner() {
    let (shares, pkp, _) = two_of_two();
    for helper in [1, 2] {
        let err = repair(&shares, &pkp, 4, Some(helper)).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
