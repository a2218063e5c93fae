//! The `cosigner.toml` schema, loading and validation.
//!
//! A cosigner directory (written by `split-key` or `cosigner init-single`) holds one
//! `cosigner.toml`. Relative paths in it are resolved against the directory that holds the
//! file, so a directory can be copied to its host as it is. Every error names the file and
//! the field that is wrong. A directory with shares of several validator keys is described
//! in [`keys`].

mod joining;
mod keys;
mod loaded;
pub mod metrics;
mod validate;

pub use joining::{
    add_joining, cancel_joining, edited_text, normalize_fingerprint, promote_joining, JoiningError,
};
pub use keys::{merge_key, KeySharesError, KeyView, MergeError, NamedKey};
pub use loaded::{ConfigError, KeyShareLoadError, LoadedConfig};
pub use metrics::MetricsConfig;
pub use validate::is_fingerprint;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::tls::TlsPaths;
use crate::cluster::transport::{ClusterConfig, PeerAddr};
use crate::consensus::ChainId;
use crate::host_port::split_host_port;
use crate::privval::dialer::NodeTimeouts;
use crate::privval::{NodeAddress, ProtocolVersion};
use crate::sign_state::DEFAULT_MAX_HEIGHT_JUMP;
use crate::signer::threshold::SignTimeouts;
use crate::threshold::key_share::{self, KeyShare};
use crate::threshold::quorum::{check_threshold, ThresholdError};

/// The whole `cosigner.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawConfig", into = "RawConfig")]
pub struct Config {
    /// Where the per-chain sign state files live.
    pub state_dir: PathBuf,
    /// This cosigner's SecretConnection identity key (base64 of a 32-byte Ed25519 seed).
    pub identity_key: PathBuf,
    /// Chains this signer signs for; a request for any other chain ID is refused.
    pub chains: Vec<ChainConfig>,
    /// The nodes to dial (each node's `priv_validator_laddr`).
    pub nodes: Vec<NodeConfig>,
    /// Whose key signs: one whole key, one threshold share, or several named shares.
    pub mode: Mode,
    /// How long each network and signing step may take.
    pub timeouts: Timeouts,
    /// The Prometheus endpoint (`[metrics]`), if any.
    pub metrics: Option<MetricsConfig>,
}

/// Whose key this signer signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The whole key on this host (`[single]`).
    Single(SingleConfig),
    /// A share of it, with the cluster (`[threshold]`): one key for every chain.
    Threshold(ThresholdConfig),
    /// Shares of several validator keys (`[[key]]`, at least one), each with a cluster of
    /// its own; every chain and every node names its key ([`keys`]).
    Keys(Vec<NamedKey>),
}

/// `cosigner.toml` as written: the mode is whichever of `[single]` and `[threshold]` is
/// present, and exactly one must be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: PathBuf,
    identity_key: PathBuf,
    #[serde(rename = "chain", default)]
    chains: Vec<ChainConfig>,
    #[serde(rename = "node", default)]
    nodes: Vec<NodeConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    single: Option<SingleConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<ThresholdConfig>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(rename = "key", default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<NamedKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metrics: Option<MetricsConfig>,
}

impl TryFrom<RawConfig> for Config {
    type Error = String;

    fn try_from(raw: RawConfig) -> Result<Config, String> {
        let mode = match (raw.single, raw.threshold, raw.keys.is_empty()) {
            (Some(single), None, true) => Mode::Single(single),
            (None, Some(threshold), true) => Mode::Threshold(threshold),
            (None, None, false) => Mode::Keys(raw.keys),
            (Some(_), Some(_), _) => {
                return Err("give either [single] or [threshold], not both".into())
            }
            (Some(_), None, false) => {
                return Err("give either [single] or [[key]] entries, not both".into())
            }
            (None, Some(_), false) => {
                return Err(
                    "give either [threshold] (one key) or [[key]] entries (several \
                     keys), not both; `cosigner add-key` moves [threshold] into a [[key]]"
                        .into(),
                )
            }
            (None, None, true) => {
                return Err("one of [single], [threshold] or [[key]] is required".into())
            }
        };
        Ok(Config {
            state_dir: raw.state_dir,
            identity_key: raw.identity_key,
            chains: raw.chains,
            nodes: raw.nodes,
            mode,
            timeouts: raw.timeouts,
            metrics: raw.metrics,
        })
    }
}

impl From<Config> for RawConfig {
    fn from(c: Config) -> RawConfig {
        let (single, threshold, keys) = match c.mode {
            Mode::Single(s) => (Some(s), None, Vec::new()),
            Mode::Threshold(t) => (None, Some(t), Vec::new()),
            Mode::Keys(keys) => (None, None, keys),
        };
        RawConfig {
            state_dir: c.state_dir,
            identity_key: c.identity_key,
            chains: c.chains,
            nodes: c.nodes,
            single,
            threshold,
            timeouts: c.timeouts,
            keys,
            metrics: c.metrics,
        }
    }
}

impl Config {
    /// The same config without the peers `removed` (a refresh that removed cosigners), or
    /// `None` if it is not a one-key threshold config.
    pub fn without_peers(&self, removed: &[u16]) -> Option<Config> {
        let mut config = self.clone();
        match &mut config.mode {
            Mode::Threshold(th) => th.peers.retain(|p| !removed.contains(&p.id)),
            Mode::Single(_) | Mode::Keys(_) => return None,
        }
        Some(config)
    }

    /// The `[threshold]` section of a directory with one threshold key.
    pub fn threshold(&self) -> Option<&ThresholdConfig> {
        match &self.mode {
            Mode::Threshold(th) => Some(th),
            Mode::Single(_) | Mode::Keys(_) => None,
        }
    }
}

/// A `[[chain]]`: one chain ID this signer signs for, and its safety margins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The chain ID exactly as the node sends it in each request (`cosmoshub-4`).
    pub id: String,
    /// Refuse a request more than this many heights above the highest height the validator
    /// is known to have signed (default [`DEFAULT_MAX_HEIGHT_JUMP`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height_jump: Option<u64>,
    /// The `[[key]]` that signs this chain; only (and always) with several keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl ChainConfig {
    /// The configured height jump limit, or [`DEFAULT_MAX_HEIGHT_JUMP`] when unset.
    pub fn max_height_jump(&self) -> u64 {
        self.max_height_jump.unwrap_or(DEFAULT_MAX_HEIGHT_JUMP)
    }
}

/// Keys that were settings once and are refused now with what to do instead, rather than
/// with the parser's bare "unknown field": `(table, key, what to do)`.
const RETIRED_KEYS: &[(&str, &str, &str)] = &[(
    "chain",
    "allow_fresh_state",
    "is no longer a setting: remove it. Each chain's state file is now written when the \
     cosigner directory is made (split-key, init-single), and a missing one stops the start \
     instead of starting empty. For a chain that has no state file yet, import the \
     validator's last state (`cosigner state import PRIV_VALIDATOR_STATE_JSON --config \
     COSIGNER_TOML --chain-id ID`) or, only if this key never signed on that chain, create \
     an empty one (`cosigner state init --config COSIGNER_TOML --chain-id ID`)",
)];

/// The first retired key in `text` (which failed to parse), as the field it is in and what
/// to do about it. Only a text that is valid TOML is searched.
fn retired_key(text: &str) -> Option<(String, String)> {
    let doc: toml::Table = text.parse().ok()?;
    RETIRED_KEYS.iter().find_map(|(table, key, advice)| {
        let entries = doc.get(*table)?.as_array()?;
        let i = entries
            .iter()
            .position(|e| e.as_table().is_some_and(|t| t.contains_key(*key)))?;
        Some((format!("{table}[{i}].{key}"), advice.to_string()))
    })
}

/// A `[[node]]`: one validator node to dial and the privval version it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `tcp://[NODE_ID@]HOST:PORT` or `unix:///PATH`.
    pub address: NodeAddress,
    /// Which CometBFT privval version the node speaks; it decides the public key response.
    pub protocol: ProtocolVersion,
    /// Answer v1 SignBytes requests (never for bytes that decode as a vote or proposal).
    #[serde(default)]
    pub allow_sign_bytes: bool,
    /// The `[[key]]` whose cluster serves this node; only (and always) with several keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `[single]`: this signer holds the whole validator key and signs alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleConfig {
    /// The whole validator key (`priv_validator_key.json` or a tmkms softsign key).
    pub key_file: PathBuf,
}

/// `[threshold]`: this cosigner holds one FROST share and signs with its peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// This cosigner's FROST identifier, 1..=n.
    pub id: u16,
    /// How many cosigners must sign together (`t` of `n`); more than half of `n`.
    pub threshold: u16,
    /// Where this cosigner accepts QUIC connections from its peers.
    pub listen: SocketAddr,
    /// This cosigner's FROST key package and the group's public key package.
    pub key_share: PathBuf,
    /// This cosigner's TLS certificate for the cluster; peers pin its SHA-256.
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// The CA `split-key` issued the cluster's first certificates with (its private key was
    /// destroyed then). Read and checked at load if given; peers are trusted by their pins
    /// alone ([`crate::cluster::tls`] says why), so a cosigner added later has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ca: Option<PathBuf>,
    /// The other cosigners of the cluster (`[[threshold.peer]]`), one each.
    #[serde(rename = "peer", default)]
    pub peers: Vec<PeerConfig>,
    /// Cosigners being added (`cosigner add-peer`): trusted for the join ceremony only,
    /// never for signing, until `cosigner refresh --add` makes them members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joining: Vec<PeerConfig>,
    /// Source networks (`ADDR/PREFIX` or an address) cluster handshakes are accepted from
    /// besides the peers' own addresses: for a peer that sends from another address than
    /// the one configured for it (NAT, a multi-homed host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_sources: Vec<crate::cluster::IpNet>,
}

/// A `[[threshold.peer]]`: another cosigner of this cluster and how to reach and trust it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's FROST identifier, 1..=n, distinct from this cosigner's `id`.
    pub id: u16,
    /// `HOST:PORT` of the peer's QUIC listener.
    pub address: String,
    /// Lowercase hex SHA-256 of the peer's DER certificate; the peer's identity.
    pub cert_sha256: String,
}

/// Network and signing deadlines, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect plus SecretConnection handshake with a node.
    pub node_handshake_ms: u64,
    /// A node that sends nothing for this long is dropped (it pings every ~3.3 s).
    pub node_idle_ms: u64,
    /// Writing one reply to a node.
    pub node_write_ms: u64,
    /// Delay before redialling a node after a failure.
    pub redial_ms: u64,
    /// One attempt of a threshold signing with one set of participants.
    pub sign_attempt_ms: u64,
    /// All attempts of one threshold signing together; must stay under the node's 5 s.
    pub sign_total_ms: u64,
    /// How long a starting cosigner waits for every peer to say what the validator signed
    /// before it settles for `t - 1` of them.
    pub catch_up_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            node_handshake_ms: 2_000,
            node_idle_ms: 10_000,
            node_write_ms: 5_000,
            redial_ms: 200,
            sign_attempt_ms: 800,
            sign_total_ms: 3_000,
            catch_up_ms: 1_000,
        }
    }
}

impl Timeouts {
    /// The deadlines of node connections.
    pub fn node(&self) -> NodeTimeouts {
        NodeTimeouts {
            handshake: Duration::from_millis(self.node_handshake_ms),
            idle: Duration::from_millis(self.node_idle_ms),
            write: Duration::from_millis(self.node_write_ms),
            redial: Duration::from_millis(self.redial_ms),
        }
    }

    /// The deadlines of threshold signings.
    pub fn signing(&self) -> SignTimeouts {
        SignTimeouts {
            attempt: Duration::from_millis(self.sign_attempt_ms),
            total: Duration::from_millis(self.sign_total_ms),
            catch_up: Duration::from_millis(self.catch_up_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            state_dir: "state".into(),
            identity_key: "identity.key".into(),
            chains: vec![ChainConfig {
                id: "test-chain".into(),
                max_height_jump: None,
                key: None,
            }],
            nodes: vec![NodeConfig {
                address: "tcp://127.0.0.1:26659".parse().unwrap(),
                protocol: ProtocolVersion::V0_38,
                allow_sign_bytes: false,
                key: None,
            }],
            mode: Mode::Threshold(ThresholdConfig {
                id: 1,
                threshold: 2,
                listen: "127.0.0.1:7101".parse().unwrap(),
                key_share: "key_share.json".into(),
                tls_cert: "tls/cert.pem".into(),
                tls_key: "tls/key.pem".into(),
                cluster_ca: Some("tls/cluster-ca.pem".into()),
                peers: (2..=3)
                    .map(|id| PeerConfig {
                        id,
                        address: format!("127.0.0.1:710{id}"),
                        cert_sha256: format!("{id:02x}").repeat(32),
                    })
                    .collect(),
                joining: Vec::new(),
                allowed_sources: vec!["10.1.0.0/16".parse().unwrap()],
            }),
            timeouts: Timeouts::default(),
            metrics: Some(MetricsConfig {
                listen: "127.0.0.1:8101".parse().unwrap(),
            }),
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let c = sample();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.validate(), Ok(()));
        assert_eq!(back.nodes[0].address.label(), "127.0.0.1:26659");
    }

    #[test]
    fn refuses_a_threshold_that_lets_two_quorums_sign() {
        let mut c = sample();
        let Mode::Threshold(th) = &mut c.mode else {
            unreachable!("a threshold sample")
        };
        th.peers.push(PeerConfig {
            id: 4,
            address: "127.0.0.1:7104".into(),
            cert_sha256: "cd".repeat(32),
        });
        let (field, problem) = c.validate().unwrap_err();
        assert_eq!(field, "threshold.threshold");
        assert!(problem.contains("t > n/2"), "{problem}");
    }

    #[test]
    fn a_retired_allow_fresh_state_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosigner.toml");
        let mut c = sample();
        c.chains.push(ChainConfig {
            id: "second-chain".into(),
            max_height_jump: None,
            key: None,
        });
        let text = c.to_toml().replace(
            "id = \"second-chain\"",
            "id = \"second-chain\"\nallow_fresh_state = true",
        );
        assert!(text.contains("allow_fresh_state"), "{text}");
        std::fs::write(&path, text).unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        for needle in [
            path.display().to_string(),
            "chain[1].allow_fresh_state".to_string(),
            "remove it".to_string(),
            format!("state init --config {}", path.display()),
            "state import".to_string(),
        ] {
            assert!(msg.contains(&needle), "`{needle}` missing: {msg}");
        }
        assert!(!msg.contains("unknown field"), "{msg}");
        // Other unknown keys still get the parser's message.
        std::fs::write(
            &path,
            c.to_toml()
                .replace("id = \"second-chain\"", "id = \"second-chain\"\nfoo = 1"),
        )
        .unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(msg.contains("unknown field `foo`"), "{msg}");
    }

    #[test]
    fn names_file_and_field_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosigner.toml");
        let text = sample()
            .to_toml()
            .replace("tcp://127.0.0.1:26659", "http://x:1");
        std::fs::write(&path, text).unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(
            msg.contains("cosigner.toml")
                && msg.contains("address = \"http://x:1\"")
                && msg.contains("must start with tcp://"),
            "{msg}"
        );
        // Both modes, or neither, are refused by name.
        let both = format!("{}\n[single]\nkey_file = \"k.json\"\n", sample().to_toml());
        std::fs::write(&path, both).unwrap();
        let msg = Config::load(&path).unwrap_err().to_string();
        assert!(msg.contains("either [single] or [threshold]"), "{msg}");
    }
}
