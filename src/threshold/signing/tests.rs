//! The signing engine driven over the simulated cluster of [`sim`]. Each run checks the
//! properties a coordinator must have: never two different documents signed at one
//! position, a signature whenever `t` cosigners can answer within the deadline, and no more
//! extra shares than hedging explains.

mod sim;

use std::time::Duration;

use super::*;
use crate::consensus::canonical;
use crate::threshold::participant::testkit::{vote_bytes, Step};
use crate::threshold::participant::Watermark;
use sim::{Behaviour, Sim, CHAIN, MS};

fn precommit(height: i64, block: &str) -> Vec<u8> {
    vote_bytes(CHAIN, height, 0, Step::Precommit, Some(block))
}

fn signed(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Signed { .. })
}

#[test]
fn with_every_peer_answering_one_session_signs_in_one_round_trip() {
    let mut sim = Sim::new(2, 3);
    let views = sim.views(1);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    assert!(signed(sim.outcome(c)), "{:?}", sim.outcome(c));
    assert_eq!(sim.coords[c].engine.extra_requests(), 0);
    assert_eq!(sim.coords[c].remote_requests, 1);
    assert!(sim.took(c) < 2 * MS, "{:?}", sim.took(c));
    sim.assert_no_double_sign();
}

#[test]
fn a_dead_peer_chosen_first_is_hedged_around_at_its_expected_time() {
    let mut sim = Sim::new(2, 3);
    // Peer 2 looks fastest, and was killed a moment ago.
    sim.delay(3, Duration::from_micros(300));
    let views = sim.views(1);
    sim.set(2, Behaviour::Dead);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.members(c), [1, 3]);
    // Hedged after peer 2's expected time (floored), not after the 800 ms attempt.
    assert!(sim.took(c) < MIN_HEDGE_DELAY + 5 * MS, "{:?}", sim.took(c));
    assert_eq!(sim.coords[c].engine.extra_requests(), 1);
}

#[test]
fn a_takeover_asks_every_peer_at_once_and_a_dead_one_costs_nothing() {
    let mut sim = Sim::new(2, 3);
    let views = sim.views(2);
    // The old coordinator, 1, died and its connection has not timed out.
    sim.set(1, Behaviour::Dead);
    let c = sim.begin(2, precommit(7, "A"), Start::FanOut, views);
    sim.run(Duration::from_secs(5));
    assert!(signed(sim.outcome(c)), "{:?}", sim.outcome(c));
    assert!(sim.took(c) < 2 * MS, "one round trip: {:?}", sim.took(c));
    assert_eq!(sim.coords[c].engine.extra_requests(), 1);
}

#[test]
fn a_takeover_with_the_old_coordinator_dead_and_the_other_peer_restarted_signs_at_once() {
    let mut sim = Sim::new(2, 3);
    let views = sim.views(2);
    sim.set(1, Behaviour::Dead);
    let c = sim.begin(2, precommit(7, "A"), Start::FanOut, views);
    // Peer 3 restarted after handing out the commitments the requests carry.
    sim.restart(3);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.members(c), [2, 3]);
    // A refusal, a refill and one more session once the dead peer is late: not the attempt
    // timeout that the session waiting on it would take.
    assert!(sim.took(c) < MIN_HEDGE_DELAY + 5 * MS, "{:?}", sim.took(c));
}

#[test]
fn a_fast_peer_a_little_late_is_waited_for_rather_than_a_much_slower_one_asked() {
    let mut sim = Sim::new(2, 3);
    sim.delay(3, 100 * MS);
    let views = sim.views(1);
    // Peer 2 is usually fast; this time it takes 30 ms.
    sim.delay(2, 15 * MS);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.members(c), [1, 2]);
    assert_eq!(sim.coords[c].engine.extra_requests(), 0);

    // Dead, though, it is replaced once the slow peer's own time has passed.
    let mut sim = Sim::new(2, 3);
    sim.delay(3, 100 * MS);
    let views = sim.views(1);
    sim.set(2, Behaviour::Dead);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    assert_eq!(sim.members(c), [1, 3]);
    let took = sim.took(c);
    assert!(took >= 200 * MS && took < 500 * MS, "{took:?}");
}

#[test]
fn a_slow_peer_is_not_asked_and_costs_no_extra_share() {
    let mut sim = Sim::new(3, 5);
    sim.delay(4, 100 * MS);
    let views = sim.views(1);
    let c = sim.begin(1, precommit(9, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    let members = sim.members(c);
    assert!(!members.contains(&4), "{members:?}");
    assert_eq!(sim.coords[c].engine.extra_requests(), 0);
    assert!(sim.took(c) < 2 * MS);
}

#[test]
fn a_refusal_by_double_sign_protection_ends_the_signing() {
    let mut sim = Sim::new(2, 3);
    // Peer 2 already signed another block at this position.
    let other = canonical::parse(&precommit(5, "B")).unwrap();
    sim.nodes[&2].watermark.authorize(&other).unwrap();
    let mut views = sim.views(1);
    // Make peer 2 the one chosen.
    views.iter_mut().find(|v| v.id == 3).unwrap().typical = 50 * MS;
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    assert!(
        matches!(sim.outcome(c), Outcome::Refused(r) if r.contains("double signing refused")),
        "{:?}",
        sim.outcome(c)
    );
    assert!(sim.coords[c].signature.is_none());
}

#[test]
fn a_coordinator_cut_off_from_every_peer_gives_up_at_the_deadline() {
    let mut sim = Sim::new(2, 3);
    sim.cut = vec![(1, 2), (1, 3)];
    let views = sim.views(1);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(10));
    assert!(
        matches!(sim.outcome(c), Outcome::GaveUp(r) if r.contains("no quorum")),
        "{:?}",
        sim.outcome(c)
    );
    let took = sim.took(c);
    assert!(took <= Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_coordinator_whose_peers_all_fall_silent_gives_up_without_waiting_out_the_attempt() {
    let mut sim = Sim::new(2, 3);
    sim.cut = vec![(1, 2), (1, 3)];
    let views = sim.views(1);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    // Run a little, then the health records say both peers are silent.
    sim.run(Duration::from_millis(300));
    let actions = sim.coords[c]
        .engine
        .on_suspects(sim.now, &[2, 3].into_iter().collect());
    sim.act(c, actions);
    assert!(
        matches!(sim.outcome(c), Outcome::GaveUp(r) if r.contains("silent")),
        "{:?}",
        sim.outcome(c)
    );
    assert!(
        sim.took(c) < Duration::from_millis(400),
        "{:?}",
        sim.took(c)
    );
}

#[test]
fn a_share_arriving_after_its_hedge_is_ignored() {
    let mut sim = Sim::new(2, 3);
    // Peer 2 looks fast but is slow this time: it answers well after the hedge.
    let views = sim.views(1);
    sim.delay(2, 20 * MS);
    sim.delay(3, 40 * MS);
    let c = sim.begin(1, precommit(5, "A"), Start::Normal, views);
    sim.run(Duration::from_secs(5));
    // The first session (1, 2) completes before the hedge (1, 3): its share came first,
    // and the hedge's late answers change nothing.
    assert_eq!(sim.members(c), [1, 2]);
    assert_eq!(sim.coords[c].engine.extra_requests(), 1);
    sim.assert_no_double_sign();
}

#[test]
fn two_coordinators_on_one_position_never_both_sign() {
    for (first, second) in [(1, 2), (2, 3), (3, 1)] {
        let mut sim = Sim::new(2, 3);
        let views_a = sim.views(first);
        let views_b = sim.views(second);
        let a = sim.begin(first, precommit(5, "A"), Start::FanOut, views_a);
        let b = sim.begin(second, precommit(5, "B"), Start::FanOut, views_b);
        sim.run(Duration::from_secs(5));
        sim.assert_no_double_sign();
        let signatures = [a, b]
            .iter()
            .filter(|c| sim.coords[**c].signature.is_some())
            .count();
        assert!(signatures <= 1);
    }
}

/// splitmix64: a tiny seeded generator, so a failing schedule can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_schedules_keep_every_property() {
    let configs = [(2u16, 3u16), (3, 4), (3, 5), (4, 7)];
    for seed in 0..160u64 {
        let mut rng = Rng(seed);
        let (t, n) = configs[(seed % configs.len() as u64) as usize];
        let mut sim = Sim::new(t, n);
        // Two coordinators, each its own document at one position (sentries disagreeing).
        let coord_a = 1 + rng.below(u64::from(n)) as PeerId;
        let coord_b = 1 + (coord_a as u64 % u64::from(n)) as PeerId;
        let mut views = BTreeMap::new();
        for c in [coord_a, coord_b] {
            views.insert(c, sim.views(c));
        }
        // Random speeds, then up to n - t + 1 peers die (one more than a quorum survives).
        for p in 1..=n {
            let one_way = Duration::from_micros(100 + rng.below(30_000));
            sim.set(
                p,
                Behaviour::Alive {
                    one_way,
                    work: Duration::from_micros(200 + rng.below(2_000)),
                },
            );
        }
        let dead = rng.below(u64::from(n - t + 2));
        let mut killed = Vec::new();
        for _ in 0..dead {
            let p = 1 + rng.below(u64::from(n)) as PeerId;
            if p != coord_a && p != coord_b && !killed.contains(&p) {
                sim.set(p, Behaviour::Dead);
                killed.push(p);
            }
        }
        let how = |r: &mut Rng| {
            if r.below(2) == 0 {
                Start::Normal
            } else {
                Start::FanOut
            }
        };
        let (how_a, how_b) = (how(&mut rng), how(&mut rng));
        let a = sim.begin(coord_a, precommit(5, "A"), how_a, views[&coord_a].clone());
        let same_doc = rng.below(3) == 0;
        let b = sim.begin(
            coord_b,
            precommit(5, if same_doc { "A" } else { "B" }),
            how_b,
            views[&coord_b].clone(),
        );
        sim.run(Duration::from_secs(10));
        sim.assert_no_double_sign();
        let alive = usize::from(n) - killed.len();
        for c in [a, b] {
            let coordination = &sim.coords[c];
            let (outcome, _) = coordination
                .outcome
                .as_ref()
                .unwrap_or_else(|| panic!("seed {seed}: a signing never ended"));
            // Extra remote requests stay within what hedging and fan-out allow.
            let per_session = usize::from(t - 1);
            assert!(
                coordination.remote_requests <= per_session * MAX_TOTAL_SESSIONS,
                "seed {seed}: {} remote requests",
                coordination.remote_requests
            );
            // With t live cosigners and one document, a signature is always made.
            if same_doc && alive >= usize::from(t) {
                assert!(
                    signed(outcome),
                    "seed {seed} ({t}-of-{n}, dead {killed:?}): {outcome:?}"
                );
            }
        }
        if !same_doc && alive >= usize::from(t) {
            // Conflicting documents: at most one signs, and a refusal or a signature ends
            // each; neither may hang.
            let made = [a, b]
                .iter()
                .filter(|c| sim.coords[**c].signature.is_some())
                .count();
            assert!(made <= 1, "seed {seed}");
        }
    }
}
