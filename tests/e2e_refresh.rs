//! End to end, share refresh: a 2-of-3 cluster split by the real `split-key` signs for
//! `validator-sim`, its cosigners are stopped and run the real `cosigner refresh` on every
//! host, and the cluster signs on under the unchanged validator key with new shares. The
//! old shares are gone from every directory; an old share restored next to new ones does
//! not sign (the cluster refuses the mixed epoch), and two new shares combine back to the
//! original key file. `--remove 3` leaves cosigner 3 out: the
//! others sign without it and refuse its connections. A cosigner killed right after staging
//! its new share settles with the others when its refresh runs again (all switch, or, if it
//! died before the others had its test signature share, all drop), and the cluster signs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::ceremony::{finish, spawn_ceremony};
use common::cluster::Cluster;
use common::*;

/// Every host is started at once, so a healthy refresh ends in seconds; the crash tests
/// restart one host within it (or, loaded, settle with `cosigner start` on every host).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(60);
/// Its timeout, the time a host answers its peers afterwards, and slack for a loaded host.
const REFRESH_EXIT: Duration = Duration::from_secs(150);
/// The simulator's run per phase.
const HEIGHTS: u64 = 15;

fn no_extra(_: usize) -> Vec<String> {
    Vec::new()
}

fn share_path(dir: &Path) -> PathBuf {
    dir.join("key_share.json")
}

fn share_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(share_path(dir)).expect("read key_share.json");
    serde_json::from_str(&text).expect("key_share.json is JSON")
}

/// The hex of a share file's secret signing share.
fn signing_share(share: &serde_json::Value) -> String {
    share["key_package"]["signing_share"]
        .as_str()
        .expect("key_package.signing_share")
        .to_string()
}

/// Every file under `dir` (recursively) whose contents include `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).contains(needle))
            .unwrap_or(false)
        {
            found.push(path);
        }
    }
    found
}

/// Signs `HEIGHTS` heights from `start` with the cosigners `up` (0-based) running, all
/// clean and under the cluster's validator key, then stops them.
fn sign_with(cluster: &mut Cluster, up: &[usize], start: u64) {
    let (start, heights) = (start.to_string(), HEIGHTS.to_string());
    let sim = cluster.sim(&["--start-height", &start, "--heights", &heights]);
    for &i in up {
        cluster.start(i);
    }
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    outcome.assert_key(&cluster.key.public_key_base64());
    for &i in up {
        cluster.kill(i);
    }
}

/// Runs `cosigner refresh` on `hosts` with `extra` arguments; every one must succeed.
/// Returns their logs.
fn refresh(
    cluster: &Cluster,
    hosts: &[usize],
    extra: &dyn Fn(usize) -> Vec<String>,
) -> Vec<String> {
    let procs = spawn_ceremony(
        &cluster.cosigner_dirs,
        hosts,
        "refresh",
        REFRESH_TIMEOUT,
        extra,
        cluster.log_dir(),
    );
    finish(procs, REFRESH_EXIT)
        .into_iter()
        .map(|(i, status, log)| {
            assert!(
                status.success(),
                "cosigner refresh {} failed:\n{log}",
                i + 1
            );
            assert!(
                log.contains("new share of the same validator key, key epoch 1")
                    && log.contains(&cluster.key.public_key_base64()),
                "cosigner refresh {}:\n{log}",
                i + 1
            );
            log
        })
        .collect()
}

/// After a refresh of `hosts`: each holds epoch 1, no staged file is left, and no file of
/// any directory still holds an old share's secret.
fn assert_refreshed(cluster: &Cluster, hosts: &[usize], old_secrets: &[String]) {
    for &i in hosts {
        let dir = &cluster.cosigner_dirs[i];
        assert_eq!(share_json(dir)["epoch"], 1, "cosigner {}", i + 1);
        assert!(!dir.join("key_share.json.next").exists());
        assert!(!dir.join("cosigner.toml.next").exists());
        for secret in old_secrets {
            let left: Vec<PathBuf> = files_containing(dir, secret);
            assert!(left.is_empty(), "an old share is left in {left:?}");
        }
    }
}

#[test]
fn a_refresh_keeps_the_key_and_an_old_share_cannot_sign_with_new_ones() {
    let mut cluster = Cluster::new("refresh-2of3", 2, 3, "v0.38");
    sign_with(&mut cluster, &[0, 1, 2], 1);
    let old: Vec<serde_json::Value> = cluster
        .cosigner_dirs
        .iter()
        .map(|d| share_json(d))
        .collect();
    let old_bytes = std::fs::read(share_path(&cluster.cosigner_dirs[0])).unwrap();
    let secrets: Vec<String> = old.iter().map(signing_share).collect();

    refresh(&cluster, &[0, 1, 2], &no_extra);
    assert_refreshed(&cluster, &[0, 1, 2], &secrets);
    for (i, before) in old.iter().enumerate() {
        let after = share_json(&cluster.cosigner_dirs[i]);
        assert_eq!(
            after["public_key_package"]["verifying_key"],
            before["public_key_package"]["verifying_key"]
        );
        assert_eq!(
            after["seed_escrow"], before["seed_escrow"],
            "escrow carried over"
        );
    }
    // Every new pair signs under the unchanged key, from where the old shares stopped.
    sign_with(&mut cluster, &[0, 1], 1 + HEIGHTS);
    sign_with(&mut cluster, &[1, 2], 1 + 2 * HEIGHTS);

    // An old share (a restored backup) with a new one: the signing is refused for the
    // mixed epoch before any nonce is used, and nothing is signed.
    let restored = share_path(&cluster.cosigner_dirs[0]);
    std::fs::write(&restored, &old_bytes).unwrap();
    let start = (1 + 3 * HEIGHTS).to_string();
    let sim = cluster.sim(&["--start-height", &start, "--heights", "2"]);
    cluster.start(0);
    cluster.start(1);
    let refused = |i: usize| {
        wait_for_log(
            cluster.proc(i),
            "shares of two generations do not combine",
            1,
            Duration::from_secs(60),
        )
    };
    assert!(refused(0) || refused(1), "{}", cluster.logs());
    drop(sim);
    cluster.kill(0);
    cluster.kill(1);
    let signed_mixed = cluster
        .signings()
        .iter()
        .filter(|s| s.hrs.0 > 3 * HEIGHTS as i64)
        .count();
    assert_eq!(signed_mixed, 0, "an old and a new share signed");

    // Two new shares still give back the original key file: the escrow carried over.
    let out = cluster.dir.path().join("exit");
    let combined = Command::new(&bins().split_key)
        .arg("combine")
        .args([&cluster.cosigner_dirs[1], &cluster.cosigner_dirs[2]])
        .arg("--out")
        .arg(&out)
        .output_bounded()
        .unwrap();
    assert!(
        combined.status.success(),
        "{}",
        String::from_utf8_lossy(&combined.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("priv_validator_key.json")).unwrap(),
        std::fs::read(&cluster.key.path).unwrap()
    );
}

#[test]
fn removing_cosigner_three_the_others_sign_and_refuse_it() {
    let mut cluster = Cluster::new("refresh-remove", 2, 3, "v0.38");
    sign_with(&mut cluster, &[0, 1, 2], 1);
    let secrets: Vec<String> = cluster
        .cosigner_dirs
        .iter()
        .map(|d| signing_share(&share_json(d)))
        .collect();
    let remove = |_: usize| vec!["--remove".to_string(), "3".to_string()];
    let logs = refresh(&cluster, &[0, 1], &remove);
    assert!(
        logs[0].contains("no longer lists cosigner(s) 3"),
        "{}",
        logs[0]
    );
    assert_refreshed(&cluster, &[0, 1], &secrets);
    for i in [0, 1] {
        let config = std::fs::read_to_string(cluster.config(i)).unwrap();
        let parsed: toml::Value = toml::from_str(&config).unwrap();
        let peers = parsed["threshold"]["peer"].as_array().unwrap();
        assert_eq!(peers.len(), 1, "cosigner {}: {config}", i + 1);
        assert!(peers.iter().all(|p| p["id"].as_integer() != Some(3)));
    }

    // Cosigner 3 runs on with its old directory: the others refuse its certificate, and
    // every signature is made without it.
    let start = (1 + HEIGHTS).to_string();
    let heights = HEIGHTS.to_string();
    let sim = cluster.sim(&["--start-height", &start, "--heights", &heights]);
    cluster.start(2);
    cluster.start(0);
    cluster.start(1);
    let outcome = sim.outcome();
    outcome.assert_key(&cluster.key.public_key_base64());
    assert_eq!(outcome.double_signs(), 0);
    assert!(outcome.passed() > 0, "{}", outcome.output);
    // Trust is by pin: the removed cosigner's certificate is refused in the handshake.
    let refused = "its certificate is not one this config pins";
    assert!(
        wait_for_log(cluster.proc(0), refused, 1, Duration::from_secs(30))
            || wait_for_log(cluster.proc(1), refused, 1, Duration::from_secs(30)),
        "{}",
        cluster.logs()
    );
    assert!(
        !cluster.proc(2).log().contains("cluster peer connected"),
        "the removed cosigner connected:\n{}",
        cluster.proc(2).log()
    );
    for s in cluster.signings() {
        if s.hrs.0 > HEIGHTS as i64 {
            assert!(!s.participants.contains(&3), "cosigner 3 took part: {s:?}");
        }
    }
    // What its old directory holds is worth nothing to the new shares either.
    for i in 0..3 {
        cluster.kill(i);
    }
}

/// Kills cosigner 3 at `point` of its refresh (COSIGNER_TEST_CRASH) while 1 and 2 refresh,
/// checks that its directory reports the pending refresh, runs its refresh again (or, with
/// `via_start`, `cosigner start`, which settles first), and checks that all three agree
/// (all switched if `must_switch`, else all switched or all dropped) and sign.
fn crash_then_settle(name: &str, point: &str, must_switch: bool, via_start: bool) {
    let mut cluster = Cluster::new(name, 2, 3, "v0.38");
    sign_with(&mut cluster, &[0, 1, 2], 1);
    let secrets: Vec<String> = cluster
        .cosigner_dirs
        .iter()
        .map(|d| signing_share(&share_json(d)))
        .collect();
    let mut procs = spawn_ceremony(
        &cluster.cosigner_dirs,
        &[0, 1],
        "refresh",
        REFRESH_TIMEOUT,
        &no_extra,
        cluster.log_dir(),
    );
    let mut cmd = Command::new(&bins().cosigner);
    cmd.arg("refresh")
        .arg("--config")
        .arg(cluster.config(2))
        .args(["--timeout", &REFRESH_TIMEOUT.as_secs().to_string()])
        .env("RUST_LOG", "info")
        .env("COSIGNER_TEST_CRASH", format!("{point}:1"));
    let mut crashing = Proc::spawn("refresh-3-crash", &mut cmd, cluster.log_dir());
    let status = crashing
        .wait_exit(REFRESH_EXIT)
        .expect("the crashing refresh exits");
    assert!(!status.success(), "{}", crashing.log());
    assert!(crashing.log().contains(&format!("aborting at {point}")));
    let dir3 = &cluster.cosigner_dirs[2];
    assert!(dir3.join("key_share.json.next").is_file(), "nothing staged");
    assert_eq!(
        share_json(dir3)["epoch"],
        serde_json::Value::Null,
        "switched early"
    );

    // Until settled, its directory says so, and names both ways to settle it.
    let out = Command::new(&bins().cosigner)
        .args(["check-config", "--config"])
        .arg(cluster.config(2))
        .output_bounded()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("share refresh was interrupted")
            && stderr.contains("`cosigner start` settles it")
            && stderr.contains("cosigner refresh --config"),
        "{stderr}"
    );

    // The others stage once they have its test share: if it died before they fetched it,
    // they never can, and the refresh must be dropped everywhere instead. Either outcome is
    // right as long as every cosigner ends on the same generation; the wait makes the
    // switch the usual one.
    let staged = "new share staged";
    let _ = procs
        .iter()
        .all(|(_, p)| wait_for_log(p, staged, 1, Duration::from_secs(30)));

    // Run again (`cosigner refresh`, or `cosigner start`, which settles before it signs),
    // it settles with the two still waiting.
    if via_start {
        cluster.start(2);
    } else {
        procs.extend(spawn_ceremony(
            &cluster.cosigner_dirs,
            &[2],
            "refresh",
            REFRESH_TIMEOUT,
            &no_extra,
            cluster.log_dir(),
        ));
    }
    let results = finish(procs, REFRESH_EXIT);
    let mut all_logs: String = results.iter().map(|(_, _, log)| log.as_str()).collect();
    // Hosts whose refresh ended without settling (they waited out their timeout for it).
    let mut unsettled = Vec::new();
    if via_start {
        // On a loaded host 3 may start only after the others stopped answering: after
        // their linger if they had switched, after their timeout if they still waited for
        // its staged file. Both are outcomes an operator meets, and `cosigner start` on
        // them (which signs, or settles first) is what they do next: settling needs no
        // refresh still running.
        for (i, status, log) in &results {
            if !status.success() {
                assert!(
                    log.contains("could not settle with the other cosigners"),
                    "cosigner refresh {}:\n{log}",
                    i + 1
                );
                unsettled.push(*i);
            }
        }
        eprintln!("cosigners that ended their refresh unsettled: {unsettled:?}");
        cluster.start(0);
        cluster.start(1);
        for i in 0..3 {
            assert!(
                wait_for_log(cluster.proc(i), "cosigner started", 1, REFRESH_EXIT),
                "cosigner {} never started signing:\n{}",
                i + 1,
                cluster.proc(i).log()
            );
        }
        assert!(
            cluster.proc(2).log().contains("refresh settled:"),
            "{}",
            cluster.proc(2).log()
        );
        for i in 0..3 {
            all_logs += &cluster.proc(i).log();
        }
    }
    let epochs: Vec<serde_json::Value> = cluster
        .cosigner_dirs
        .iter()
        .map(|d| share_json(d)["epoch"].clone())
        .collect();
    if epochs.iter().all(|e| *e == 1) {
        eprintln!("every cosigner switched to the new shares");
        for (i, status, log) in &results {
            assert!(
                status.success() || unsettled.contains(i),
                "cosigner refresh {}:\n{log}",
                i + 1
            );
        }
        assert_refreshed(&cluster, &[0, 1, 2], &secrets);
    } else {
        eprintln!("the refresh was dropped everywhere");
        assert!(!must_switch, "every member staged, yet:\n{all_logs}");
        assert!(
            epochs.iter().all(|e| e.is_null()),
            "the cosigners disagree ({epochs:?}):\n{all_logs}"
        );
        for (i, _, log) in &results {
            assert!(
                log.contains("Nothing was written") || log.contains("dropped the new share"),
                "cosigner refresh {}:\n{log}",
                i + 1
            );
        }
        for dir in &cluster.cosigner_dirs {
            assert!(!dir.join("key_share.json.next").exists(), "{all_logs}");
        }
    }
    if via_start {
        for i in 0..3 {
            cluster.kill(i);
        }
    }
    sign_with(&mut cluster, &[0, 2], 1 + HEIGHTS);
}

/// Killed as soon as its new share is staged: usually before the others fetched its test
/// signature share, so they can never stage and the refresh is dropped everywhere.
#[test]
fn a_cosigner_killed_after_staging_settles_and_the_cluster_signs() {
    crash_then_settle("refresh-crash-staged", "refresh-after-stage", false, false);
}

/// Killed after every member staged, before its own switch: the others switch, and so does
/// it when it starts again (`cosigner start` settles first), then it signs.
#[test]
fn a_cosigner_killed_before_its_switch_switches_when_started_again() {
    crash_then_settle("refresh-crash-switch", "refresh-before-switch", true, true);
}

#[test]
fn a_refresh_refuses_another_threshold_and_too_few_cosigners() {
    let cluster = Cluster::new("refresh-refusals", 2, 3, "v0.38");
    let run = |args: &[&str]| {
        let out = Command::new(&bins().cosigner)
            .arg("refresh")
            .arg("--config")
            .arg(cluster.config(0))
            .args(args)
            .output_bounded()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let before = std::fs::read(share_path(&cluster.cosigner_dirs[0])).unwrap();
    let err = run(&["--threshold", "3"]);
    assert!(
        err.contains("keeps the threshold (2)") && err.contains("--dkg") && err.contains("combine"),
        "{err}"
    );
    let err = run(&["--remove", "2", "--remove", "3"]);
    assert!(err.contains("fewer than the threshold 2"), "{err}");
    let err = run(&["--remove", "1"]);
    assert!(err.contains("that is this cosigner"), "{err}");
    let err = run(&["--remove", "7"]);
    assert!(err.contains("not a cosigner of this key"), "{err}");
    assert_eq!(
        std::fs::read(share_path(&cluster.cosigner_dirs[0])).unwrap(),
        before
    );
}
