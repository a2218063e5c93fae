//! End to end, two validator keys on one 2-of-3 cluster: each key split by the real
//! `split-key`, the second added to the first's cosigner directories by `cosigner add-key`,
//! three `cosigner` processes serving two simulated nodes (one per chain, each with its own
//! key) at once, with a cosigner down, and `split-key combine` giving back either key. A
//! several-key cosigner's `/metrics` and `cosigner status --json` show each key's chains
//! with their own watermarks.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::operate::{self, scrape_when_up, status_until, value};
use common::*;
use validator_sim::doublesign::{conflicts, LoggedSignature};

const CHAIN_A: &str = "chain-a";
const CHAIN_B: &str = "chain-b";

/// Two keys split among the same three cosigners; the directories hold both after `setup`.
struct TwoKeys {
    dir: tempfile::TempDir,
    key_a: ValidatorKeyFile,
    key_b: ValidatorKeyFile,
    /// The cosigner directories, holding both keys.
    cosigners: Vec<PathBuf>,
    /// What split-key wrote for the second key (added to `cosigners`).
    added: Vec<PathBuf>,
    node_a: u16,
    node_b: u16,
}

fn cosigner(args: &[&str]) -> Output {
    Command::new(&bins().cosigner)
        .args(args)
        .output_bounded()
        .expect("run cosigner")
}

fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_udp_port()))
        .collect()
}

/// Splits key A (chain-a) and key B (chain-b) for the same three cosigners, each with its
/// own ports and node, and adds B to A's directories.
fn setup(name: &str) -> TwoKeys {
    let dir = test_dir(name);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    let (key_a, key_b) = (write_validator_key(&a), write_validator_key(&b));
    let (node_a, node_b) = (free_tcp_port(), free_tcp_port());
    let node = |port: u16| vec![format!("tcp://127.0.0.1:{port}")];
    let cosigners = split_key_at(
        &a,
        &key_a.path,
        2,
        &addresses(3),
        &node(node_a),
        &[CHAIN_A],
        "v0.38",
    );
    let added = split_key_at(
        &b,
        &key_b.path,
        2,
        &addresses(3),
        &node(node_b),
        &[CHAIN_B],
        "v0.38",
    );
    for (live, from) in cosigners.iter().zip(&added) {
        let config = live.join("cosigner.toml");
        let output = cosigner(&[
            "add-key",
            "--config",
            config.to_str().unwrap(),
            "--from",
            from.to_str().unwrap(),
            "--name",
            "validator-b",
            "--existing-name",
            "validator-a",
        ]);
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("Added key `validator-b`"),
            "{}",
            text(&output)
        );
        let check = cosigner(&["check-config", "--config", config.to_str().unwrap()]);
        let shown = text(&check);
        assert!(check.status.success(), "{shown}");
        for needle in [
            "key:           validator-a".to_string(),
            "key:           validator-b".to_string(),
            hex::encode(key_a.public_key),
            hex::encode(key_b.public_key),
            format!("chain:         {CHAIN_B}"),
            "OK".to_string(),
        ] {
            assert!(shown.contains(&needle), "`{needle}` missing:\n{shown}");
        }
        // `address` prints each key under its name, or the one `--key` names.
        let config = config.to_str().unwrap();
        let both = text(&cosigner(&["address", "--config", config]));
        let only_b = text(&cosigner(&[
            "address",
            "--config",
            config,
            "--key",
            "validator-b",
        ]));
        for (shown, a, b) in [(&both, true, true), (&only_b, false, true)] {
            assert_eq!(
                shown.contains("key:                 validator-a"),
                a,
                "{shown}"
            );
            assert_eq!(shown.contains(&hex::encode(key_a.public_key)), a, "{shown}");
            assert_eq!(
                shown.contains("key:                 validator-b"),
                b,
                "{shown}"
            );
            assert_eq!(shown.contains(&hex::encode(key_b.public_key)), b, "{shown}");
        }
    }
    TwoKeys {
        dir,
        key_a,
        key_b,
        cosigners,
        added,
        node_a,
        node_b,
    }
}

impl TwoKeys {
    fn start(&self, i: usize, run: &str) -> Proc {
        start_cosigner(
            &self.cosigners[i],
            &format!("cosigner-{}-{run}", i + 1),
            self.dir.path(),
        )
    }

    /// A simulated node of `chain` on `port`, expecting `key`, signing `heights` heights from
    /// `start`, its signatures logged per chain.
    fn sim(&self, port: u16, chain: &str, key: &ValidatorKeyFile, start: u64, heights: u64) -> Sim {
        let signatures = self.dir.path().join(format!("signatures-{chain}.jsonl"));
        let (start, heights) = (start.to_string(), heights.to_string());
        Sim::start_on(
            self.dir.path(),
            port,
            "v0.38",
            &[
                "--chain-id",
                chain,
                "--expect-pubkey",
                &key.public_key_base64(),
                "--start-height",
                &start,
                "--heights",
                &heights,
                "--signatures",
                signatures.to_str().unwrap(),
            ],
        )
    }

    fn combine(&self, ids: &[usize], out: &str, key: Option<&str>) -> Output {
        let mut cmd = Command::new(&bins().split_key);
        cmd.arg("combine");
        for &i in ids {
            cmd.arg(&self.cosigners[i]);
        }
        cmd.arg("--out").arg(self.dir.path().join(out));
        if let Some(key) = key {
            cmd.args(["--key", key]);
        }
        cmd.output_bounded().expect("run split-key combine")
    }
}

fn logged(path: &Path) -> Vec<LoggedSignature> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a signature log line"))
        .collect()
}

/// Signatures of votes and proposals a run got.
fn signed(outcome: &Outcome) -> u64 {
    ["proposal", "prevote", "precommit"]
        .iter()
        .filter_map(|kind| outcome.report.by_type.get(*kind))
        .map(|t| t.passed)
        .sum()
}

#[test]
fn two_keys_on_one_cluster_each_sign_their_chain() {
    let keys = setup("multikey");
    let mut procs: Vec<Option<Proc>> = (0..3).map(|i| Some(keys.start(i, "first"))).collect();

    // Both nodes at once, each under its own key.
    let sim_a = keys.sim(keys.node_a, CHAIN_A, &keys.key_a, 1, 20);
    let sim_b = keys.sim(keys.node_b, CHAIN_B, &keys.key_b, 1, 20);
    let running: Vec<&Proc> = procs.iter().flatten().collect();
    for outcome in [sim_a.outcome(), sim_b.outcome()] {
        outcome.assert_clean(&running);
        assert_eq!(outcome.report.heights_committed, 20, "{}", outcome.output);
    }

    // Node A's connection is served by key A's cluster only: chain-b is refused there.
    let wrong = keys.sim(keys.node_a, CHAIN_B, &keys.key_b, 21, 2).outcome();
    assert_eq!(signed(&wrong), 0, "{}", wrong.output);
    assert!(
        wrong.refusals_containing("chain ID `chain-b` is not served") > 0,
        "{:?}\n{}",
        wrong.refusals(),
        wrong.output
    );

    // With cosigner 1 down both keys go on signing with the other two.
    procs[0] = None;
    let sim_a = keys.sim(keys.node_a, CHAIN_A, &keys.key_a, 21, 10);
    let sim_b = keys.sim(keys.node_b, CHAIN_B, &keys.key_b, 21, 10);
    let running: Vec<&Proc> = procs.iter().flatten().collect();
    for outcome in [sim_a.outcome(), sim_b.outcome()] {
        outcome.assert_clean(&running);
    }
    // The two cosigners left coordinated signings of both chains, and each chain's node got
    // signatures of its own chain only, none conflicting.
    let logs: String = running.iter().map(|p| p.log()).collect();
    assert!(
        logs.contains("chain=chain-a") && logs.contains("chain=chain-b"),
        "{logs}"
    );
    for chain in [CHAIN_A, CHAIN_B] {
        let all = logged(&keys.dir.path().join(format!("signatures-{chain}.jsonl")));
        assert!(all.len() >= 90, "{chain}: {} signatures", all.len());
        assert!(all.iter().all(|s| s.chain_id == chain));
        assert_eq!(conflicts(&all), vec![], "{chain}");
    }
    drop(running);
    drop(procs);

    // Each key comes back on its own, with its own chain's state.
    let which = keys.combine(&[1, 2], "exit", None);
    assert!(!which.status.success());
    let message = text(&which);
    for needle in [
        "which key to combine",
        "validator-a",
        "validator-b",
        "--key",
    ] {
        assert!(message.contains(needle), "`{needle}` missing: {message}");
    }
    for (name, key, chain, out) in [
        ("validator-b", &keys.key_b, CHAIN_B, "exit-b"),
        (
            &hex::encode_upper(sha2_address(&keys.key_a.public_key)),
            &keys.key_a,
            CHAIN_A,
            "exit-a",
        ),
    ] {
        let output = keys.combine(&[2, 1], out, Some(name));
        assert!(output.status.success(), "{}", text(&output));
        let out = keys.dir.path().join(out);
        assert_eq!(
            std::fs::read(out.join("priv_validator_key.json")).unwrap(),
            std::fs::read(&key.path).unwrap(),
            "{name}"
        );
        let state = std::fs::read_to_string(out.join("priv_validator_state.json")).unwrap();
        let state = cosigner::sign_state::import::import_cometbft_state(&state).unwrap();
        assert!(state.height >= 30, "{chain}: {state:?}");
        assert!(text(&output).contains(&format!("chain `{chain}`")));
    }
}

/// After both chains signed (to different heights, so that a watermark shown under the
/// other chain or key would be seen), every cosigner's `cosigner status --json` and
/// `/metrics` show each key by name with its own quorum and peers, and each chain under its
/// key with its own watermark; the highest watermark of each chain is its last height.
#[test]
fn status_and_metrics_show_each_keys_chains_with_their_own_watermarks() {
    let keys = setup("multikey-status");
    let configs: Vec<PathBuf> = keys
        .cosigners
        .iter()
        .map(|d| d.join("cosigner.toml"))
        .collect();
    let endpoints: Vec<String> = configs.iter().map(|c| operate::enable_metrics(c)).collect();
    let procs: Vec<Proc> = (0..3).map(|i| keys.start(i, "status")).collect();
    let running: Vec<&Proc> = procs.iter().collect();
    let (heights_a, heights_b) = (20, 12);
    let sim_a = keys.sim(keys.node_a, CHAIN_A, &keys.key_a, 1, heights_a);
    let sim_b = keys.sim(keys.node_b, CHAIN_B, &keys.key_b, 1, heights_b);
    let (outcome_a, outcome_b) = (sim_a.outcome(), sim_b.outcome());
    outcome_a.assert_clean(&running);
    outcome_b.assert_clean(&running);

    let expected = [
        (CHAIN_A, "validator-a", heights_a, &outcome_a),
        (CHAIN_B, "validator-b", heights_b, &outcome_b),
    ];
    let mut highest = [0i64; 2];
    let mut signed_by_cluster = [0.0f64; 2];
    for (i, (config, endpoint)) in configs.iter().zip(&endpoints).enumerate() {
        // Both keys up with both peers: what the runs needed, so it shows at once.
        let s = status_until(config, "both keys with both peers connected", |ok, s| {
            ok && s.quorum && s.peers.iter().filter(|p| p.connected).count() == 4
        });
        let names: Vec<Option<&str>> = s.keys.iter().map(|k| k.name.as_deref()).collect();
        assert_eq!(
            names,
            [Some("validator-a"), Some("validator-b")],
            "cosigner {}: {s:?}",
            i + 1
        );
        assert!(s.keys.iter().all(|k| k.quorum && k.threshold == Some(2)));
        let metrics = scrape_when_up(endpoint);
        for (c, (chain, key, heights, outcome)) in expected.iter().enumerate() {
            let peers: Vec<u16> = s
                .peers
                .iter()
                .filter(|p| p.key.as_deref() == Some(key))
                .map(|p| p.id)
                .collect();
            assert_eq!(peers.len(), 2, "cosigner {}, {key}: {s:?}", i + 1);
            assert!(!peers.contains(&(i as u16 + 1)), "{s:?}");
            let shown: Vec<_> = s.chains.iter().filter(|c| c.chain_id == *chain).collect();
            assert_eq!(shown.len(), 1, "cosigner {}: {s:?}", i + 1);
            let watermark = shown[0];
            assert_eq!(watermark.key.as_deref(), Some(*key), "{s:?}");
            assert!(
                (0..=*heights as i64).contains(&watermark.height),
                "cosigner {}: {chain} beyond its {heights} heights: {s:?}",
                i + 1
            );
            highest[c] = highest[c].max(watermark.height);

            // The same in the metrics: the chain's watermark, the key's series by its name.
            let on_chain = [("chain_id", *chain)];
            for (series, shown) in [
                ("cosigner_watermark_height", watermark.height),
                ("cosigner_watermark_round", watermark.round),
                ("cosigner_watermark_step", i64::from(watermark.step_number)),
            ] {
                assert_eq!(
                    value(&metrics, series, &on_chain),
                    shown as f64,
                    "cosigner {}: {series} {chain} against its status",
                    i + 1
                );
            }
            assert_eq!(value(&metrics, "cosigner_quorum", &[("key", *key)]), 1.0);
            assert_eq!(
                value(&metrics, "cosigner_peers_connected", &[("key", *key)]),
                2.0
            );
            for peer in peers {
                let labels = [("key", *key), ("peerid", &peer.to_string())];
                assert_eq!(value(&metrics, "cosigner_peer_connected", &labels), 1.0);
            }
            signed_by_cluster[c] += value(&metrics, "signer_total_precommits_signed", &on_chain);
            assert_eq!(outcome.failed(), 0);
        }
    }
    // Some cosigner signed each chain's last precommit; the coordinators' counters add up to
    // each chain's own run.
    for (c, (chain, _, heights, outcome)) in expected.iter().enumerate() {
        assert_eq!(highest[c], *heights as i64, "{chain}");
        assert_eq!(
            signed_by_cluster[c],
            outcome.of_type("precommit").passed as f64,
            "{chain}: precommits counted over the cluster against the simulator's"
        );
    }
}

fn sha2_address(public_key: &[u8; 32]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(public_key)[..20].to_vec()
}

#[test]
fn add_key_refuses_what_would_mix_keys_and_writes_nothing() {
    let keys = setup("multikey-refusals");
    let config = keys.cosigners[0].join("cosigner.toml");
    let config = config.to_str().unwrap();
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.is_file() {
                    files.push((p.clone(), std::fs::read(&p).unwrap()));
                }
                // Else the admin socket a killed cosigner left in state/: not a file.
            }
        }
        files.sort();
        files
    };
    let refused = |from: &Path, name: &str, needles: &[&str]| {
        let before = snapshot(&keys.cosigners[0]);
        let output = cosigner(&[
            "add-key",
            "--config",
            config,
            "--from",
            from.to_str().unwrap(),
            "--name",
            name,
        ]);
        let message = text(&output);
        assert!(!output.status.success(), "{message}");
        for needle in needles {
            assert!(message.contains(needle), "`{needle}` missing: {message}");
        }
        assert_eq!(snapshot(&keys.cosigners[0]), before, "{message}");
    };
    // The same key again (its chain is already signed here).
    refused(
        &keys.added[0],
        "validator-c",
        &["chain `chain-b` is already signed"],
    );
    // A name already in use.
    refused(
        &keys.added[0],
        "validator-a",
        &["`validator-a` is already in this directory"],
    );
    // Another host's directory of a new key.
    let c = keys.dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    let key_c = write_validator_key(&c);
    let added_c = split_key_at(
        &c,
        &key_c.path,
        2,
        &addresses(3),
        &[format!("tcp://127.0.0.1:{}", free_tcp_port())],
        &["chain-c"],
        "v0.38",
    );
    refused(
        &added_c[1],
        "validator-c",
        &["is cosigner 2 of the new key", "cosigner 1"],
    );
    // While the cosigner runs.
    let running = keys.start(0, "running");
    assert!(
        wait_for_log(&running, "cosigner started", 1, SIM_WAIT),
        "{}",
        running.log()
    );
    refused(
        &added_c[0],
        "validator-c",
        &["in use by another process", "stop the cosigner"],
    );
    drop(running);
    // Once it is stopped, the third key is added.
    let output = cosigner(&[
        "add-key",
        "--config",
        config,
        "--from",
        added_c[0].to_str().unwrap(),
        "--name",
        "validator-c",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(keys.cosigners[0]
        .join("keys/validator-c/key_share.json")
        .is_file());
    assert!(keys.cosigners[0].join("state/chain-c.state").is_file());
}
