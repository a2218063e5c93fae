//! End to end, single-key mode: the real `cosigner` binary against `validator-sim` (a node
//! built on tendermint-rs) for every protocol version, with the FilePV rules exercised over
//! the wire and across restarts.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// `cosigner init-single` for a fresh key; returns the directory and the key.
fn init_single(dir: &Path, node: &str, protocol: &str) -> (std::path::PathBuf, ValidatorKeyFile) {
    let key = write_validator_key(dir);
    let out = dir.join("single");
    let status = Command::new(&bins().cosigner)
        .arg("init-single")
        .arg(&key.path)
        .arg("--out")
        .arg(&out)
        .args([
            "--chain-id",
            "test-chain",
            "--node",
            node,
            "--protocol",
            protocol,
        ])
        .output_bounded()
        .expect("run init-single");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    (out, key)
}

fn run_protocol(protocol: &str) {
    let dir = test_dir(&format!("single-{protocol}"));
    let port = free_tcp_port();
    let node = format!("tcp://127.0.0.1:{port}");
    let (signer_dir, key) = init_single(dir.path(), &node, protocol);
    let sim = Sim::start_on(
        dir.path(),
        port,
        protocol,
        &[
            "--chain-id",
            "test-chain",
            "--heights",
            "40",
            "--nil-round-every",
            "5",
            "--conflicts",
            "3",
            "--replay",
            "--timestamp-replay",
            "--expect-pubkey",
            &key.public_key_base64(),
        ],
    );
    let cosigner = start_cosigner(&signer_dir, "cosigner", dir.path());
    let outcome = sim.outcome();
    outcome.assert_clean(&[&cosigner]);
    // Every conflicting request was refused by double-sign protection.
    assert_eq!(outcome.of_type("conflict").passed, 3, "{}", outcome.output);
    // A request differing only in timestamp got the stored signature and timestamp (FilePV).
    assert_eq!(
        outcome.report.timestamp_replay.returned_stored, 1,
        "{}",
        outcome.output
    );
}

#[test]
fn signs_v0_34() {
    run_protocol("v0.34");
}

#[test]
fn signs_v0_37() {
    run_protocol("v0.37");
}

#[test]
fn signs_v0_38_with_vote_extensions() {
    run_protocol("v0.38");
}

#[test]
fn signs_cometbft_v1() {
    run_protocol("v1");
}

#[test]
fn watermark_survives_a_restart() {
    let dir = test_dir("single-restart");
    let port = free_tcp_port();
    let node = format!("tcp://127.0.0.1:{port}");
    let (signer_dir, key) = init_single(dir.path(), &node, "v0.38");
    let pubkey = key.public_key_base64();

    let sim = Sim::start_on(
        dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            "test-chain",
            "--heights",
            "20",
            "--expect-pubkey",
            &pubkey,
        ],
    );
    let mut cosigner = start_cosigner(&signer_dir, "cosigner-1", dir.path());
    sim.outcome().assert_clean(&[&cosigner]);
    cosigner.kill();

    let show = Command::new(&bins().cosigner)
        .args(["state", "show", "--config"])
        .arg(signer_dir.join("cosigner.toml"))
        .output_bounded()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success() && shown.contains("height 20, round 0, step precommit"),
        "{shown}"
    );

    // After the restart, heights it already signed are refused as regressions...
    let cosigner = start_cosigner(&signer_dir, "cosigner-2", dir.path());
    let sim = Sim::start_on(
        dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            "test-chain",
            "--start-height",
            "5",
            "--heights",
            "3",
            "--expect-pubkey",
            &pubkey,
        ],
    );
    let outcome = sim.outcome();
    assert_eq!(
        outcome.passed(),
        3,
        "only the 3 PubKey requests: {}",
        outcome.output
    );
    assert_eq!(
        outcome.refusals_containing("regression"),
        9,
        "{}",
        outcome.output
    );
    assert_eq!(outcome.double_signs(), 0);

    // ...and it carries on above its watermark.
    let sim = Sim::start_on(
        dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            "test-chain",
            "--start-height",
            "21",
            "--heights",
            "10",
            "--expect-pubkey",
            &pubkey,
        ],
    );
    sim.outcome().assert_clean(&[&cosigner]);
}

#[test]
fn imported_state_is_respected() {
    let dir = test_dir("single-import");
    let port = free_tcp_port();
    let (signer_dir, key) = init_single(dir.path(), &format!("tcp://127.0.0.1:{port}"), "v0.38");
    // The validator signed up to height 30 with its old signer (a fresh-style state file at
    // 30/0/3 with no sign bytes).
    let state = dir.path().join("priv_validator_state.json");
    std::fs::write(&state, r#"{"height": "30", "round": 0, "step": 3}"#).unwrap();
    let import = Command::new(&bins().cosigner)
        .args(["state", "import"])
        .arg(&state)
        .arg("--config")
        .arg(signer_dir.join("cosigner.toml"))
        .args(["--chain-id", "test-chain"])
        .output_bounded()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let cosigner = start_cosigner(&signer_dir, "cosigner", dir.path());
    let sim = Sim::start_on(
        dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            "test-chain",
            "--start-height",
            "29",
            "--heights",
            "4",
            "--expect-pubkey",
            &key.public_key_base64(),
        ],
    );
    let outcome = sim.outcome();
    // Heights 29 and 30 are at or below the imported watermark: refused. 31 and 32 sign.
    assert_eq!(outcome.failed(), 6, "{}", outcome.output);
    assert_eq!(
        outcome.of_type("precommit").passed,
        2,
        "{}\n{}",
        outcome.output,
        cosigner.log()
    );
    assert_eq!(outcome.double_signs(), 0);
}

/// A broken or hostile node: after a valid SecretConnection handshake (tendermint-p2p) it
/// sends bytes no node sends. Returns whether the cosigner closed the connection on its own.
fn hostile_node_session(listener: &std::net::TcpListener, payload: &[u8], hang_up: bool) -> bool {
    use std::io::{Read, Write};
    use tendermint_p2p::secret_connection::{SecretConnection, Version};
    // Accepted on a thread, so that a cosigner that never dials fails the test in time.
    let accepting = listener.try_clone().expect("clone listener");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(accepting.accept());
    });
    let (stream, _) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the cosigner dials within 30 s")
        .expect("accept the cosigner");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let key = tendermint::crypto::ed25519::SigningKey::try_from(&seed[..]).unwrap();
    let mut conn =
        SecretConnection::new(stream, key.try_into().unwrap(), Version::V0_34).expect("handshake");
    conn.write_all(payload).unwrap();
    if hang_up {
        return true;
    }
    let mut buf = [0u8; 1024];
    matches!(conn.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn a_hostile_node_is_dropped_and_the_next_node_is_served() {
    let dir = test_dir("single-hostile");
    let port = free_tcp_port();
    let (signer_dir, key) = init_single(dir.path(), &format!("tcp://127.0.0.1:{port}"), "v0.38");
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let cosigner = start_cosigner(&signer_dir, "cosigner", dir.path());

    // Length prefixes over the node's 10 KiB limit (10241, and 20000 bytes): refused before
    // anything is allocated or read.
    assert!(hostile_node_session(&listener, &[0x81, 0x50], false));
    assert!(hostile_node_session(&listener, &[0xA0, 0x9C, 0x01], false));
    // A PingResponse where a request belongs.
    assert!(hostile_node_session(&listener, &[0x02, 0x42, 0x00], false));
    // Bytes that are not a protobuf message.
    assert!(hostile_node_session(
        &listener,
        &[0x05, 0xff, 0xff, 0xff, 0xff, 0xff],
        false
    ));
    // Half a message, then the node disconnects.
    assert!(hostile_node_session(&listener, &[0x32, 0x0a, 0x01], true));
    drop(listener);

    // Each was logged with its reason, and the cosigner still serves a real node.
    let sim = Sim::start_on(
        dir.path(),
        port,
        "v0.38",
        &[
            "--chain-id",
            "test-chain",
            "--heights",
            "10",
            "--expect-pubkey",
            &key.public_key_base64(),
        ],
    );
    sim.outcome().assert_clean(&[&cosigner]);
    let log = cosigner.log();
    for reason in [
        "exceeds the 10240-byte limit",
        "protocol violation",
        "malformed message",
    ] {
        assert!(log.contains(reason), "no `{reason}` in the log:\n{log}");
    }
}
