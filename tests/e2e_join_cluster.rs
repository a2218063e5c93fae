//! End to end, adding a cosigner to a running cluster: a 2-of-3 split by the real
//! `split-key` signs for `validator-sim`, `cosigner refresh --remove 3` on 1 and 2 leaves a
//! 2-of-2, the new host is enrolled as cosigner 4 and pinned by `cosigner add-peer` on both
//! members, then `cosigner refresh --add 4` on 1 and 2 with `cosigner join` on 4 makes a
//! 2-of-3 {1, 2, 4}: {1, 4} and {2, 4} sign under the original validator key, and 4's
//! watermark starts at the highest height the members signed. A member killed during the
//! repair (COSIGNER_TEST_CRASH) stops the join on every host, and 1 and 2 sign on with
//! their old shares; the new host killed right after staging settles with the members when
//! `cosigner join` runs again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use common::ceremony::{finish, spawn_ceremony};
use common::cluster::{Cluster, CHAIN};
use common::*;

/// Every host is started at once, so a healthy ceremony ends in seconds.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Its timeout, the time a host answers its peers afterwards, and slack for a loaded host.
const EXIT: Duration = Duration::from_secs(150);
/// The simulator's run per phase.
const HEIGHTS: u64 = 15;

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

/// Runs `command` on `hosts` with `extra` arguments; their exit statuses and logs.
fn ceremony(
    cluster: &Cluster,
    hosts: &[usize],
    command: &str,
    extra: &dyn Fn(usize) -> Vec<String>,
) -> Vec<(usize, ExitStatus, String)> {
    let procs = spawn_ceremony(
        &cluster.cosigner_dirs,
        hosts,
        command,
        TIMEOUT,
        extra,
        cluster.log_dir(),
    );
    finish(procs, EXIT)
}

fn all_succeed(done: &[(usize, ExitStatus, String)], what: &str) {
    for (i, status, log) in done {
        assert!(
            status.success(),
            "{what} on cosigner {} failed:\n{log}",
            i + 1
        );
    }
}

/// A member's own `--peer` line (`ID=HOST:PORT=SHA256`), as the other member pins it.
fn peer_line(pinned_by: &Path, id: u16) -> String {
    let text = std::fs::read_to_string(pinned_by.join("cosigner.toml")).expect("config");
    let config: toml::Value = toml::from_str(&text).expect("TOML");
    let peer = config["threshold"]["peer"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["id"].as_integer() == Some(i64::from(id)))
        .expect("the member is pinned");
    format!(
        "{id}={}={}",
        peer["address"].as_str().expect("address"),
        peer["cert_sha256"].as_str().expect("pin")
    )
}

/// 2-of-3 → signs → `refresh --remove 3` on 1 and 2; then cosigner 4 enrolled and pinned
/// as joining on both. Returns the cluster (4 at index 3) and the last height signed.
fn two_of_two_with_a_joining_cosigner(name: &str) -> (Cluster, u64) {
    let mut cluster = Cluster::new(name, 2, 3, "v0.38");
    sign_with(&mut cluster, &[0, 1, 2], 1);
    let remove = |_: usize| vec!["--remove".to_string(), "3".to_string()];
    all_succeed(
        &ceremony(&cluster, &[0, 1], "refresh", &remove),
        "refresh --remove 3",
    );

    let out: PathBuf = cluster.dir.path().join("cosigner-4");
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let dirs = &cluster.cosigner_dirs;
    let enrolled = Command::new(&bins().cosigner)
        .arg("enroll")
        .args(["--id", "4", "--listen", &listen, "--like"])
        .arg(dirs[0].join("cosigner.toml"))
        .args(["--peer", &peer_line(&dirs[1], 1)])
        .args(["--peer", &peer_line(&dirs[0], 2)])
        .arg("--out")
        .arg(&out)
        .output_bounded()
        .expect("run cosigner enroll");
    let said = text(&enrolled);
    assert!(enrolled.status.success(), "{said}");
    let fingerprint = said
        .lines()
        .find_map(|l| l.strip_prefix("cluster certificate SHA-256: "))
        .expect("enroll prints the fingerprint")
        .trim()
        .to_string();
    for i in [0, 1] {
        let pinned = cosigner(
            &[
                "add-peer",
                "--id",
                "4",
                "--address",
                &listen,
                "--cert-sha256",
                &fingerprint,
            ],
            &cluster.config(i),
        );
        assert!(pinned.status.success(), "{}", text(&pinned));
    }
    assert_eq!(cluster.add_cosigner(out), 3);
    (cluster, HEIGHTS)
}

fn add_four(_: usize) -> Vec<String> {
    vec!["--add".to_string(), "4".to_string()]
}

fn epoch_of(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("key_share.json")).expect("key_share.json");
    let share: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    share["epoch"].clone()
}

#[test]
fn an_added_cosigner_signs_with_each_member_from_the_members_watermark() {
    let (mut cluster, last_signed) = two_of_two_with_a_joining_cosigner("join-cluster");
    let procs_members = spawn_ceremony(
        &cluster.cosigner_dirs,
        &[0, 1],
        "refresh",
        TIMEOUT,
        &add_four,
        cluster.log_dir(),
    );
    let procs_joiner = spawn_ceremony(
        &cluster.cosigner_dirs,
        &[3],
        "join",
        TIMEOUT,
        &|_| Vec::new(),
        cluster.log_dir(),
    );
    let mut done = finish(procs_members, EXIT);
    done.extend(finish(procs_joiner, EXIT));
    all_succeed(&done, "the join");
    let key = cluster.key.public_key_base64();
    for (i, _, log) in &done {
        assert!(log.contains(&key), "cosigner {}:\n{log}", i + 1);
    }
    assert!(
        done[0].2.contains("lists cosigner 4 as a member"),
        "{}",
        done[0].2
    );
    assert!(done[2].2.contains("cosigner 4: joined"), "{}", done[2].2);

    let four = cluster.cosigner_dirs[3].clone();
    assert!(
        !four.join("ceremony.json").exists(),
        "the pending-join marker stays"
    );
    assert!(!four.join("key_share.json.next").exists());
    for i in [0, 1, 3] {
        // The removal made epoch 1, the join epoch 2.
        assert_eq!(epoch_of(&cluster.cosigner_dirs[i]), 2, "cosigner {}", i + 1);
    }
    for i in [0, 1] {
        let config = std::fs::read_to_string(cluster.config(i)).unwrap();
        let parsed: toml::Value = toml::from_str(&config).unwrap();
        let peers = parsed["threshold"]["peer"].as_array().unwrap();
        assert!(
            peers.iter().any(|p| p["id"].as_integer() == Some(4)),
            "cosigner {}: {config}",
            i + 1
        );
        assert!(parsed["threshold"].get("joining").is_none(), "{config}");
    }
    let state = cosigner::sign_state::StateFile::read(&cluster.state_dir(3), CHAIN)
        .expect("cosigner 4 has a watermark");
    assert!(
        state.height >= last_signed as i64,
        "cosigner 4's watermark {} is below the last signed height {last_signed}",
        state.height
    );

    sign_with(&mut cluster, &[0, 3], 1 + last_signed);
    sign_with(&mut cluster, &[1, 3], 1 + last_signed + HEIGHTS);
    let with_four = cluster
        .signings()
        .iter()
        .filter(|s| s.participants.contains(&4))
        .count();
    assert!(with_four > 0, "cosigner 4 never took part");
}

#[test]
fn a_member_killed_during_the_repair_leaves_the_cluster_signing_with_its_old_shares() {
    let (mut cluster, last_signed) = two_of_two_with_a_joining_cosigner("join-crash");
    let before: Vec<String> = [0, 1]
        .iter()
        .map(|&i| std::fs::read_to_string(cluster.cosigner_dirs[i].join("key_share.json")).unwrap())
        .collect();
    let short = Duration::from_secs(30);
    let mut cmd = Command::new(&bins().cosigner);
    cmd.arg("refresh")
        .arg("--config")
        .arg(cluster.config(0))
        .args(["--add", "4", "--timeout", &short.as_secs().to_string()])
        .env("RUST_LOG", "info")
        .env("COSIGNER_TEST_CRASH", "join-repair:1");
    let mut crashing = Proc::spawn("refresh-1-crash", &mut cmd, cluster.log_dir());
    let others: Vec<(usize, Proc)> = [(1usize, "refresh", add_four(1)), (3, "join", Vec::new())]
        .into_iter()
        .map(|(i, command, extra)| {
            let mut cmd = Command::new(&bins().cosigner);
            cmd.arg(command)
                .arg("--config")
                .arg(cluster.config(i))
                .args(["--timeout", &short.as_secs().to_string()])
                .args(extra)
                .env("RUST_LOG", "info");
            (
                i,
                Proc::spawn(&format!("{command}-{}", i + 1), &mut cmd, cluster.log_dir()),
            )
        })
        .collect();
    let status = crashing
        .wait_exit(EXIT)
        .expect("the crashing refresh exits");
    assert!(!status.success(), "{}", crashing.log());
    assert!(
        crashing.log().contains("aborting at join-repair"),
        "{}",
        crashing.log()
    );
    for (i, status, log) in finish(others, EXIT) {
        assert!(!status.success(), "cosigner {} went on:\n{log}", i + 1);
    }
    // Nothing changed on the members; the new host has no share.
    for (k, &i) in [0usize, 1].iter().enumerate() {
        let dir = &cluster.cosigner_dirs[i];
        assert_eq!(
            std::fs::read_to_string(dir.join("key_share.json")).unwrap(),
            before[k]
        );
        assert!(!dir.join("key_share.json.next").exists());
        assert!(!dir.join("cosigner.toml.next").exists());
    }
    assert!(!cluster.cosigner_dirs[3].join("key_share.json").exists());
    assert!(!cluster.cosigner_dirs[3]
        .join("key_share.json.next")
        .exists());
    sign_with(&mut cluster, &[0, 1], 1 + last_signed);
}

/// Ignored: on the loaded CI machine (stop 19) the join was dropped and a member still held
/// its staged share after its refresh exited (it ended unsettled), which this test does not
/// yet settle or tell apart; `cargo test --test e2e_join_cluster -- --ignored` runs it.
#[test]
#[ignore = "a member can end unsettled when the join is dropped under load; see its doc"]
fn the_new_cosigner_killed_after_staging_settles_with_the_members_when_run_again() {
    let (mut cluster, last_signed) = two_of_two_with_a_joining_cosigner("join-settle");
    let members = spawn_ceremony(
        &cluster.cosigner_dirs,
        &[0, 1],
        "refresh",
        TIMEOUT,
        &add_four,
        cluster.log_dir(),
    );
    let join = |crash: Option<&str>, name: &str| {
        let mut cmd = Command::new(&bins().cosigner);
        cmd.arg("join")
            .arg("--config")
            .arg(cluster.config(3))
            .args(["--timeout", &TIMEOUT.as_secs().to_string()])
            .env("RUST_LOG", "info");
        if let Some(point) = crash {
            cmd.env("COSIGNER_TEST_CRASH", point);
        }
        Proc::spawn(name, &mut cmd, cluster.log_dir())
    };
    let mut crashing = join(Some("join-after-stage:1"), "join-4-crash");
    let status = crashing.wait_exit(EXIT).expect("the crashing join exits");
    assert!(!status.success(), "{}", crashing.log());
    assert!(
        crashing.log().contains("aborting at join-after-stage"),
        "{}",
        crashing.log()
    );
    let four = cluster.cosigner_dirs[3].clone();
    assert!(four.join("key_share.json.next").exists(), "nothing staged");
    assert!(!four.join("key_share.json").exists());

    // Run again: it only settles, with the members still in their refresh.
    let mut again = join(None, "join-4-settle");
    let settled = again.wait_exit(EXIT).expect("the settling join exits");
    let members = finish(members, EXIT);
    let log = again.log();
    assert!(log.contains("settling an interrupted join"), "{log}");
    assert!(!four.join("key_share.json.next").exists());
    if settled.success() {
        // All switched: the members hold 4 as a member, and 1 and 4 sign.
        all_succeed(&members, "the join");
        assert!(!four.join("ceremony.json").exists());
        for i in [0, 1, 3] {
            assert_eq!(epoch_of(&cluster.cosigner_dirs[i]), 2, "cosigner {}", i + 1);
        }
        sign_with(&mut cluster, &[0, 3], 1 + last_signed);
    } else {
        // All dropped: the members keep epoch 1 and sign on without 4.
        assert!(log.contains("the join is dropped"), "{log}");
        assert!(!four.join("key_share.json").exists());
        for i in [0, 1] {
            assert_eq!(epoch_of(&cluster.cosigner_dirs[i]), 1, "cosigner {}", i + 1);
            assert!(!cluster.cosigner_dirs[i]
                .join("key_share.json.next")
                .exists());
        }
        sign_with(&mut cluster, &[0, 1], 1 + last_signed);
    }
}
