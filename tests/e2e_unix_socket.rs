//! End to end over a Unix socket: a node whose `priv_validator_laddr` is `unix:///PATH` (the
//! simulator listening there, without a SecretConnection, as CometBFT's Unix listener has
//! it) is served by a 2-of-3 cluster of real `cosigner` processes dialing the socket. Every
//! request is signed, verifies under the validator key, and nothing is double-signed; the
//! participants log each share they give.

mod common;

use common::*;

const CHAIN: &str = "test-chain";

#[test]
fn a_cluster_serves_a_node_on_a_unix_socket() {
    let dir = test_dir("unix-node");
    let socket = dir.path().join("privval.sock");
    let node = format!("unix://{}", socket.display());
    let key = write_validator_key(dir.path());
    let cosigners = split_key(
        dir.path(),
        &key.path,
        2,
        3,
        std::slice::from_ref(&node),
        &[CHAIN],
        "v0.38",
    );

    let check = std::process::Command::new(&bins().cosigner)
        .arg("check-config")
        .arg("--config")
        .arg(cosigners[0].join("cosigner.toml"))
        .output_bounded()
        .expect("run check-config");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(said.contains(&format!("node:          {node}")), "{said}");

    let sim = Sim::start_listen(
        &node,
        0,
        &dir.path().join("sim.json"),
        "v0.38",
        &[
            "--chain-id",
            CHAIN,
            "--heights",
            "30",
            "--expect-pubkey",
            &key.public_key_base64(),
        ],
    );
    let procs: Vec<Proc> = cosigners
        .iter()
        .enumerate()
        .map(|(i, d)| start_cosigner(d, &format!("cosigner-{}", i + 1), dir.path()))
        .collect();
    let outcome = sim.outcome();
    outcome.assert_clean(&procs.iter().collect::<Vec<_>>());
    assert!(outcome.passed() >= 60, "{}", outcome.output);

    // The participants gave shares, and said so per share at info with what it was for
    // and for whom.
    let line = procs
        .iter()
        .flat_map(|p| p.log().lines().map(str::to_string).collect::<Vec<_>>())
        .find(|l| l.contains("gave share"))
        .expect("a participant logs the shares it gives");
    for field in [" INFO ", "chain=test-chain", "height=", "round=", "step="] {
        assert!(line.contains(field), "`{field}` missing: {line}");
    }
    let coordinator: usize = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("coordinator="))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no coordinator: {line}"));
    // That coordinator served the node through its socket and signed.
    let log = procs[coordinator - 1].log();
    assert!(
        log.contains("connected to node (Unix socket") && log.contains(" signed chain="),
        "{log}"
    );
}
