//! End to end, the commands an operator runs around `start`, with the real `split-key` and
//! `cosigner` binaries: `address` against an independent computation of every form,
//! `check-config` refusing what `start` refuses (a missing state directory, a missing state
//! file, a key share others can read, a port in use) and passing a good directory (also
//! while its cosigner runs), every error printed once, `--log-format json`, and the
//! warnings for a silent node, a node with another node ID and a cosigner of another
//! cluster.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use common::cluster::Cluster;
use common::logs::wait_for_log_line;
use common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn split(name: &str) -> Cluster {
    Cluster::new(name, 2, 3, "v0.38")
}

/// The command failed, saying each of `needles`, and its error text has no line twice.
fn refused(out: &Output, needles: &[&str]) -> String {
    let said = text(out);
    assert!(!out.status.success(), "succeeded:\n{said}");
    for needle in needles {
        assert!(said.contains(needle), "`{needle}` missing:\n{said}");
    }
    said
}

/// `text` contains `needle` exactly once.
fn once(text: &str, needle: &str) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "`{needle}` not once:\n{text}"
    );
}

fn bech32(hrp: &str, data: &[u8]) -> String {
    bech32::encode::<bech32::Bech32>(bech32::Hrp::parse(hrp).unwrap(), data).unwrap()
}

/// `address` prints what the validator key file gives when computed here, independently of
/// the cosigner's key_forms: SHA-256 address, base64, hex, and the bech32 forms (the amino
/// prefix `1624de6420` before the key for valconspub, as the Cosmos SDK's legacy bech32).
#[test]
fn address_prints_every_form_of_the_key() {
    let cluster = split("address");
    let key = cluster.key.public_key;
    let address = &Sha256::digest(key)[..20];
    let mut amino = vec![0x16, 0x24, 0xde, 0x64, 0x20];
    amino.extend_from_slice(&key);
    let valconspub = bech32("osmovalconspub", &amino);
    // Every Ed25519 valconspub starts so: the amino prefix bytes in bech32.
    assert!(
        valconspub.starts_with("osmovalconspub1zcjduepq"),
        "{valconspub}"
    );

    for i in 0..3 {
        let out = cosigner(&["address", "--bech32-prefix", "osmo"], &cluster.config(i));
        assert!(out.status.success(), "{}", text(&out));
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        for line in [
            format!("validator address:   {}", hex::encode_upper(address)),
            format!(
                "public key (base64): {}",
                base64::engine::general_purpose::STANDARD.encode(key)
            ),
            format!("public key (hex):    {}", hex::encode(key)),
            format!("valconspub:          {valconspub}"),
            format!("valcons address:     {}", bech32("osmovalcons", address)),
        ] {
            assert!(
                printed.lines().any(|l| l == line),
                "`{line}` missing:\n{printed}"
            );
        }
    }
    // Without a prefix, no bech32; a bad prefix is refused before anything is read.
    let out = cosigner(&["address"], &cluster.config(0));
    assert!(
        out.status.success() && !text(&out).contains("valcons"),
        "{}",
        text(&out)
    );
    refused(
        &cosigner(
            &["address", "--bech32-prefix", "Osmo"],
            Path::new("/nonexistent"),
        ),
        &["bech32 prefix `Osmo`"],
    );
    refused(
        &cosigner(&["address", "--key", "other"], &cluster.config(0)),
        &["no [[key]] named `other`", "leave out --key"],
    );
    // check-config shows the key the same way.
    let check = cosigner(&["check-config"], &cluster.config(0));
    assert!(
        text(&check).contains(&format!(
            "validator address:   {}",
            hex::encode_upper(address)
        )),
        "{}",
        text(&check)
    );
}

/// What `start` refuses, `check-config` refuses with the same words, each printed once; a
/// good directory passes, also while its cosigner runs (which holds its state and ports).
#[test]
fn check_config_refuses_what_start_refuses() {
    let cluster = split("check-config");
    let config = cluster.config(0);
    let out = cosigner(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).ends_with("OK\n"), "{}", text(&out));

    // A missing (or misspelt) state directory.
    let state_dir = cluster.state_dir(0);
    let moved = state_dir.with_file_name("state-moved");
    std::fs::rename(&state_dir, &moved).unwrap();
    let said = refused(
        &cosigner(&["check-config"], &config),
        &[&format!(
            "state directory {} does not exist",
            state_dir.display()
        )],
    );
    once(&said, "does not exist");
    let started = refused(&cosigner(&["start"], &config), &["does not exist"]);
    once(&started, "does not exist");
    std::fs::rename(&moved, &state_dir).unwrap();

    // A missing state file.
    let state_file = cluster.state_file(0);
    let saved = std::fs::read(&state_file).unwrap();
    std::fs::remove_file(&state_file).unwrap();
    let said = refused(
        &cosigner(&["check-config"], &config),
        &[
            &format!("no sign state at {}", state_file.display()),
            "cosigner state import",
        ],
    );
    once(&said, "no sign state at");
    std::fs::write(&state_file, &saved).unwrap();
    std::fs::set_permissions(&state_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A key share group and others can read.
    let share = cluster.cosigner_dirs[0].join("key_share.json");
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = refused(
        &cosigner(&["check-config"], &config),
        &[&share.display().to_string(), "644", "chmod 600"],
    );
    refused(&cosigner(&["start"], &config), &["644", "chmod 600"]);
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o600)).unwrap();
    once(&said, "chmod 600");

    // Its cluster port taken by another program.
    let listen = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("listen = \"")
                .map(|l| l.trim_end_matches('"').to_string())
        })
        .expect("a listen address");
    let taken = std::net::UdpSocket::bind(&listen).unwrap();
    let needle = format!("cannot listen for cluster peers on {listen}");
    let said = refused(&cosigner(&["check-config"], &config), &[&needle]);
    once(&said, "Address already in use");
    let started = refused(&cosigner(&["start"], &config), &[&needle]);
    once(&started, "Address already in use");
    drop(taken);

    // While its cosigner runs, the directory is still good: check-config says it runs.
    let mut cluster = cluster;
    cluster.start(0);
    wait_for_log_line(cluster.proc(0), "", &["threshold cosigner ready"], LIMIT);
    let out = cosigner(&["check-config"], &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("running:"), "{}", text(&out));
}

/// Each error is printed once, however many layers pass it on.
#[test]
fn errors_are_printed_once() {
    let dir = test_dir("errors-once");
    let missing = dir.path().join("missing.toml");
    let said = refused(&cosigner(&["check-config"], &missing), &["cannot read"]);
    once(&said, "No such file or directory");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "state_dir = \"state\"\nfoo = [\n").unwrap();
    for command in ["check-config", "start", "address"] {
        let said = refused(&cosigner(&[command], &bad), &["TOML parse error"]);
        once(&said, "TOML parse error");
    }
}

/// `--log-format json`: every line a cosigner logs is one JSON object with a level, a
/// timestamp and the message among its fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let cluster = split("json-logs");
    let mut cmd = Command::new(&bins().cosigner);
    cmd.args(["--log-format", "json", "start", "--config"])
        .arg(cluster.config(0))
        .env("RUST_LOG", "info");
    let p = Proc::spawn("json", &mut cmd, cluster.log_dir());
    wait_for_log_line(&p, "", &["threshold cosigner ready"], LIMIT);
    let log = p.log();
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert!(messages.iter().any(|m| m == "validator key"), "{log}");
    assert!(
        messages.iter().any(|m| m == "threshold cosigner ready"),
        "{log}"
    );
}

/// Writes a single-key signer directory serving `node`; its `cosigner.toml`.
fn init_single(dir: &Path, node: &str) -> std::path::PathBuf {
    let key = write_validator_key(dir);
    let out = dir.join("single");
    let made = Command::new(&bins().cosigner)
        .arg("init-single")
        .arg(&key.path)
        .arg("--out")
        .arg(&out)
        .args(["--chain-id", "test-chain", "--node", node])
        .output_bounded()
        .expect("run init-single");
    assert!(made.status.success(), "{}", text(&made));
    out.join("cosigner.toml")
}

/// Warnings an operator acts on, one line per cause per interval with a count: a node that
/// accepts TCP but never begins the handshake, and one that authenticates with another node
/// ID than the configured one (which redials every 200 ms).
#[test]
fn node_warnings_say_what_is_wrong_and_are_rate_limited() {
    let dir = test_dir("node-warnings");
    // Accepts TCP (the kernel's backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = init_single(dir.path(), &format!("tcp://127.0.0.1:{port}"));
    let mut cmd = Command::new(&bins().cosigner);
    cmd.args(["start", "--config"]).arg(&config);
    let p = Proc::spawn("silent", &mut cmd, dir.path());
    wait_for_log_line(
        &p,
        "",
        &["WARN", "has not begun the SecretConnection handshake"],
        LIMIT,
    );
    drop(p);

    // A node whose key is not the pinned one.
    let node_dir = test_dir("node-warnings-sim");
    let sim = Sim::start(
        node_dir.path(),
        "v0.38",
        &["--chain-id", "test-chain", "--duration", "30"],
    );
    let pinned = format!("tcp://{}@127.0.0.1:{}", "ab".repeat(20), sim.port);
    let config = init_single(node_dir.path(), &pinned);
    let mut cmd = Command::new(&bins().cosigner);
    cmd.args(["start", "--config"]).arg(&config);
    let p = Proc::spawn("pinned", &mut cmd, node_dir.path());
    let needle = format!("not the configured {}", "ab".repeat(20));
    let first = wait_for_log_line(&p, "", &["WARN", &needle], LIMIT);
    // The next line for that cause stands for the redials since, with their count.
    wait_for_log_line(&p, &first, &[&needle, "times in 5s", "count="], LIMIT);
    let lines = p.log().lines().filter(|l| l.contains(&needle)).count();
    assert!(lines <= 3, "not rate-limited:\n{}", p.log());
    drop(sim);
}

/// A cosigner of another cluster on a port where a peer is expected is named as such, on
/// both sides, and rate-limited.
#[test]
fn a_cosigner_of_another_cluster_is_named_as_such() {
    let addresses: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_udp_port()))
        .collect();
    let mut ours = Cluster::builder("cluster-ours", 2, 3)
        .cosigner_addresses(addresses.clone())
        .build()
        .unwrap();
    let mut theirs = Cluster::builder("cluster-theirs", 2, 3)
        .cosigner_addresses(addresses.clone())
        .build()
        .unwrap();
    ours.start(0);
    theirs.start(1);
    let one = ours.proc(0);
    wait_for_log_line(
        one,
        "",
        &[
            "WARN",
            &format!("from a cosigner of another cluster at {}", addresses[1]),
        ],
        LIMIT,
    );
    wait_for_log_line(
        one,
        "",
        &[
            "WARN",
            &format!(
                "the cosigner at {} is of another cluster, not peer 2",
                addresses[1]
            ),
        ],
        LIMIT,
    );
    assert!(!one.log().contains("UnknownIssuer"), "{}", one.log());
}
