//! Loading a cosigner directory: the one function `start` runs before it starts anything,
//! and `check-config` runs to say whether `start` would get that far.
//!
//! In order: the config, a pending key ceremony, the node identity key, the validator key or
//! every key share with its TLS identity, every chain's sign state (opened and locked, so
//! its directory, its presence, its content and its permissions are checked), and every
//! cluster listen port (bound and released). Every secret file is read through the checks
//! that refuse a mode others can read.
//!
//! The one difference between the two: a sign state held by another process means, for
//! `check-config`, that a cosigner runs with this directory. That is reported, and the ports
//! it holds are not probed; `start` refuses.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;

use cosigner::cluster::tls::TlsIdentity;
use cosigner::config::{Config, LoadedConfig, Mode, ThresholdConfig};
use cosigner::sign_state::{ChainSignState, StateError};
use cosigner::threshold::key_share::KeyShare;
use cosigner::validator_key::{self, ValidatorKey};

/// Who loads the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Start,
    Check,
}

/// A cosigner directory with everything `start` needs loaded and checked.
pub struct Directory {
    pub loaded: LoadedConfig,
    /// The SecretConnection identity nodes see.
    pub identity: SigningKey,
    pub keys: Keys,
    /// Every chain's opened (and locked) sign state; for [`Purpose::Check`], those that no
    /// other process holds.
    pub states: HashMap<String, ChainSignState>,
    /// State files another process holds (only for [`Purpose::Check`]).
    pub in_use: Vec<PathBuf>,
}

/// What the directory signs with.
pub enum Keys {
    /// `[single]`: the whole key.
    Single(Box<ValidatorKey>),
    /// `[threshold]` or `[[key]]`: one share per validator key.
    Threshold(Vec<ThresholdKey>),
}

/// One validator key's share and the section that configures its cluster.
pub struct ThresholdKey {
    /// The `[[key]]` name; `None` for a one-key directory's `[threshold]`.
    pub name: Option<String>,
    /// How messages name the key.
    pub label: String,
    pub threshold: ThresholdConfig,
    pub share: KeyShare,
    /// The chains it signs.
    pub chains: Vec<String>,
}

impl Directory {
    /// The validator public keys, named as the config names them.
    pub fn public_keys(&self) -> Vec<(Option<&str>, [u8; 32])> {
        match &self.keys {
            Keys::Single(key) => vec![(None, key.public_key())],
            Keys::Threshold(keys) => keys
                .iter()
                .map(|k| (k.name.as_deref(), k.share.group_public_key()))
                .collect(),
        }
    }
}

/// Loads and checks the directory of `config_path`; the first problem is the error.
pub fn load(config_path: &Path, purpose: Purpose) -> anyhow::Result<Directory> {
    let loaded = Config::load(config_path)?;
    if let Some(th) = loaded.config.threshold() {
        loaded.check_no_pending_ceremony(th)?;
    }
    let config = &loaded.config;
    let identity = validator_key::load_identity_key(&loaded.resolve(&config.identity_key))?;
    let keys = match &config.mode {
        Mode::Single(single) => Keys::Single(Box::new(ValidatorKey::load(
            &loaded.resolve(&single.key_file),
        )?)),
        Mode::Threshold(_) | Mode::Keys(_) => Keys::Threshold(threshold_keys(&loaded)?),
    };
    let mut states = HashMap::new();
    let mut in_use = Vec::new();
    for chain in &config.chains {
        match super::state::open_chain_state(&loaded, &chain.id) {
            Ok(state) => {
                states.insert(
                    chain.id.clone(),
                    state.with_max_jump(chain.max_height_jump()),
                );
            }
            Err(e) if purpose == Purpose::Check => match e.downcast_ref::<StateError>() {
                Some(StateError::Locked(path)) => in_use.push(path.clone()),
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    // A running cosigner holds its ports as well as its state files.
    if in_use.is_empty() {
        if let Keys::Threshold(keys) = &keys {
            for key in keys {
                probe_udp(key.threshold.listen).with_context(|| key.label.clone())?;
            }
        }
        if let Some(metrics) = &loaded.config.metrics {
            probe_tcp(metrics.listen)?;
        }
    }
    Ok(Directory {
        loaded,
        identity,
        keys,
        states,
        in_use,
    })
}

/// Every threshold key's share (checked against its section) and TLS identity (whose own
/// certificate must not be listed as a peer's).
fn threshold_keys(loaded: &LoadedConfig) -> anyhow::Result<Vec<ThresholdKey>> {
    let mut keys = Vec::new();
    for (key, share) in loaded.load_key_shares()? {
        let label = key.label();
        let th = key.threshold;
        let tls = TlsIdentity::load(&loaded.tls_paths(th))
            .with_context(|| format!("{label}: cluster TLS identity"))?;
        if let Some(own) = th
            .peers
            .iter()
            .chain(&th.joining)
            .find(|p| Some(&p.cert_sha256) == tls.fingerprint().as_ref())
        {
            anyhow::bail!(
                "{}: {label}: this cosigner's certificate is listed as peer {}",
                loaded.path.display(),
                own.id
            );
        }
        keys.push(ThresholdKey {
            name: key.name.map(str::to_string),
            label,
            threshold: th.clone(),
            share,
            chains: key.chains.iter().map(|c| c.id.clone()).collect(),
        });
    }
    Ok(keys)
}

/// Binds `addr` (TCP, as the metrics endpoint will) and releases it at once.
fn probe_tcp(addr: SocketAddr) -> anyhow::Result<()> {
    TcpListener::bind(addr).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "[metrics] listen = \"{addr}\": cannot listen there: {e}; choose another port, or \
             remove [metrics] to serve no metrics"
        )
    })
}

/// Binds `addr` (UDP, as the cluster transport will) and releases it at once.
fn probe_udp(addr: SocketAddr) -> anyhow::Result<()> {
    UdpSocket::bind(addr).map(drop).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for cluster peers on {addr} (UDP): {e}; is another cosigner or \
             another program using that port?"
        )
    })
}
