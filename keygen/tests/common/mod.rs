//! Helpers shared by the `split-key` integration tests: key fixtures and running the binary.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The made-up example key from privval-protocol.md §(d).
pub const EXAMPLE_KEY: &str = r#"{
  "address": "C9F9D8673A92064679F6C83A7926E24CC952B2A7",
  "pub_key": {
    "type": "tendermint/PubKeyEd25519",
    "value": "auxRjzEMlDge96bGG02DdwhT4a3BxuF5+BeCuf6HLl8="
  },
  "priv_key": {
    "type": "tendermint/PrivKeyEd25519",
    "value": "TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw=="
  }
}
"#;
pub const EXAMPLE_PUB_B64: &str = "auxRjzEMlDge96bGG02DdwhT4a3BxuF5+BeCuf6HLl8=";
pub const EXAMPLE_PRIV_B64: &str =
    "TekHYIvfGyH0XHqAlJlQiX2kgrRbQLOkSJN31luviPdq7FGPMQyUOB73psYbTYN3CFPhrcHG4Xn4F4K5/ocuXw==";
pub const EXAMPLE_ADDRESS: &str = "C9F9D8673A92064679F6C83A7926E24CC952B2A7";

pub fn example_public_key() -> [u8; 32] {
    BASE64.decode(EXAMPLE_PUB_B64).unwrap().try_into().unwrap()
}

/// A CometBFT `priv_validator_key.json` for `key`.
pub fn cometbft_json(key: &ed25519_dalek::SigningKey) -> String {
    let public = key.verifying_key().to_bytes();
    let mut private = key.to_bytes().to_vec();
    private.extend_from_slice(&public);
    let address = hex::encode_upper(&Sha256::digest(public)[..20]);
    format!(
        r#"{{
  "address": "{address}",
  "pub_key": {{ "type": "tendermint/PubKeyEd25519", "value": "{}" }},
  "priv_key": {{ "type": "tendermint/PrivKeyEd25519", "value": "{}" }}
}}
"#,
        BASE64.encode(public),
        BASE64.encode(&private)
    )
}

/// A tmkms softsign key file for `key`.
pub fn softsign(key: &ed25519_dalek::SigningKey) -> String {
    format!("{}\n", BASE64.encode(key.to_bytes()))
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `split-key` in `cwd` with `args`.
pub fn split_key(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_split-key"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap()
}

pub fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Runs `split-key` expecting failure: non-zero exit, `error:` and every `needles` in stderr,
/// and no change to `parent` (no output directory, no temporary directory).
pub fn assert_refused(cwd: &Path, parent: &Path, args: &[&str], needles: &[&str]) -> String {
    let before = entries(parent);
    let out = split_key(cwd, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure for {args:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "missing `{needle}` in: {stderr}");
    }
    assert_eq!(
        entries(parent),
        before,
        "something was written for {args:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}
