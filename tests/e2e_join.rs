//! End to end, adding a cosigner: the real `cosigner enroll` on a new host's side, from the
//! directories of a real `split-key` run. (The join ceremony itself, `cosigner refresh
//! --add` and `cosigner join`, is tested in `tests/e2e_join_cluster.rs`.)

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A cosigner's id, its peers' address and pin, from its config.
fn peers_of(dir: &Path) -> (u16, Vec<(u16, String, String)>) {
    let text = std::fs::read_to_string(dir.join("cosigner.toml")).expect("read cosigner.toml");
    let config: toml::Value = toml::from_str(&text).expect("cosigner.toml is TOML");
    let th = &config["threshold"];
    let id = th["id"].as_integer().expect("id") as u16;
    let peers = th["peer"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["id"].as_integer().expect("peer id") as u16,
                p["address"].as_str().expect("address").to_string(),
                p["cert_sha256"].as_str().expect("pin").to_string(),
            )
        })
        .collect();
    (id, peers)
}

/// `cosigner enroll` for cosigner 4 with one `--peer` per line of `lines`.
fn enroll_args(listen: &str, like: &Path, lines: &[String], out: &Path, id: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["--id".into(), id.into(), "--listen".into(), listen.into()];
    args.push("--like".into());
    args.push(like.display().to_string());
    for line in lines {
        args.push("--peer".into());
        args.push(line.clone());
    }
    args.push("--out".into());
    args.push(out.display().to_string());
    args
}

fn enroll(args: &[String]) -> std::process::Output {
    Command::new(&bins().cosigner)
        .arg("enroll")
        .args(args)
        .output()
        .expect("run cosigner enroll")
}

#[test]
fn enroll_writes_a_directory_that_waits_for_its_join() {
    // A 2-of-2 {1, 2}: adding 4 makes 2-of-3 (a 2-of-3 adding a fourth would be 2-of-4,
    // which t > n/2 refuses).
    let dir = test_dir("join-enroll");
    let key = write_validator_key(dir.path());
    let dirs = split_key(
        dir.path(),
        &key.path,
        2,
        2,
        &["tcp://127.0.0.1:1".to_string()],
        &["test-chain"],
        "v0.38",
    );
    // Every member's `--peer` line: cosigner 2 as cosigner 1 pins it, and 1 as 2 does.
    let (_, mut members) = peers_of(&dirs[0]);
    let (_, of_2) = peers_of(&dirs[1]);
    members.extend(of_2);
    members.sort();
    let lines: Vec<String> = members
        .iter()
        .map(|(id, address, pin)| format!("{id}={address}={pin}"))
        .collect();
    let like = dirs[0].join("cosigner.toml");
    let out = dir.path().join("cosigner-4");
    let listen = format!("127.0.0.1:{}", free_udp_port());

    // An id a member has, and a member left out, are refused; nothing is written.
    let refused = enroll(&enroll_args(&listen, &like, &lines, &out, "2"));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("a member's id"),
        "{}",
        text(&refused)
    );
    let refused = enroll(&enroll_args(&listen, &like, &lines[..1], &out, "4"));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("exactly one --peer per member"),
        "{}",
        text(&refused)
    );
    assert!(!out.exists());

    let written = enroll(&enroll_args(&listen, &like, &lines, &out, "4"));
    let said = text(&written);
    assert!(written.status.success(), "{said}");
    let pem = std::fs::read_to_string(out.join("tls/cert.pem")).expect("certificate");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        said.contains(&format!("--id 4 --address {listen} --cert-sha256 ")),
        "{said}"
    );
    assert!(said.contains("cosigner join --config"), "{said}");
    assert!(!out.join("key_share.json").exists());
    let (id, peers) = peers_of(&out);
    assert_eq!(id, 4);
    assert_eq!(peers.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
    // The directory says what to run before it can start.
    let check = cosigner(&["check-config"], &out.join("cosigner.toml"));
    assert!(!check.status.success());
    assert!(text(&check).contains("cosigner join"), "{}", text(&check));
}
