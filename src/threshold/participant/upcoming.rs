//! Others' commitments that coordinators announced as upcoming, validated ahead of their
//! requests so that a signing finds them decoded (a point validation costs about 80 µs).
//! Each serves one signing; a coordinator can make us keep only a bounded number.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use frost_ed25519::round1::SigningCommitments;

use crate::threshold::messages::{Commitment, PeerId};

/// Validated upcoming commitments kept per coordinator: enough for the next few signings of
/// the largest cluster, few enough that a coordinator cannot make us hoard.
pub(super) const UPCOMING_PER_COORDINATOR: usize = 32;

/// Per coordinator, the commitments it announced, with their validated form, oldest first.
#[derive(Default)]
pub(super) struct Upcoming(Mutex<BTreeMap<PeerId, VecDeque<(Commitment, SigningCommitments)>>>);

impl Upcoming {
    /// Validates and keeps each of `announced` not kept yet, dropping the oldest beyond the
    /// bound. Invalid ones are skipped: a request that uses one is refused when it comes.
    pub(super) fn learn<'a>(
        &self,
        coordinator: PeerId,
        announced: impl Iterator<Item = &'a Commitment>,
    ) {
        for wire in announced.take(UPCOMING_PER_COORDINATOR) {
            if self.has(coordinator, wire) {
                continue;
            }
            // Validated without the lock held: it is the expensive part.
            let Ok(decoded) = wire.to_frost() else {
                continue;
            };
            let mut upcoming = self.lock();
            let queue = upcoming.entry(coordinator).or_default();
            if queue.len() >= UPCOMING_PER_COORDINATOR {
                queue.pop_front();
            }
            queue.push_back((*wire, decoded));
        }
    }

    pub(super) fn has(&self, coordinator: PeerId, wire: &Commitment) -> bool {
        self.lock()
            .get(&coordinator)
            .is_some_and(|queue| queue.iter().any(|(w, _)| w == wire))
    }

    /// The validated form of `wire` if `coordinator` announced it, removed: a commitment
    /// serves one signing.
    pub(super) fn take(
        &self,
        coordinator: PeerId,
        wire: &Commitment,
    ) -> Option<SigningCommitments> {
        let mut upcoming = self.lock();
        let queue = upcoming.get_mut(&coordinator)?;
        let at = queue.iter().position(|(w, _)| w == wire)?;
        queue.remove(at).map(|(_, decoded)| decoded)
    }

    #[cfg(test)]
    pub(super) fn len(&self, coordinator: PeerId) -> usize {
        self.lock().get(&coordinator).map_or(0, VecDeque::len)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<PeerId, VecDeque<(Commitment, SigningCommitments)>>> {
        // Entries are validated before they go in; a panic cannot leave a bad one behind.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
