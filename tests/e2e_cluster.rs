//! End to end, threshold cluster: real `split-key` and `cosigner` processes on loopback
//! against `validator-sim` (a node built on tendermint-rs), which verifies every signature
//! under the original public key and counts double signs.

mod common;

use std::path::Path;
use std::process::Command;

use common::cluster::Cluster;
use common::*;

fn run_clean(name: &str, threshold: u16, shares: u16, protocol: &str, heights: &str) {
    let mut cluster = Cluster::new(name, threshold, shares, protocol);
    let sim = cluster.sim(&[
        "--heights",
        heights,
        "--nil-round-every",
        "10",
        "--replay",
        "--timestamp-replay",
    ]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    // Every signature was verified by the simulator under the key from priv_validator_key.json.
    outcome.assert_key(&cluster.key.public_key_base64());
}

#[test]
fn two_of_three_signs_v0_34() {
    run_clean("2of3-v034", 2, 3, "v0.34", "300");
}

#[test]
fn two_of_three_signs_v0_38_with_vote_extensions() {
    run_clean("2of3-v038", 2, 3, "v0.38", "300");
}

#[test]
fn three_of_five_signs_v0_38() {
    run_clean("3of5-v038", 3, 5, "v0.38", "200");
}

#[test]
fn killing_a_cosigner_that_does_not_serve_the_node_loses_nothing() {
    let mut cluster = Cluster::new("kill-idle", 2, 3, "v0.38");
    let mut sim = cluster.sim(&["--heights", "200"]);
    cluster.start_all();
    sim.wait_for_height(50);
    let victim = (cluster.connected() + 1) % 3;
    cluster.kill(victim);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    assert_eq!(
        outcome.connections_accepted(),
        1,
        "no reconnection was needed:\n{}",
        cluster.logs()
    );
}

#[test]
fn killing_the_coordinator_fails_over_to_another_cosigner() {
    let mut cluster = Cluster::new("kill-coordinator", 2, 3, "v0.38");
    let mut sim = cluster.sim(&["--heights", "200"]);
    cluster.start_all();
    sim.wait_for_height(50);
    let coordinator = cluster.connected();
    cluster.kill(coordinator);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    assert!(outcome.connections_accepted() >= 2);
    println!(
        "fail-over gap: longest request {} ms ({})",
        outcome.report.longest_gap_ms, outcome.report.longest_gap_request
    );
}

#[test]
fn conflicting_request_is_refused_also_through_another_cosigner() {
    let mut cluster = Cluster::new("conflict", 2, 3, "v0.38");
    // The simulator idles (pinging) after the last height before its conflict probes, so
    // the cosigner that signed can be killed first and the probes arrive through another.
    let mut sim = cluster.sim(&[
        "--heights",
        "30",
        "--conflicts",
        "3",
        "--block-time-ms",
        "1500",
    ]);
    cluster.start_all();
    sim.wait_for_height(30);
    let first = cluster.connected();
    cluster.kill(first);
    let outcome = sim.outcome();
    assert_eq!(outcome.double_signs(), 0, "{}", outcome.output);
    assert_eq!(outcome.failed(), 0, "{}", outcome.output);
    assert_eq!(outcome.of_type("conflict").passed, 3, "{}", outcome.output);
    assert!(
        outcome.refusals_containing("double signing refused") >= 1,
        "{}",
        outcome.output
    );
}

#[test]
fn restarted_cosigner_keeps_its_watermark_and_rejoins() {
    let mut cluster = Cluster::new("restart", 2, 3, "v0.38");
    let mut sim = cluster.sim(&["--heights", "150"]);
    cluster.start_all();
    sim.wait_for_height(40);
    let coordinator = cluster.connected();
    // `a` is the peer that has been signing with the coordinator: its state file was
    // written last.
    let written = |i: usize| {
        std::fs::metadata(cluster.cosigner_dirs[i].join("state/test-chain.state"))
            .and_then(|m| m.modified())
            .expect("state file")
    };
    let (mut a, mut b) = ((coordinator + 1) % 3, (coordinator + 2) % 3);
    if written(b) > written(a) {
        std::mem::swap(&mut a, &mut b);
    }
    cluster.kill(a);
    // Its watermark is on disk: at least one signature was recorded before the kill.
    assert!(state_height(&cluster.cosigner_dirs[a]) >= 1);
    cluster.start(a);
    // Take the third one away: from now on every quorum needs the restarted cosigner.
    cluster.kill(b);
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    cluster.kill(a);
    assert_eq!(state_height(&cluster.cosigner_dirs[a]), 150);
}

/// The height of a stopped cosigner's watermark, from `cosigner state show`.
fn state_height(cosigner_dir: &Path) -> i64 {
    let out = Command::new(&bins().cosigner)
        .args(["state", "show", "--config"])
        .arg(cosigner_dir.join("cosigner.toml"))
        .output_bounded()
        .expect("state show");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("height ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no height in `{text}` {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
