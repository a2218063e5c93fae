//! This cosigner's secret round-one nonces, held in memory only.
//!
//! Nonces are made ahead of time (preprocessing) and handed out as commitments, one pool per
//! coordinator: a commitment issued to coordinator A can only be redeemed by a request that
//! arrives on A's authenticated connection. Redeeming removes the nonce before returning it, so
//! a nonce yields at most one signature share (invariant 4); reuse would leak our share. The
//! pool is never serialized or persisted: a restart forgets every outstanding nonce, which costs
//! only a retry with fresh commitments. `SigningNonces` zeroizes itself on drop, so evicted and
//! burnt nonces leave no copy behind.

use std::collections::{BTreeMap, VecDeque};

use frost_ed25519::keys::SigningShare;
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};

use super::messages::PeerId;

/// Outstanding nonces kept per coordinator unless configured otherwise: four times what a
/// coordinator keeps ([`super::coordinator::DEFAULT_MAX_PER_PARTICIPANT`]). Commitments are
/// issued in refills and in sign responses that race each other, and some never reach the
/// coordinator (a response it stopped waiting for); with equal bounds the pool would evict
/// nonces whose commitments the coordinator still holds, and every signing with them would
/// fail as "unknown commitment".
pub const DEFAULT_MAX_OUTSTANDING: usize = 4 * super::coordinator::DEFAULT_MAX_PER_PARTICIPANT;

/// Secret nonces issued to each coordinator, oldest first.
pub struct NoncePool {
    max_outstanding: usize,
    // A few dozen entries per coordinator: a linear scan by commitment is cheaper than
    // maintaining an index next to the FIFO order.
    by_coordinator: BTreeMap<PeerId, VecDeque<SigningNonces>>,
}

impl std::fmt::Debug for NoncePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let counts: BTreeMap<_, _> = self
            .by_coordinator
            .iter()
            .map(|(c, q)| (*c, q.len()))
            .collect();
        f.debug_struct("NoncePool")
            .field("max_outstanding", &self.max_outstanding)
            .field("outstanding", &counts)
            .finish()
    }
}

impl Default for NoncePool {
    fn default() -> Self {
        NoncePool::new(DEFAULT_MAX_OUTSTANDING)
    }
}

impl NoncePool {
    /// A pool keeping at most `max_outstanding` (at least 1) nonces per coordinator.
    pub fn new(max_outstanding: usize) -> NoncePool {
        NoncePool {
            max_outstanding: max_outstanding.max(1),
            by_coordinator: BTreeMap::new(),
        }
    }

    pub fn max_outstanding(&self) -> usize {
        self.max_outstanding
    }

    /// Makes up to `count` fresh nonces for `coordinator` and returns their commitments. At
    /// most `max_outstanding` are made; beyond the bound the oldest outstanding ones are
    /// evicted (the coordinator's inventory evicts in the same order).
    pub fn issue<R: RngCore + CryptoRng>(
        &mut self,
        coordinator: PeerId,
        count: usize,
        signing_share: &SigningShare,
        rng: &mut R,
    ) -> Vec<SigningCommitments> {
        let count = count.min(self.max_outstanding);
        if count == 0 {
            return Vec::new();
        }
        let queue = self.by_coordinator.entry(coordinator).or_default();
        let mut issued = Vec::with_capacity(count);
        for _ in 0..count {
            let (nonces, commitments) = round1::commit(signing_share, rng);
            if queue.len() >= self.max_outstanding {
                queue.pop_front();
            }
            queue.push_back(nonces);
            issued.push(commitments);
        }
        issued
    }

    /// Removes and returns the nonces behind `commitments` if they were issued to
    /// `coordinator` and not used yet. After this call the pool no longer knows them.
    pub fn take(
        &mut self,
        coordinator: PeerId,
        commitments: &SigningCommitments,
    ) -> Option<SigningNonces> {
        let queue = self.by_coordinator.get_mut(&coordinator)?;
        let at = queue.iter().position(|n| n.commitments() == commitments)?;
        let nonces = queue.remove(at);
        if queue.is_empty() {
            self.by_coordinator.remove(&coordinator);
        }
        nonces
    }

    /// How many nonces issued to `coordinator` are still unused.
    pub fn outstanding(&self, coordinator: PeerId) -> usize {
        self.by_coordinator
            .get(&coordinator)
            .map_or(0, VecDeque::len)
    }

    /// Forgets every nonce issued to `coordinator`, e.g. when it is removed from the cluster.
    pub fn forget(&mut self, coordinator: PeerId) {
        self.by_coordinator.remove(&coordinator);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_ed25519::keys::{generate_with_dealer, IdentifierList};
    use rand_core::OsRng;

    fn share() -> SigningShare {
        let (shares, _) = generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        *shares.into_values().next().unwrap().signing_share()
    }

    #[test]
    fn what_a_full_coordinator_inventory_holds_survives_lost_responses() {
        let share = share();
        let mut pool = NoncePool::default();
        let held = pool.issue(1, 64, &share, &mut OsRng);
        // Twice as many again were issued in responses the coordinator never read.
        for _ in 0..2 {
            pool.issue(1, 64, &share, &mut OsRng);
        }
        for c in &held {
            assert!(pool.take(1, c).is_some());
        }
    }

    #[test]
    fn take_removes_the_nonce() {
        let share = share();
        let mut pool = NoncePool::new(8);
        let issued = pool.issue(1, 3, &share, &mut OsRng);
        assert_eq!(issued.len(), 3);
        assert_eq!(pool.outstanding(1), 3);
        let nonces = pool.take(1, &issued[1]).unwrap();
        assert_eq!(nonces.commitments(), &issued[1]);
        assert!(pool.take(1, &issued[1]).is_none());
        assert_eq!(pool.outstanding(1), 2);
        assert!(pool.take(1, &issued[0]).is_some());
        assert!(pool.take(1, &issued[2]).is_some());
        assert_eq!(pool.outstanding(1), 0);
    }

    #[test]
    fn commitments_are_bound_to_their_coordinator() {
        let share = share();
        let mut pool = NoncePool::new(8);
        let for_a = pool.issue(1, 1, &share, &mut OsRng);
        let for_b = pool.issue(2, 1, &share, &mut OsRng);
        assert!(pool.take(2, &for_a[0]).is_none());
        assert!(pool.take(1, &for_b[0]).is_none());
        // The failed attempts did not consume anything.
        assert!(pool.take(1, &for_a[0]).is_some());
        assert!(pool.take(2, &for_b[0]).is_some());
    }

    #[test]
    fn issuing_beyond_the_bound_evicts_the_oldest() {
        let share = share();
        let mut pool = NoncePool::new(4);
        let first = pool.issue(1, 3, &share, &mut OsRng);
        let second = pool.issue(1, 3, &share, &mut OsRng);
        assert_eq!(pool.outstanding(1), 4);
        assert!(pool.take(1, &first[0]).is_none());
        assert!(pool.take(1, &first[1]).is_none());
        assert!(pool.take(1, &first[2]).is_some());
        assert!(second.iter().all(|c| pool.take(1, c).is_some()));
        // Asking for more than the bound issues only the bound.
        assert_eq!(pool.issue(1, 100, &share, &mut OsRng).len(), 4);
        assert_eq!(pool.outstanding(1), 4);
    }

    #[test]
    fn issued_commitments_are_distinct() {
        let share = share();
        let mut pool = NoncePool::default();
        let issued = pool.issue(1, 16, &share, &mut OsRng);
        for (i, a) in issued.iter().enumerate() {
            assert!(issued[i + 1..].iter().all(|b| a != b));
        }
    }
}
