//! `split-key combine` with the real binary: keys split by `split-key` come back byte for
//! byte from every t-subset of their directories, with their sign state; every kind of bad
//! input is refused with a message naming the problem, and nothing is written.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use common::*;

/// The documented example state (privval-protocol.md §(d)), as FilePV lays it out: the
/// example key's precommit at height 12 on `example-chain`.
const EXAMPLE_STATE: &str = r#"{
  "height": "12",
  "round": 0,
  "step": 3,
  "signature": "x+gVhxA8uarmtRlu1nMV+C/61NCeZguurvmjeC0uxMLVztp7zHigLGLNxi4KFK2dXsWYEPqQQhSWE8EtCosTBA==",
  "signbytes": "710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E"
}"#;

const WARNING: &str = "WARNING: THE VALIDATOR KEY NOW EXISTS WHOLE";

/// `priv_validator_key.json` exactly as CometBFT writes it (`cmtjson.MarshalIndent`, two
/// spaces, no trailing newline).
fn cometbft_key_file(key: &ed25519_dalek::SigningKey) -> String {
    let public = key.verifying_key().to_bytes();
    let mut private = key.to_bytes().to_vec();
    private.extend_from_slice(&public);
    format!(
        "{{\n  \"address\": \"{}\",\n  \"pub_key\": {{\n    \"type\": \"tendermint/PubKeyEd25519\",\n    \"value\": \"{}\"\n  }},\n  \"priv_key\": {{\n    \"type\": \"tendermint/PrivKeyEd25519\",\n    \"value\": \"{}\"\n  }}\n}}",
        hex::encode_upper(&Sha256::digest(public)[..20]),
        BASE64.encode(public),
        BASE64.encode(&private)
    )
}

fn example_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(
        &Sha256::digest(b"made-up example key -- do not use").into(),
    )
}

/// A key file and its split into `cosigners/` under a fresh directory.
struct Split {
    dir: tempfile::TempDir,
    original: String,
}

impl Split {
    fn new(key_text: &str, t: u16, n: u16, extra: &[&str]) -> Split {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "priv_validator_key.json", key_text);
        // For `--state example-chain=state.json`.
        write(dir.path(), "state.json", EXAMPLE_STATE);
        let (t_arg, n_arg) = (t.to_string(), n.to_string());
        let mut args = vec![
            "priv_validator_key.json",
            "--threshold",
            &t_arg,
            "--shares",
            &n_arg,
            "--out",
            "cosigners",
        ];
        args.extend_from_slice(extra);
        let out = split_key(dir.path(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Split {
            dir,
            original: key_text.to_string(),
        }
    }

    fn cosigner(&self, id: u16) -> String {
        format!("cosigners/cosigner-{id}")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Runs `split-key combine` on cosigners `ids` into `out`.
    fn combine(&self, ids: &[u16], out: &str, extra: &[&str]) -> std::process::Output {
        let dirs: Vec<String> = ids.iter().map(|&id| self.cosigner(id)).collect();
        let mut args = vec!["combine"];
        args.extend(dirs.iter().map(String::as_str));
        args.extend_from_slice(&["--out", out]);
        args.extend_from_slice(extra);
        split_key(self.dir.path(), &args)
    }

    /// Every file of every cosigner directory, to show a refused combine changed none.
    fn snapshot(&self) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        let mut files = BTreeMap::new();
        collect(&self.path("cosigners"), &mut files);
        files
    }

    /// Asserts that combining `ids` fails naming every `needles`, and writes nothing.
    fn refused(&self, ids: &[u16], extra: &[&str], needles: &[&str]) -> String {
        let dirs: Vec<String> = ids.iter().map(|&id| self.cosigner(id)).collect();
        let mut args = vec!["combine"];
        args.extend(dirs.iter().map(String::as_str));
        args.extend_from_slice(&["--out", "combined"]);
        args.extend_from_slice(extra);
        let before = self.snapshot();
        let stderr = assert_refused(self.dir.path(), self.dir.path(), &args, needles);
        assert_eq!(self.snapshot(), before, "a cosigner directory was changed");
        stderr
    }

    /// Edits cosigner `id`'s share file as JSON (its mode stays 0600).
    fn edit_share(&self, id: u16, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = self.path(&format!("{}/key_share.json", self.cosigner(id)));
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}

fn collect(dir: &Path, files: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.insert(path.clone(), (std::fs::read(&path).unwrap(), mode(&path)));
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn subsets(n: u16, k: usize) -> Vec<Vec<u16>> {
    fn go(start: u16, n: u16, k: usize, current: &mut Vec<u16>, out: &mut Vec<Vec<u16>>) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for i in start..=n {
            current.push(i);
            go(i + 1, n, k, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    go(1, n, k, &mut Vec::new(), &mut out);
    out
}

/// Checks a successful combine into `out`: the listed files, private modes, the warning.
fn assert_combined(split: &Split, output: &std::process::Output, out: &str, files: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = split.path(out);
    assert_eq!(entries(&out), files.iter().map(|f| f.to_string()).collect());
    assert_eq!(mode(&out), 0o700);
    for f in files {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    if files.contains(&"priv_validator_key.json") {
        assert!(stdout.contains(WARNING), "{stdout}");
        assert!(
            stdout.contains("Never run the cluster and the single key"),
            "{stdout}"
        );
    }
}

#[test]
fn the_test_key_file_is_laid_out_as_cometbft_writes_it() {
    // Anchors the layout the round trips compare against to the documented example.
    assert_eq!(cometbft_key_file(&example_key()), EXAMPLE_KEY.trim_end());
}

#[test]
fn every_pair_of_a_2_of_3_split_gives_back_the_key_and_its_state() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &[
            "--chain-id",
            "example-chain",
            "--state",
            "example-chain=state.json",
        ],
    );
    for ids in subsets(3, 2).into_iter().chain([vec![1, 2, 3], vec![3, 1]]) {
        let out = format!(
            "combined-{}",
            ids.iter().map(u16::to_string).collect::<String>()
        );
        let output = split.combine(&ids, &out, &[]);
        assert_combined(
            &split,
            &output,
            &out,
            &["priv_validator_key.json", "priv_validator_state.json"],
        );
        let key =
            std::fs::read_to_string(split.path(&format!("{out}/priv_validator_key.json"))).unwrap();
        assert_eq!(key, split.original, "cosigners {ids:?}");
        // The state the split was seeded with, signature included, byte for byte: it
        // verifies under the key, so FilePV may answer a repeat of it.
        let state =
            std::fs::read_to_string(split.path(&format!("{out}/priv_validator_state.json")))
                .unwrap();
        assert_eq!(state, EXAMPLE_STATE, "cosigners {ids:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("height 12, round 0, step precommit"),
            "{stdout}"
        );
        assert!(stdout.contains("with the sign bytes"), "{stdout}");
    }
}

#[test]
fn every_triple_of_a_3_of_5_split_gives_back_the_key_with_a_state_per_chain() {
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let split = Split::new(
        &cometbft_key_file(&key),
        3,
        5,
        &["--chain-id", "chain-a", "--chain-id", "chain-b"],
    );
    let fresh = "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}";
    for ids in subsets(5, 3) {
        let out = format!(
            "combined-{}",
            ids.iter().map(u16::to_string).collect::<String>()
        );
        let output = split.combine(&ids, &out, &[]);
        assert_combined(
            &split,
            &output,
            &out,
            &[
                "chain-a_priv_validator_state.json",
                "chain-b_priv_validator_state.json",
                "priv_validator_key.json",
            ],
        );
        let read = |f: &str| std::fs::read_to_string(split.path(&format!("{out}/{f}"))).unwrap();
        assert_eq!(read("priv_validator_key.json"), split.original, "{ids:?}");
        assert_eq!(read("chain-a_priv_validator_state.json"), fresh);
        assert_eq!(read("chain-b_priv_validator_state.json"), fresh);
    }
}

#[test]
fn fewer_than_the_threshold_are_refused() {
    let two_of_three = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let msg = two_of_three.refused(
        &[2],
        &[],
        &["1 cosigner directory given", "2-of-3", "at least 2"],
    );
    assert!(msg.contains("cosigner 2"), "{msg}");
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let three_of_five = Split::new(&cometbft_key_file(&key), 3, 5, &["--chain-id", "c"]);
    three_of_five.refused(
        &[1, 5],
        &[],
        &["2 cosigner directories given", "3-of-5", "at least 3"],
    );
    // The same directory twice is one cosigner, not two.
    three_of_five.refused(&[1, 5, 1], &[], &["are both cosigner 1"]);
    // --state-only needs them too: fewer states may all be below the last signature.
    three_of_five.refused(&[1, 5], &["--state-only"], &["at least 3"]);
}

#[test]
fn directories_of_two_clusters_are_refused() {
    let a = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let other = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let b = Split::new(&cometbft_key_file(&other), 2, 3, &["--chain-id", "c"]);
    let foreign = b.path("cosigners/cosigner-2");
    let foreign = foreign.to_str().unwrap();
    let before = a.snapshot();
    assert_refused(
        a.dir.path(),
        a.dir.path(),
        &[
            "combine",
            "cosigners/cosigner-1",
            foreign,
            "--out",
            "combined",
        ],
        &[
            "C9F9D8673A92064679F6C83A7926E24CC952B2A7",
            "give directories of one cluster",
        ],
    );
    assert_eq!(a.snapshot(), before);
    // The same key split twice: shares of different splits never combine.
    let again = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let twin = again.path("cosigners/cosigner-2");
    assert_refused(
        a.dir.path(),
        a.dir.path(),
        &[
            "combine",
            "cosigners/cosigner-1",
            twin.to_str().unwrap(),
            "--out",
            "combined",
        ],
        &["two different splits", "give directories of one split"],
    );
}

#[test]
fn a_tampered_escrow_is_refused() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let flip = |v: &mut serde_json::Value| {
        let ct = v["seed_escrow"]["ciphertext"].as_str().unwrap().to_string();
        let first = if ct.starts_with('0') { "1" } else { "0" };
        v["seed_escrow"]["ciphertext"] = serde_json::Value::String(format!("{first}{}", &ct[1..]));
    };
    // Altered in one file only: the copies disagree.
    split.edit_share(1, flip);
    split.refused(
        &[1, 2],
        &[],
        &[
            "seed escrows in cosigners/cosigner-1 and cosigners/cosigner-2 differ",
            "altered",
        ],
    );
    // Altered alike in both: it does not decrypt.
    split.edit_share(3, flip);
    split.refused(
        &[1, 3],
        &[],
        &["cannot recover the seed", "does not decrypt", "altered"],
    );
    // Its ephemeral key replaced by the identity point, in both.
    for id in [1, 3] {
        split.edit_share(id, |v| {
            v["seed_escrow"]["ephemeral"] =
                serde_json::Value::String(format!("01{}", "00".repeat(31)));
        });
    }
    split.refused(&[3, 1], &[], &["ephemeral key is not a valid curve point"]);
}

#[test]
fn shares_without_an_escrow_give_the_state_only() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &[
            "--chain-id",
            "example-chain",
            "--state",
            "example-chain=state.json",
        ],
    );
    // As split-key wrote share files before the escrow existed.
    for id in 1..=3 {
        split.edit_share(id, |v| {
            v.as_object_mut().unwrap().remove("seed_escrow");
        });
    }
    split.refused(
        &[1, 3],
        &[],
        &[
            "hold no seed escrow",
            "cannot be computed back",
            "--state-only",
        ],
    );
    let output = split.combine(&[1, 3], "state", &["--state-only"]);
    assert_combined(&split, &output, "state", &["priv_validator_state.json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(WARNING), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(split.path("state/priv_validator_state.json")).unwrap(),
        EXAMPLE_STATE
    );
}

#[test]
fn a_share_others_can_read_is_refused() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let share = split.path("cosigners/cosigner-2/key_share.json");
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o644)).unwrap();
    split.refused(
        &[1, 2],
        &[],
        &["cosigner-2/key_share.json", "mode 0644", "chmod 600"],
    );
}

#[test]
fn an_existing_output_is_not_touched() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    std::fs::create_dir(split.path("combined")).unwrap();
    std::fs::write(split.path("combined/keep"), "x").unwrap();
    split.refused(
        &[1, 2],
        &[],
        &["combined: already exists", "refusing to overwrite"],
    );
    assert_eq!(std::fs::read(split.path("combined/keep")).unwrap(), b"x");
}

#[test]
fn a_missing_state_file_or_directory_is_refused() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "c"],
    );
    let missing = split.dir.path().join("nowhere");
    assert_refused(
        split.dir.path(),
        split.dir.path(),
        &[
            "combine",
            "cosigners/cosigner-1",
            missing.to_str().unwrap(),
            "--out",
            "combined",
        ],
        &["nowhere"],
    );
    std::fs::remove_file(split.path("cosigners/cosigner-2/state/c.state")).unwrap();
    split.refused(&[1, 2], &[], &["no sign state at", "c.state"]);
}

#[test]
fn a_chain_fewer_than_t_directories_sign_is_refused() {
    let split = Split::new(
        &cometbft_key_file(&example_key()),
        2,
        3,
        &["--chain-id", "chain-a", "--chain-id", "chain-b"],
    );
    // Cosigners 2 and 3 no longer sign chain-b (the operator dropped it from their configs).
    for id in [2, 3] {
        let path = split.path(&format!("{}/cosigner.toml", split.cosigner(id)));
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).expect("cosigner.toml");
        config["chain"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["id"].as_str() != Some("chain-b"));
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    }
    split.refused(
        &[1, 2],
        &[],
        &[
            "chain `chain-b` is configured in only 1 of the given directories (cosigner 1)",
            "at least 2 directories that sign `chain-b`",
        ],
    );
    split.refused(&[2, 1], &["--state-only"], &["chain `chain-b`"]);
    // Cosigners 2 and 3 together never signed chain-b: only chain-a comes out.
    let output = split.combine(&[2, 3], "combined", &[]);
    assert_combined(
        &split,
        &output,
        "combined",
        &["priv_validator_key.json", "priv_validator_state.json"],
    );
}
