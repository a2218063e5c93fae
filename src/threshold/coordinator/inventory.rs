//! The commitments participants handed this coordinator ahead of time, each validated once
//! on arrival (off the signing path), until a signing takes them.

use std::collections::{BTreeMap, VecDeque};

use frost_ed25519::round1::SigningCommitments;

use crate::threshold::messages::{Commitment, DecodeError, PeerId};

/// Commitments kept per participant unless configured otherwise. Participants keep more
/// nonces per coordinator than this (see [`crate::threshold::nonces::DEFAULT_MAX_OUTSTANDING`]), so a
/// commitment in this inventory is not evicted at the participant.
pub const DEFAULT_MAX_PER_PARTICIPANT: usize = 64;

/// Commitments each participant has handed us, oldest first, each validated on arrival.
#[derive(Debug)]
pub struct CommitmentInventory {
    max_per_participant: usize,
    by_participant: BTreeMap<PeerId, VecDeque<(Commitment, SigningCommitments)>>,
}

impl Default for CommitmentInventory {
    fn default() -> Self {
        CommitmentInventory::new(DEFAULT_MAX_PER_PARTICIPANT)
    }
}

impl CommitmentInventory {
    /// An inventory keeping at most `max_per_participant` (at least 1) per participant.
    pub fn new(max_per_participant: usize) -> CommitmentInventory {
        CommitmentInventory {
            max_per_participant: max_per_participant.max(1),
            by_participant: BTreeMap::new(),
        }
    }

    /// Validates and stores commitments `participant` handed us (all or none). Beyond the
    /// bound the oldest are dropped, as the participant drops their nonces.
    pub fn add(
        &mut self,
        participant: PeerId,
        commitments: &[Commitment],
    ) -> Result<(), DecodeError> {
        let decoded = commitments
            .iter()
            .map(|c| Ok((*c, c.to_frost()?)))
            .collect::<Result<Vec<_>, DecodeError>>()?;
        self.add_decoded(participant, decoded);
        Ok(())
    }

    /// Stores commitments that need no validation: this cosigner's own, as it made them.
    pub fn add_decoded(
        &mut self,
        participant: PeerId,
        decoded: Vec<(Commitment, SigningCommitments)>,
    ) {
        let queue = self.by_participant.entry(participant).or_default();
        for entry in decoded {
            if queue.len() >= self.max_per_participant {
                queue.pop_front();
            }
            queue.push_back(entry);
        }
    }

    /// Removes and returns the oldest commitment of `participant`.
    pub fn take_one(&mut self, participant: PeerId) -> Option<(Commitment, SigningCommitments)> {
        let queue = self.by_participant.get_mut(&participant)?;
        let taken = queue.pop_front();
        if queue.is_empty() {
            self.by_participant.remove(&participant);
        }
        taken
    }

    /// The next `count` commitments of `participant` in the order signings will use them.
    pub fn upcoming(&self, participant: PeerId, count: usize) -> Vec<Commitment> {
        self.by_participant
            .get(&participant)
            .map(|queue| queue.iter().take(count).map(|(wire, _)| *wire).collect())
            .unwrap_or_default()
    }

    /// How many unused commitments of `participant` the inventory holds.
    pub fn available(&self, participant: PeerId) -> usize {
        self.by_participant
            .get(&participant)
            .map_or(0, VecDeque::len)
    }

    /// Drops every commitment of `participant`, e.g. after it answered "unknown commitment"
    /// (it restarted) or its connection was re-established.
    pub fn clear(&mut self, participant: PeerId) {
        self.by_participant.remove(&participant);
    }
}
