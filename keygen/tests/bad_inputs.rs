//! Every bad input makes `split-key` exit non-zero with a message naming the file or the
//! problem, and leave nothing behind: no output directory and no temporary directory.

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use common::*;

/// A working directory holding `key.json` with `text`; output goes to `<dir>/out`.
fn with_key(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "key.json", text);
    dir
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "key.json",
        "--threshold",
        "2",
        "--shares",
        "3",
        "--out",
        "out",
        "--chain-id",
        "test-chain",
    ];
    v.extend_from_slice(extra);
    v
}

fn refused_key(text: &str, needles: &[&str]) {
    let dir = with_key(text);
    let mut all = vec!["key.json"];
    all.extend_from_slice(needles);
    assert_refused(dir.path(), dir.path(), &args(&[]), &all);
}

fn threshold_args<'a>(t: &'a str, n: &'a str) -> Vec<&'a str> {
    vec![
        "key.json",
        "--threshold",
        t,
        "--shares",
        n,
        "--out",
        "out",
        "--chain-id",
        "test-chain",
    ]
}

#[test]
fn missing_key_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&[]),
        &["key.json", "cannot read"],
    );
}

#[test]
fn malformed_json() {
    refused_key(&EXAMPLE_KEY[..80], &["malformed JSON"]);
}

#[test]
fn secp256k1_key() {
    let secp = EXAMPLE_KEY
        .replace("PrivKeyEd25519", "PrivKeySecp256k1")
        .replace("PubKeyEd25519", "PubKeySecp256k1");
    refused_key(
        &secp,
        &["secp256k1 keys cannot be split: FROST Ed25519 only"],
    );
}

#[test]
fn public_key_not_matching_private_key() {
    let other = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let text = EXAMPLE_KEY.replace(
        EXAMPLE_PUB_B64,
        &BASE64.encode(other.verifying_key().to_bytes()),
    );
    refused_key(&text, &["`pub_key.value` does not match the public key"]);
}

#[test]
fn private_value_with_a_foreign_public_half() {
    let mut private = BASE64.decode(EXAMPLE_PRIV_B64).unwrap();
    private[40] ^= 1;
    let text = EXAMPLE_KEY.replace(EXAMPLE_PRIV_B64, &BASE64.encode(&private));
    refused_key(&text, &["public half of `priv_key.value`"]);
}

#[test]
fn truncated_key_bytes() {
    let private = BASE64.decode(EXAMPLE_PRIV_B64).unwrap();
    let text = EXAMPLE_KEY.replace(EXAMPLE_PRIV_B64, &BASE64.encode(&private[..63]));
    refused_key(&text, &["`priv_key.value` is 63 bytes; expected 64"]);
    let softsign = format!("{}\n", BASE64.encode(&private[..31]));
    refused_key(&softsign, &["31 bytes; expected 32"]);
}

#[test]
fn non_base64_key_bytes() {
    let text = EXAMPLE_KEY.replace(EXAMPLE_PRIV_B64, "not*base64*at*all");
    refused_key(&text, &["`priv_key.value` is not valid base64"]);
    refused_key("%%%%\n", &["not valid base64"]);
}

#[test]
fn wrong_address() {
    let text = EXAMPLE_KEY.replace(EXAMPLE_ADDRESS, "0000000000000000000000000000000000000000");
    refused_key(&text, &["`address`", EXAMPLE_ADDRESS]);
}

#[test]
fn threshold_below_two() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &threshold_args("1", "3"),
        &["--threshold 1 --shares 3", "below 2"],
    );
}

#[test]
fn threshold_above_shares() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &threshold_args("4", "3"),
        &["exceeds the number of shares"],
    );
}

#[test]
fn threshold_not_a_majority() {
    let dir = with_key(EXAMPLE_KEY);
    for (t, n) in [("2", "4"), ("3", "6"), ("2", "5")] {
        assert_refused(
            dir.path(),
            dir.path(),
            &threshold_args(t, n),
            &["need t > n/2"],
        );
    }
}

#[test]
fn too_many_shares() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &threshold_args("17", "33"),
        &["33 shares exceed the maximum of 32"],
    );
}

#[test]
fn existing_output_directory_is_left_alone() {
    let dir = with_key(EXAMPLE_KEY);
    std::fs::create_dir(dir.path().join("out")).unwrap();
    write(&dir.path().join("out"), "mine.txt", "operator data");
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&[]),
        &["out: already exists; refusing to overwrite"],
    );
    assert_eq!(
        entries(&dir.path().join("out")),
        ["mine.txt".to_string()].into()
    );
    // An empty directory, or a file, in the way is refused too.
    std::fs::remove_dir_all(dir.path().join("out")).unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    assert_refused(dir.path(), dir.path(), &args(&[]), &["already exists"]);
}

#[test]
fn unwritable_output_location() {
    // Tests run as root, so permissions would not stop us: put the output under a file.
    let dir = with_key(EXAMPLE_KEY);
    write(dir.path(), "plain-file", "x");
    let stderr = assert_refused(
        dir.path(),
        dir.path(),
        &[
            "key.json",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--out",
            "plain-file/sub",
            "--chain-id",
            "test-chain",
        ],
        &["plain-file/sub", "cannot write here", "not a directory"],
    );
    assert!(!stderr.contains("key.json"), "{stderr}");
    // A parent that does not exist.
    assert_refused(
        dir.path(),
        dir.path(),
        &[
            "key.json",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--out",
            "missing/sub",
            "--chain-id",
            "test-chain",
        ],
        &["missing/sub", "cannot write here"],
    );
}

#[test]
fn wrong_number_of_cosigners() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&["--cosigner", "10.0.0.1:7101", "--cosigner", "10.0.0.2:7101"]),
        &["--cosigner given 2 times", "(3)"],
    );
}

#[test]
fn unparsable_cosigner_address() {
    let dir = with_key(EXAMPLE_KEY);
    for bad in ["10.0.0.1", "host:notaport", "host:0", ":7101"] {
        assert_refused(
            dir.path(),
            dir.path(),
            &args(&[
                "--cosigner",
                "10.0.0.1:7101",
                "--cosigner",
                bad,
                "--cosigner",
                "10.0.0.3:7101",
            ]),
            &[&format!("--cosigner `{bad}`")],
        );
    }
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&[
            "--cosigner",
            "10.0.0.1:7101",
            "--cosigner",
            "10.0.0.1:7101",
            "--cosigner",
            "10.0.0.3:7101",
        ]),
        &["cannot share one address"],
    );
}

#[test]
fn unparsable_node_address() {
    let dir = with_key(EXAMPLE_KEY);
    for (bad, why) in [
        ("http://10.0.0.1:26659", "must start with tcp://"),
        ("tcp://10.0.0.1", "expected HOST:PORT"),
        ("tcp://nothex@10.0.0.1:26659", "not 40 hex digits"),
    ] {
        assert_refused(
            dir.path(),
            dir.path(),
            &args(&["--node", bad]),
            &[&format!("--node `{bad}`"), why],
        );
    }
}

#[test]
fn missing_or_bad_chain_id() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &[
            "key.json",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--out",
            "out",
        ],
        &["at least one --chain-id is required"],
    );
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&["--chain-id", "has space"]),
        &["`has space` is not a chain ID"],
    );
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&["--chain-id", "test-chain"]),
        &["given twice"],
    );
}

#[test]
fn bad_protocol_and_prefix() {
    let dir = with_key(EXAMPLE_KEY);
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&["--protocol", "v0.39"]),
        &["v0.39"],
    );
    assert_refused(
        dir.path(),
        dir.path(),
        &args(&["--bech32-prefix", "Cosmos!"]),
        &["--bech32-prefix `Cosmos!`"],
    );
}

#[test]
fn output_in_another_directory_is_refused_without_trace() {
    let cwd = with_key(EXAMPLE_KEY);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("cluster");
    std::fs::create_dir(&out).unwrap();
    let out_arg = out.to_string_lossy().into_owned();
    let mut a = args(&[]);
    a[6] = &out_arg;
    assert_refused(cwd.path(), parent.path(), &a, &["already exists"]);
    assert!(out.is_dir());
}

#[test]
fn failure_after_building_removes_the_temporary_directory() {
    // The output directory appears after the checks but before the rename: the complete
    // temporary tree must be removed and the newcomer left alone.
    use clap::Parser as _;
    let dir = with_key(EXAMPLE_KEY);
    let out = dir.path().join("out");
    let key = dir.path().join("key.json");
    let args = split_key::Args::try_parse_from([
        "split-key".as_ref(),
        key.as_os_str(),
        "--threshold".as_ref(),
        "2".as_ref(),
        "--shares".as_ref(),
        "3".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
        "--chain-id".as_ref(),
        "test-chain".as_ref(),
    ])
    .unwrap();
    let plan = split_key::plan(&args).unwrap();
    std::fs::create_dir(&out).unwrap();
    let err = split_key::write(&plan, &mut rand_core::OsRng).unwrap_err();
    assert!(
        matches!(err, split_key::SplitError::OutputExists(_)),
        "{err}"
    );
    assert_eq!(
        entries(dir.path()),
        ["key.json", "out"].map(String::from).into()
    );
    assert!(entries(&out).is_empty());
}

#[test]
fn bad_state_files() {
    let dir = with_key(EXAMPLE_KEY);
    write(
        dir.path(),
        "state.json",
        r#"{"height": "12", "round": 0, "step": 3}"#,
    );
    write(dir.path(), "broken.json", r#"{"height": 12"#);
    for (arg, needle) in [
        ("state.json", "expected CHAIN_ID=PATH"),
        (
            "other-chain=state.json",
            "chain `other-chain` is not given with --chain-id",
        ),
        ("test-chain=missing.json", "missing.json"),
        ("test-chain=broken.json", "broken.json"),
    ] {
        assert_refused(dir.path(), dir.path(), &args(&["--state", arg]), &[needle]);
    }
}

#[test]
fn state_file_seeds_every_cosigner() {
    let dir = with_key(EXAMPLE_KEY);
    write(
        dir.path(),
        "state.json",
        r#"{"height": "12", "round": 0, "step": 3}"#,
    );
    let out = split_key(dir.path(), &args(&["--state", "test-chain=state.json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=3 {
        let cosigner = dir.path().join(format!("out/cosigner-{i}"));
        let config = std::fs::read_to_string(cosigner.join("cosigner.toml")).unwrap();
        assert!(!config.contains("allow_fresh_state"), "{config}");
        let (_, state) =
            cosigner::sign_state::store::StateFile::open(&cosigner.join("state"), "test-chain")
                .unwrap();
        assert_eq!((state.height, state.round, state.step), (12, 0, 3));
    }
}
