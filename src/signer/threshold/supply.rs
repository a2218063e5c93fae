//! The commitment supply: keeping every participant's commitments (this cosigner's own
//! included) topped up ahead of the signings that use them, so a signing never waits for
//! them and costs one round trip.

use std::sync::{Arc, Weak};
use std::time::Duration;

use rand_core::OsRng;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::Inner;
use crate::threshold::messages::{
    ClusterRequest, ClusterResponse, Commitment, PeerId, RefusalKind,
};

/// Commitments we try to hold from every participant, and the level that triggers a refill.
pub(super) const INVENTORY_TARGET: usize = 32;
const INVENTORY_LOW: usize = 16;
/// How often the refill task looks at the inventory.
const REFILL_INTERVAL: Duration = Duration::from_millis(250);
pub(super) const REFILL_TIMEOUT: Duration = Duration::from_secs(1);

impl Inner {
    /// Tops up our own commitments for the signings we coordinate.
    /// Makes sure our own inventory holds what one signing needs, making commitments on the
    /// spot only if it ran dry, and has it topped up in the background when low: making a
    /// batch costs about a millisecond, which no signing should wait for.
    pub(super) fn ensure_own_commitments(self: &Arc<Self>, needed: usize) {
        let have = self.available(self.id);
        if have < needed {
            self.add_own_commitments(needed - have);
        }
        if have < INVENTORY_LOW {
            self.top_up_own_commitments();
        }
    }

    pub(super) fn top_up_own_commitments(self: &Arc<Self>) {
        let inner = self.clone();
        self.background
            .run_unless_pending("make own commitments", move || {
                let have = inner.available(inner.id);
                inner.add_own_commitments(INVENTORY_TARGET.saturating_sub(have));
            });
    }

    /// Adds `count` fresh commitments of our own to the inventory. Made here, so nothing to
    /// decode or validate.
    pub(super) fn add_own_commitments(&self, count: usize) {
        let count = u16::try_from(count).unwrap_or(u16::MAX);
        if count == 0 {
            return;
        }
        if let Ok(commitments) = self
            .participant
            .commitments_with_decoded(self.id, count, &mut OsRng)
        {
            if let Ok(mut inv) = self.inventory.lock() {
                inv.add_decoded(self.id, commitments);
            }
        }
    }

    pub(super) fn available(&self, peer: PeerId) -> usize {
        self.inventory
            .lock()
            .map(|inv| inv.available(peer))
            .unwrap_or(0)
    }

    pub(super) fn add_commitments(&self, peer: PeerId, commitments: &[Commitment]) {
        if commitments.is_empty() {
            return;
        }
        if let Ok(mut inv) = self.inventory.lock() {
            if let Err(e) = inv.add(peer, commitments) {
                warn!(peer, "discarding commitments: {e}");
            }
        }
    }

    pub(super) fn clear_commitments(&self, peer: PeerId) {
        if let Ok(mut inv) = self.inventory.lock() {
            inv.clear(peer);
        }
    }

    /// Asks one peer for commitments; returns whether any arrived.
    pub(super) async fn refill_peer(self: &Arc<Self>, peer: PeerId, timeout: Duration) -> bool {
        let have = self.available(peer);
        if have >= INVENTORY_LOW {
            return true;
        }
        let count = (INVENTORY_TARGET - have) as u16;
        match self
            .cluster
            .request::<_, ClusterResponse>(peer, &ClusterRequest::Commitments { count }, timeout)
            .await
        {
            Ok(ClusterResponse::Commitments(commitments)) => {
                // Validating a batch takes milliseconds: not on an async worker.
                let any = !commitments.is_empty();
                let inner = self.clone();
                let _ =
                    tokio::task::spawn_blocking(move || inner.add_commitments(peer, &commitments))
                        .await;
                any
            }
            Ok(ClusterResponse::Refused(r)) if r.kind == RefusalKind::Duplicate => {
                self.cluster.report_twin(peer, &r.reason);
                false
            }
            Ok(ClusterResponse::Refused(r)) => {
                warn!(peer, "refused to hand out commitments: {}", r.reason);
                false
            }
            Ok(other) => {
                warn!(peer, "answered a commitments request with {other:?}");
                false
            }
            Err(e) => {
                debug!(peer, "no commitments: {e}");
                false
            }
        }
    }
}

/// Keeps every participant's commitments topped up in the background, so a signing never
/// waits for them.
pub(super) async fn refill_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REFILL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.top_up_own_commitments();
        let mut tasks = JoinSet::new();
        for &peer in &inner.members {
            if peer == inner.id || inner.available(peer) >= INVENTORY_LOW {
                continue;
            }
            let inner = inner.clone();
            tasks.spawn(async move { inner.refill_peer(peer, REFILL_TIMEOUT).await });
        }
        while tasks.join_next().await.is_some() {}
    }
}
