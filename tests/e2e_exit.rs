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

const CHAIN: &str = "test-chain";

fn combine(cwd: &Path, dirs: &[&PathBuf], out: &Path) -> Output {
    Command::new(&bins().split_key)
        .current_dir(cwd)
        .arg("combine")
        .args(dirs)
        .arg("--out")
        .arg(out)
        .output()
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

/// Signs `heights` heights with a `t`-of-`n` cluster, stops it, and combines every
/// `t`-subset of its directories: each gives the original key file and the highest state of
/// its own members, at least as high as the last height signed. Returns the cluster and the
/// output of the first subset.
fn sign_then_combine_every_subset(name: &str, t: u16, n: u16, heights: u64) -> (Cluster, PathBuf) {
    let mut cluster = Cluster::new(name, t, n, "v0.38");
    let sim = cluster.sim(&["--heights", &heights.to_string(), "--nil-round-every", "7"]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
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
        .output()
        .expect("run init-single");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

#[test]
fn two_of_three_every_pair_gives_back_the_key_and_the_single_key_signs_on() {
    let (cluster, combined) = sign_then_combine_every_subset("exit-2of3", 2, 3, 30);
    let state = import_cometbft_state(
        &std::fs::read_to_string(combined.join("priv_validator_state.json")).unwrap(),
    )
    .unwrap();
    let port = free_tcp_port();
    let single = single_from(cluster.dir.path(), &combined, port);
    let pubkey = cluster.key.public_key_base64();
    let signer = start_cosigner(&single, "single", cluster.dir.path());

    // Below the watermark the cluster left: everything is refused.
    let below = (state.height - 5).to_string();
    let sim = Sim::start_on(
        cluster.dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            CHAIN,
            "--expect-pubkey",
            &pubkey,
            "--start-height",
            &below,
            "--heights",
            "3",
        ],
    );
    let outcome = sim.outcome();
    assert_eq!(outcome.passed(), 0, "{}", outcome.output);
    assert_eq!(outcome.double_signs(), 0, "{}", outcome.output);
    assert!(
        outcome.refusals_containing("regression") > 0,
        "{}\n{}",
        outcome.output,
        signer.log()
    );

    // Above it: signed under the original key.
    let above = (state.height + 1).to_string();
    let sim = Sim::start_on(
        cluster.dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            CHAIN,
            "--expect-pubkey",
            &pubkey,
            "--start-height",
            &above,
            "--heights",
            "10",
        ],
    );
    let outcome = sim.outcome();
    outcome.assert_clean(&[&signer]);
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
