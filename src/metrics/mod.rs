//! What a running cosigner counts, in the Prometheus format: the registry and its series.
//!
//! Series are Horcrux's where Horcrux has the concept (`signer_total_precommits_signed`,
//! `signer_last_precommit_height`, ... with a `chain_id` label), so that operators moving
//! from Horcrux keep their dashboards and alerts; the rest are ours (`cosigner_...`).
//!
//! Two ways a value gets here:
//! - Events on the signing path (a signature, a failure, a share's latency, a refusal) go to
//!   handles made when the process starts, one per chain, step, key and peer: recording one
//!   is a few relaxed atomic adds, with no lock, no lookup by a built key and no allocation.
//! - State (quorum, peers connected and their round trips, commitment inventory, watermarks,
//!   storage health) is read from the signers when scraped ([`Metrics::render`]), from the
//!   same [`Status`] that `cosigner status` prints, so the two never disagree.
//!
//! The registry always exists and counts, whether or not `[metrics]` serves it: the admin
//! socket's status reads the last signature times from it. [`http`] serves it.

pub mod http;
mod labels;
mod scraped;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::consensus::Step;
use crate::status::Status;
use crate::threshold::messages::RefusalKind;
pub use labels::SignFailure;
use labels::{
    refusal_index, ChainLabel, KeyLabel, NodeLabel, OutcomeLabels, PeerLabels, ReasonLabels,
    StepLabels, REFUSAL_KINDS, STEPS,
};
use scraped::Scraped;
pub use types::{Latency, Total};

/// A point in time as milliseconds since the Unix epoch, 0 for never.
#[derive(Clone, Debug, Default)]
struct Moment(Arc<AtomicU64>);

impl Moment {
    fn now(&self) {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.0.store(ms, Ordering::Relaxed);
    }

    fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

/// One step of one chain.
#[derive(Clone, Debug, Default)]
struct StepSeries {
    signed: Total,
    last_height: Gauge,
    last_round: Gauge,
    latency: Latency,
    last_at: Moment,
}

/// One chain's handles.
#[derive(Clone, Debug)]
struct ChainSeries {
    /// By [`Step::number`] - 1.
    steps: [StepSeries; 3],
    block_lag: Latency,
    pubkey_requests: Total,
    failed_sign_vote: Total,
    insufficient_cosigners: Total,
    /// By the order of [`SignFailure::ALL`].
    failures: [Counter; 3],
}

/// One peer of one key.
#[derive(Clone, Debug, Default)]
struct PeerSeries {
    share_latency: Latency,
    last_share: Moment,
}

/// One key's handles; see [`KeyMetrics`].
#[derive(Debug)]
struct KeySeries {
    peers: BTreeMap<u16, PeerSeries>,
    /// By [`refusal_index`].
    refusals: Vec<Counter>,
    shares_released: Counter,
}

/// What a running process is made of, for the handles made at start.
pub struct Layout<'a> {
    /// Every configured chain ID.
    pub chains: Vec<&'a str>,
    /// Per key: its `[[key]]` name (`None` for the one key of a `[threshold]` directory or a
    /// single key) and its peers' ids.
    pub keys: Vec<(Option<&'a str>, Vec<u16>)>,
    /// Node labels as sessions log them (`HOST:PORT`).
    pub nodes: Vec<String>,
}

/// The registry and every handle; one per process, shared by everything that records.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    chains: HashMap<String, ChainSeries>,
    keys: Vec<Arc<KeySeries>>,
    nodes: HashMap<String, Gauge>,
    scraped: Scraped,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every series and makes the handles of `layout`, so that every series
    /// exists (at zero) from the start: a dashboard or an alert never meets a missing one.
    pub fn new(layout: &Layout<'_>) -> Metrics {
        let mut registry = Registry::default();
        let mut chains = HashMap::new();
        let mut step_family = |name: &str, help: &str| -> Family<ChainLabel, Total> {
            let family = Family::default();
            registry.register(name, help, family.clone());
            family
        };
        let signed = [
            step_family(
                "signer_total_proposals_signed",
                "Proposals signed (as coordinator)",
            ),
            step_family(
                "signer_total_prevotes_signed",
                "Prevotes signed (as coordinator)",
            ),
            step_family(
                "signer_total_precommits_signed",
                "Precommits signed (as coordinator)",
            ),
        ];
        let gauge_family = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<ChainLabel, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let last_height = [
            gauge_family(
                &mut registry,
                "signer_last_proposal_height",
                "Height of the last proposal signed",
            ),
            gauge_family(
                &mut registry,
                "signer_last_prevote_height",
                "Height of the last prevote signed",
            ),
            gauge_family(
                &mut registry,
                "signer_last_precommit_height",
                "Height of the last precommit signed",
            ),
        ];
        let last_round = [
            gauge_family(
                &mut registry,
                "signer_last_proposal_round",
                "Round of the last proposal signed",
            ),
            gauge_family(
                &mut registry,
                "signer_last_prevote_round",
                "Round of the last prevote signed",
            ),
            gauge_family(
                &mut registry,
                "signer_last_precommit_round",
                "Round of the last precommit signed",
            ),
        ];
        let total_family = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<ChainLabel, Total>::default();
            registry.register(name, help, family.clone());
            family
        };
        let pubkey = total_family(
            &mut registry,
            "signer_total_pubkey_requests",
            "PubKey requests answered",
        );
        let failed_vote = total_family(
            &mut registry,
            "signer_total_failed_sign_vote",
            "Votes a node asked this cosigner for that it did not sign",
        );
        let insufficient = total_family(
            &mut registry,
            "signer_error_total_insufficient_cosigners",
            "Signings given up because no quorum of cosigners signed (none reachable, or not in time)",
        );
        let block_lag = Family::<ChainLabel, Latency>::default();
        registry.register(
            "signer_sign_block_lag_seconds",
            "Seconds taken to sign (request to signature, every step)",
            block_lag.clone(),
        );
        let step_latency = Family::<StepLabels, Latency>::default();
        registry.register(
            "cosigner_sign_seconds",
            "Seconds taken to sign, per step",
            step_latency.clone(),
        );
        let failures = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "cosigner_sign_failures",
            "Requests of a node that got no signature, by outcome (refused, unavailable, gave_way)",
            failures.clone(),
        );
        for &chain_id in &layout.chains {
            let label = ChainLabel {
                chain_id: chain_id.to_string(),
            };
            let steps = STEPS.map(|step| {
                let i = usize::from(step.number() - 1);
                StepSeries {
                    signed: signed[i].get_or_create(&label).clone(),
                    last_height: last_height[i].get_or_create(&label).clone(),
                    last_round: last_round[i].get_or_create(&label).clone(),
                    latency: step_latency
                        .get_or_create(&StepLabels {
                            chain_id: chain_id.to_string(),
                            step: step.name(),
                        })
                        .clone(),
                    last_at: Moment::default(),
                }
            });
            let series = ChainSeries {
                steps,
                block_lag: block_lag.get_or_create(&label).clone(),
                pubkey_requests: pubkey.get_or_create(&label).clone(),
                failed_sign_vote: failed_vote.get_or_create(&label).clone(),
                insufficient_cosigners: insufficient.get_or_create(&label).clone(),
                failures: SignFailure::ALL.map(|f| {
                    failures
                        .get_or_create(&OutcomeLabels {
                            chain_id: chain_id.to_string(),
                            outcome: f.label(),
                        })
                        .clone()
                }),
            };
            chains.insert(chain_id.to_string(), series);
        }

        let share_latency = Family::<PeerLabels, Latency>::default();
        registry.register(
            "signer_cosigner_sign_lag_seconds",
            "Seconds from a sign request to a peer until its share arrived",
            share_latency.clone(),
        );
        let refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cosigner_refusals",
            "Shares this cosigner refused as participant, by reason",
            refusals.clone(),
        );
        let released = Family::<KeyLabel, Counter>::default();
        registry.register(
            "cosigner_shares_released",
            "Signature shares this cosigner released as participant (its own signings included)",
            released.clone(),
        );
        let keys = layout
            .keys
            .iter()
            .map(|(name, peers)| {
                let key = name.unwrap_or_default().to_string();
                Arc::new(KeySeries {
                    peers: peers
                        .iter()
                        .map(|&peerid| {
                            let labels = PeerLabels {
                                key: key.clone(),
                                peerid,
                            };
                            let series = PeerSeries {
                                share_latency: share_latency.get_or_create(&labels).clone(),
                                last_share: Moment::default(),
                            };
                            (peerid, series)
                        })
                        .collect(),
                    refusals: REFUSAL_KINDS
                        .iter()
                        .map(|&kind| {
                            let labels = ReasonLabels {
                                key: key.clone(),
                                reason: refusal_index(kind).1,
                            };
                            refusals.get_or_create(&labels).clone()
                        })
                        .collect(),
                    shares_released: released.get_or_create(&KeyLabel { key }).clone(),
                })
            })
            .collect();

        let node_family = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "cosigner_node_connected",
            "1 while this cosigner serves the node (its connection accepted), else 0",
            node_family.clone(),
        );
        let nodes = layout
            .nodes
            .iter()
            .map(|node| {
                let gauge = node_family
                    .get_or_create(&NodeLabel { node: node.clone() })
                    .clone();
                (node.clone(), gauge)
            })
            .collect();

        let scraped = Scraped::default();
        scraped.register(&mut registry);
        registry.register(
            "cosigner",
            "This cosigner's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            started: Instant::now(),
            chains,
            keys,
            nodes,
            scraped,
        }
    }

    /// A registry of no chain, key or node: its handles record nothing (signers and sessions
    /// built outside `cosigner start`, in tests and the fuzz harness).
    pub fn empty() -> Metrics {
        Metrics::new(&Layout {
            chains: Vec::new(),
            keys: Vec::new(),
            nodes: Vec::new(),
        })
    }

    /// A node got a signature for `step` at `height`/`round`, `latency` after it asked.
    pub fn signed(&self, chain_id: &str, step: Step, height: i64, round: i64, latency: Duration) {
        let Some(chain) = self.chains.get(chain_id) else {
            return;
        };
        let s = &chain.steps[usize::from(step.number() - 1)];
        s.signed.inc();
        s.last_height.set(height);
        s.last_round.set(round);
        s.latency.observe(latency);
        s.last_at.now();
        chain.block_lag.observe(latency);
    }

    /// A node's request for `step` got no signature.
    pub fn sign_failed(&self, chain_id: &str, step: Step, failure: SignFailure) {
        let Some(chain) = self.chains.get(chain_id) else {
            return;
        };
        if step != Step::Propose {
            chain.failed_sign_vote.inc();
        }
        let i = SignFailure::ALL
            .iter()
            .position(|f| *f == failure)
            .unwrap_or_default();
        chain.failures[i].inc();
    }

    /// A node asked for the public key of `chain_id`.
    pub fn pubkey_request(&self, chain_id: &str) {
        if let Some(chain) = self.chains.get(chain_id) {
            chain.pubkey_requests.inc();
        }
    }

    /// Whether this cosigner now serves the node labelled `node` (connected and accepted).
    pub fn node_connected(&self, node: &str, connected: bool) {
        if let Some(gauge) = self.nodes.get(node) {
            gauge.set(i64::from(connected));
        }
    }

    /// The handles of the key at `index` in the [`Layout`].
    pub fn key(self: &Arc<Self>, index: usize) -> KeyMetrics {
        KeyMetrics {
            all: self.clone(),
            key: self.keys.get(index).cloned(),
        }
    }

    /// When a node last got a signature for `chain_id`.
    pub fn last_signature(&self, chain_id: &str) -> Option<SystemTime> {
        let chain = self.chains.get(chain_id)?;
        chain.steps.iter().filter_map(|s| s.last_at.get()).max()
    }

    /// Whether this cosigner serves the node labelled `node`.
    pub fn node_is_connected(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|gauge| gauge.get() == 1)
    }

    /// When the last share of peer `peer` of the key at `key` arrived.
    pub fn last_share(&self, key: usize, peer: u16) -> Option<SystemTime> {
        self.keys.get(key)?.peers.get(&peer)?.last_share.get()
    }

    /// The registry in the text exposition format, its state series first set from `status`.
    pub fn render(&self, status: &Status) -> String {
        self.scraped
            .set(status, &self.chains, self.started.elapsed());
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One key's handles, held by its threshold signer.
#[derive(Clone, Debug)]
pub struct KeyMetrics {
    all: Arc<Metrics>,
    key: Option<Arc<KeySeries>>,
}

impl KeyMetrics {
    /// A share of `peer` arrived `latency` after this coordinator asked for it.
    pub fn share_arrived(&self, peer: u16, latency: Duration) {
        if let Some(series) = self.key.as_ref().and_then(|k| k.peers.get(&peer)) {
            series.share_latency.observe(latency);
            series.last_share.now();
        }
    }

    /// This cosigner, as participant, refused a share.
    pub fn refused(&self, kind: RefusalKind) {
        if let Some(key) = &self.key {
            key.refusals[refusal_index(kind).0].inc();
        }
    }

    /// This cosigner, as participant, released a share.
    pub fn share_released(&self) {
        if let Some(key) = &self.key {
            key.shares_released.inc();
        }
    }

    /// A signing of `chain_id` was given up for want of cosigners.
    pub fn insufficient_cosigners(&self, chain_id: &str) {
        if let Some(chain) = self.all.chains.get(chain_id) {
            chain.insufficient_cosigners.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            version: "0".into(),
            quorum: true,
            storage_ok: true,
            keys: Vec::new(),
            peers: Vec::new(),
            nodes: Vec::new(),
            chains: Vec::new(),
        }
    }

    #[test]
    fn horcrux_names_are_exported_as_horcrux_has_them() {
        let metrics = Arc::new(Metrics::new(&Layout {
            chains: vec!["c"],
            keys: vec![(None, vec![2, 3])],
            nodes: vec!["127.0.0.1:26659".into()],
        }));
        metrics.signed("c", Step::Precommit, 7, 1, Duration::from_micros(900));
        metrics.sign_failed("c", Step::Prevote, SignFailure::GaveWay);
        metrics.key(0).share_arrived(2, Duration::from_micros(300));
        metrics.key(0).refused(RefusalKind::Watermark);
        // Unknown chains and peers are not counted, and do not fail.
        metrics.signed("other", Step::Precommit, 1, 0, Duration::ZERO);
        metrics.key(0).share_arrived(9, Duration::ZERO);
        let text = metrics.render(&status());
        for line in [
            "# TYPE signer_total_precommits_signed unknown",
            "signer_total_precommits_signed{chain_id=\"c\"} 1",
            "signer_total_prevotes_signed{chain_id=\"c\"} 0",
            "signer_last_precommit_height{chain_id=\"c\"} 7",
            "signer_last_precommit_round{chain_id=\"c\"} 1",
            "signer_total_failed_sign_vote{chain_id=\"c\"} 1",
            "cosigner_sign_failures_total{chain_id=\"c\",outcome=\"gave_way\"} 1",
            "signer_sign_block_lag_seconds_count{chain_id=\"c\"} 1",
            "cosigner_sign_seconds_bucket{le=\"0.001\",chain_id=\"c\",step=\"precommit\"} 1",
            "signer_cosigner_sign_lag_seconds_count{key=\"\",peerid=\"2\"} 1",
            "signer_cosigner_sign_lag_seconds_count{key=\"\",peerid=\"3\"} 0",
            "cosigner_refusals_total{key=\"\",reason=\"watermark\"} 1",
            "cosigner_node_connected{node=\"127.0.0.1:26659\"} 0",
            "cosigner_info{version=",
        ] {
            assert!(text.contains(line), "`{line}` missing:\n{text}");
        }
        assert!(
            !text.contains("signer_total_precommits_signed_total"),
            "{text}"
        );
        assert!(metrics.last_signature("c").is_some());
        assert!(metrics.last_share(0, 2).is_some());
        assert!(metrics.last_share(0, 3).is_none());
    }
}
