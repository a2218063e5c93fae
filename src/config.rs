//! The `cosigner.toml` schema, loading and validation.
//!
//! A cosigner directory (written by `split-key` or `cosigner init-single`) holds one
//! `cosigner.toml`. Relative paths in it are resolved against the directory that holds the
//! file, so a directory can be copied to its host as it is. Every error names the file and
//! the field that is wrong. A directory with shares of several validator keys is described
//! in [`keys`].

mod keys;
pub mod metrics;

pub use keys::{merge_key, KeySharesError, KeyView, MergeError, NamedKey};
pub use metrics::MetricsConfig;

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
    /// This cosigner's TLS certificate and key for the cluster, and the cluster's CA
    /// certificate (whose private key was destroyed by `split-key`).
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// The CA that issued every cosigner's certificate; a peer must present one it signed.
    pub cluster_ca: PathBuf,
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

/// Why a `cosigner.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the read failed with.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {error}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's error, with the line and column.
        error: Box<toml::de::Error>,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{path}: field `{field}`: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The offending key, as its path in the file (`chain[1].id`).
        field: String,
        /// What is wrong with the value and what to do.
        problem: String,
    },
}

/// A loaded config: the parsed file, where it came from, and its paths made absolute.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The config file, absolute; relative paths inside it were resolved against its folder.
    pub path: PathBuf,
    /// The parsed config, its paths absolute.
    pub config: Config,
}

impl LoadedConfig {
    /// Resolves a path from the config against the directory that holds the file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        let base = self.path.parent().unwrap_or_else(|| Path::new("."));
        base.join(p)
    }

    /// The cluster identity's files, resolved.
    pub fn tls_paths(&self, th: &ThresholdConfig) -> TlsPaths {
        TlsPaths {
            cert: self.resolve(&th.tls_cert),
            key: self.resolve(&th.tls_key),
            ca: self.resolve(&th.cluster_ca),
        }
    }

    /// What the cluster transport needs, from the `[threshold]` section.
    pub fn cluster_config(&self, th: &ThresholdConfig) -> ClusterConfig {
        ClusterConfig {
            id: th.id,
            listen: th.listen,
            peers: th
                .peers
                .iter()
                .map(|p| PeerAddr {
                    id: p.id,
                    address: p.address.clone(),
                    cert_sha256: p.cert_sha256.clone(),
                })
                .collect(),
            tls: self.tls_paths(th),
            allowed_sources: th.allowed_sources.clone(),
        }
    }

    /// Loads this cosigner's key share and checks that it is the share the config says:
    /// the same cosigner number and threshold.
    pub fn load_key_share(&self, th: &ThresholdConfig) -> Result<KeyShare, KeyShareLoadError> {
        let path = self.resolve(&th.key_share);
        let share = key_share::load(&path).map_err(|e| self.pending_ceremony(th, e))?;
        if share.index() != th.id || share.threshold() != th.threshold {
            return Err(KeyShareLoadError::Mismatch {
                path,
                share_id: share.index(),
                share_threshold: share.threshold(),
                config_id: th.id,
                config_threshold: th.threshold,
            });
        }
        // The peers a cosigner accepts are exactly the key's other members: a cosigner that
        // a refresh removed is not trusted even if a config still lists it.
        let mut configured: Vec<u16> = th.peers.iter().map(|p| p.id).collect();
        configured.push(th.id);
        configured.sort_unstable();
        let members = share
            .file()
            .members()
            .map_err(|problem| key_share::KeyShareError {
                path: path.clone(),
                problem,
            })?;
        if configured != members {
            return Err(KeyShareLoadError::Members {
                path,
                share: key_share::members_list(&members),
                config: key_share::members_list(&configured),
            });
        }
        Ok(share)
    }
}

impl LoadedConfig {
    /// A missing share of a directory made for a key ceremony (`ceremony.json` beside the
    /// config) is not lost: it was never made. The error says which command makes it; `start`
    /// and `check-config` ask this first, before anything else can fail on such a directory.
    pub fn check_no_pending_ceremony(&self, th: &ThresholdConfig) -> Result<(), KeyShareLoadError> {
        let path = self.resolve(&th.key_share);
        if let Some(staged) = crate::ceremony::refresh::files::pending(&path, &self.path) {
            return Err(KeyShareLoadError::PendingRefresh {
                staged,
                command: format!(
                    "cosigner refresh --config {}",
                    crate::shell::quote(&self.path)
                ),
            });
        }
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        let ceremony = self.resolve(Path::new(crate::ceremony::CEREMONY_FILE));
        match crate::ceremony::CeremonyFile::load(&ceremony) {
            Ok(file) => Err(KeyShareLoadError::PendingCeremony {
                path,
                command: format!(
                    "{} --config {}",
                    file.kind.command(),
                    crate::shell::quote(&self.path)
                ),
            }),
            Err(_) => Ok(()),
        }
    }

    fn pending_ceremony(
        &self,
        th: &ThresholdConfig,
        e: key_share::KeyShareError,
    ) -> KeyShareLoadError {
        match self.check_no_pending_ceremony(th) {
            Err(pending) => pending,
            Ok(()) => KeyShareLoadError::Load(e),
        }
    }
}

/// Why the key share the config names cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyShareLoadError {
    /// The key share file cannot be read or is not a key share.
    #[error(transparent)]
    Load(#[from] key_share::KeyShareError),
    /// No key share yet: the directory was made for a key ceremony that has not run.
    #[error(
        "{}: no key share yet: this directory is waiting for its key ceremony. Run `{command}` \
         on every cosigner host (all within its --timeout of each other), then start",
        path.display()
    )]
    PendingCeremony {
        /// Where the key share will be.
        path: PathBuf,
        /// The ceremony command to run on every cosigner host.
        command: String,
    },
    /// The key share is another cosigner's, or of another threshold, than the config says.
    #[error(
        "{}: the key share is cosigner {share_id} of a {share_threshold}-of-n cluster, but the \
         config says cosigner {config_id} with threshold {config_threshold}",
        path.display()
    )]
    Mismatch {
        /// The key share file.
        path: PathBuf,
        /// The cosigner identifier in the key share.
        share_id: u16,
        /// The threshold in the key share.
        share_threshold: u16,
        /// The cosigner identifier in the config.
        config_id: u16,
        /// The threshold in the config.
        config_threshold: u16,
    },
    #[error(
        "{}: the key share's cosigners are {share}, but the config's are {config}: after a \
         refresh that removed a cosigner the config lists only the remaining ones (`cosigner \
         refresh` rewrites it)",
        path.display()
    )]
    /// The config's peers are not the key share's other members.
    Members {
        /// The config file.
        path: PathBuf,
        /// The share's cosigners, as a list for the message.
        share: String,
        /// The config's cosigners, as a list for the message.
        config: String,
    },
    #[error(
        "{}: a share refresh was interrupted on this host (this staged share is left). \
         `cosigner start` settles it with the other cosigners first (it finishes or drops the \
         refresh, as they agree); so does `{command}`",
        staged.display()
    )]
    /// A refresh was interrupted on this host; it must be settled before signing.
    PendingRefresh {
        /// The staged share.
        staged: PathBuf,
        /// The command that settles it, for this config.
        command: String,
    },
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| match retired_key(&text) {
            Some((field, problem)) => ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                problem: problem.replace("COSIGNER_TOML", &crate::shell::quote(path)),
            },
            None => ConfigError::Parse {
                path: path.to_path_buf(),
                error: Box::new(source),
            },
        })?;
        config
            .validate()
            .map_err(|(field, problem)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                problem,
            })?;
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
        })
    }

    /// Renders the config as TOML.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings and numbers cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks everything that can be checked without touching other files: the offending
    /// field and what is wrong with it.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        if self.chains.is_empty() {
            return bad(
                "chain",
                "at least one [[chain]] with an `id` is required".into(),
            );
        }
        for (i, chain) in self.chains.iter().enumerate() {
            if !ChainId::is_valid(&chain.id) {
                return bad(
                    &format!("chain[{i}].id"),
                    format!(
                        "`{}` is not a chain ID: 1 to 50 characters of A-Z a-z 0-9 . _ -",
                        chain.id
                    ),
                );
            }
            if chain.max_height_jump == Some(0) {
                return bad(
                    &format!("chain[{i}].max_height_jump"),
                    "0 would refuse every new height; leave it out for the default".into(),
                );
            }
            if self.chains[..i].iter().any(|c| c.id == chain.id) {
                return bad(
                    &format!("chain[{i}].id"),
                    format!("chain `{}` is listed twice", chain.id),
                );
            }
        }
        if self.nodes.is_empty() {
            return bad(
                "node",
                "at least one [[node]] with an `address` is required".into(),
            );
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|n| n.address == node.address) {
                return bad(
                    &format!("node[{i}].address"),
                    format!("node `{}` is listed twice", node.address),
                );
            }
        }
        let t = &self.timeouts;
        for (field, value) in [
            ("timeouts.node_handshake_ms", t.node_handshake_ms),
            ("timeouts.node_idle_ms", t.node_idle_ms),
            ("timeouts.node_write_ms", t.node_write_ms),
            ("timeouts.redial_ms", t.redial_ms),
            ("timeouts.sign_attempt_ms", t.sign_attempt_ms),
            ("timeouts.sign_total_ms", t.sign_total_ms),
            ("timeouts.catch_up_ms", t.catch_up_ms),
        ] {
            if value == 0 || value > 60_000 {
                return bad(field, format!("{value} is outside 1..=60000"));
            }
        }
        if t.sign_attempt_ms > t.sign_total_ms {
            return bad(
                "timeouts.sign_attempt_ms",
                "must not exceed timeouts.sign_total_ms".into(),
            );
        }
        keys::validate(self)
    }
}

impl ThresholdConfig {
    /// Checks the section on its own; field names are relative to it (`peer[0].id`).
    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        let Ok(n) = u16::try_from(self.peers.len() + 1) else {
            return bad("peer", "too many peers".into());
        };
        match check_threshold(self.threshold, n) {
            Ok(()) => {}
            Err(e @ ThresholdError::TooManyShares { .. }) => return bad("peer", e.to_string()),
            Err(e) => return bad("threshold", e.to_string()),
        }
        // Ids are 1..=n after a split or a DKG; a refresh that removed a cosigner leaves a
        // gap, so any distinct cosigner numbers are accepted here and the key share decides.
        let max = crate::threshold::key_share::MAX_COSIGNERS;
        if self.id == 0 || self.id > max {
            return bad("id", format!("{} is outside 1..={max}", self.id));
        }
        let mut seen = vec![self.id];
        for (i, peer) in self.peers.iter().enumerate() {
            if peer.id == 0 || peer.id > max || seen.contains(&peer.id) {
                return bad(
                    &format!("peer[{i}].id"),
                    format!("{} is outside 1..={max} or used twice", peer.id),
                );
            }
            seen.push(peer.id);
            split_host_port(&peer.address).map_err(|e| (format!("peer[{i}].address"), e))?;
            if peer.cert_sha256.len() != 64
                || !peer
                    .cert_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return bad(
                    &format!("peer[{i}].cert_sha256"),
                    "expected 64 lowercase hex digits".into(),
                );
            }
        }
        Ok(())
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
                cluster_ca: "tls/cluster-ca.pem".into(),
                peers: (2..=3)
                    .map(|id| PeerConfig {
                        id,
                        address: format!("127.0.0.1:710{id}"),
                        cert_sha256: "ab".repeat(32),
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
