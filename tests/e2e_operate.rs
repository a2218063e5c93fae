//! End to end, operating a cluster: the Prometheus metrics, `cosigner status` and
//! `cosigner state show` of real cosigners on loopback against `validator-sim`, and the
//! Grafana dashboard against what a running cosigner exports.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::cluster::{Cluster, CHAIN};
use common::operate::{self, samples, scrape, scrape_when_up, status, status_until, value};
use common::*;

/// Serves metrics on a free loopback port from each of the first `n` cosigners of
/// `cluster`; the addresses.
fn enable_metrics(cluster: &Cluster, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| operate::enable_metrics(&cluster.config(i)))
        .collect()
}

#[test]
fn metrics_and_status_follow_a_run_and_a_lost_peer() {
    let heights = 60;
    let mut cluster = Cluster::new("operate", 2, 3, "v0.38");
    let endpoints = enable_metrics(&cluster, 3);
    let sim = cluster.sim(&["--heights", &heights.to_string()]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());

    // The coordinators' counters add up to what the simulator got signed.
    let scraped: Vec<String> = endpoints.iter().map(|e| scrape_when_up(e)).collect();
    let chain = [("chain_id", CHAIN)];
    for (series, kind) in [
        ("signer_total_proposals_signed", "proposal"),
        ("signer_total_prevotes_signed", "prevote"),
        ("signer_total_precommits_signed", "precommit"),
    ] {
        let counted: f64 = scraped.iter().map(|t| value(t, series, &chain)).sum();
        assert_eq!(
            counted,
            outcome.of_type(kind).passed as f64,
            "{series} over the cluster against the simulator's {kind}s"
        );
    }
    let last_precommits: Vec<f64> = scraped
        .iter()
        .map(|t| value(t, "signer_last_precommit_height", &chain))
        .collect();
    // The node is gone now: the coordinator is the one that signed its last precommit.
    let coordinator = last_precommits
        .iter()
        .position(|&h| h == heights as f64)
        .unwrap_or_else(|| panic!("no cosigner signed the last height: {last_precommits:?}"));
    let failed: f64 = scraped
        .iter()
        .map(|t| value(t, "signer_total_failed_sign_vote", &chain))
        .sum();
    assert_eq!(failed, 0.0);

    // The status: quorum, both peers, the watermark at the last height.
    let sample: Vec<&str> = scraped[coordinator]
        .lines()
        .filter(|l| l.starts_with("signer_total_") || l.starts_with("signer_last_precommit"))
        .collect();
    println!(
        "the coordinator's metrics (excerpt):\n{}",
        sample.join("\n")
    );
    let config = cluster.config(coordinator);
    let s = status_until(&config, "the last height's precommit", |ok, s| {
        ok && s
            .chains
            .iter()
            .any(|c| c.chain_id == CHAIN && c.height == heights && c.step == "precommit")
    });
    assert!(s.quorum && s.storage_ok, "{s:?}");
    assert_eq!(s.peers.len(), 2, "{s:?}");
    assert!(s.peers.iter().all(|p| p.connected), "{s:?}");
    assert!(s.chains[0].last_signature_seconds_ago.is_some(), "{s:?}");
    let text = Command::new(&bins().cosigner)
        .args(["status", "--config"])
        .arg(&config)
        .output_bounded()
        .unwrap();
    let printed = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{printed}");
    println!("cosigner status:\n{printed}");
    for needle in ["quorum: yes", "connected", &format!("height {heights}")] {
        assert!(printed.contains(needle), "`{needle}` missing:\n{printed}");
    }

    // `state show` while the cosigner runs: read-only, the watermark on disk.
    let shown = run_cmd(
        &bins().cosigner.to_string_lossy(),
        &["state", "show", "--config", &config.to_string_lossy()],
    )
    .unwrap_or_else(|e| panic!("state show while running: {e}"));
    assert!(shown.contains(&format!("height {heights}")), "{shown}");

    // A peer killed: status and metrics show it gone.
    let victim = (coordinator + 1) % 3;
    let victim_id = (victim + 1).to_string();
    cluster.kill(victim);
    let killed = Instant::now();
    let s = status_until(&config, "the killed peer disconnected", |_, s| {
        s.peers
            .iter()
            .any(|p| p.id.to_string() == victim_id && !p.connected)
    });
    assert!(s.quorum, "one peer is left: {s:?}");
    println!("peer gone in status after {:?}", killed.elapsed());
    let text = scrape(&endpoints[coordinator]).unwrap();
    let peer = [("peerid", victim_id.as_str())];
    assert_eq!(value(&text, "cosigner_peer_connected", &peer), 0.0);
    assert_eq!(value(&text, "cosigner_peers_connected", &[]), 1.0);
    assert_eq!(value(&text, "cosigner_quorum", &[]), 1.0);

    // The last peer killed: no quorum, and `status` says so with a non-zero exit.
    let other = (coordinator + 2) % 3;
    cluster.kill(other);
    let s = status_until(&config, "no quorum", |ok, s| !ok && !s.quorum);
    assert!(s.peers.iter().all(|p| !p.connected), "{s:?}");
    let (_, _, stderr) = status(&config);
    assert!(stderr.contains("no quorum"), "{stderr}");
    assert_eq!(
        value(
            &scrape(&endpoints[coordinator]).unwrap(),
            "cosigner_quorum",
            &[]
        ),
        0.0
    );

    // A cosigner that is not running: a clear error, non-zero.
    let (ok, parsed, stderr) = status(&cluster.config(victim));
    assert!(!ok && parsed.is_none(), "{stderr}");
    assert!(
        stderr.contains("no cosigner is running for this config"),
        "{stderr}"
    );
}

/// Every series the dashboard's queries name, as exported (with `_bucket`, `_total`, ...).
fn dashboard_series() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/grafana/cosigner.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has queries: {exprs:?}");
    let mut names = BTreeSet::new();
    for expr in exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("signer_") || word.starts_with("cosigner_") {
                names.insert(word.to_string());
            }
        }
    }
    names
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn every_series_of_the_dashboard_is_exported() {
    let cluster = Cluster::new("dashboard", 2, 3, "v0.38");
    let endpoints = enable_metrics(&cluster, 1);
    let _cosigner = cluster.spawn(0);
    let text = scrape_when_up(&endpoints[0]);
    let exported: BTreeSet<String> = samples(&text).into_iter().map(|s| s.name).collect();
    let wanted = dashboard_series();
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series no cosigner exports: {missing:?}\nexported: {exported:?}"
    );
    println!("the dashboard's {} series are exported", wanted.len());
}
