//! End to end, key ceremonies: real `split-key` and `cosigner dkg` / `cosigner
//! import-horcrux` processes on loopback make the shares, then the cluster signs for
//! `validator-sim`, which verifies every signature under the expected key.
//!
//! The Horcrux shards are dealt here as Horcrux deals them (unit410/threshold-ed25519's
//! `DealShares(ExpandSecret(seed))`, written from its description, not with our dealer) and
//! written in Horcrux's file formats; each host's import sees only its own Horcrux home.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use curve25519_dalek::scalar::Scalar;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};

use common::ceremony::{file_names, finish, printed_key, spawn_ceremony, split_for_ceremony};
use common::cluster::{Cluster, CHAIN};
use common::*;

/// Every host of a ceremony is started at once, so a healthy one ends in seconds.
const CEREMONY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a ceremony process may take to exit: its timeout, the time it answers its
/// peers afterwards, and slack for a loaded machine.
const CEREMONY_EXIT: Duration = Duration::from_secs(120);

fn no_extra(_: usize) -> Vec<String> {
    Vec::new()
}

/// Runs `cosigner dkg` on every host of a fresh `t`-of-`n` layout, checks that every host
/// printed the same key, and returns the cluster fixture expecting that key.
fn dkg_cluster(name: &str, t: u16, n: u16) -> Cluster {
    let dir = test_dir(name);
    let node_port = free_tcp_port();
    let dirs = split_for_ceremony(dir.path(), &["--dkg"], t, n, node_port, &[]);
    let hosts: Vec<usize> = (0..usize::from(n)).collect();
    let procs = spawn_ceremony(
        &dirs,
        &hosts,
        "dkg",
        CEREMONY_TIMEOUT,
        &no_extra,
        dir.path(),
    );
    let results = finish(procs, CEREMONY_EXIT);
    let mut keys = Vec::new();
    for (i, status, log) in &results {
        assert!(status.success(), "cosigner dkg {} failed:\n{log}", i + 1);
        assert!(log.contains("DKG complete"), "{log}");
        keys.push(printed_key(log).unwrap_or_else(|| panic!("no key printed:\n{log}")));
        assert!(dirs[*i].join("key_share.json").is_file());
    }
    assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
    let public_key: [u8; 32] = BASE64.decode(&keys[0]).unwrap().try_into().unwrap();
    Cluster::adopt(dir, dirs, public_key, node_port, "v0.38")
}

fn signs_under_the_printed_key(mut cluster: Cluster) {
    let sim = cluster.sim(&["--heights", "40"]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    outcome.assert_key(&cluster.key.public_key_base64());
}

#[test]
fn a_two_of_three_dkg_key_signs() {
    signs_under_the_printed_key(dkg_cluster("dkg-2of3", 2, 3));
}

#[test]
fn a_three_of_five_dkg_key_signs() {
    signs_under_the_printed_key(dkg_cluster("dkg-3of5", 3, 5));
}

#[test]
fn a_dkg_with_a_host_down_fails_on_every_host_naming_it_and_writes_nothing() {
    let dir = test_dir("dkg-down");
    let dirs = split_for_ceremony(dir.path(), &["--dkg"], 2, 3, free_tcp_port(), &[]);
    let before: Vec<Vec<String>> = dirs.iter().map(|d| file_names(d)).collect();
    let timeout = Duration::from_secs(6);
    let procs = spawn_ceremony(&dirs, &[0, 1], "dkg", timeout, &no_extra, dir.path());
    let results = finish(procs, CEREMONY_EXIT);
    for (i, status, log) in &results {
        assert!(
            !status.success(),
            "cosigner dkg {} succeeded:\n{log}",
            i + 1
        );
        assert!(
            log.contains("timed out after 6s")
                && log.contains("cosigner 3 at 127.0.0.1:")
                && log.contains("never reached")
                && log.contains("Nothing was written"),
            "cosigner dkg {}:\n{log}",
            i + 1
        );
        assert_eq!(
            file_names(&dirs[*i]),
            before[*i],
            "cosigner {} wrote",
            i + 1
        );
    }
    // The directory still waits for its DKG, and says so.
    let out = Command::new(&bins().cosigner)
        .args(["start", "--config"])
        .arg(dirs[0].join("cosigner.toml"))
        .output_bounded()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no key share yet") && stderr.contains("cosigner dkg --config"),
        "{stderr}"
    );
}

// --- Horcrux -------------------------------------------------------------------------------

/// Shards as unit410/threshold-ed25519 `DealShares(ExpandSecret(seed), t, n)` makes them:
/// the secret is SHA-512(seed)[0..32] clamped (not reduced), read little-endian; the other
/// t - 1 coefficients are uniform below l; share i (1-based) is the polynomial at x = i by
/// Horner's rule mod l, written as 32 little-endian bytes. (Integer arithmetic mod l is the
/// scalar field's arithmetic, so curve25519's `Scalar` computes exactly what big.Int does.)
fn deal_like_horcrux(seed: &[u8; 32], t: u16, n: u16) -> Vec<[u8; 32]> {
    let digest = Sha512::digest(seed);
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&digest[..32]);
    secret[0] &= 248;
    secret[31] &= 127;
    secret[31] |= 64;
    let mut coefficients = vec![Scalar::from_bytes_mod_order(secret)];
    for _ in 1..t {
        let mut wide = [0u8; 64];
        OsRng.fill_bytes(&mut wide);
        coefficients.push(Scalar::from_bytes_mod_order_wide(&wide));
    }
    (1..=u64::from(n))
        .map(|x| {
            let mut share = coefficients[usize::from(t) - 1];
            for c in coefficients[..usize::from(t) - 1].iter().rev() {
                share = share * Scalar::from(x) + c;
            }
            share.to_bytes()
        })
        .collect()
}

/// `<chain-id>_shard.json` as Horcrux's `json.Marshal(CosignerEd25519Key)` writes it:
/// `pubKey` the protobuf `PublicKey{ed25519}` bytes, every `[]byte` padded base64.
fn shard_json(public_key: &[u8; 32], share: &[u8; 32], id: u16) -> String {
    let mut protobuf = vec![0x0a, 0x20];
    protobuf.extend_from_slice(public_key);
    format!(
        r#"{{"pubKey":"{}","privateShard":"{}","id":{id}}}"#,
        BASE64.encode(&protobuf),
        BASE64.encode(share)
    )
}

/// A Horcrux `SignState` as CometBFT's `libs/json` writes it (int64 as strings), with the
/// sign bytes of a vote at `height`/`round`/`step` if `signed`.
fn horcrux_state(height: i64, round: i64, step: u8, signed: bool) -> String {
    let signbytes = match signed {
        false => String::new(),
        true => {
            let step = match step {
                2 => cosigner::consensus::Step::Prevote,
                _ => cosigner::consensus::Step::Precommit,
            };
            let block = cosigner::consensus::BlockId {
                hash: vec![7; 32],
                part_set_total: 1,
                part_set_hash: vec![8; 32],
            };
            let bytes = cosigner::consensus::canonical::vote_bytes(
                CHAIN,
                cosigner::consensus::Hrs {
                    height,
                    round,
                    step,
                },
                Some(&block),
                cosigner::consensus::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                },
            );
            format!(
                ",\n  \"signature\": \"{}\",\n  \"signbytes\": \"{}\"",
                BASE64.encode([9u8; 64]),
                hex::encode_upper(bytes)
            )
        }
    };
    format!(
        "{{\n  \"height\": \"{height}\",\n  \"round\": \"{round}\",\n  \"step\": {step},\n  \
         \"nonce_public\": null{signbytes}\n}}"
    )
}

/// One Horcrux host's home: its shard and the state files it has, `(file suffix, json)`.
fn horcrux_home(root: &Path, id: u16, shard: &str, states: &[(&str, String)]) -> PathBuf {
    let home = root.join(format!("horcrux-{id}"));
    std::fs::create_dir_all(home.join("state")).unwrap();
    std::fs::write(home.join(format!("{CHAIN}_shard.json")), shard).unwrap();
    for (suffix, json) in states {
        std::fs::write(home.join("state").join(format!("{CHAIN}_{suffix}")), json).unwrap();
    }
    home
}

#[test]
fn a_horcrux_cluster_imports_its_shards_and_signs_under_the_original_key() {
    let dir = test_dir("horcrux-import");
    let key = write_validator_key(dir.path());
    let seed: [u8; 32] = {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&key.path).unwrap()).unwrap();
        let private = BASE64
            .decode(json["priv_key"]["value"].as_str().unwrap())
            .unwrap();
        private[..32].try_into().unwrap()
    };
    let shards = deal_like_horcrux(&seed, 2, 3);
    // Each host's Horcrux state: host 1's cluster state is above its own; host 2 signed
    // higher itself; host 3's is below the state every cosigner is seeded with at split.
    const SHARE: &str = "share_sign_state.json";
    const CLUSTER: &str = "priv_validator_state.json";
    let homes: Vec<PathBuf> = [
        vec![
            (SHARE, horcrux_state(7, 0, 3, true)),
            (CLUSTER, horcrux_state(8, 0, 2, false)),
        ],
        vec![
            (SHARE, horcrux_state(8, 1, 2, true)),
            (CLUSTER, horcrux_state(8, 0, 3, true)),
        ],
        vec![(SHARE, horcrux_state(4, 0, 3, true))],
    ]
    .iter()
    .zip(1u16..)
    .map(|(states, id)| {
        let shard = shard_json(&key.public_key, &shards[usize::from(id) - 1], id);
        horcrux_home(dir.path(), id, &shard, states)
    })
    .collect();
    let seeded = dir.path().join("seed_state.json");
    std::fs::write(&seeded, r#"{"height": "5", "round": 0, "step": 3}"#).unwrap();
    let node_port = free_tcp_port();
    let pubkey = key.public_key_base64();
    let state_arg = format!("{CHAIN}={}", seeded.display());
    let dirs = split_for_ceremony(
        dir.path(),
        &["--horcrux-pubkey", &pubkey],
        2,
        3,
        node_port,
        &["--state", &state_arg],
    );
    let extra = |i: usize| vec!["--horcrux-home".to_string(), homes[i].display().to_string()];
    let procs = spawn_ceremony(
        &dirs,
        &[0, 1, 2],
        "import-horcrux",
        CEREMONY_TIMEOUT,
        &extra,
        dir.path(),
    );
    for (i, status, log) in finish(procs, CEREMONY_EXIT) {
        assert!(status.success(), "import-horcrux {} failed:\n{log}", i + 1);
        assert!(log.contains("Horcrux import complete"), "{log}");
        assert_eq!(printed_key(&log).as_deref(), Some(pubkey.as_str()), "{log}");
    }
    // The watermarks: the higher Horcrux state, never below what the directory had.
    for (i, want) in [
        "height 8, round 0, step prevote",
        "height 8, round 1, step prevote",
        "height 5, round 0, step precommit",
    ]
    .iter()
    .enumerate()
    {
        let out = Command::new(&bins().cosigner)
            .args(["state", "show", "--config"])
            .arg(dirs[i].join("cosigner.toml"))
            .output_bounded()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains(want), "cosigner {}: {shown}", i + 1);
    }
    let mut cluster = Cluster::adopt(dir, dirs, key.public_key, node_port, "v0.38");
    let sim = cluster.sim(&["--start-height", "9", "--heights", "30"]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    outcome.assert_key(&pubkey);
}
