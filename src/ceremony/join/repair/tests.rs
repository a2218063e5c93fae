//! A whole join among in-memory parts: 2-of-2 {1, 2} adds 4 by the repair machines, then
//! the refresh machines of all three over the extended package.

use std::collections::BTreeMap;

use rand_core::OsRng;

use super::*;
use crate::ceremony::machine::{KeySource, Machine, Setup};
use crate::threshold::deal::deal;
use crate::threshold::key_share::KeyShareFile;

fn pins() -> BTreeMap<PeerId, String> {
    [1, 2, 4]
        .iter()
        .map(|i| (*i, format!("{i:064x}")))
        .collect()
}

fn info(file: &KeyShareFile, height: i64) -> JoinInfo {
    JoinInfo {
        public_key_package: file.public_key_package.serialize().unwrap(),
        epoch: file.epoch,
        seed_escrow: file.seed_escrow.clone(),
        watermarks: vec![Watermark {
            chain: "c".into(),
            height,
            round: 0,
            step: 3,
        }],
    }
}

/// The members' join parts and the joiner's, for a dealt 2-of-2.
fn parts() -> (BTreeMap<PeerId, MemberJoin>, Joiner, Vec<KeyShareFile>) {
    let key = crate::validator_key::ValidatorKey::from_seed(&[4; 32]);
    let files = deal(&key, 2, 2, &mut OsRng).unwrap().share_files().to_vec();
    let epoch = epoch_id(files[0].epoch, &files[0].public_key_package);
    let (prelude, session) = (prelude_id(2, 4, &pins()), session_id(epoch, 2, 4, &pins()));
    let members = files
        .iter()
        .map(|f| {
            let m = MemberJoin::new(
                f.id,
                4,
                &f.key_package,
                &f.public_key_package,
                info(f, 10 * i64::from(f.id)),
                prelude,
                session,
                &mut OsRng,
            )
            .unwrap();
            (f.id, m)
        })
        .collect();
    (members, Joiner::new(4, 2, vec![1, 2], pins()), files)
}

/// Carries the repair messages; `tamper` may rewrite what a member answers the joiner.
fn repair(
    members: &mut BTreeMap<PeerId, MemberJoin>,
    joiner: &mut Joiner,
    tamper: &dyn Fn(PeerId, CeremonyResponse) -> CeremonyResponse,
) -> Result<(), Abort> {
    for _ in 0..20 {
        let ids: Vec<PeerId> = members.keys().copied().collect();
        for &me in &ids {
            for &peer in &ids {
                if let Some(ask) = members[&me].next_ask(peer) {
                    let session = members[&me].session;
                    let answer = members[&peer]
                        .answer(me, &CeremonyRequest { session, ask })
                        .unwrap();
                    members.get_mut(&me).unwrap().take(peer, answer)?;
                }
            }
        }
        for &peer in &ids {
            if let Some(ask) = joiner.next_ask(peer) {
                let session = match (ask, joiner.agreed()) {
                    (Ask::JoinInfo, _) => joiner.prelude(),
                    (_, Some(a)) => a.session,
                    (_, None) => panic!("asked before agreeing"),
                };
                let answer = members[&peer]
                    .answer(4, &CeremonyRequest { session, ask })
                    .unwrap();
                joiner.take(peer, ask, tamper(peer, answer))?;
            }
        }
        if joiner.old_share().is_some() {
            return Ok(());
        }
    }
    panic!("the repair did not finish");
}

fn honest(_: PeerId, r: CeremonyResponse) -> CeremonyResponse {
    r
}

#[test]
fn a_join_gives_a_share_that_refreshes_with_the_members() {
    let (mut members, mut joiner, files) = parts();
    repair(&mut members, &mut joiner, &honest).unwrap();
    let agreed = joiner.agreed().unwrap();
    assert_eq!(
        agreed.watermarks[0].height, 20,
        "the highest member's watermark"
    );
    let session = agreed.session;
    let mut machines: BTreeMap<PeerId, Machine> = BTreeMap::new();
    let mut olds: Vec<(PeerId, OldShare)> = files
        .iter()
        .map(|f| {
            (
                f.id,
                OldShare {
                    key_package: f.key_package.clone(),
                    public_key_package: steps::extended(&f.public_key_package, 4).unwrap(),
                    epoch: f.epoch,
                    seed_escrow: f.seed_escrow.clone(),
                },
            )
        })
        .collect();
    olds.push((4, joiner.old_share().unwrap()));
    for (me, old) in olds {
        let setup = Setup {
            me,
            threshold: 2,
            members: vec![1, 2, 4],
            session,
            source: KeySource::Refresh(Box::new(old)),
        };
        machines.insert(me, Machine::new(setup, &mut OsRng).unwrap());
    }
    for _ in 0..200 {
        let ids: Vec<PeerId> = machines.keys().copied().collect();
        for &me in &ids {
            for &peer in &ids {
                let Some(ask) = machines[&me].next_ask(peer) else {
                    continue;
                };
                let answer = machines
                    .get_mut(&peer)
                    .unwrap()
                    .answer(me, &CeremonyRequest { session, ask });
                machines
                    .get_mut(&me)
                    .unwrap()
                    .absorb(peer, ask, answer, &mut OsRng)
                    .unwrap();
            }
            let m = machines.get_mut(&me).unwrap();
            if m.needs_staging().is_some() {
                m.mark_staged();
            }
        }
        if machines.values().all(Machine::complete) {
            break;
        }
    }
    assert!(machines.values().all(Machine::complete));
    let pkp = &machines[&4].keys().unwrap().public_key_package;
    assert_eq!(
        pkp.verifying_key(),
        files[0].public_key_package.verifying_key()
    );
    assert_eq!(steps::members(pkp), vec![1, 2, 4]);
    for m in machines.values() {
        assert_eq!(m.keys().unwrap().epoch, 1);
        assert_eq!(&m.keys().unwrap().public_key_package, pkp);
    }
}

#[test]
fn members_that_disagree_stop_the_join() {
    let (mut members, mut joiner, _) = parts();
    let err = repair(&mut members, &mut joiner, &|peer, r| match r {
        CeremonyResponse::JoinInfo(mut info) if peer == 2 => {
            info.epoch += 1;
            CeremonyResponse::JoinInfo(info)
        }
        r => r,
    })
    .unwrap_err();
    assert!(err.to_string().contains("different key packages"), "{err}");
}

#[test]
fn a_wrong_sigma_stops_the_join_before_the_refresh() {
    let (mut members, mut joiner, _) = parts();
    let err = repair(&mut members, &mut joiner, &|peer, r| match r {
        CeremonyResponse::Sigma(mut s) if peer == 1 => {
            s[0] ^= 1;
            CeremonyResponse::Sigma(s)
        }
        r => r,
    })
    .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(joiner.old_share().is_none());
}

#[test]
fn secrets_go_only_where_they_belong() {
    let (members, _, files) = parts();
    let epoch = epoch_id(files[0].epoch, &files[0].public_key_package);
    let session = session_id(epoch, 2, 4, &pins());
    let ask = |ask| CeremonyRequest { session, ask };
    // A sigma to anyone but the joiner, a delta to a non-helper, and a prelude of another
    // membership are refused.
    assert!(matches!(
        members[&1].answer(2, &ask(Ask::Sigma)),
        Some(CeremonyResponse::Refused(_))
    ));
    assert!(matches!(
        members[&1].answer(4, &ask(Ask::Delta)),
        Some(CeremonyResponse::Refused(_))
    ));
    let mut other = pins();
    other.insert(4, "ff".repeat(32));
    let prelude = CeremonyRequest {
        session: prelude_id(2, 4, &other),
        ask: Ask::JoinInfo,
    };
    assert!(matches!(
        members[&1].answer(4, &prelude),
        Some(CeremonyResponse::Refused(_))
    ));
    assert!(members[&1].answer(4, &ask(Ask::Contribution)).is_none());
}
