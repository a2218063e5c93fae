//! The state series, set from a [`Status`] at each scrape: nothing on the signing path
//! writes them.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::labels::{ChainLabel, KeyLabel, PeerLabels};
use super::ChainSeries;
use crate::status::Status;

/// Series read from the signers at each scrape.
#[derive(Default)]
pub(super) struct Scraped {
    quorum: Family<KeyLabel, Gauge>,
    storage_ok: Family<KeyLabel, Gauge>,
    peers_connected: Family<KeyLabel, Gauge>,
    peer_connected: Family<PeerLabels, Gauge>,
    peer_rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    peer_commitments: Family<PeerLabels, Gauge>,
    watermark_height: Family<ChainLabel, Gauge>,
    watermark_round: Family<ChainLabel, Gauge>,
    watermark_step: Family<ChainLabel, Gauge>,
    since_precommit: Family<ChainLabel, Gauge<f64, AtomicU64>>,
    since_prevote: Family<ChainLabel, Gauge<f64, AtomicU64>>,
}

impl Scraped {
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("cosigner_quorum", "1 while this cosigner can coordinate: t - 1 peers connected, sign state writable, caught up", self.quorum.clone());
        r.register("cosigner_storage_ok", "1 while the sign state is writable; 0 after a failed write (refuses every share until restarted)", self.storage_ok.clone());
        r.register(
            "cosigner_peers_connected",
            "Peers with a live cluster connection",
            self.peers_connected.clone(),
        );
        r.register(
            "cosigner_peer_connected",
            "1 while the peer has a live cluster connection",
            self.peer_connected.clone(),
        );
        r.register(
            "cosigner_peer_rtt_seconds",
            "Smoothed heartbeat round trip to the peer (0 when not measured)",
            self.peer_rtt.clone(),
        );
        r.register(
            "cosigner_peer_commitments",
            "The peer's nonce commitments this cosigner holds for coordinating",
            self.peer_commitments.clone(),
        );
        r.register(
            "cosigner_watermark_height",
            "Height of this cosigner's own watermark (its sign state)",
            self.watermark_height.clone(),
        );
        r.register(
            "cosigner_watermark_round",
            "Round of this cosigner's own watermark",
            self.watermark_round.clone(),
        );
        r.register(
            "cosigner_watermark_step",
            "Step of this cosigner's own watermark (0 none, 1 proposal, 2 prevote, 3 precommit)",
            self.watermark_step.clone(),
        );
        r.register(
            "signer_seconds_since_last_precommit",
            "Seconds since a node last got a precommit from this cosigner (since start if none)",
            self.since_precommit.clone(),
        );
        r.register(
            "signer_seconds_since_last_prevote",
            "Seconds since a node last got a prevote from this cosigner (since start if none)",
            self.since_prevote.clone(),
        );
    }

    pub(super) fn set(
        &self,
        status: &Status,
        chains: &HashMap<String, ChainSeries>,
        uptime: Duration,
    ) {
        for key in &status.keys {
            let label = KeyLabel {
                key: key.name.clone().unwrap_or_default(),
            };
            self.quorum.get_or_create(&label).set(i64::from(key.quorum));
            self.storage_ok
                .get_or_create(&label)
                .set(i64::from(key.storage_error.is_none()));
            let connected = status
                .peers
                .iter()
                .filter(|p| p.key == key.name && p.connected)
                .count();
            self.peers_connected
                .get_or_create(&label)
                .set(i64::try_from(connected).unwrap_or(i64::MAX));
        }
        for peer in &status.peers {
            let labels = PeerLabels {
                key: peer.key.clone().unwrap_or_default(),
                peerid: peer.id,
            };
            self.peer_connected
                .get_or_create(&labels)
                .set(i64::from(peer.connected));
            self.peer_rtt
                .get_or_create(&labels)
                .set(peer.rtt_ms.unwrap_or(0.0) / 1e3);
            self.peer_commitments
                .get_or_create(&labels)
                .set(i64::try_from(peer.commitments).unwrap_or(i64::MAX));
        }
        for chain in &status.chains {
            let label = ChainLabel {
                chain_id: chain.chain_id.clone(),
            };
            self.watermark_height
                .get_or_create(&label)
                .set(chain.height);
            self.watermark_round.get_or_create(&label).set(chain.round);
            self.watermark_step
                .get_or_create(&label)
                .set(i64::from(chain.step_number));
        }
        let now = SystemTime::now();
        let since = |at: Option<SystemTime>| {
            at.and_then(|at| now.duration_since(at).ok())
                .unwrap_or(uptime)
                .as_secs_f64()
        };
        for (chain_id, series) in chains {
            let label = ChainLabel {
                chain_id: chain_id.clone(),
            };
            let [_, prevote, precommit] = &series.steps;
            self.since_precommit
                .get_or_create(&label)
                .set(since(precommit.last_at.get()));
            self.since_prevote
                .get_or_create(&label)
                .set(since(prevote.last_at.get()));
        }
    }
}
