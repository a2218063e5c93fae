//! End to end, what an operator's slips do: a running cosigner's state file deleted or
//! overwritten by an older copy, a state file missing at start, a config from before state
//! files came with the directory, and secret files others can read. Real `split-key`,
//! `cosigner` and `validator-sim` processes on loopback.
//!
//! The claims under test: a cosigner whose state file is no longer the one it opened refuses
//! at its next write, says why naming the file, gives way as for a failing disk, and the
//! others sign on with no failed request and no double sign; a cosigner never starts without
//! its state file or with a loose secret, and every refusal names the file and what to do.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::{Cluster, CHAIN};
use common::logs::*;
use common::*;

const PROTOCOL: &str = "v0.38";
/// Ample for every wait below; a healthy run needs a fraction of it.
const LIMIT: Duration = Duration::from_secs(20);
const GAVE_WAY_FOR_GOOD: &str = "giving way for good";

/// A 2-of-3 loopback cluster serving one simulated node.
fn split(name: &str) -> Cluster {
    Cluster::new(name, 2, 3, PROTOCOL)
}

/// A simulator for `heights` heights, 10 ms apart.
fn sim(cluster: &Cluster, heights: u64) -> Sim {
    let heights = heights.to_string();
    cluster.sim(&["--heights", &heights, "--block-time-ms", "10"])
}

/// Starts cosigner `i` and waits for it to exit, which it must, unsuccessfully; its log.
fn start_and_fail(cluster: &Cluster, i: usize) -> String {
    let mut p = cluster.spawn(i);
    let status = p.wait_exit(LIMIT).expect("the cosigner must exit");
    let log = p.log();
    assert!(!status.success(), "{log}");
    log
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Waits until `proc` refuses because its state file is no longer the one it opened (`what`
/// happened to it) and gives way for good, both naming the file; when it first refused and
/// when it gave way. The first write to meet the file may be a share's (logged as a
/// `kind=Storage` refusal) or that of a watermark raised by a signature the cluster made
/// without it; either way it gives way saying why.
fn wait_for_refusal(proc: &Proc, state_file: &str, what: &str) -> (String, String) {
    let refused_at = wait_for_log_line(proc, "", &[state_file, what], LIMIT);
    let gave_way_at = wait_for_log_line(proc, "", &[GAVE_WAY_FOR_GOOD, state_file, what], LIMIT);
    // Every share it refused from then on was refused for its storage.
    for line in proc.log().lines() {
        if line.contains("refused to sign") && timestamp(line) >= refused_at.as_str() {
            assert!(line.contains("kind=Storage"), "{line}");
        }
    }
    (refused_at, gave_way_at)
}

/// The cosigner serving the node and the peer it signed with last (0-based indices).
fn coordinator_and_peer(procs: &[Proc]) -> (usize, usize) {
    let coordinator = connected_cosigner(procs).expect("a cosigner serves the node");
    let last = signings(&procs[coordinator].log())
        .pop()
        .expect("the coordinator has signed");
    let peer = last
        .participants
        .iter()
        .map(|id| id - 1)
        .find(|&i| i != coordinator)
        .expect("a signing has a second participant");
    (coordinator, peer)
}

/// The state file of the cosigner serving the node is deleted while it signs: its next
/// write refuses (the watermark would go into a file no restart reads), it gives way for
/// good, and the others sign every request. A restart then stops at the missing file.
#[test]
fn a_deleted_state_file_is_refused_at_the_next_write_and_the_others_sign_on() {
    let split = split("deleted-state");
    let mut sim = sim(&split, 60);
    let mut procs = split.spawn_all();
    sim.wait_for_height(5);
    let victim = connected_cosigner(&procs).expect("a cosigner serves the node");
    let state_file = split.state_file(victim);
    let named = state_file.display().to_string();

    std::fs::remove_file(&state_file).expect("delete the state file");
    let (refused_at, gave_way_at) =
        wait_for_refusal(&procs[victim], &named, "was deleted or moved away");
    wait_for_log_line(&procs[victim], &gave_way_at, &["not dialing"], LIMIT);
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    eprintln!(
        "cosigner {} (coordinator) lost its state file; refused at {refused_at}, gave way at \
         {gave_way_at}; node connections accepted {}",
        victim + 1,
        outcome.connections_accepted()
    );
    split.signed_on_without(victim, &refused_at, "its state file was lost");
    // It did not quietly create a new file, and it took no node after giving way.
    assert!(!state_file.exists());
    let log = procs[victim].log();
    assert!(
        !log.lines()
            .any(|l| l.contains("connected to node") && timestamp(l) > gave_way_at.as_str()),
        "{log}"
    );

    // Restarted, it does not start without the file.
    procs[victim].kill();
    let log = start_and_fail(&split, victim);
    assert!(
        log.contains(&format!("no sign state at {named}")) && log.contains("cosigner state init"),
        "{log}"
    );
}

/// An older copy of a participant's state file is copied over it while it signs (`cp`
/// writes in place, keeping the inode the cosigner has open): its next write refuses, it
/// gives way, the others sign on, and the copy is left as the operator put it.
#[test]
fn a_state_file_overwritten_by_an_older_copy_is_refused_and_the_others_sign_on() {
    let split = split("replaced-state");
    let mut sim = sim(&split, 60);
    let procs = split.spawn_all();
    sim.wait_for_height(3);
    let (coordinator, victim) = coordinator_and_peer(&procs);
    let other = 3 - coordinator - victim;
    let state_file = split.state_file(victim);
    let named = state_file.display().to_string();
    let backup = std::fs::read(&state_file).expect("back up the state file");

    // The third cosigner hangs (SIGSTOP), so that every signing needs the victim: its
    // watermark moves on past the backup, and the next request meets the old copy.
    procs[other].signal("STOP");
    sim.wait_for_height(6);
    assert_ne!(
        std::fs::read(&state_file).expect("read the state file"),
        backup,
        "the victim's watermark did not move on"
    );
    std::fs::write(&state_file, &backup).expect("copy the backup over the state file");
    let (refused_at, _) = wait_for_refusal(&procs[victim], &named, "replaced or overwritten");
    procs[other].signal("CONT");
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    eprintln!(
        "cosigner {} (participant) had its state file overwritten; refused at {refused_at}",
        victim + 1
    );
    split.signed_on_without(victim, &refused_at, "its state file was lost");
    assert_eq!(
        std::fs::read(&state_file).expect("read the state file"),
        backup,
        "the cosigner wrote into the copy the operator put in place"
    );
}

/// A state file missing at start stops the start (and `check-config`) with the file and the
/// commands that recreate it; `state init` creates a missing one, and refuses an existing
/// one (or a chain that is not configured) without touching anything.
#[test]
fn a_missing_state_file_stops_the_start_and_state_init_creates_only_a_missing_one() {
    let split = split("missing-state");
    let config = split.config(0);
    let state_file = split.state_file(0);
    std::fs::remove_file(&state_file).expect("remove the state file");

    let log = start_and_fail(&split, 0);
    let out = cosigner(&["check-config"], &config);
    assert!(!out.status.success(), "{}", text(&out));
    let init = format!(
        "cosigner state init --config {} --chain-id {CHAIN}",
        config.display()
    );
    for said in [log, text(&out)] {
        for needle in [
            format!("no sign state at {}", state_file.display()),
            init.clone(),
            format!(
                "cosigner state import PRIV_VALIDATOR_STATE_JSON --config {}",
                config.display()
            ),
        ] {
            assert!(said.contains(&needle), "`{needle}` missing:\n{said}");
        }
    }

    let out = cosigner(&["state", "init", "--chain-id", "other-chain"], &config);
    assert!(!out.status.success() && text(&out).contains("`other-chain` is not configured"));
    let out = cosigner(&["state", "init", "--chain-id", CHAIN], &config);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("created {}", state_file.display()))
            && said.contains("only for a key that never signed"),
        "{said}"
    );
    let out = cosigner(&["state", "show"], &config);
    assert!(text(&out).contains("nothing signed yet"), "{}", text(&out));
    let created = std::fs::read(&state_file).expect("read the new state file");
    assert_eq!(
        std::fs::metadata(&state_file)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A second `state init` refuses and leaves the file alone.
    let out = cosigner(&["state", "init", "--chain-id", CHAIN], &config);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} already exists", state_file.display()))
            && text(&out).contains("cosigner state import"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(&state_file).expect("read"), created);

    // Now it starts.
    let p = split.spawn(0);
    wait_for_log_line(&p, "", &["threshold cosigner ready"], LIMIT);
    let out = cosigner(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out));
}

/// A config written before state files came with the directory still has
/// `allow_fresh_state`: `start` and `check-config` refuse it naming the file and the key and
/// saying what to do, instead of the parser's bare "unknown field".
#[test]
fn an_old_config_with_allow_fresh_state_says_what_to_do() {
    let split = split("old-config");
    let config = split.config(0);
    let toml = std::fs::read_to_string(&config).expect("read config");
    let old = toml.replace(
        &format!("id = \"{CHAIN}\""),
        &format!("id = \"{CHAIN}\"\nallow_fresh_state = true"),
    );
    assert_ne!(old, toml);
    std::fs::write(&config, old).expect("write config");

    let log = start_and_fail(&split, 0);
    let out = cosigner(&["check-config"], &config);
    assert!(!out.status.success());
    for said in [log, text(&out)] {
        for needle in [
            config.display().to_string(),
            "chain[0].allow_fresh_state".to_string(),
            "is no longer a setting: remove it".to_string(),
            "written when the cosigner directory is made".to_string(),
            format!(
                "cosigner state init --config {} --chain-id ID",
                config.display()
            ),
            "cosigner state import".to_string(),
        ] {
            assert!(said.contains(&needle), "`{needle}` missing:\n{said}");
        }
        assert!(!said.contains("unknown field"), "{said}");
    }
}

/// A key share, identity key or TLS key that group or others can read is refused by `start`
/// and `check-config` with the file, its mode and the chmod to run; so is a single-key
/// signer's key file. Directories as written pass.
#[test]
fn loose_secret_files_are_refused_by_start_and_check_config() {
    let split = split("loose-secrets");
    let config = split.config(0);
    let out = cosigner(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out));
    let refused = |file: &Path| {
        chmod(file, 0o644);
        let expect = [
            format!("{}: mode 0644", file.display()),
            format!("chmod 600 {}", file.display()),
        ];
        let out = cosigner(&["check-config"], &config);
        assert!(!out.status.success(), "{}", text(&out));
        let log = start_and_fail(&split, 0);
        for said in [text(&out), log] {
            for needle in &expect {
                assert!(said.contains(needle), "`{needle}` missing:\n{said}");
            }
        }
        chmod(file, 0o600);
    };
    let dir = &split.cosigner_dirs[0];
    for file in ["key_share.json", "identity.key", "tls/key.pem"] {
        refused(&dir.join(file));
    }
    let out = cosigner(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out));

    // Single-key mode: the whole key. init-single reads the old signer's file whatever its
    // mode (it is only imported) and keeps a private copy.
    let old_signer = split.dir.path().join("old-signer");
    std::fs::create_dir(&old_signer).expect("mkdir");
    let key = write_validator_key(&old_signer);
    chmod(&key.path, 0o644);
    let single = split.dir.path().join("single");
    let out = Command::new(&bins().cosigner)
        .arg("init-single")
        .arg(&key.path)
        .arg("--out")
        .arg(&single)
        .args(["--chain-id", CHAIN])
        .output_bounded()
        .expect("run init-single");
    assert!(out.status.success(), "{}", text(&out));
    let kept = single.join("priv_validator_key.json");
    assert_eq!(
        std::fs::metadata(&kept).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    let single_config = single.join("cosigner.toml");
    assert!(cosigner(&["check-config"], &single_config).status.success());
    chmod(&kept, 0o640);
    let out = cosigner(&["check-config"], &single_config);
    assert!(!out.status.success());
    let mut p = Proc::spawn(
        "single",
        Command::new(&bins().cosigner)
            .args(["start", "--config"])
            .arg(&single_config),
        split.dir.path(),
    );
    let status = p.wait_exit(LIMIT).expect("the signer must exit");
    assert!(!status.success());
    for said in [text(&out), p.log()] {
        assert!(
            said.contains(&format!("{}: mode 0640", kept.display()))
                && said.contains(&format!("chmod 600 {}", kept.display())),
            "{said}"
        );
    }
}

/// `split-key` writes every chain's state file (empty, or seeded with `--state`) into every
/// directory, private like the rest, and the cluster starts and signs with no extra step.
#[test]
fn split_key_output_holds_every_chain_state_and_signs_with_no_extra_step() {
    let dir = test_dir("split-states");
    let key = write_validator_key(dir.path());
    let port = free_tcp_port();
    let seeded = dir.path().join("priv_validator_state.json");
    std::fs::write(&seeded, r#"{"height": "12", "round": 0, "step": 3}"#).expect("write state");
    let out_dir = dir.path().join("cosigners");
    let mut cmd = Command::new(&bins().split_key);
    cmd.arg(&key.path)
        .args(["--threshold", "2", "--shares", "3", "--protocol", PROTOCOL])
        .arg("--out")
        .arg(&out_dir)
        .args(["--node", &format!("tcp://127.0.0.1:{port}")])
        .args(["--chain-id", CHAIN, "--chain-id", "seeded-chain"])
        .arg("--state")
        .arg(format!("seeded-chain={}", seeded.display()));
    for _ in 0..3 {
        cmd.args(["--cosigner", &format!("127.0.0.1:{}", free_udp_port())]);
    }
    let out = cmd.output_bounded().expect("run split-key");
    assert!(out.status.success(), "{}", text(&out));
    let cosigners: Vec<PathBuf> = (1..=3)
        .map(|i| out_dir.join(format!("cosigner-{i}")))
        .collect();
    for c in &cosigners {
        let state = c.join("state");
        let mut names: Vec<String> = std::fs::read_dir(&state)
            .expect("state dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["seeded-chain.state", "test-chain.state"]);
        for name in &names {
            let mode = std::fs::metadata(state.join(name))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        let config = c.join("cosigner.toml");
        let checked = cosigner(&["check-config"], &config);
        assert!(checked.status.success(), "{}", text(&checked));
        let shown = text(&cosigner(&["state", "show"], &config));
        assert!(
            shown.contains(&format!("{CHAIN}: nothing signed yet"))
                && shown.contains("seeded-chain: watermark: height 12, round 0, step precommit"),
            "{shown}"
        );
    }

    let procs: Vec<Proc> = cosigners
        .iter()
        .enumerate()
        .map(|(i, c)| start_cosigner(c, &format!("cosigner-{}", i + 1), dir.path()))
        .collect();
    let pubkey = key.public_key_base64();
    let sim = Sim::start_on(
        dir.path(),
        port,
        PROTOCOL,
        &[
            "--chain-id",
            CHAIN,
            "--heights",
            "20",
            "--expect-pubkey",
            &pubkey,
        ],
    );
    sim.outcome()
        .assert_clean(&procs.iter().collect::<Vec<_>>());
}
