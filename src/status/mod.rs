//! What a running cosigner says about itself: [`Status`] (quorum, peers, nodes, watermarks,
//! storage, version), built by its [`Monitor`] from the signers and the metrics' event
//! records, and served read-only on the admin socket ([`socket`]) for `cosigner status`.
//! The metrics' state series are set from the same [`Status`] at each scrape.
//!
//! Nothing secret is in it: ids, addresses, timings, counts and watermark positions.

pub mod socket;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::consensus::Step;
use crate::metrics::Metrics;
use crate::signer::Signer;

/// A running cosigner, as `cosigner status --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The `cosigner` version that runs.
    pub version: String,
    /// Whether every key can sign now (for a threshold key: `t - 1` peers connected, its
    /// sign state writable, caught up with its peers).
    pub quorum: bool,
    /// Whether every sign state is writable.
    pub storage_ok: bool,
    /// Each validator key, in config order.
    pub keys: Vec<KeyStatus>,
    /// Each peer of each key.
    pub peers: Vec<PeerStatus>,
    /// Each node this cosigner dials.
    pub nodes: Vec<NodeStatus>,
    /// Each configured chain.
    pub chains: Vec<ChainStatus>,
}

/// One validator key this cosigner signs with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Its `[[key]]` name; `None` in a directory of one key.
    pub name: Option<String>,
    /// `t` of a threshold key; `None` for a single key.
    pub threshold: Option<u16>,
    /// Whether it can sign now.
    pub quorum: bool,
    /// Why its sign state is not writable, once a write failed.
    pub storage_error: Option<String>,
}

/// One peer of one key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The `[[key]]` it is a peer for; `None` in a directory of one key.
    pub key: Option<String>,
    /// Its cosigner id.
    pub id: u16,
    /// Its configured `HOST:PORT`.
    pub address: String,
    /// Whether a QUIC connection to it is up.
    pub connected: bool,
    /// Smoothed heartbeat round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since its last share reached this cosigner as coordinator.
    pub last_share_seconds_ago: Option<f64>,
    /// Its nonce commitments held here for coordinating.
    pub commitments: usize,
}

/// One node this cosigner dials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node as sessions log it (`HOST:PORT` or the socket path).
    pub address: String,
    /// Whether this cosigner serves it now (the node accepted its connection).
    pub connected: bool,
}

/// One chain: this cosigner's own watermark and the last signature it gave a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainStatus {
    /// The chain ID.
    pub chain_id: String,
    /// The `[[key]]` that signs it; `None` in a directory of one key.
    pub key: Option<String>,
    /// The watermark's height.
    pub height: i64,
    /// The watermark's round.
    pub round: i64,
    /// `proposal`, `prevote`, `precommit`, or `none` before anything was signed.
    pub step: String,
    /// The same step as CometBFT numbers it (0 none, 1 proposal, 2 prevote, 3 precommit).
    pub step_number: u8,
    /// When a node last got a signature of this chain from this cosigner (Unix seconds).
    pub last_signature_unix: Option<f64>,
    /// Seconds since then, as the cosigner answering saw it.
    pub last_signature_seconds_ago: Option<f64>,
}

/// One key of a running cosigner, as its monitor sees it.
pub struct MonitoredKey {
    /// Its `[[key]]` name; `None` in a directory of one key.
    pub name: Option<String>,
    /// The signer that holds its share.
    pub signer: Arc<Signer>,
    /// Its peers' ids and configured addresses.
    pub peers: Vec<(u16, String)>,
}

/// Everything the status and the metrics' state series are read from.
pub struct Monitor {
    /// The event records the status reads times and counts from.
    pub metrics: Arc<Metrics>,
    /// In the order of the metrics' [`crate::metrics::Layout`] keys.
    pub keys: Vec<MonitoredKey>,
    /// Node labels (`HOST:PORT`), as the metrics know them.
    pub nodes: Vec<String>,
}

impl Monitor {
    /// The status now, for the admin socket and each scrape.
    pub fn status(&self) -> Status {
        let now = SystemTime::now();
        let ago = |at: SystemTime| now.duration_since(at).ok().map(|d| d.as_secs_f64());
        let mut keys = Vec::new();
        let mut peers = Vec::new();
        let mut chains = Vec::new();
        for (index, key) in self.keys.iter().enumerate() {
            let state = key.signer.observe();
            for peer in state.peers {
                let address = key
                    .peers
                    .iter()
                    .find(|(id, _)| *id == peer.id)
                    .map(|(_, address)| address.clone())
                    .unwrap_or_default();
                peers.push(PeerStatus {
                    key: key.name.clone(),
                    id: peer.id,
                    address,
                    connected: peer.connected,
                    rtt_ms: peer.rtt.map(|d| d.as_secs_f64() * 1e3),
                    last_share_seconds_ago: self.metrics.last_share(index, peer.id).and_then(ago),
                    commitments: peer.commitments,
                });
            }
            for (chain_id, watermark) in state.watermarks {
                let last = self.metrics.last_signature(&chain_id);
                chains.push(ChainStatus {
                    key: key.name.clone(),
                    height: watermark.height,
                    round: watermark.round,
                    step: Step::from_number(watermark.step)
                        .map_or("none", Step::name)
                        .to_string(),
                    step_number: watermark.step,
                    last_signature_unix: last
                        .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                        .map(|d| d.as_secs_f64()),
                    last_signature_seconds_ago: last.and_then(ago),
                    chain_id,
                });
            }
            keys.push(KeyStatus {
                name: key.name.clone(),
                threshold: state.threshold,
                quorum: state.quorum,
                storage_error: state.storage_error,
            });
        }
        let nodes = self
            .nodes
            .iter()
            .map(|node| NodeStatus {
                address: node.clone(),
                connected: self.metrics.node_is_connected(node),
            })
            .collect();
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            quorum: keys.iter().all(|k| k.quorum),
            storage_ok: keys.iter().all(|k| k.storage_error.is_none()),
            keys,
            peers,
            nodes,
            chains,
        }
    }

    /// The metrics in the text exposition format, their state series read now.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(&self.status())
    }
}
