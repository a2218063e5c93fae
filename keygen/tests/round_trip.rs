//! Split real keys with the `split-key` binary, load every directory as a cosigner would, and
//! sign with every t-subset of the shares.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use cosigner::cluster::identity::cert_fingerprint;
use cosigner::config::Config;
use cosigner::sign_state::{SignState, StateFile};
use cosigner::threshold::key_share;
use cosigner::validator_key::load_identity_key;
use ed25519_dalek::Verifier as _;
use frost_ed25519 as frost;
use frost_ed25519::keys::{KeyPackage, PublicKeyPackage};
use frost_ed25519::Identifier;
use rand_core::OsRng;

use common::*;

struct Loaded {
    key_packages: BTreeMap<Identifier, KeyPackage>,
    public_key_package: PublicKeyPackage,
}

fn cert_sha256(path: &Path) -> String {
    let pem = std::fs::read(path).unwrap();
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), 1, "{}", path.display());
    cert_fingerprint(&certs[0])
}

/// Loads `out/cosigner-1..=n` the way the cosigner does and checks they fit together.
fn load_cluster(out: &Path, t: u16, n: u16, public_key: [u8; 32], chains: &[&str]) -> Loaded {
    let mut fingerprints = BTreeMap::new();
    for id in 1..=n {
        let dir = out.join(format!("cosigner-{id}"));
        fingerprints.insert(id, cert_sha256(&dir.join("tls/cert.pem")));
    }
    let ca = std::fs::read(out.join("cosigner-1/tls/cluster-ca.pem")).unwrap();
    let mut key_packages = BTreeMap::new();
    let mut public_key_package: Option<PublicKeyPackage> = None;
    let mut identity_keys = std::collections::BTreeSet::new();
    for id in 1..=n {
        let dir = out.join(format!("cosigner-{id}"));
        let loaded = Config::load(&dir.join("cosigner.toml")).unwrap();
        let config = &loaded.config;
        let th = config.threshold().unwrap();
        assert_eq!((th.id, th.threshold), (id, t));
        assert_eq!(
            config
                .chains
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            chains
        );
        assert_eq!(th.listen.port(), 7100 + id);
        // Peers: everyone else, each pinned to the certificate in that cosigner's directory.
        assert_eq!(th.peers.len(), usize::from(n - 1));
        for peer in &th.peers {
            assert_ne!(peer.id, id);
            assert_eq!(peer.cert_sha256, fingerprints[&peer.id], "peer {}", peer.id);
            assert_eq!(peer.address, format!("127.0.0.1:{}", 7100 + peer.id));
        }
        let cluster_ca = th.cluster_ca.as_ref().unwrap();
        for p in [&th.tls_cert, &th.tls_key, cluster_ca] {
            assert!(loaded.resolve(p).is_file(), "{}", p.display());
        }
        assert_eq!(std::fs::read(loaded.resolve(cluster_ca)).unwrap(), ca);
        // Every chain's initial state file is written with the directory: empty, since no
        // --state was given, and private like the rest.
        let state = loaded.resolve(&config.state_dir);
        let expected: std::collections::BTreeSet<String> =
            chains.iter().map(|c| format!("{c}.state")).collect();
        assert_eq!(entries(&state), expected);
        for chain in chains {
            let (_, s) = StateFile::open(&state, chain).unwrap();
            assert_eq!(s, SignState::fresh(), "{chain}");
        }
        let identity = load_identity_key(&loaded.resolve(&config.identity_key)).unwrap();
        assert!(identity_keys.insert(identity.verifying_key().to_bytes()));

        let share = key_share::load(&loaded.resolve(&th.key_share)).unwrap();
        assert_eq!(share.index(), id);
        assert_eq!(share.threshold(), t);
        assert_eq!(share.group_public_key(), public_key);
        match &public_key_package {
            None => public_key_package = Some(share.public_key_package().clone()),
            Some(p) => assert_eq!(p, share.public_key_package()),
        }
        key_packages.insert(share.id(), share.key_package().clone());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(out), 0o700);
        assert_eq!(mode(&out.join("cosigner-1/key_share.json")), 0o600);
        assert_eq!(mode(&out.join("cosigner-1/tls/key.pem")), 0o600);
        assert_eq!(mode(&out.join("cosigner-1/tls")), 0o700);
        assert_eq!(mode(&out.join("cosigner-1/identity.key")), 0o600);
        assert_eq!(mode(&out.join("cosigner-1/state")), 0o700);
        for chain in chains {
            assert_eq!(
                mode(&out.join(format!("cosigner-1/state/{chain}.state"))),
                0o600
            );
        }
    }
    Loaded {
        key_packages,
        public_key_package: public_key_package.unwrap(),
    }
}

fn subsets(ids: &[Identifier], k: usize) -> Vec<Vec<Identifier>> {
    if k == 0 {
        return vec![vec![]];
    }
    if ids.len() < k {
        return vec![];
    }
    let mut with: Vec<Vec<Identifier>> = subsets(&ids[1..], k - 1)
        .into_iter()
        .map(|mut s| {
            s.insert(0, ids[0]);
            s
        })
        .collect();
    with.extend(subsets(&ids[1..], k));
    with
}

fn sign(
    signers: &[Identifier],
    key_packages: &BTreeMap<Identifier, KeyPackage>,
    public_key_package: &PublicKeyPackage,
    message: &[u8],
) -> Result<ed25519_dalek::Signature, frost::Error> {
    let mut nonces = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for id in signers {
        let (n, c) = frost::round1::commit(key_packages[id].signing_share(), &mut OsRng);
        nonces.insert(*id, n);
        commitments.insert(*id, c);
    }
    let package = frost::SigningPackage::new(commitments, message);
    let mut shares = BTreeMap::new();
    for id in signers {
        let n = nonces.remove(id).unwrap();
        shares.insert(*id, frost::round2::sign(&package, &n, &key_packages[id])?);
    }
    let signature = frost::aggregate(&package, &shares, public_key_package)?;
    let bytes: [u8; 64] = signature.serialize()?.try_into().unwrap();
    Ok(ed25519_dalek::Signature::from_bytes(&bytes))
}

fn check_signing(loaded: &Loaded, t: u16, public_key: [u8; 32]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public_key).unwrap();
    let ids: Vec<Identifier> = loaded.key_packages.keys().copied().collect();
    let all = subsets(&ids, usize::from(t));
    assert!(!all.is_empty());
    for (i, signers) in all.iter().enumerate() {
        let message = format!("vote sign bytes {i}");
        let sig = sign(
            signers,
            &loaded.key_packages,
            &loaded.public_key_package,
            message.as_bytes(),
        )
        .unwrap();
        vk.verify_strict(message.as_bytes(), &sig).unwrap();
        assert!(vk.verify_strict(b"another message", &sig).is_err());
    }

    // t-1 shares: the library refuses outright...
    let few = &ids[..usize::from(t - 1)];
    let err = sign(few, &loaded.key_packages, &loaded.public_key_package, b"m").unwrap_err();
    assert_eq!(err, frost::Error::IncorrectNumberOfCommitments);
    // ...and with that check lied past (packages claiming threshold t-1) the shares still
    // cannot make a signature the original key verifies.
    let lying: BTreeMap<_, _> = few
        .iter()
        .map(|id| {
            let kp = &loaded.key_packages[id];
            let forged = KeyPackage::new(
                *id,
                *kp.signing_share(),
                *kp.verifying_share(),
                *kp.verifying_key(),
                t - 1,
            );
            (*id, forged)
        })
        .collect();
    let lying_pkp = PublicKeyPackage::new(
        loaded.public_key_package.verifying_shares().clone(),
        *loaded.public_key_package.verifying_key(),
        Some(t - 1),
    );
    match sign(few, &lying, &lying_pkp, b"m") {
        Err(e) => assert!(
            matches!(
                e,
                frost::Error::InvalidSignatureShare { .. } | frost::Error::InvalidSignature
            ),
            "{e:?}"
        ),
        Ok(sig) => assert!(vk.verify(b"m", &sig).is_err()),
    }
}

#[test]
fn example_key_2_of_3_with_default_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "priv_validator_key.json", EXAMPLE_KEY);
    let out = split_key(
        dir.path(),
        &[
            "priv_validator_key.json",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--chain-id",
            "test-chain",
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
    assert!(stdout.contains(EXAMPLE_ADDRESS), "{stdout}");
    assert!(stdout.contains(EXAMPLE_PUB_B64), "{stdout}");
    assert!(stdout.contains("cosmosvalconspub1zcjduepq"), "{stdout}");
    assert!(stdout.contains("cosmosvalcons1"), "{stdout}");
    assert!(stdout.contains("UDP 7101"), "{stdout}");
    assert!(
        stdout.contains("remove priv_validator_key.json"),
        "{stdout}"
    );
    // Only the key (unchanged) and the output directory.
    assert_eq!(
        entries(dir.path()),
        ["cosigners", "priv_validator_key.json"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("priv_validator_key.json")).unwrap(),
        EXAMPLE_KEY
    );
    let loaded = load_cluster(
        &dir.path().join("cosigners"),
        2,
        3,
        example_public_key(),
        &["test-chain"],
    );
    check_signing(&loaded, 2, example_public_key());
}

#[test]
fn fresh_key_3_of_5_two_chains_and_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    write(dir.path(), "key.json", &cometbft_json(&key));
    let out = split_key(
        dir.path(),
        &[
            "key.json",
            "--threshold",
            "3",
            "--shares",
            "5",
            "--out",
            "cluster",
            "--chain-id",
            "chain-a",
            "--chain-id",
            "chain-b",
            "--node",
            "tcp://10.0.0.9:26659",
            "--node",
            "tcp://0123456789abcdef0123456789abcdef01234567@sentry.example:26659",
            "--protocol",
            "v0.34",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_key = key.verifying_key().to_bytes();
    let loaded = load_cluster(
        &dir.path().join("cluster"),
        3,
        5,
        public_key,
        &["chain-a", "chain-b"],
    );
    let config = Config::load(&dir.path().join("cluster/cosigner-4/cosigner.toml")).unwrap();
    assert_eq!(config.config.nodes.len(), 2);
    assert!(config.config.nodes[1]
        .address
        .label()
        .starts_with("sentry.example:"));
    assert!(config
        .config
        .nodes
        .iter()
        .all(|n| n.protocol == cosigner::privval::ProtocolVersion::V0_34));
    check_signing(&loaded, 3, public_key);
}

#[test]
fn fresh_softsign_key_5_of_7() {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    write(dir.path(), "consensus.key", &softsign(&key));
    let out = split_key(
        dir.path(),
        &[
            "consensus.key",
            "--threshold",
            "5",
            "--shares",
            "7",
            "--out",
            "cluster",
            "--chain-id",
            "chain-a",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public_key = key.verifying_key().to_bytes();
    let loaded = load_cluster(&dir.path().join("cluster"), 5, 7, public_key, &["chain-a"]);
    check_signing(&loaded, 5, public_key);
}

#[test]
fn cosigner_addresses_set_listen_and_peers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "key.json", EXAMPLE_KEY);
    let out = split_key(
        dir.path(),
        &[
            "key.json",
            "--threshold",
            "2",
            "--shares",
            "3",
            "--out",
            "c",
            "--chain-id",
            "x",
            "--cosigner",
            "10.1.0.1:9000",
            "--cosigner",
            "signer-b.example:9001",
            "--cosigner",
            "[fd00::3]:9002",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listen = |id: u16| {
        let c = Config::load(&dir.path().join(format!("c/cosigner-{id}/cosigner.toml"))).unwrap();
        let th = c.config.threshold().unwrap().clone();
        (th.listen.to_string(), th.peers)
    };
    assert_eq!(listen(1).0, "10.1.0.1:9000");
    assert_eq!(listen(2).0, "0.0.0.0:9001");
    assert_eq!(listen(3).0, "[fd00::3]:9002");
    let peers = listen(1).1;
    assert_eq!(peers[0].address, "signer-b.example:9001");
    assert_eq!(peers[1].address, "[fd00::3]:9002");
}
