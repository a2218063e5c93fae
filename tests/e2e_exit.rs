//! End to end, leaving the cluster: a key split by the real `split-key` signs with the real
//! cosigners against `validator-sim`; `split-key combine` then gives back the original key
//! file byte for byte and the highest sign state, and the single-key signer made from them
//! signs on above that state and refuses below it. A state file a running cosigner holds is
//! refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use cosigner::sign_state::import::import_cometbft_state;
use cosigner::sign_state::{Position, SignState, StateFile};
use validator_sim::doublesign::{conflicts, LoggedSignature};

const CHAIN: &str = "test-chain";

fn combine(cwd: &Path, dirs: &[&PathBuf], out: &Path) -> Output {
    Command::new(&bins().split_key)
        .current_dir(cwd)
        .arg("combine")
        .args(dirs)
        .arg("--out")
        .arg(out)
        .output_bounded()
        .expect("run split-key combine")
}

/// A cosigner directory's watermark, read with the library (the cosigner must be stopped).
fn state_of(cosigner_dir: &Path) -> SignState {
    StateFile::open(&cosigner_dir.join("state"), CHAIN)
        .unwrap_or_else(|e| panic!("{e}"))
        .1
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .filter(|m| m.count_ones() as usize == k)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

/// Every signature the simulators of a test logged.
fn logged(path: &Path) -> Vec<LoggedSignature> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a signature log line"))
        .collect()
}

/// Signs `heights` heights with a `t`-of-`n` cluster (every signature logged to
/// `signatures.jsonl` in the test directory), stops it, and combines every `t`-subset of its
/// directories: each gives the original key file and the highest state of its own members,
/// at least as high as the last height signed. Returns the cluster and the output of the
/// first subset.
fn sign_then_combine_every_subset(name: &str, t: u16, n: u16, heights: u64) -> (Cluster, PathBuf) {
    let mut cluster = Cluster::new(name, t, n, "v0.38");
    let signatures = cluster.dir.path().join("signatures.jsonl");
    let sim = cluster.sim(&[
        "--heights",
        &heights.to_string(),
        "--nil-round-every",
        "7",
        "--signatures",
        signatures.to_str().unwrap(),
    ]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    assert_eq!(outcome.report.heights_committed, heights);
    for i in 0..usize::from(n) {
        cluster.kill(i);
    }
    let original = std::fs::read(&cluster.key.path).unwrap();
    let states: Vec<SignState> = cluster.cosigner_dirs.iter().map(|d| state_of(d)).collect();
    let last_signed = Position {
        height: heights as i64,
        round: 0,
        step: 3,
    };
    let public = ed25519_dalek::VerifyingKey::from_bytes(&cluster.key.public_key).unwrap();
    let mut first = None;
    for subset in subsets(usize::from(n), usize::from(t)) {
        let label: String = subset.iter().map(|i| (i + 1).to_string()).collect();
        let out = cluster.dir.path().join(format!("exit-{label}"));
        let dirs: Vec<&PathBuf> = subset.iter().map(|&i| &cluster.cosigner_dirs[i]).collect();
        let output = combine(cluster.dir.path(), &dirs, &out);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cosigners {label}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("WARNING: THE VALIDATOR KEY NOW EXISTS WHOLE"),
            "{stdout}"
        );
        // The very file CometBFT wrote, seed and all.
        assert_eq!(
            std::fs::read(out.join("priv_validator_key.json")).unwrap(),
            original,
            "cosigners {label}"
        );
        let text = std::fs::read_to_string(out.join("priv_validator_state.json")).unwrap();
        let state = import_cometbft_state(&text).unwrap();
        let highest = subset.iter().map(|&i| states[i].position()).max().unwrap();
        assert_eq!(state.position(), highest, "cosigners {label}: {text}");
        assert!(
            state.position() >= last_signed,
            "cosigners {label}: {} is below the last height signed",
            state.position()
        );
        // Sign bytes only ever come with the validator's own signature over them.
        if let Some(last) = &state.last {
            let signature = ed25519_dalek::Signature::from_bytes(&last.signature.unwrap());
            public
                .verify_strict(&last.doc.sign_bytes, &signature)
                .expect("the stored signature verifies");
        }
        first.get_or_insert(out);
    }
    let first = first.unwrap();
    (cluster, first)
}

/// `cosigner init-single` from a combined directory, serving the node on `port`.
fn single_from(dir: &Path, combined: &Path, port: u16) -> PathBuf {
    let out = dir.join("single");
    let output = Command::new(&bins().cosigner)
        .arg("init-single")
        .arg(combined.join("priv_validator_key.json"))
        .arg("--out")
        .arg(&out)
        .args([
            "--chain-id",
            CHAIN,
            "--node",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .arg("--state")
        .arg(format!(
            "{CHAIN}={}",
            combined.join("priv_validator_state.json").display()
        ))
        .output_bounded()
        .expect("run init-single");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// The node asks the single-key signer made from a combined directory for other blocks at
/// the last two heights the cluster signed (`--block-variant`): every one of those requests
/// would be a double sign, and each is refused. Above them it signs under the original key.
#[test]
fn two_of_three_every_pair_gives_back_the_key_and_the_single_key_signs_on() {
    let heights = 30;
    let (cluster, combined) = sign_then_combine_every_subset("exit-2of3", 2, 3, heights);
    let signatures = cluster.dir.path().join("signatures.jsonl");
    let port = free_tcp_port();
    let single = single_from(cluster.dir.path(), &combined, port);
    let pubkey = cluster.key.public_key_base64();
    let signer = start_cosigner(&single, "single", cluster.dir.path());
    let sim = |start: u64, count: u64, variant: &str| {
        let (start, count) = (start.to_string(), count.to_string());
        Sim::start_on(
            cluster.dir.path(),
            port,
            "v0.38",
            &[
                "--chain-id",
                CHAIN,
                "--expect-pubkey",
                &pubkey,
                "--start-height",
                &start,
                "--heights",
                &count,
                "--block-variant",
                variant,
                "--signatures",
                signatures.to_str().unwrap(),
            ],
        )
    };

    // Conflicting requests at and below the watermark the cluster left.
    let outcome = sim(heights - 1, 2, "the-other-node").outcome();
    let sign_requests: u64 = ["proposal", "prevote", "precommit"]
        .iter()
        .map(|kind| outcome.of_type(kind).requests)
        .sum();
    assert_eq!(sign_requests, 6, "{}", outcome.output);
    assert_eq!(
        outcome.refusals().values().sum::<u64>(),
        sign_requests,
        "every conflicting request is refused: {:?}\n{}\n{}",
        outcome.refusals(),
        outcome.output,
        signer.log()
    );
    let all = logged(&signatures);
    assert!(all.len() as u64 >= 3 * heights, "{} signatures", all.len());
    assert_eq!(conflicts(&all), vec![], "a double sign after the exit");
    assert_eq!(outcome.double_signs(), 0);

    // Above it: signed under the original key.
    let outcome = sim(heights + 1, 10, "the-other-node").outcome();
    outcome.assert_clean(&[&signer]);
    assert_eq!(conflicts(&logged(&signatures)), vec![]);
}

#[test]
fn three_of_five_every_triple_gives_back_the_key() {
    sign_then_combine_every_subset("exit-3of5", 3, 5, 20);
}

#[test]
fn a_state_file_in_use_is_refused_and_nothing_is_written() {
    let mut cluster = Cluster::new("exit-in-use", 2, 3, "v0.38");
    cluster.start(0);
    let running = cluster.procs[0].as_ref().unwrap();
    assert!(
        wait_for_log(running, "cosigner started", 1, Duration::from_secs(30)),
        "{}",
        running.log()
    );
    let out = cluster.dir.path().join("exit");
    let before = entries(cluster.dir.path());
    let output = combine(
        cluster.dir.path(),
        &[&cluster.cosigner_dirs[1], &cluster.cosigner_dirs[0]],
        &out,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("is in use by another process")
            && stderr.contains("stop the cosigner of")
            && stderr.contains("cosigner-1"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    // Nothing written next to --out (no output, no staging directory); only logs may grow.
    let after: std::collections::BTreeSet<String> = entries(cluster.dir.path())
        .into_iter()
        .filter(|e| !e.ends_with(".log"))
        .collect();
    let before: std::collections::BTreeSet<String> = before
        .into_iter()
        .filter(|e| !e.ends_with(".log"))
        .collect();
    assert_eq!(after, before);

    // Once it is stopped, the same command works.
    cluster.kill(0);
    let output = combine(
        cluster.dir.path(),
        &[&cluster.cosigner_dirs[1], &cluster.cosigner_dirs[0]],
        &out,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_single_key_directory_is_not_a_share() {
    let cluster = Cluster::new("exit-single", 2, 3, "v0.38");
    let combined = cluster.dir.path().join("exit");
    let output = combine(
        cluster.dir.path(),
        &[&cluster.cosigner_dirs[0], &cluster.cosigner_dirs[1]],
        &combined,
    );
    assert!(output.status.success());
    let single = single_from(cluster.dir.path(), &combined, free_tcp_port());
    let output = combine(
        cluster.dir.path(),
        &[&cluster.cosigner_dirs[0], &single],
        &cluster.dir.path().join("again"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("single-key signer's directory"), "{stderr}");
    assert!(!cluster.dir.path().join("again").exists());
}

fn entries(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
