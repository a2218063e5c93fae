//! End to end, pinning a cosigner being added (`cosigner add-peer`): on a split 3-of-4, every
//! member's operator pins the new host's self-made certificate (no cluster CA) as joining;
//! the file changes by that entry only, and each run prints the host's own `--peer` line.
//! The members then sign as before, and refuse a connection presenting the joining
//! certificate; `--cancel` gives back the file byte for byte. Bad input is refused with what
//! to do and leaves the file untouched; a 2-of-3 cannot take a fourth cosigner.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::Cluster;
use common::*;
use cosigner::cluster::tls::{PeerPins, TlsIdentity, TlsPaths};
use cosigner::config::Config;

const LIMIT: Duration = Duration::from_secs(30);

/// The new host's identity, made as `cosigner enroll` would: its own key and a self-signed
/// certificate. Written to `dir`; its paths and fingerprint.
fn newcomer_identity(dir: &Path) -> (TlsPaths, String) {
    std::fs::create_dir_all(dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["cosigner-5".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let paths = TlsPaths {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: None,
    };
    std::fs::write(&paths.cert, cert.pem()).unwrap();
    std::fs::write(&paths.key, key.serialize_pem()).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&paths.key, private).unwrap();
    let fp = TlsIdentity::load(&paths).unwrap().fingerprint().unwrap();
    (paths, fp)
}

/// A member's listen address and own certificate fingerprint.
fn member(config: &Path) -> (String, String) {
    let loaded = Config::load(config).unwrap();
    let th = loaded.config.threshold().unwrap();
    let fp = TlsIdentity::load(&loaded.tls_paths(th))
        .unwrap()
        .fingerprint()
        .unwrap();
    (th.listen.to_string(), fp)
}

fn add_peer(config: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["add-peer"];
    args.extend_from_slice(extra);
    cosigner(&args, config)
}

/// `cosigner add-peer` exits non-zero with `needle` and leaves `config` byte-identical.
fn refused(config: &Path, extra: &[&str], needle: &str) {
    let before = std::fs::read(config).unwrap();
    let out = add_peer(config, extra);
    assert!(!out.status.success(), "accepted {extra:?}: {}", text(&out));
    assert!(
        text(&out).contains(needle),
        "`{needle}` missing: {}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(config).unwrap(),
        before,
        "{extra:?} changed the file"
    );
}

fn toml_of(path: &Path) -> toml::Table {
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// Dials `to` presenting the identity at `tls` (trusting the member `member_fp`); what the
/// connection ended with, or that a request went through.
fn dial_as(tls: &TlsPaths, member_fp: &str, to: &str) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let identity = TlsIdentity::load(tls).unwrap();
        let config = identity
            .client_config(&PeerPins::new([(1, member_fp.to_string())]))
            .unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = to.parse().unwrap();
        let conn = match endpoint
            .connect_with(config, to, "cosigner-1")
            .unwrap()
            .await
        {
            Ok(conn) => conn,
            Err(e) => return format!("handshake failed: {e}"),
        };
        // A frame sent as a member would (a hello) is never answered.
        let attempt = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"\x00\x00\x00\x04ping").await?;
            let _ = send.finish();
            let got = recv.read_to_end(1024).await?;
            anyhow::Ok(got)
        };
        match tokio::time::timeout(LIMIT, attempt).await {
            Ok(Ok(got)) => format!("answered {} bytes", got.len()),
            Ok(Err(_)) | Err(_) => match tokio::time::timeout(LIMIT, conn.closed()).await {
                Ok(reason) => format!("closed: {reason}"),
                Err(_) => "still open".to_string(),
            },
        }
    })
}

#[test]
fn add_peer_pins_a_joining_cosigner_that_members_sign_without_and_refuse() {
    let mut cluster = Cluster::new("add-peer", 3, 4, "v0.38");
    let configs: Vec<PathBuf> = (0..4).map(|i| cluster.config(i)).collect();
    let originals: Vec<Vec<u8>> = configs.iter().map(|c| std::fs::read(c).unwrap()).collect();
    let (tls, fp) = newcomer_identity(&cluster.dir.path().join("newcomer"));
    let address = format!("127.0.0.1:{}", free_udp_port());
    let good = ["--id", "5", "--address", &address, "--cert-sha256", &fp];

    // Bad input first: each refused with what to do, the file untouched.
    let c1 = &configs[0];
    let with = |id: &str, cert: &str| -> Vec<String> {
        ["--id", id, "--address", &address, "--cert-sha256", cert]
            .map(String::from)
            .to_vec()
    };
    let refused_with = |args: Vec<String>, needle: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(c1, &args, needle);
    };
    refused_with(
        with("2", &fp),
        "to replace a lost host, first remove it with `cosigner refresh --remove 2`",
    );
    refused_with(with("1", &fp), "already a member");
    refused_with(with("5", "abc"), "is not a certificate fingerprint");
    let (_, own) = member(c1);
    refused_with(with("5", &own), "this cosigner's own");
    let (_, other) = member(&configs[1]);
    refused_with(with("5", &other), "is cosigner 2's");
    refused(c1, &["--cancel", "5"], "not joining");

    // Every member pins the newcomer; each prints its own line for `cosigner enroll`.
    for (i, config) in configs.iter().enumerate() {
        let out = add_peer(config, &good);
        assert!(out.status.success(), "{}", text(&out));
        let (listen, own) = member(config);
        let line = format!("--peer {}={listen}={own}", i + 1);
        assert!(
            text(&out).contains(&line),
            "`{line}` missing: {}",
            text(&out)
        );
        // The file differs by the joining entry only.
        let after = std::fs::read(config).unwrap();
        assert!(
            after.starts_with(&originals[i]),
            "the rest of the file changed"
        );
        let mut table = toml_of(config);
        let joining = table["threshold"]
            .as_table_mut()
            .unwrap()
            .remove("joining")
            .unwrap();
        let expected: toml::Value = toml::from_str::<toml::Table>(&format!(
            "j = [{{ id = 5, address = \"{address}\", cert_sha256 = \"{fp}\" }}]"
        ))
        .unwrap()["j"]
            .clone();
        assert_eq!(joining, expected);
        assert_eq!(
            table,
            String::from_utf8(originals[i].clone())
                .unwrap()
                .parse::<toml::Table>()
                .unwrap()
        );
    }
    refused(
        c1,
        &[
            "--id",
            "6",
            "--address",
            &address,
            "--cert-sha256",
            &"ee".repeat(32),
        ],
        "cosigner 5 is already joining",
    );
    let check = cosigner(&["check-config"], c1);
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("joining   5:"), "{}", text(&check));

    // The members sign as before, and say once who is joining.
    let sim = cluster.sim(&["--heights", "12"]);
    cluster.start_all();
    let outcome = sim.outcome();
    outcome.assert_clean(&cluster.running());
    outcome.assert_key(&cluster.key.public_key_base64());
    let log = cluster.proc(0).log();
    let said = "cosigner 5 is joining: run `cosigner refresh --add 5` on every member host \
                and `cosigner join` on its host";
    assert_eq!(log.matches(said).count(), 1, "{log}");

    // The joining certificate passes the handshake but gets nothing: its connection is
    // closed before any frame is served.
    let (listen, member_fp) = member(c1);
    let result = dial_as(&tls, &member_fp, &listen);
    assert!(result.contains("unknown certificate"), "{result}");
    assert!(
        wait_for_log(
            cluster.proc(0),
            "cosigner 5 is joining, not a member",
            1,
            LIMIT
        ),
        "{}",
        cluster.proc(0).log()
    );
    // A certificate nobody pinned does not even pass the handshake.
    let (stranger, _) = newcomer_identity(&cluster.dir.path().join("stranger"));
    let result = dial_as(&stranger, &member_fp, &listen);
    assert!(result.contains("handshake failed"), "{result}");
    for i in 0..4 {
        cluster.kill(i);
    }

    // Cancelled, every file is what it was, byte for byte.
    for (i, config) in configs.iter().enumerate() {
        let out = add_peer(config, &["--cancel", "5"]);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(std::fs::read(config).unwrap(), originals[i]);
    }
}

#[test]
fn a_fourth_cosigner_for_a_two_of_three_is_refused_with_the_reason() {
    let cluster = Cluster::new("add-peer-2of3", 2, 3, "v0.38");
    let fp = "ab".repeat(32);
    let args = [
        "--id",
        "4",
        "--address",
        "127.0.0.1:7999",
        "--cert-sha256",
        &fp,
    ];
    for needle in ["2-of-3", "2-of-4", "refresh --remove", "split-key --dkg"] {
        refused(&cluster.config(0), &args, needle);
    }
}
