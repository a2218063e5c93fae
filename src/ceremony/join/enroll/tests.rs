use rand_core::OsRng;

use super::*;

const PIN1: &str = "11111111111111111111111111111111111111111111111111111111111111aa";
const PIN2: &str = "22222222222222222222222222222222222222222222222222222222222222bb";

/// Cosigner 1's config of a 2-of-2 {1, 2} (a 2-of-3 that removed 3).
fn member_toml(dir: &Path) -> PathBuf {
    let text = format!(
        r#"state_dir = "state"
identity_key = "identity.key"

[[chain]]
id = "test-chain"

[[node]]
address = "tcp://127.0.0.1:26659"
protocol = "v0.38"

[threshold]
id = 1
threshold = 2
listen = "127.0.0.1:7101"
key_share = "key_share.json"
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"
cluster_ca = "tls/cluster-ca.pem"

[[threshold.peer]]
id = 2
address = "127.0.0.1:7102"
cert_sha256 = "{PIN2}"
"#
    );
    let path = dir.join("member.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn plan(dir: &Path, peers: &[&str]) -> EnrollPlan {
    EnrollPlan {
        id: 4,
        listen: "127.0.0.1:7104".parse().unwrap(),
        address: "127.0.0.1:7104".into(),
        like: member_toml(dir),
        peers: peers.iter().map(|s| s.to_string()).collect(),
        out: dir.join("cosigner-4"),
    }
}

fn peer(id: u16, pin: &str) -> String {
    format!("{id}=127.0.0.1:710{id}={pin}")
}

#[test]
fn writes_a_directory_that_waits_for_its_join() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), &[&peer(1, PIN1), &peer(2, PIN2)]);
    let report = enroll(&p, &mut OsRng).unwrap();
    let text = report.to_string();
    assert!(text.contains(&format!(
        "cosigner add-peer --config MEMBER_DIR/cosigner.toml --id 4 --address 127.0.0.1:7104 \
         --cert-sha256 {}",
        report.fingerprint
    )));
    let out = dir.path().join("cosigner-4");
    let written: Config =
        toml::from_str(&std::fs::read_to_string(out.join(CONFIG_FILE)).unwrap()).unwrap();
    let th = written.threshold().unwrap();
    assert_eq!((th.id, th.threshold), (4, 2));
    assert_eq!(
        th.peers.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(written.chains[0].id, "test-chain");
    let ceremony = CeremonyFile::load(&out.join(CEREMONY_FILE)).unwrap();
    assert_eq!((ceremony.kind, ceremony.shares), (CeremonyKind::Join, 3));
    assert!(!out.join(KEY_SHARE_FILE).exists());
    assert!(out.join(STATE_DIR).is_dir());
    let pem = std::fs::read(out.join(TLS_CERT_FILE)).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        crate::cluster::identity::cert_fingerprint(&der),
        report.fingerprint
    );
    use std::os::unix::fs::PermissionsExt;
    for f in [TLS_KEY_FILE, IDENTITY_KEY_FILE, CONFIG_FILE] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

#[test]
fn refuses_what_does_not_fit_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, u16, &str)> = vec![
        (vec![peer(1, PIN1)], 4, "exactly one --peer per member"),
        (vec![peer(1, PIN1), peer(2, PIN2)], 2, "a member's id"),
        (
            vec![peer(1, PIN1), peer(2, PIN1)],
            4,
            "differs from the one",
        ),
        (
            vec![peer(1, PIN1), "2=127.0.0.1:7102".into()],
            4,
            "not three parts",
        ),
        (
            vec![peer(1, PIN1), "2=nohost=ab".into()],
            4,
            "expected HOST:PORT",
        ),
        (vec![peer(1, PIN1), peer(2, "abc")], 4, "64 hex digits"),
    ];
    for (peers, id, expected) in cases {
        let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
        let mut p = plan(dir.path(), &peers);
        p.id = id;
        let e = enroll(&p, &mut OsRng).unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
        assert!(!p.out.exists());
    }
    let single = dir.path().join("single.toml");
    std::fs::write(
        &single,
        "state_dir = \"s\"\nidentity_key = \"i\"\n[[chain]]\nid = \"c\"\n[[node]]\naddress = \
         \"tcp://127.0.0.1:1\"\nprotocol = \"v0.38\"\n[single]\nkey_file = \"k.json\"\n",
    )
    .unwrap();
    let mut p = plan(dir.path(), &[&peer(1, PIN1), &peer(2, PIN2)]);
    p.like = single;
    let e = enroll(&p, &mut OsRng).unwrap_err().to_string();
    assert!(e.contains("not a threshold cosigner"), "{e}");
}
