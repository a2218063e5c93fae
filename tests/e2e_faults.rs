//! End to end under real faults: the real `cosigner` processes of a threshold cluster
//! against `validator-sim`, with cosigners killed (SIGKILL) and restarted at chosen points,
//! a coordinator that loses its quorum, two sentry nodes, and damaged state files. Every
//! run must end with zero double signs; most must end with every request signed.
//!
//! The basic cluster cases (2-of-3, 3-of-5, one cosigner killed, conflicts, a restart) are
//! in `e2e_cluster.rs`; this file is about faults.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const CHAIN: &str = "test-chain";
const PROTOCOL: &str = "v0.38";

/// A split cluster: its directory, the cosigner directories and the validator key.
struct Split {
    dir: tempfile::TempDir,
    cosigners: Vec<PathBuf>,
    key: ValidatorKeyFile,
}

impl Split {
    fn new(name: &str, threshold: u16, shares: u16, node_ports: &[u16]) -> Split {
        let dir = test_dir(name);
        let key = write_validator_key(dir.path());
        let nodes: Vec<String> = node_ports
            .iter()
            .map(|p| format!("tcp://127.0.0.1:{p}"))
            .collect();
        let cosigners = split_key(
            dir.path(),
            &key.path,
            threshold,
            shares,
            &nodes,
            &[CHAIN],
            PROTOCOL,
        );
        Split {
            dir,
            cosigners,
            key,
        }
    }

    fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts cosigner `i` (0-based); `generation` keeps each run's log apart.
    fn start(&self, i: usize, generation: usize) -> Proc {
        self.start_env(i, generation, &[])
    }

    fn start_env(&self, i: usize, generation: usize, env: &[(&str, &str)]) -> Proc {
        start_cosigner_env(
            &self.cosigners[i],
            &format!("cosigner-{}-run{generation}", i + 1),
            self.log_dir(),
            env,
        )
    }

    fn sim(&self, port: u16, heights: u64, extra: &[&str]) -> Sim {
        let heights = heights.to_string();
        let mut args = vec![
            "--chain-id",
            CHAIN,
            "--heights",
            &heights,
            "--expect-pubkey",
        ];
        let pubkey = self.key.public_key_base64();
        args.push(&pubkey);
        args.extend_from_slice(extra);
        Sim::start_on(self.dir.path(), port, PROTOCOL, &args)
    }
}

fn median_and_worst(gaps: &mut [Duration]) -> (Duration, Duration) {
    gaps.sort();
    (
        gaps.get(gaps.len() / 2).copied().unwrap_or_default(),
        gaps.last().copied().unwrap_or_default(),
    )
}

/// A cosigner that starts alone cannot sign, so it must not take the node: it waits for a
/// quorum before dialing. Once its peers are up, the cluster signs everything.
#[test]
fn a_cosigner_without_quorum_does_not_hold_the_node() {
    let port = free_tcp_port();
    let split = Split::new("alone", 2, 3, &[port]);
    let sim = split.sim(port, 15, &[]);
    let first = split.start(0, 0);
    assert!(
        wait_for_log(
            &first,
            "not dialing: waiting until a quorum",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        first.log()
    );
    // An observation window: nothing is expected to happen in it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !first.log().contains("connected to node"),
        "a cosigner without quorum took the node:\n{}",
        first.log()
    );
    let others = [split.start(1, 0), split.start(2, 0)];
    let outcome = sim.outcome();
    outcome.assert_clean(&[&first, &others[0], &others[1]]);
    assert!(
        first.log().contains("quorum reachable: dialing"),
        "{}",
        first.log()
    );
}

/// The coordinator's two peers die: it cannot sign, so it releases the node and stops
/// dialing; when the peers return the cluster signs again, and no request failed.
#[test]
fn a_coordinator_that_loses_its_quorum_gives_way() {
    let port = free_tcp_port();
    let split = Split::new("give-way", 2, 3, &[port]);
    let mut sim = split.sim(port, 30, &["--block-time-ms", "20"]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.wait_for_height(3);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    let killed_at = Instant::now();
    for (i, p) in procs.iter_mut().enumerate() {
        if i != coordinator {
            p.kill();
        }
    }
    assert!(
        wait_for_log(
            &procs[coordinator],
            "no quorum reachable: giving way",
            1,
            Duration::from_secs(15)
        ),
        "{}",
        procs[coordinator].log()
    );
    let gave_way = killed_at.elapsed();
    assert!(
        wait_for_log(
            &procs[coordinator],
            "node connection ended",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        procs[coordinator].log()
    );
    eprintln!("coordinator gave way {gave_way:?} after losing both peers");
    for (i, p) in procs.iter_mut().enumerate() {
        if i != coordinator {
            *p = split.start(i, 1);
        }
    }
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
}

/// Kills whichever cosigner serves the node, five times; the node's retry reaches another
/// cosigner each time. Prints the fail-over gaps.
#[test]
fn coordinator_killed_repeatedly_fails_over() {
    const BLOCK_MS: u64 = 100;
    let port = free_tcp_port();
    let split = Split::new("kill-coordinator", 2, 3, &[port]);
    let mut sim = split.sim(port, 50, &["--block-time-ms", &BLOCK_MS.to_string()]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    let mut gaps = Vec::new();
    for round in 0..5usize {
        let height = 4 + 8 * round as u64;
        sim.wait_for_height(height);
        let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
        procs[coordinator].kill();
        let killed_at = Instant::now();
        // The sim idles BLOCK_MS after a commit: the next height starts after the kill.
        sim.wait_for_height(height + 1);
        gaps.push(
            killed_at
                .elapsed()
                .saturating_sub(Duration::from_millis(BLOCK_MS)),
        );
        procs[coordinator] = split.start(coordinator, round + 1);
    }
    if std::env::var_os("FAULTS_KEEP").is_some() {
        let _ = split.dir.keep();
    }
    let (median, worst) = median_and_worst(&mut gaps);
    eprintln!(
        "fail-over gap after a coordinator kill: median {median:?}, worst {worst:?} ({gaps:?})"
    );
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
    assert!(worst < Duration::from_secs(10), "fail-over took {worst:?}");
}

/// A participant killed and restarted, then every cosigner killed and restarted at once:
/// signing resumes with no operator action.
#[test]
fn participant_and_whole_cluster_restarts_resume_signing() {
    let port = free_tcp_port();
    let split = Split::new("restarts", 2, 3, &[port]);
    let mut sim = split.sim(port, 30, &["--block-time-ms", "20"]);
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.wait_for_height(4);
    let coordinator = connected_cosigner(&procs).expect("a cosigner serves the node");
    let participant = (coordinator + 1) % 3;
    procs[participant].kill();
    sim.wait_for_height(8);
    procs[participant] = split.start(participant, 1);
    sim.wait_for_height(12);
    for p in procs.iter_mut() {
        p.kill();
    }
    procs = (0..3).map(|i| split.start(i, 2)).collect();
    sim.wait_for_height(16);
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
}

/// Horcrux issue 296: the coordinator dies after its participants released (and persisted)
/// their shares but before the node got the signature. The node's identical retry must be
/// signed by whoever coordinates next; the cluster must not halt.
#[test]
fn coordinator_dies_after_gathering_shares_issue_296() {
    let port = free_tcp_port();
    let split = Split::new("issue-296", 2, 3, &[port]);
    let mut sim = split.sim(port, 24, &["--block-time-ms", "10"]);
    let crash = [("COSIGNER_TEST_CRASH_AFTER_SHARES", "6")];
    let mut procs: Vec<Proc> = (0..3).map(|i| split.start_env(i, 0, &crash)).collect();
    let mut crashes = 0;
    let mut generation = 0;
    for height in 1..=24 {
        sim.wait_for_height(height);
        for (i, p) in procs.iter_mut().enumerate() {
            if let Ok(Some(_)) = p.child.try_wait() {
                assert!(
                    p.log().contains("COSIGNER_TEST_CRASH_AFTER_SHARES"),
                    "cosigner {} exited without the test crash:\n{}",
                    i + 1,
                    p.log()
                );
                crashes += 1;
                generation += 1;
                *p = split.start(i, generation);
            }
        }
    }
    let outcome = sim.outcome();
    let refs: Vec<&Proc> = procs.iter().collect();
    outcome.assert_clean(&refs);
    assert!(
        crashes >= 1,
        "no coordinator crashed: the test tested nothing"
    );
    assert!(outcome.connections_accepted() > 1, "{}", outcome.output);
}

/// Runs a cluster briefly so state files exist, then damages cosigner 1's state file in
/// `damage` and checks it refuses to start with a message naming the file.
fn damaged_state_stops_start(name: &str, damage: impl Fn(&Path)) {
    let port = free_tcp_port();
    let split = Split::new(name, 2, 3, &[port]);
    let sim = split.sim(port, 3, &[]);
    let procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    sim.outcome()
        .assert_clean(&procs.iter().collect::<Vec<_>>());
    drop(procs);
    let state = split.cosigners[0]
        .join("state")
        .join(format!("{CHAIN}.state"));
    assert!(state.exists(), "no state file at {}", state.display());
    damage(&state);
    let mut restarted = split.start(0, 1);
    let status = restarted
        .wait_exit(Duration::from_secs(20))
        .expect("a cosigner with a damaged state file must exit");
    let log = restarted.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("{CHAIN}.state")) && log.contains("sign state"),
        "the error does not name the state file:\n{log}"
    );
}

#[test]
fn truncated_state_file_stops_the_cosigner_at_start() {
    damaged_state_stops_start("truncated-state", |path| {
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len / 3).unwrap();
    });
}

#[test]
fn corrupted_state_file_stops_the_cosigner_at_start() {
    damaged_state_stops_start("corrupted-state", |path| {
        let mut bytes = std::fs::read(path).unwrap();
        for b in bytes.iter_mut() {
            *b ^= 0x5a;
        }
        std::fs::write(path, bytes).unwrap();
    });
}

/// Two sentry nodes of one validator: every cosigner dials both, and both drive the same
/// chain and heights (same blocks, their own timestamps) at the same time, so requests for
/// one height/round/step reach two coordinators at nearly the same moment, with identical or
/// timestamp-only-different bytes, and at the end conflicting blocks.
///
/// The two simulators are not in lockstep: when one is already past a step, the other's
/// request for it is refused as a regression (what a lagging sentry gets from FilePV too).
/// Anything else that is not a valid signature fails the test, and every conflict must be
/// refused.
#[test]
fn two_sentries_no_double_sign() {
    const HEIGHTS: u64 = 30;
    let ports = [free_tcp_port(), free_tcp_port()];
    let split = Split::new("sentries", 2, 3, &ports);
    let sims: Vec<Sim> = ports
        .iter()
        .map(|&p| split.sim(p, HEIGHTS, &["--block-time-ms", "20", "--conflicts", "2"]))
        .collect();
    let procs: Vec<Proc> = (0..3).map(|i| split.start(i, 0)).collect();
    let outcomes: Vec<Outcome> = sims.into_iter().map(Sim::outcome).collect();
    let logs: String = procs
        .iter()
        .map(|p| format!("--- {} ---\n{}", p.name, p.log()))
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        eprintln!(
            "sentry {i}: passed {} failed {} refusals {:?}",
            o.passed(),
            o.failed(),
            o.refusals()
        );
        assert_eq!(o.double_signs(), 0, "sentry {i}:\n{}", o.output);
        assert_eq!(
            o.report["by_type"]["conflict"]["passed"], 2,
            "sentry {i}: a conflict was not refused:\n{}",
            o.output
        );
        // Every failure is a refusal for a step the validator has already passed.
        let failures = o.report["failures"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let unexpected: u64 = failures
            .iter()
            .filter(|(k, _)| k.as_str() != "unexpected_refusal")
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum();
        assert_eq!(unexpected, 0, "sentry {i}:\n{}\n{logs}", o.output);
        let regressions: u64 = o
            .refusals()
            .iter()
            .filter(|(k, _)| k.contains("regression"))
            .map(|(_, n)| n)
            .sum();
        // Conflicts are refused as conflicts and count as passed; a failure must be a
        // regression refusal.
        assert!(
            o.failed() <= regressions,
            "sentry {i}: a failure that is not a regression:\n{}",
            o.output
        );
        // A sentry that falls behind has its requests for passed steps refused until it
        // catches up, so only a floor is certain: both get signatures throughout.
        assert!(
            o.passed() >= HEIGHTS,
            "sentry {i} got too few signatures:\n{}",
            o.output
        );
    }
}
