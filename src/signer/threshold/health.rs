//! What this cosigner knows of its peers and of itself: each peer's liveness and speed
//! (round trips of the transport's heartbeats and of sign requests, folded into
//! [`PeerHealth`]), which peers to avoid for a while, and whether this cosigner can
//! coordinate at all (a quorum reachable, its own sign state writable, caught up).

use std::sync::Weak;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::Inner;
use crate::cluster::transport::health::HEARTBEAT_INTERVAL;
use crate::cluster::transport::hello::InstanceId;
use crate::threshold::health::PeerHealth;
use crate::threshold::messages::PeerId;
use crate::threshold::signing::PeerView;

/// How often the quorum and the peers' health are looked at. A lost peer shows up here as soon
/// as the transport closes its connection; a silent one as soon as its heartbeats stop.
pub(super) const POLL: Duration = Duration::from_millis(50);
/// How long a peer whose sign state failed is avoided: it refuses until restarted.
const AVOID_BROKEN_FOR: Duration = Duration::from_secs(30);
/// A peer never measured yet is taken to answer within this.
const UNMEASURED: Duration = Duration::from_millis(100);
/// A coordinator whose own links have all been degraded this long gives way, so that a
/// cosigner with a fast link serves the node; it does so at most once per
/// [`SLOW_GIVE_WAY_EVERY`], so a network slow everywhere costs a few switches, not a storm.
const SLOW_FOR: Duration = Duration::from_secs(1);
const SLOW_GIVE_WAY_EVERY: Duration = Duration::from_secs(30);
/// How long giving way lasts: long enough for sessions and dialers to see it.
const GIVE_WAY_FOR: Duration = Duration::from_millis(200);

/// Whether this cosigner's own network is slow, and what it did about it.
#[derive(Debug, Default)]
pub(super) struct Slowness {
    since: Option<Instant>,
    gave_way: Option<Instant>,
    /// Not coordinating until then.
    paused_until: Option<Instant>,
}

impl Slowness {
    /// Given whether every link is degraded at `now`: whether to give way now.
    fn observe(&mut self, degraded: bool, now: Instant) -> bool {
        if !degraded {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let due = self
            .gave_way
            .is_none_or(|at| now.saturating_duration_since(at) >= SLOW_GIVE_WAY_EVERY);
        if now.saturating_duration_since(since) >= SLOW_FOR && due {
            self.gave_way = Some(now);
            self.paused_until = Some(now + GIVE_WAY_FOR);
            return true;
        }
        false
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }
}

/// One peer's record.
#[derive(Debug, Default)]
pub(super) struct PeerRecord {
    health: PeerHealth,
    /// Heartbeat samples of the transport already folded in.
    samples_seen: u64,
    /// A signing found it silent at this instant: it is suspect until heard from after it.
    silent_at: Option<Instant>,
    /// Avoided (its sign state failed, or it has a twin) until then.
    avoid_until: Option<Instant>,
    /// The process behind its connection: a new one has none of the nonces behind the
    /// commitments we hold from the old one.
    instance: Option<InstanceId>,
}

impl PeerRecord {
    fn suspect(&self, now: Instant) -> bool {
        let silent = self
            .silent_at
            .is_some_and(|at| self.health.last_heard().is_none_or(|heard| heard <= at));
        silent
            || self.avoid_until.is_some_and(|until| until > now)
            || self.health.is_suspect(now, HEARTBEAT_INTERVAL)
    }
}

impl Inner {
    /// Folds the transport's view of every peer into the records. Returns the peers that
    /// restarted since last looked at.
    fn observe_peers(&self) -> Vec<PeerId> {
        let mut restarted = Vec::new();
        let Ok(mut records) = self.peers.lock() else {
            return restarted;
        };
        let now = Instant::now();
        for &peer in &self.members {
            if peer == self.id {
                continue;
            }
            let record = records.entry(peer).or_default();
            let Some(status) = self.cluster.peer_status(peer) else {
                record.health.set_connected(false, now);
                continue;
            };
            if status.connected != record.health.is_connected() {
                record.health.set_connected(status.connected, now);
            }
            // The count is per connection: any change means a new sample (or a new connection).
            if status.rtt_samples != record.samples_seen {
                record.samples_seen = status.rtt_samples;
                if let Some(rtt) = status.rtt_latest {
                    record.health.network_sample(rtt, now);
                }
            }
            if let Some(heard) = status.last_heard {
                record.health.heard(heard);
            }
            if let Some(instance) = status.instance {
                if record
                    .instance
                    .replace(instance)
                    .is_some_and(|old| old != instance)
                {
                    restarted.push(peer);
                }
            }
        }
        restarted
    }

    /// Whether this cosigner should not coordinate right now because its own links are the
    /// slow part of the cluster (every peer it reaches is much slower than usual).
    fn judge_own_links(&self) -> bool {
        let now = Instant::now();
        let degraded = match self.peers.lock() {
            Ok(records) => crate::threshold::health::self_degraded(
                records
                    .iter()
                    .filter(|(p, _)| self.cluster.duplicate(**p).is_none())
                    .map(|(_, r)| &r.health),
            ),
            Err(_) => false,
        };
        let Ok(mut slow) = self.slowness.lock() else {
            return false;
        };
        if slow.observe(degraded, now) {
            warn!(
                "every peer has been much slower than usual for {SLOW_FOR:?}: this cosigner's own \
                 link is the slow one, so it gives way for a moment (a cosigner with a fast link \
                 can serve the node) and queues again; it does so at most every \
                 {SLOW_GIVE_WAY_EVERY:?}"
            );
        }
        slow.paused(now)
    }

    /// A share of `peer` arrived `latency` after its request.
    pub(super) fn share_arrived(&self, peer: PeerId, latency: Duration) {
        self.metrics.share_arrived(peer, latency);
        if let Ok(mut records) = self.peers.lock() {
            let record = records.entry(peer).or_default();
            record.health.share_sample(latency, Instant::now());
            record.silent_at = None;
        }
    }

    /// A signing found `peer` silent: ask others while it stays so.
    pub(super) fn found_silent(&self, peer: PeerId) {
        if let Ok(mut records) = self.peers.lock() {
            records.entry(peer).or_default().silent_at = Some(Instant::now());
        }
    }

    /// The peers whose records say they are silent now.
    pub(super) fn suspects(&self, now: Instant) -> std::collections::BTreeSet<PeerId> {
        self.peers
            .lock()
            .map(|records| {
                records
                    .iter()
                    .filter(|(_, r)| r.health.is_connected() && r.suspect(now))
                    .map(|(p, _)| *p)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `peer` cannot sign for a while (its sign state failed).
    pub(super) fn avoid(&self, peer: PeerId) {
        if let Ok(mut records) = self.peers.lock() {
            records.entry(peer).or_default().avoid_until = Some(Instant::now() + AVOID_BROKEN_FOR);
        }
    }

    /// The peers a signing may ask now, as the engine sees them: connected, without a twin,
    /// with their speed, their commitments in our inventory, and whether they are suspect.
    pub(super) fn peer_views(&self, now: Instant) -> Vec<PeerView> {
        let records = match self.peers.lock() {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        let inventory = match self.inventory.lock() {
            Ok(i) => i,
            Err(_) => return Vec::new(),
        };
        self.members
            .iter()
            .copied()
            .filter(|&p| p != self.id && self.cluster.duplicate(p).is_none())
            .filter_map(|id| {
                let record = records.get(&id)?;
                record.health.is_connected().then(|| PeerView {
                    id,
                    typical: record.health.typical_share(UNMEASURED),
                    expected: record.health.expected_share(UNMEASURED),
                    available: inventory.available(id),
                    suspect: record.suspect(now),
                })
            })
            .collect()
    }

    /// Our sign state could not be written: nothing can be signed here until a restart.
    /// Give way for good, as without a quorum. Otherwise this cosigner would rejoin every
    /// node's accept queue and, at each later fail-over that reached it, cost the node a
    /// retry before giving way again.
    pub(super) fn storage_failed(&self, reason: &str) {
        if self.storage_failure.set(reason.to_string()).is_ok() {
            error!(
                "sign state not writable: refusing to sign until restarted; giving way for good \
                 (dropping node connections, not dialing nodes). Check the disk and the state \
                 file, then restart: {reason}"
            );
        }
        self.quorum.send_replace(false);
    }
}

/// Whether a coordinator with `connected` peers reaches `threshold` signers.
fn quorum_reachable(threshold: u16, connected: usize) -> bool {
    connected + 1 >= usize::from(threshold)
}

/// Whether a coordinator may serve nodes: it reaches a quorum, and its own sign state (its
/// share of every signature) is writable.
fn can_coordinate(threshold: u16, connected: usize, storage_ok: bool) -> bool {
    storage_ok && quorum_reachable(threshold, connected)
}

/// Keeps the peers' records current and publishes whether this cosigner can coordinate,
/// logging every change of the quorum.
pub(super) async fn health_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let restarted = inner.observe_peers();
        let paused = inner.judge_own_links();
        for peer in restarted {
            // Every commitment we hold of it is stale: replace them before a signing meets
            // them (each would cost that signing a round trip).
            inner.clear_commitments(peer);
            let refill = inner.clone();
            tokio::spawn(async move {
                refill
                    .refill_peer(peer, super::supply::REFILL_TIMEOUT)
                    .await;
            });
        }
        let connected = inner.cluster.connected_peers();
        let mut storage_ok = true;
        let mut now = false;
        let changed = inner.quorum.send_if_modified(|held| {
            // Read under the watch's lock: a storage failure recorded concurrently is either
            // seen here or published (false) after this closure, never overwritten by it.
            storage_ok = inner.storage_failure.get().is_none();
            now = inner.caught_up() && can_coordinate(inner.threshold, connected.len(), storage_ok);
            let changed = *held != now;
            *held = now;
            changed
        });
        // A storage failure, and giving way for slowness, were logged where they happened.
        if !changed || !storage_ok || paused {
            continue;
        }
        if now {
            info!(
                threshold = inner.threshold,
                connected_peers = ?connected,
                "quorum reachable: dialing nodes"
            );
        } else {
            warn!(
                threshold = inner.threshold,
                connected_peers = ?connected,
                "no quorum reachable: giving way (dropping node connections, not dialing nodes until {} peers are connected)",
                inner.threshold.saturating_sub(1)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_needs_t_minus_one_peers() {
        assert!(!quorum_reachable(2, 0));
        assert!(quorum_reachable(2, 1));
        assert!(!quorum_reachable(3, 1));
        assert!(quorum_reachable(3, 2));
        assert!(quorum_reachable(3, 4));
    }

    #[test]
    fn a_failed_sign_state_never_coordinates() {
        assert!(can_coordinate(2, 1, true));
        assert!(!can_coordinate(2, 1, false));
        assert!(!can_coordinate(2, 2, false));
        assert!(!can_coordinate(2, 0, true));
    }

    #[test]
    fn a_lastingly_slow_link_gives_way_once_per_interval() {
        let t0 = Instant::now();
        let mut s = Slowness::default();
        assert!(!s.observe(true, t0));
        assert!(!s.observe(true, t0 + SLOW_FOR / 2));
        assert!(s.observe(true, t0 + SLOW_FOR));
        assert!(s.paused(t0 + SLOW_FOR));
        assert!(!s.paused(t0 + SLOW_FOR + GIVE_WAY_FOR));
        // Still slow: not again before the interval.
        assert!(!s.observe(true, t0 + SLOW_FOR * 5));
        assert!(s.observe(true, t0 + SLOW_FOR + SLOW_GIVE_WAY_EVERY));
        // Recovered, then slow again: the clock of "slow for" starts over.
        let t1 = t0 + SLOW_GIVE_WAY_EVERY * 3;
        assert!(!s.observe(false, t1));
        assert!(!s.observe(true, t1));
        assert!(s.observe(true, t1 + SLOW_FOR));
    }

    #[test]
    fn a_peer_found_silent_is_suspect_until_heard_from() {
        let t0 = Instant::now();
        let mut r = PeerRecord::default();
        r.health.set_connected(true, t0);
        assert!(!r.suspect(t0));
        r.silent_at = Some(t0 + Duration::from_millis(10));
        assert!(r.suspect(t0 + Duration::from_millis(20)));
        r.health.heard(t0 + Duration::from_millis(30));
        assert!(!r.suspect(t0 + Duration::from_millis(40)));
        r.avoid_until = Some(t0 + Duration::from_secs(1));
        assert!(r.suspect(t0 + Duration::from_millis(50)));
        r.health.heard(t0 + Duration::from_millis(1900));
        assert!(!r.suspect(t0 + Duration::from_secs(2)));
    }
}
