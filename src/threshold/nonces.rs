//! This cosigner's secret round-one nonces, held in memory only.
//!
//! Nonces are made ahead of time (preprocessing) and handed out as commitments, one pool per
//! coordinator: a commitment issued to coordinator A can only be redeemed by a request that
//! arrives on A's authenticated connection. Redeeming removes the nonce before returning it, so
//! a nonce yields at most one signature share (invariant 4); reuse would leak our share. The
//! pool is never serialized or persisted: a restart forgets every outstanding nonce, which costs
//! only a retry with fresh commitments. `SigningNonces` zeroizes itself on drop, so evicted and
//! burnt nonces leave no copy behind; each lives in a box of its own from the moment it is
//! made until it is dropped, so that queues growing, shifting or reallocating move pointers,
//! never copies of a secret nonce. (frost returns a new nonce by value: that one stack copy,
//! made before it is boxed, is out of our reach.)
//!
//! Making a nonce costs two base-point multiplications (about 60 µs). So that handing out
//! commitments in a sign response costs nothing, the pool keeps a few spare nonces that belong
//! to no coordinator yet; the caller tops them up off the signing path ([`NoncePool::spare_wanted`],
//! [`NoncePool::add_spare`]). A spare nonce moves to exactly one coordinator when issued.

use std::collections::{BTreeMap, VecDeque};

use frost_ed25519::keys::SigningShare;
use frost_ed25519::rand_core::{CryptoRng, RngCore};
use frost_ed25519::round1::{self, SigningCommitments, SigningNonces};

use super::messages::{Commitment, DecodeError, PeerId};

/// Outstanding nonces kept per coordinator unless configured otherwise: four times what a
/// coordinator keeps ([`super::coordinator::DEFAULT_MAX_PER_PARTICIPANT`]). Commitments are
/// issued in refills and in sign responses that race each other, and some never reach the
/// coordinator (a response it stopped waiting for); with equal bounds the pool would evict
/// nonces whose commitments the coordinator still holds, and every signing with them would
/// fail as "unknown commitment".
pub(crate) const DEFAULT_MAX_OUTSTANDING: usize =
    4 * super::coordinator::DEFAULT_MAX_PER_PARTICIPANT;

/// Spare nonces the pool asks to be kept: enough for the commitments a few concurrent sign
/// responses hand out (two each with a vote extension).
pub(crate) const SPARE_TARGET: usize = 8;

/// A nonce and its commitment in both forms: the wire form finds it without decoding points.
pub(crate) struct PooledNonce {
    wire: Commitment,
    nonces: Box<SigningNonces>,
}

impl PooledNonce {
    /// Makes a fresh nonce for `signing_share` (the expensive part, done outside any lock).
    pub(crate) fn generate<R: RngCore + CryptoRng>(
        signing_share: &SigningShare,
        rng: &mut R,
    ) -> Result<PooledNonce, DecodeError> {
        let (nonces, commitments) = round1::commit(signing_share, rng);
        let nonces = Box::new(nonces);
        Ok(PooledNonce {
            wire: Commitment::from_frost(&commitments)?,
            nonces,
        })
    }
}

/// Secret nonces issued to each coordinator, oldest first, and spare ones issued to nobody.
pub(crate) struct NoncePool {
    max_outstanding: usize,
    // A few dozen entries per coordinator: a linear scan by commitment is cheaper than
    // maintaining an index next to the FIFO order.
    by_coordinator: BTreeMap<PeerId, VecDeque<PooledNonce>>,
    spare: Vec<PooledNonce>,
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
            .field("spare", &self.spare.len())
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
    pub(crate) fn new(max_outstanding: usize) -> NoncePool {
        NoncePool {
            max_outstanding: max_outstanding.max(1),
            by_coordinator: BTreeMap::new(),
            spare: Vec::new(),
        }
    }

    /// How many spare nonces the pool would like added.
    pub(crate) fn spare_wanted(&self) -> usize {
        SPARE_TARGET.saturating_sub(self.spare.len())
    }

    /// Adds a nonce issued to nobody yet, unless enough are spare already.
    pub(crate) fn add_spare(&mut self, nonce: PooledNonce) {
        if self.spare.len() < SPARE_TARGET {
            self.spare.push(nonce);
        }
    }

    /// Issues up to `count` nonces to `coordinator`, spare ones first, and returns their
    /// commitments in both forms. At most `max_outstanding` are issued; beyond the bound the
    /// oldest outstanding ones are evicted (the coordinator's inventory evicts in the same
    /// order).
    pub(crate) fn issue<R: RngCore + CryptoRng>(
        &mut self,
        coordinator: PeerId,
        count: usize,
        signing_share: &SigningShare,
        rng: &mut R,
    ) -> Result<Vec<(Commitment, SigningCommitments)>, DecodeError> {
        let count = count.min(self.max_outstanding);
        let mut issued = Vec::with_capacity(count);
        for _ in 0..count {
            let nonce = match self.spare.pop() {
                Some(spare) => spare,
                None => PooledNonce::generate(signing_share, rng)?,
            };
            issued.push((nonce.wire, *nonce.nonces.commitments()));
            let queue = self.by_coordinator.entry(coordinator).or_default();
            if queue.len() >= self.max_outstanding {
                queue.pop_front();
            }
            queue.push_back(nonce);
        }
        Ok(issued)
    }

    /// The decoded commitments behind `wire` if it was issued to `coordinator` and not used
    /// yet, without decoding any point. Takes nothing.
    pub(crate) fn find(
        &self,
        coordinator: PeerId,
        wire: &Commitment,
    ) -> Option<SigningCommitments> {
        self.by_coordinator
            .get(&coordinator)?
            .iter()
            .find(|n| n.wire == *wire)
            .map(|n| *n.nonces.commitments())
    }

    /// Removes and returns the nonces behind `commitments` if they were issued to
    /// `coordinator` and not used yet. After this call the pool no longer knows them. They
    /// stay boxed: keep them so until they are dropped.
    pub(crate) fn take(
        &mut self,
        coordinator: PeerId,
        commitments: &SigningCommitments,
    ) -> Option<Box<SigningNonces>> {
        let queue = self.by_coordinator.get_mut(&coordinator)?;
        let at = queue
            .iter()
            .position(|n| n.nonces.commitments() == commitments)?;
        let taken = queue.remove(at);
        if queue.is_empty() {
            self.by_coordinator.remove(&coordinator);
        }
        taken.map(|n| n.nonces)
    }

    /// How many nonces issued to `coordinator` are still unused.
    pub(crate) fn outstanding(&self, coordinator: PeerId) -> usize {
        self.by_coordinator
            .get(&coordinator)
            .map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frost_ed25519::keys::{generate_with_dealer, IdentifierList};
    use rand_core::OsRng;

    /// The decoded commitments of what `pool` issues.
    fn issue(
        pool: &mut NoncePool,
        coordinator: PeerId,
        count: usize,
        share: &SigningShare,
    ) -> Vec<SigningCommitments> {
        pool.issue(coordinator, count, share, &mut OsRng)
            .unwrap()
            .into_iter()
            .map(|(_, decoded)| decoded)
            .collect()
    }

    fn share() -> SigningShare {
        let (shares, _) = generate_with_dealer(3, 2, IdentifierList::Default, OsRng).unwrap();
        *shares.into_values().next().unwrap().signing_share()
    }

    #[test]
    fn what_a_full_coordinator_inventory_holds_survives_lost_responses() {
        let share = share();
        let mut pool = NoncePool::default();
        let held = issue(&mut pool, 1, 64, &share);
        // Twice as many again were issued in responses the coordinator never read.
        for _ in 0..2 {
            issue(&mut pool, 1, 64, &share);
        }
        for c in &held {
            assert!(pool.take(1, c).is_some());
        }
    }

    #[test]
    fn take_removes_the_nonce() {
        let share = share();
        let mut pool = NoncePool::new(8);
        let issued = issue(&mut pool, 1, 3, &share);
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
        let for_a = issue(&mut pool, 1, 1, &share);
        let for_b = issue(&mut pool, 2, 1, &share);
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
        let first = issue(&mut pool, 1, 3, &share);
        let second = issue(&mut pool, 1, 3, &share);
        assert_eq!(pool.outstanding(1), 4);
        assert!(pool.take(1, &first[0]).is_none());
        assert!(pool.take(1, &first[1]).is_none());
        assert!(pool.take(1, &first[2]).is_some());
        assert!(second.iter().all(|c| pool.take(1, c).is_some()));
        // Asking for more than the bound issues only the bound.
        assert_eq!(issue(&mut pool, 1, 100, &share).len(), 4);
        assert_eq!(pool.outstanding(1), 4);
    }

    #[test]
    fn issued_commitments_are_distinct() {
        let share = share();
        let mut pool = NoncePool::default();
        let issued = issue(&mut pool, 1, 16, &share);
        for (i, a) in issued.iter().enumerate() {
            assert!(issued[i + 1..].iter().all(|b| a != b));
        }
    }

    #[test]
    fn spare_nonces_go_to_exactly_one_coordinator() {
        let share = share();
        let mut pool = NoncePool::new(8);
        assert_eq!(pool.spare_wanted(), SPARE_TARGET);
        let spare = PooledNonce::generate(&share, &mut OsRng).unwrap();
        let spare_wire = spare.wire;
        pool.add_spare(spare);
        assert_eq!(pool.spare_wanted(), SPARE_TARGET - 1);
        let issued = pool.issue(1, 1, &share, &mut OsRng).unwrap();
        assert_eq!(issued[0].0, spare_wire, "the spare nonce is issued first");
        assert_eq!(pool.spare_wanted(), SPARE_TARGET);
        // Issued to coordinator 1, it is nobody else's.
        assert!(pool.find(2, &spare_wire).is_none());
        let decoded = pool.find(1, &spare_wire).unwrap();
        assert!(pool.take(2, &decoded).is_none());
        assert!(pool.take(1, &decoded).is_some());
        assert!(pool.find(1, &spare_wire).is_none());
        // Spares beyond the target are dropped, not hoarded.
        for _ in 0..SPARE_TARGET + 2 {
            pool.add_spare(PooledNonce::generate(&share, &mut OsRng).unwrap());
        }
        assert_eq!(pool.spare_wanted(), 0);
        assert_eq!(pool.spare.len(), SPARE_TARGET);
    }

    #[test]
    fn queues_move_pointers_not_secret_nonces() {
        // What a queue shifts or reallocates is a pooled entry: its public commitment and a
        // pointer, never the nonce itself.
        assert!(
            std::mem::size_of::<PooledNonce>()
                <= std::mem::size_of::<Commitment>() + std::mem::size_of::<usize>()
        );
        assert!(std::mem::size_of::<PooledNonce>() < std::mem::size_of::<SigningNonces>());
    }

    #[test]
    fn find_matches_the_wire_form_and_takes_nothing() {
        let share = share();
        let mut pool = NoncePool::new(8);
        let issued = pool.issue(1, 2, &share, &mut OsRng).unwrap();
        for (wire, decoded) in &issued {
            assert_eq!(pool.find(1, wire).as_ref(), Some(decoded));
            assert_eq!(wire.to_frost().unwrap(), *decoded);
        }
        assert_eq!(pool.outstanding(1), 2);
    }
}
