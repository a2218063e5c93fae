//! `split-key --dkg` and `split-key --horcrux-pubkey`: directories without shares, loaded as
//! a ceremony would load them, and the inputs they refuse.

mod common;

use cosigner::ceremony::{CeremonyFile, CeremonyKind};
use cosigner::config::Config;
use cosigner::sign_state::{SignState, StateFile};

use common::*;

const STATE_12: &str = r#"{"height": "12", "round": 0, "step": 3}"#;

#[test]
fn dkg_directories_hold_identities_and_fresh_states_but_no_share() {
    let dir = tempfile::tempdir().unwrap();
    let out = split_key(
        dir.path(),
        &[
            "--dkg",
            "--threshold",
            "3",
            "--shares",
            "5",
            "--chain-id",
            "a-chain",
            "--chain-id",
            "b-chain",
            "--bech32-prefix",
            "cosmos",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("cosigner dkg --config"), "{stdout}");
    let mut nonces = std::collections::BTreeSet::new();
    for id in 1..=5u16 {
        let cosigner = dir.path().join(format!("cosigners/cosigner-{id}"));
        assert_eq!(
            entries(&cosigner),
            [
                "ceremony.json",
                "cosigner.toml",
                "identity.key",
                "state",
                "tls"
            ]
            .map(String::from)
            .into()
        );
        let loaded = Config::load(&cosigner.join("cosigner.toml")).unwrap();
        let th = loaded.config.threshold().unwrap();
        assert_eq!((th.id, th.threshold, th.peers.len()), (id, 3, 4));
        let file = CeremonyFile::load(&cosigner.join("ceremony.json")).unwrap();
        assert_eq!(file.kind, CeremonyKind::Dkg);
        assert_eq!((file.threshold, file.shares), (3, 5));
        assert_eq!(file.bech32_prefix.as_deref(), Some("cosmos"));
        assert_eq!(file.validator_public_key, None);
        nonces.insert(file.nonce);
        for chain in ["a-chain", "b-chain"] {
            let (_, state) = StateFile::open(&cosigner.join("state"), chain).unwrap();
            assert_eq!(state, SignState::fresh());
        }
        // The share is the ceremony's to make: loading it names the command.
        let err = loaded.load_key_share(th).unwrap_err().to_string();
        assert!(
            err.contains("cosigner dkg --config") && err.contains("key_share.json"),
            "{err}"
        );
    }
    assert_eq!(nonces.len(), 1, "one ceremony for every directory");
}

#[test]
fn horcrux_directories_name_the_key_and_only_seeded_states() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(dir.path(), "state.json", STATE_12);
    let state_arg = format!("a-chain={}", state.display());
    let key = example_public_key();
    // A Horcrux shard's pubKey: protobuf field 1, 32 bytes.
    let mut protobuf = vec![0x0a, 0x20];
    protobuf.extend_from_slice(&key);
    let shard_form = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &protobuf);
    for (i, given) in [EXAMPLE_PUB_B64.to_string(), hex::encode(key), shard_form]
        .iter()
        .enumerate()
    {
        let out_dir = format!("out-{i}");
        let out = split_key(
            dir.path(),
            &[
                "--horcrux-pubkey",
                given,
                "--threshold",
                "2",
                "--shares",
                "3",
                "--chain-id",
                "a-chain",
                "--chain-id",
                "b-chain",
                "--state",
                &state_arg,
                "--out",
                &out_dir,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(EXAMPLE_PUB_B64), "{stdout}");
        assert!(stdout.contains(EXAMPLE_ADDRESS), "{stdout}");
        assert!(stdout.contains("cosigner import-horcrux"), "{stdout}");
        let cosigner = dir.path().join(&out_dir).join("cosigner-2");
        let file = CeremonyFile::load(&cosigner.join("ceremony.json")).unwrap();
        assert_eq!(file.kind, CeremonyKind::HorcruxImport);
        assert_eq!(file.public_key().unwrap(), Some(key));
        // The seeded chain has its state; the other has none until the import brings it.
        let (_, seeded) = StateFile::open(&cosigner.join("state"), "a-chain").unwrap();
        assert_eq!(seeded.height, 12);
        assert!(StateFile::open(&cosigner.join("state"), "b-chain").is_err());
        assert!(!cosigner.join("key_share.json").exists());
    }
}

#[test]
fn ceremony_layouts_refuse_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "key.json", EXAMPLE_KEY);
    let state = write(dir.path(), "state.json", STATE_12);
    let state_arg = format!("c={}", state.display());
    let key_arg = key.to_str().unwrap();
    let base = ["--threshold", "2", "--shares", "3", "--chain-id", "c"];
    let with = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(base.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (with(&[key_arg, "--dkg"]), &["cannot be used with"]),
        (
            with(&["--dkg", "--horcrux-pubkey", EXAMPLE_PUB_B64]),
            &["cannot be used with"],
        ),
        (
            with(&[key_arg, "--horcrux-pubkey", EXAMPLE_PUB_B64]),
            &["cannot be used with"],
        ),
        // A new key has never signed: a seeded state would be a mistake.
        (
            with(&["--dkg", "--state", &state_arg]),
            &["cannot be used with"],
        ),
        (
            with(&["--horcrux-pubkey", "abc"]),
            &["--horcrux-pubkey `abc`"],
        ),
        (with(&[]), &["KEY_FILE"]),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = split_key(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        for needle in needles {
            assert!(stderr.contains(needle), "{args:?}: {stderr}");
        }
        assert!(!dir.path().join("cosigners").exists(), "{args:?}");
    }
}
