//! Whole ceremonies among in-memory machines: messages are carried by a loop instead of the
//! network, and a malicious cosigner is played by rewriting its answers.

use std::collections::BTreeMap;

use curve25519_dalek::scalar::Scalar;
use frost_ed25519::keys::SigningShare;
use rand_core::OsRng;
use sha2::{Digest as _, Sha512};

use frost_ed25519::keys::dkg::round2;

use super::*;
use crate::ceremony::horcrux::{import, HorcruxShard};
use crate::threshold::key_share::KeyShareFile;

const SESSION: SessionId = [7; 32];

fn dkg_machines(t: u16, n: u16) -> BTreeMap<PeerId, Machine> {
    (1..=n)
        .map(|me| {
            let setup = Setup {
                me,
                threshold: t,
                members: (1..=n).collect(),
                session: SESSION,
                source: KeySource::Dkg,
            };
            (me, Machine::new(setup, &mut OsRng).unwrap())
        })
        .collect()
}

/// Rewrites what `from` answers `to`; returning `None` keeps the honest answer.
type Tamper = dyn Fn(PeerId, PeerId, Ask) -> Option<CeremonyResponse>;

/// Carries messages until nothing moves; returns how many rounds it took.
fn exchange(machines: &mut BTreeMap<PeerId, Machine>, tamper: &Tamper) -> usize {
    for round in 0..200 {
        let mut moved = false;
        let ids: Vec<PeerId> = machines.keys().copied().collect();
        for &me in &ids {
            for &peer in &ids {
                let Some(ask) = machines[&me].next_ask(peer) else {
                    continue;
                };
                let request = CeremonyRequest {
                    session: SESSION,
                    ask,
                };
                let answer = match tamper(peer, me, ask) {
                    Some(forged) => forged,
                    None => machines.get_mut(&peer).unwrap().answer(me, &request),
                };
                let got = machines
                    .get_mut(&me)
                    .unwrap()
                    .absorb(peer, ask, answer, &mut OsRng);
                moved |= matches!(got, Ok(Progress::Got));
            }
            // The driver stages the share on disk here; in memory it is instant.
            let m = machines.get_mut(&me).unwrap();
            if m.needs_staging().is_some() {
                m.mark_staged();
                moved = true;
            }
        }
        if !moved {
            return round;
        }
    }
    panic!("the ceremony did not settle");
}

/// Whether `abort` blames `peer`: by name, or in the reason a peer relayed (a host that
/// stopped tells the others why, and they stop with its reason).
fn blames(abort: &Abort, peer: PeerId) -> bool {
    abort.named().contains(&peer)
        || matches!(abort, Abort::Peer { reason, .. } if reason.contains(&format!("cosigner {peer} ")))
}

fn honest(_: PeerId, _: PeerId, _: Ask) -> Option<CeremonyResponse> {
    None
}

fn assert_complete(machines: &BTreeMap<PeerId, Machine>) -> PublicKeyPackage {
    let first = machines.values().next().unwrap();
    let pkp = first.keys().unwrap().public_key_package.clone();
    for (me, m) in machines {
        assert!(m.complete(), "cosigner {me}: {}", m.waiting_for());
        assert!(m.unconfirmed_peers().is_empty(), "cosigner {me}");
        assert_eq!(m.keys().unwrap().public_key_package, pkp);
        assert_eq!(
            m.keys().unwrap().key_package.min_signers(),
            &first.threshold
        );
    }
    pkp
}

#[test]
fn a_dkg_completes_with_one_key_for_every_cosigner() {
    for (t, n) in [(2, 3), (3, 5)] {
        let mut machines = dkg_machines(t, n);
        exchange(&mut machines, &honest);
        let pkp = assert_complete(&machines);
        assert_eq!(pkp.verifying_shares().len(), usize::from(n));
        assert_eq!(pkp.min_signers(), Some(t));
    }
}

#[test]
fn nothing_secret_is_answered_before_the_echoes_agree() {
    let mut machines = dkg_machines(2, 3);
    let ask = |m: &mut Machine, from, ask| {
        m.answer(
            from,
            &CeremonyRequest {
                session: SESSION,
                ask,
            },
        )
    };
    let m1 = machines.get_mut(&1).unwrap();
    for a in [
        Ask::Echo,
        Ask::Round2,
        Ask::Commitment,
        Ask::TestShare,
        Ask::Verified,
    ] {
        let answer = ask(m1, 2, a);
        let CeremonyResponse::NotYet(reason) = answer else {
            panic!("{a:?} answered {answer:?}");
        };
        assert!(
            reason.contains("round-1 contributions of cosigner(s) 2, 3"),
            "{reason}"
        );
    }
    assert!(matches!(
        ask(m1, 2, Ask::Contribution),
        CeremonyResponse::Contribution(_)
    ));
    // Another session is refused, and so is a peer outside the cluster.
    let other = m1.answer(
        2,
        &CeremonyRequest {
            session: [8; 32],
            ask: Ask::Contribution,
        },
    );
    assert!(matches!(other, CeremonyResponse::Refused(r) if r.contains("another ceremony")));
    assert!(matches!(
        ask(m1, 4, Ask::Contribution),
        CeremonyResponse::Refused(_)
    ));
}

/// Cosigner 3 gives cosigner 2 another valid round-1 package than it gives everyone else.
fn equivocating_3() -> impl Fn(PeerId, PeerId, Ask) -> Option<CeremonyResponse> {
    let (_, other) = dkg::part1(3, 3, 2, &mut OsRng).unwrap();
    let forged = dkg::encode_round1(&other).unwrap();
    move |from: PeerId, to: PeerId, ask: Ask| {
        (from == 3 && to == 2 && ask == Ask::Contribution)
            .then(|| CeremonyResponse::Contribution(forged.clone()))
    }
}

#[test]
fn a_cosigner_sending_two_round1_packages_is_named() {
    let mut machines = dkg_machines(2, 3);
    exchange(&mut machines, &equivocating_3());
    for me in [1, 2] {
        let abort = machines[&me]
            .failed()
            .unwrap_or_else(|| panic!("cosigner {me} went on"));
        assert!(blames(abort, 3), "cosigner {me}: {abort}");
        assert!(machines[&me].keys().is_none());
        // No round-2 package was made, so none can have left an honest host.
        if let KeyPhase::Dkg { outgoing, .. } = &machines[&me].phase {
            assert!(outgoing.is_empty(), "cosigner {me} made round-2 packages");
        }
    }
}

#[test]
fn an_equivocation_is_pinned_on_the_sender_by_its_own_echo() {
    let mut machines = dkg_machines(2, 3);
    let tamper = equivocating_3();
    for me in 1..=3 {
        for peer in (1..=3).filter(|p| *p != me) {
            let answer = tamper(peer, me, Ask::Contribution).unwrap_or_else(|| {
                let request = CeremonyRequest {
                    session: SESSION,
                    ask: Ask::Contribution,
                };
                machines.get_mut(&peer).unwrap().answer(me, &request)
            });
            let got =
                machines
                    .get_mut(&me)
                    .unwrap()
                    .absorb(peer, Ask::Contribution, answer, &mut OsRng);
            assert_eq!(got, Ok(Progress::Got));
        }
    }
    // Cosigner 2 checks cosigner 3's echo: 3's report of its own package is not what 3 sent
    // cosigner 2, so 3 alone is to blame.
    let request = CeremonyRequest {
        session: SESSION,
        ask: Ask::Echo,
    };
    let echo = machines.get_mut(&3).unwrap().answer(2, &request);
    let abort = machines
        .get_mut(&2)
        .unwrap()
        .absorb(3, Ask::Echo, echo, &mut OsRng)
        .unwrap_err();
    assert!(
        matches!(abort, Abort::Culprit { culprit: 3, .. }),
        "{abort}"
    );
    // Cosigner 1 checks cosigner 2's echo: 3 or 2 lies, and both are named.
    let echo = machines.get_mut(&2).unwrap().answer(1, &request);
    // Cosigner 2 has stopped and says so.
    assert!(matches!(&echo, CeremonyResponse::Aborted(r) if r.contains("cosigner 3")));
    let abort = machines
        .get_mut(&1)
        .unwrap()
        .absorb(2, Ask::Echo, echo, &mut OsRng)
        .unwrap_err();
    assert!(matches!(&abort, Abort::Peer { peer: 2, reason } if reason.contains("cosigner 3")));
}

#[test]
fn an_abort_reaches_the_others_with_its_reason() {
    let mut machines = dkg_machines(2, 3);
    machines
        .get_mut(&2)
        .unwrap()
        .fail(Abort::local("the disk of cosigner 2 is full"));
    exchange(&mut machines, &honest);
    for me in [1, 3] {
        let abort = machines[&me].failed().unwrap();
        assert!(
            matches!(abort, Abort::Peer { reason, .. } if reason.contains("disk of cosigner 2")),
            "cosigner {me}: {abort}"
        );
    }
}

#[test]
fn a_wrong_round2_share_is_named() {
    let mut machines = dkg_machines(2, 3);
    // Cosigner 3 hands cosigner 1 garbage that decodes: the share it made for cosigner 2
    // cannot be had, so a zero share stands in.
    let zero = round2::Package::new(SigningShare::deserialize(&[0u8; 32]).unwrap());
    let forged = zero.serialize().unwrap();
    let tamper = move |from: PeerId, to: PeerId, ask: Ask| {
        (from == 3 && to == 1 && ask == Ask::Round2)
            .then(|| CeremonyResponse::Round2(forged.clone()))
    };
    exchange(&mut machines, &tamper);
    let abort = machines[&1].failed().unwrap();
    assert_eq!(abort.named(), vec![3], "{abort}");
    // Cosigner 1 stopped before its test signing, so nobody can complete.
    assert!(machines.values().all(|m| !m.complete()));
}

/// Shards as unit410's DealShares deals them (see `horcrux::import`'s tests for the same).
fn horcrux_shards(seed: &[u8; 32], t: u16, n: u16) -> Vec<HorcruxShard> {
    let digest = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&digest[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let c0 = Scalar::from_bytes_mod_order(a);
    let c1 = Scalar::from(12345u64);
    let public_key = ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes();
    assert_eq!(t, 2);
    (1..=n)
        .map(|x| HorcruxShard {
            id: x,
            public_key,
            share: SigningShare::deserialize(&(c1 * Scalar::from(u64::from(x)) + c0).to_bytes())
                .unwrap(),
        })
        .collect()
}

#[test]
fn a_horcrux_import_completes_under_the_original_key() {
    let shards = horcrux_shards(&[11; 32], 2, 3);
    let key = shards[0].public_key;
    let mut machines: BTreeMap<PeerId, Machine> = shards
        .iter()
        .map(|s| {
            let key_package = import::own_key_package(s.id, s, &key, 2).unwrap();
            let setup = Setup {
                me: s.id,
                threshold: 2,
                members: vec![1, 2, 3],
                session: SESSION,
                source: KeySource::Horcrux {
                    key_package: Box::new(key_package),
                    expected_key: key,
                },
            };
            (s.id, Machine::new(setup, &mut OsRng).unwrap())
        })
        .collect();
    let m1 = machines.get_mut(&1).unwrap();
    assert!(matches!(
        m1.answer(
            2,
            &CeremonyRequest {
                session: SESSION,
                ask: Ask::Round2
            }
        ),
        CeremonyResponse::Refused(_)
    ));
    exchange(&mut machines, &honest);
    let pkp = assert_complete(&machines);
    assert_eq!(pkp.verifying_key().serialize().unwrap(), key.to_vec());
}

#[test]
fn a_horcrux_host_with_a_wrong_shard_is_named() {
    let shards = horcrux_shards(&[11; 32], 2, 3);
    let wrong = horcrux_shards(&[12; 32], 2, 3);
    let key = shards[0].public_key;
    let mut machines: BTreeMap<PeerId, Machine> = shards
        .iter()
        .map(|s| {
            // Host 3 holds a shard of another key but passes the local check (its file's
            // pubKey was edited to the expected key).
            let shard = match s.id {
                3 => HorcruxShard {
                    id: 3,
                    public_key: key,
                    share: wrong[2].share,
                },
                _ => HorcruxShard {
                    id: s.id,
                    public_key: key,
                    share: s.share,
                },
            };
            let key_package = import::own_key_package(s.id, &shard, &key, 2).unwrap();
            let setup = Setup {
                me: s.id,
                threshold: 2,
                members: vec![1, 2, 3],
                session: SESSION,
                source: KeySource::Horcrux {
                    key_package: Box::new(key_package),
                    expected_key: key,
                },
            };
            (s.id, Machine::new(setup, &mut OsRng).unwrap())
        })
        .collect();
    exchange(&mut machines, &honest);
    for me in [1, 2] {
        let abort = machines[&me].failed().unwrap();
        assert!(blames(abort, 3), "cosigner {me}: {abort}");
    }
}

/// Refresh machines for `members` of a freshly dealt `t`-of-`n` key; also the old files.
fn refresh_machines(
    t: u16,
    n: u16,
    members: &[PeerId],
) -> (BTreeMap<PeerId, Machine>, Vec<KeyShareFile>) {
    let key = crate::validator_key::ValidatorKey::from_seed(&[9; 32]);
    let dealt = crate::threshold::deal::deal(&key, t, n, &mut OsRng).unwrap();
    let old = dealt.share_files().to_vec();
    let machines = members
        .iter()
        .map(|&me| {
            let f = &old[usize::from(me - 1)];
            let setup = Setup {
                me,
                threshold: t,
                members: members.to_vec(),
                session: SESSION,
                source: KeySource::Refresh(Box::new(OldShare {
                    key_package: f.key_package.clone(),
                    public_key_package: f.public_key_package.clone(),
                    epoch: f.epoch,
                    seed_escrow: f.seed_escrow.clone(),
                })),
            };
            (me, Machine::new(setup, &mut OsRng).unwrap())
        })
        .collect();
    (machines, old)
}

/// Signs `msg` with these key packages (one per signer) and aggregates under `pkp`.
pub(crate) fn sign_with(
    kps: &[&KeyPackage],
    pkp: &PublicKeyPackage,
    msg: &[u8],
) -> Result<frost_ed25519::Signature, frost_ed25519::Error> {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for kp in kps {
        let (n, c) = frost_ed25519::round1::commit(kp.signing_share(), &mut OsRng);
        nonces.insert(*kp.identifier(), n);
        commitments.insert(*kp.identifier(), c);
    }
    let package = frost_ed25519::SigningPackage::new(commitments, msg);
    let mut shares = BTreeMap::new();
    for kp in kps {
        let share = frost_ed25519::round2::sign(&package, &nonces[kp.identifier()], kp)?;
        shares.insert(*kp.identifier(), share);
    }
    frost_ed25519::aggregate(&package, &shares, pkp)
}

#[test]
fn a_refresh_keeps_the_key_and_makes_old_shares_useless_with_new_ones() {
    let (mut machines, old) = refresh_machines(2, 3, &[1, 2, 3]);
    exchange(&mut machines, &honest);
    let pkp = assert_complete(&machines);
    let old_pkp = &old[0].public_key_package;
    assert_eq!(pkp.verifying_key(), old_pkp.verifying_key(), "same key");
    let new: BTreeMap<PeerId, &Keys> = machines
        .iter()
        .map(|(i, m)| (*i, m.keys().unwrap()))
        .collect();
    for (i, keys) in &new {
        let before = &old[usize::from(*i - 1)];
        assert_ne!(
            keys.key_package.signing_share(),
            before.key_package.signing_share()
        );
        assert_eq!(keys.epoch, 1);
        assert_eq!(
            keys.seed_escrow, before.seed_escrow,
            "the escrow carries over"
        );
        let file = crate::ceremony::output::share_file(*i, 2, 3, keys);
        file.validate().unwrap();
    }
    // Two new shares sign under the validator key; an old one with a new one does not,
    // under either generation's public key package.
    sign_with(&[&new[&1].key_package, &new[&2].key_package], &pkp, b"m").unwrap();
    sign_with(&[&old[0].key_package, &old[1].key_package], old_pkp, b"m").unwrap();
    for p in [&pkp, old_pkp] {
        let mixed = sign_with(&[&old[0].key_package, &new[&2].key_package], p, b"m");
        assert!(mixed.is_err(), "an old share and a new one signed");
    }
}

#[test]
fn a_refresh_without_a_cosigner_removes_it() {
    // Cosigner 2 of 2-of-3 removed: {1, 3} remain, a gap in the ids.
    let (mut machines, old) = refresh_machines(2, 3, &[1, 3]);
    exchange(&mut machines, &honest);
    let pkp = assert_complete(&machines);
    let ids: Vec<PeerId> = pkp
        .verifying_shares()
        .keys()
        .map(|id| crate::threshold::messages::peer_of(id).unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3]);
    let k1 = &machines[&1].keys().unwrap().key_package;
    let k3 = &machines[&3].keys().unwrap().key_package;
    sign_with(&[k1, k3], &pkp, b"m").unwrap();
    // The removed cosigner's old share is useless with a remaining one's new share.
    assert!(sign_with(&[k1, &old[1].key_package], &pkp, b"m").is_err());
    let file = crate::ceremony::output::share_file(3, 2, 2, machines[&3].keys().unwrap());
    assert_eq!(file.members().unwrap(), vec![1, 3]);
    file.validate().unwrap();
}
