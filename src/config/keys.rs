//! Several validator keys in one cosigner directory.
//!
//! A directory made by `split-key` has one key: `[threshold]`, which signs every `[[chain]]`
//! for every `[[node]]`. A directory that holds shares of several validator keys (as tmkms
//! and Horcrux allow a key per chain) has instead one `[[key]]` per key, each with a name and
//! a `[key.threshold]` section of its own, and every chain and every node names its key:
//!
//! ```toml
//! [[chain]]
//! id = "chain-a"
//! key = "validator-a"
//!
//! [[node]]
//! address = "tcp://10.0.0.1:26659"
//! protocol = "v0.38"
//! key = "validator-a"
//!
//! [[key]]
//! name = "validator-a"
//! [key.threshold]
//! id = 1
//! ...
//! ```
//!
//! Each key is a cluster of its own: its own share, its own TLS identities and cluster CA
//! (from its own `split-key`), its own listen port. So a signing of one key can never use a
//! nonce, a commitment or a share of another: the two run in separate signers over separate
//! connections, and a connection meant for one key's cluster does not even authenticate at
//! another's, since no peer certificate may be pinned by two keys. A node is served by the
//! cluster of its key, and only for that key's chains.
//!
//! Existing one-key directories load as before. `cosigner add-key` ([`merge_key`]) turns one
//! into a several-key directory (its `[threshold]` becomes the first `[[key]]`) by adding
//! the directory `split-key` wrote for the new key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    ChainConfig, Config, KeyShareLoadError, LoadedConfig, Mode, NodeConfig, ThresholdConfig,
};
use crate::layout::{CLUSTER_CA_FILE, KEYS_DIR, KEY_SHARE_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use crate::threshold::key_share::KeyShare;

/// One `[[key]]`: a share of one validator key and the cluster that signs with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedKey {
    /// What chains and nodes call it (`key = "..."`): 1 to 50 of A-Z a-z 0-9 _ -.
    pub name: String,
    /// The share of this key and the cluster that signs with it.
    pub threshold: ThresholdConfig,
}

/// One threshold key of a config, with the chains it signs and the nodes it serves.
#[derive(Clone, Debug)]
pub struct KeyView<'a> {
    /// `None` for the `[threshold]` key of a one-key directory.
    pub name: Option<&'a str>,
    /// The share of this key and the cluster that signs with it.
    pub threshold: &'a ThresholdConfig,
    /// The chains this key signs.
    pub chains: Vec<&'a ChainConfig>,
    /// The nodes this key's cluster serves.
    pub nodes: Vec<&'a NodeConfig>,
}

impl KeyView<'_> {
    /// How messages name the key.
    pub fn label(&self) -> String {
        match self.name {
            Some(name) => format!("key `{name}`"),
            None => "the [threshold] key".to_string(),
        }
    }
}

impl Config {
    /// Every threshold key with its chains and nodes: none for a single key, one for a
    /// `[threshold]` directory (every chain and node), one per `[[key]]` otherwise.
    pub fn threshold_keys(&self) -> Vec<KeyView<'_>> {
        match &self.mode {
            Mode::Single(_) => Vec::new(),
            Mode::Threshold(th) => vec![KeyView {
                name: None,
                threshold: th,
                chains: self.chains.iter().collect(),
                nodes: self.nodes.iter().collect(),
            }],
            Mode::Keys(keys) => keys
                .iter()
                .map(|k| KeyView {
                    name: Some(&k.name),
                    threshold: &k.threshold,
                    chains: self
                        .chains
                        .iter()
                        .filter(|c| c.key.as_deref() == Some(&k.name))
                        .collect(),
                    nodes: self
                        .nodes
                        .iter()
                        .filter(|n| n.key.as_deref() == Some(&k.name))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Why the key shares of a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeySharesError {
    /// One key's share cannot be used.
    #[error("{label}: {error}")]
    Load {
        /// Which key, as [`KeyView::label`] names it.
        label: String,
        /// Why its share cannot be used.
        error: KeyShareLoadError,
    },
    /// Two keys hold shares of one validator key; one validator key must be one `[[key]]`.
    #[error(
        "{first} and {second} are shares of the same validator key {public_key}: a validator \
         key is one [[key]], which may sign several chains"
    )]
    SameValidator {
        /// The first key holding a share of it.
        first: String,
        /// The second key holding a share of it.
        second: String,
        /// The validator public key both are shares of.
        public_key: String,
    },
}

impl LoadedConfig {
    /// Every threshold key with its share, each checked against its section; no validator
    /// key may come twice.
    pub fn load_key_shares(&self) -> Result<Vec<(KeyView<'_>, KeyShare)>, KeySharesError> {
        let mut loaded: Vec<(KeyView<'_>, KeyShare)> = Vec::new();
        for key in self.config.threshold_keys() {
            let share =
                self.load_key_share(key.threshold)
                    .map_err(|error| KeySharesError::Load {
                        label: key.label(),
                        error,
                    })?;
            if let Some((first, _)) = loaded
                .iter()
                .find(|(_, s)| s.group_public_key() == share.group_public_key())
            {
                return Err(KeySharesError::SameValidator {
                    first: first.label(),
                    second: key.label(),
                    public_key: hex::encode(share.group_public_key()),
                });
            }
            loaded.push((key, share));
        }
        Ok(loaded)
    }
}

fn valid_key_name(name: &str) -> bool {
    (1..=50).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether two listen addresses would take the same UDP port.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The mode's part of [`Config::validate`]: the offending field and what is wrong.
pub(super) fn validate(config: &Config) -> Result<(), (String, String)> {
    let bad = |field: String, problem: String| Err((field, problem));
    let keys = match &config.mode {
        Mode::Single(_) | Mode::Threshold(_) => {
            let chain = config.chains.iter().position(|c| c.key.is_some());
            let node = config.nodes.iter().position(|n| n.key.is_some());
            let field = match (chain, node) {
                (Some(i), _) => Some(format!("chain[{i}].key")),
                (None, Some(i)) => Some(format!("node[{i}].key")),
                (None, None) => None,
            };
            if let Some(field) = field {
                return bad(
                    field,
                    "names a [[key]], and this config has none: remove it (a directory with \
                     one key signs every chain with it)"
                        .into(),
                );
            }
            return match &config.mode {
                Mode::Threshold(th) => th
                    .validate()
                    .map_err(|(field, problem)| (format!("threshold.{field}"), problem)),
                _ => Ok(()),
            };
        }
        Mode::Keys(keys) => keys,
    };
    for (i, key) in keys.iter().enumerate() {
        if !valid_key_name(&key.name) {
            return bad(
                format!("key[{i}].name"),
                format!(
                    "`{}` is not a key name: 1 to 50 characters of A-Z a-z 0-9 _ -",
                    key.name
                ),
            );
        }
        if keys[..i].iter().any(|k| k.name == key.name) {
            return bad(
                format!("key[{i}].name"),
                format!("key `{}` is listed twice", key.name),
            );
        }
        key.threshold
            .validate()
            .map_err(|(field, problem)| (format!("key[{i}].threshold.{field}"), problem))?;
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    let known = |key: &Option<String>| key.as_deref().filter(|k| names.contains(k)).is_some();
    let what_to_name = format!("one of the [[key]] names ({})", names.join(", "));
    for (i, chain) in config.chains.iter().enumerate() {
        if !known(&chain.key) {
            return bad(
                format!("chain[{i}].key"),
                match &chain.key {
                    None => format!(
                        "with several keys every chain names the key that signs it: \
                         {what_to_name}"
                    ),
                    Some(k) => format!("no [[key]] is named `{k}`: give {what_to_name}"),
                },
            );
        }
    }
    for (i, node) in config.nodes.iter().enumerate() {
        if !known(&node.key) {
            return bad(
                format!("node[{i}].key"),
                match &node.key {
                    None => format!(
                        "with several keys every node names the key whose chain it runs: \
                         {what_to_name}"
                    ),
                    Some(k) => format!("no [[key]] is named `{k}`: give {what_to_name}"),
                },
            );
        }
    }
    for (i, key) in keys.iter().enumerate() {
        if !config
            .chains
            .iter()
            .any(|c| c.key.as_deref() == Some(&key.name))
        {
            return bad(
                format!("key[{i}]"),
                format!(
                    "key `{}` signs no chain: bind a [[chain]] to it or remove it",
                    key.name
                ),
            );
        }
        for (j, other) in keys[..i].iter().enumerate() {
            distinct(i, key, j, other)?;
        }
    }
    Ok(())
}

/// Two keys of one directory must be separate clusters: their own port, their own files,
/// and no peer certificate trusted by both.
fn distinct(i: usize, key: &NamedKey, j: usize, other: &NamedKey) -> Result<(), (String, String)> {
    let (a, b) = (&key.threshold, &other.threshold);
    let conflict = |field: &str, what: String| {
        Err((
            format!("key[{i}].threshold.{field}"),
            format!(
                "{what} key `{}` (key[{j}]) too: each key is a cluster of its own, with the \
                 port, files and TLS identities of its own split-key",
                other.name
            ),
        ))
    };
    if same_port(a.listen, b.listen) {
        return conflict("listen", format!("port {} is the listen port of", a.listen));
    }
    for (field, x, y) in [
        ("key_share", &a.key_share, &b.key_share),
        ("tls_cert", &a.tls_cert, &b.tls_cert),
        ("tls_key", &a.tls_key, &b.tls_key),
    ] {
        if x == y {
            return conflict(field, format!("`{}` is the file of", x.display()));
        }
    }
    let pins: BTreeSet<&str> = b.peers.iter().map(|p| p.cert_sha256.as_str()).collect();
    if let Some((k, peer)) = a
        .peers
        .iter()
        .enumerate()
        .find(|(_, p)| pins.contains(p.cert_sha256.as_str()))
    {
        return conflict(
            &format!("peer[{k}].cert_sha256"),
            format!("peer {}'s certificate is trusted by", peer.id),
        );
    }
    Ok(())
}

/// Why [`merge_key`] made no config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// The directory holds a whole key; a threshold key cannot join it.
    #[error(
        "this is a single-key signer's directory: it holds the whole key, and a threshold \
         key cannot be added to it"
    )]
    LiveSingle,
    /// The directory to add is not one cosigner directory of one key.
    #[error(
        "the directory to add must be one cosigner directory of one key, as split-key writes \
         it (with a [threshold] section)"
    )]
    AdditionNotOneKey,
    /// The name given for the added key is taken.
    #[error("a key named `{0}` is already in this directory: choose another --name")]
    NameTaken(String),
    /// The added key's chain is already signed by a key of this directory.
    #[error(
        "chain `{0}` is already signed by this directory: a chain is signed by one key \
         (split the new key for its own chains)"
    )]
    ChainTaken(String),
    /// The added key's node is already served by this directory.
    #[error(
        "node {0} is already served by this directory: a node runs one chain with one key \
         (give the new key's split its own --node)"
    )]
    NodeTaken(String),
    /// The merged config fails validation.
    #[error("the merged config is not valid: field `{field}`: {problem}")]
    Invalid {
        /// The offending key, as its TOML path.
        field: String,
        /// What is wrong with its value.
        problem: String,
    },
}

/// `live` with the one key of `addition` (a directory `split-key` wrote for it) added as
/// `[[key]]` `name`, with its chains and nodes bound to it and its files under
/// `keys/<name>/`. A `[threshold]` in `live` becomes the `[[key]]` `existing_name`, its
/// chains and nodes bound to it, its files where they are. The state directory, the node
/// identity and the timeouts stay `live`'s. Pure: the files are the caller's.
pub fn merge_key(
    live: &Config,
    addition: &Config,
    name: &str,
    existing_name: &str,
) -> Result<Config, MergeError> {
    let Mode::Threshold(added) = &addition.mode else {
        return Err(MergeError::AdditionNotOneKey);
    };
    let mut merged = live.clone();
    match &live.mode {
        Mode::Single(_) => return Err(MergeError::LiveSingle),
        Mode::Threshold(th) => {
            merged.mode = Mode::Keys(vec![NamedKey {
                name: existing_name.to_string(),
                threshold: th.clone(),
            }]);
            for chain in &mut merged.chains {
                chain.key = Some(existing_name.to_string());
            }
            for node in &mut merged.nodes {
                node.key = Some(existing_name.to_string());
            }
        }
        Mode::Keys(_) => {}
    }
    let Mode::Keys(keys) = &mut merged.mode else {
        return Err(MergeError::LiveSingle);
    };
    if keys.iter().any(|k| k.name == name) {
        return Err(MergeError::NameTaken(name.to_string()));
    }
    let dir = PathBuf::from(KEYS_DIR).join(name);
    keys.push(NamedKey {
        name: name.to_string(),
        threshold: ThresholdConfig {
            key_share: dir.join(KEY_SHARE_FILE),
            tls_cert: dir.join(TLS_CERT_FILE),
            tls_key: dir.join(TLS_KEY_FILE),
            cluster_ca: dir.join(CLUSTER_CA_FILE),
            ..added.clone()
        },
    });
    for chain in &addition.chains {
        if live.chains.iter().any(|c| c.id == chain.id) {
            return Err(MergeError::ChainTaken(chain.id.clone()));
        }
        merged.chains.push(ChainConfig {
            key: Some(name.to_string()),
            ..chain.clone()
        });
    }
    for node in &addition.nodes {
        if live.nodes.iter().any(|n| n.address == node.address) {
            return Err(MergeError::NodeTaken(node.address.to_string()));
        }
        merged.nodes.push(NodeConfig {
            key: Some(name.to_string()),
            ..node.clone()
        });
    }
    merged
        .validate()
        .map_err(|(field, problem)| MergeError::Invalid { field, problem })?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PeerConfig, Timeouts};
    use crate::privval::ProtocolVersion;

    fn threshold(port: u16, pin: &str) -> ThresholdConfig {
        ThresholdConfig {
            id: 1,
            threshold: 2,
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            key_share: "key_share.json".into(),
            tls_cert: "tls/cert.pem".into(),
            tls_key: "tls/key.pem".into(),
            cluster_ca: "tls/cluster-ca.pem".into(),
            peers: (2..=3)
                .map(|id| PeerConfig {
                    id,
                    address: format!("127.0.0.1:{}", port + id),
                    cert_sha256: format!("{pin}{id}").repeat(32),
                })
                .collect(),
            joining: Vec::new(),
            allowed_sources: Vec::new(),
        }
    }

    /// A one-key directory as split-key writes it, for `chain` served by `node_port`.
    fn one_key(port: u16, pin: &str, chain: &str, node_port: u16) -> Config {
        Config {
            state_dir: "state".into(),
            identity_key: "identity.key".into(),
            chains: vec![ChainConfig {
                id: chain.into(),
                max_height_jump: Some(500),
                key: None,
            }],
            nodes: vec![NodeConfig {
                address: format!("tcp://127.0.0.1:{node_port}").parse().unwrap(),
                protocol: ProtocolVersion::V0_38,
                allow_sign_bytes: false,
                key: None,
            }],
            mode: Mode::Threshold(threshold(port, pin)),
            timeouts: Timeouts::default(),
            metrics: None,
        }
    }

    fn two_keys() -> Config {
        let live = one_key(7100, "a", "chain-a", 26659);
        let addition = one_key(7110, "b", "chain-b", 26669);
        merge_key(&live, &addition, "validator-b", "validator-a").unwrap()
    }

    #[test]
    fn a_one_key_directory_becomes_two_keys_and_round_trips() {
        let merged = two_keys();
        let Mode::Keys(keys) = &merged.mode else {
            panic!("{merged:?}")
        };
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].threshold, threshold(7100, "a"));
        assert_eq!(
            keys[1].threshold.key_share,
            PathBuf::from("keys/validator-b/key_share.json")
        );
        assert_eq!(
            keys[1].threshold.cluster_ca,
            PathBuf::from("keys/validator-b/tls/cluster-ca.pem")
        );
        assert_eq!(keys[1].threshold.listen.port(), 7110);
        let views = merged.threshold_keys();
        let summary: Vec<(Option<&str>, Vec<&str>, usize)> = views
            .iter()
            .map(|v| {
                (
                    v.name,
                    v.chains.iter().map(|c| c.id.as_str()).collect(),
                    match &v.nodes[0].address.endpoint {
                        crate::privval::address::NodeEndpoint::Tcp { port, .. } => *port,
                        crate::privval::address::NodeEndpoint::Unix(_) => 0,
                    },
                )
            })
            .map(|(n, c, p)| (n, c, usize::from(p)))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("validator-a"), vec!["chain-a"], 26659),
                (Some("validator-b"), vec!["chain-b"], 26669),
            ]
        );
        // Per-chain settings come along.
        assert_eq!(merged.chains[1].max_height_jump, Some(500));
        let text = merged.to_toml();
        assert!(
            text.contains("[[key]]") && text.contains("[key.threshold]"),
            "{text}"
        );
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, merged);
        assert_eq!(back.validate(), Ok(()));
        // A third key joins the [[key]] list as it is.
        let third = merge_key(
            &merged,
            &one_key(7120, "c", "chain-c", 26679),
            "validator-c",
            "ignored",
        )
        .unwrap();
        assert_eq!(third.threshold_keys().len(), 3);
        assert_eq!(third.threshold_keys()[0].name, Some("validator-a"));
    }

    #[test]
    fn a_one_key_directory_has_one_view_of_everything() {
        let c = one_key(7100, "a", "chain-a", 26659);
        let views = c.threshold_keys();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].name, None);
        assert_eq!(views[0].label(), "the [threshold] key");
        assert_eq!(views[0].chains.len(), 1);
    }

    #[test]
    fn merging_refuses_what_would_mix_keys() {
        let live = one_key(7100, "a", "chain-a", 26659);
        let err = |addition: &Config, name: &str| merge_key(&live, addition, name, "validator-a");
        assert_eq!(
            err(&one_key(7110, "b", "chain-a", 26669), "b"),
            Err(MergeError::ChainTaken("chain-a".into()))
        );
        assert!(matches!(
            err(&one_key(7110, "b", "chain-b", 26659), "b"),
            Err(MergeError::NodeTaken(_))
        ));
        assert_eq!(
            err(&one_key(7110, "b", "chain-b", 26669), "validator-a"),
            Err(MergeError::NameTaken("validator-a".into()))
        );
        let Err(MergeError::Invalid { field, problem }) =
            err(&one_key(7100, "b", "chain-b", 26669), "b")
        else {
            panic!("the same port is refused")
        };
        assert_eq!(field, "key[1].threshold.listen");
        assert!(
            problem.contains("listen port of key `validator-a`"),
            "{problem}"
        );
        // The same TLS identities (a key split with the other's cluster): refused.
        let Err(MergeError::Invalid { field, problem }) =
            err(&one_key(7110, "a", "chain-b", 26669), "b")
        else {
            panic!("shared peer certificates are refused")
        };
        assert_eq!(field, "key[1].threshold.peer[0].cert_sha256");
        assert!(
            problem.contains("certificate is trusted by key `validator-a`"),
            "{problem}"
        );
        let Err(MergeError::Invalid { field, .. }) =
            err(&one_key(7110, "b", "chain-b", 26669), "no/slash")
        else {
            panic!("a name that is not one is refused")
        };
        assert_eq!(field, "key[1].name");
        let single = Config {
            mode: Mode::Single(crate::config::SingleConfig {
                key_file: "k.json".into(),
            }),
            ..live.clone()
        };
        assert_eq!(
            merge_key(&single, &live, "b", "a"),
            Err(MergeError::LiveSingle)
        );
        assert_eq!(
            merge_key(&live, &two_keys(), "b", "a"),
            Err(MergeError::AdditionNotOneKey)
        );
    }

    #[test]
    fn validation_names_what_is_unbound_or_misbound() {
        let check = |edit: &dyn Fn(&mut Config)| {
            let mut c = two_keys();
            edit(&mut c);
            c.validate().unwrap_err()
        };
        let (field, problem) = check(&|c| c.chains[1].key = None);
        assert_eq!(field, "chain[1].key");
        assert!(problem.contains("validator-a, validator-b"), "{problem}");
        let (field, problem) = check(&|c| c.nodes[0].key = Some("nobody".into()));
        assert_eq!(field, "node[0].key");
        assert!(
            problem.contains("no [[key]] is named `nobody`"),
            "{problem}"
        );
        let (field, problem) = check(&|c| c.chains[1].key = Some("validator-a".into()));
        assert_eq!(field, "key[1]");
        assert!(problem.contains("signs no chain"), "{problem}");
        let (field, _) = check(&|c| {
            if let Mode::Keys(keys) = &mut c.mode {
                keys[1].threshold.key_share = "key_share.json".into();
            }
        });
        assert_eq!(field, "key[1].threshold.key_share");
        let (field, _) = check(&|c| {
            if let Mode::Keys(keys) = &mut c.mode {
                keys[1].threshold.threshold = 1;
            }
        });
        assert_eq!(field, "key[1].threshold.threshold");
        // `key` in a one-key directory.
        let mut one = one_key(7100, "a", "chain-a", 26659);
        one.nodes[0].key = Some("x".into());
        assert_eq!(one.validate().unwrap_err().0, "node[0].key");
    }

    #[test]
    fn threshold_and_keys_together_are_refused_by_name() {
        let text = format!(
            "{}\n{}",
            one_key(7100, "a", "chain-a", 26659).to_toml(),
            two_keys()
                .to_toml()
                .lines()
                .skip_while(|l| !l.starts_with("[[key]]"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
        assert!(err.contains("cosigner add-key"), "{err}");
    }
}
