//! What the simulated node asks next: the pure schedule of public-key requests, proposals,
//! votes and pings over heights, rounds and chains, and the block IDs it votes for.
//!
//! Building the actual protobuf request (clock, validator address, random extension) is the
//! driver's job; this module only decides the order, so it is deterministic and testable.

use std::collections::VecDeque;

use sha2::{Digest, Sha256};
use tendermint_proto::v0_38::types::{BlockId, PartSetHeader};

/// How several chains are driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainOrder {
    /// All heights of the first chain, then all of the next.
    Sequential,
    /// Height H of every chain before height H+1 of any.
    Interleaved,
}

/// The consensus shape to simulate.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub chains: Vec<String>,
    pub start_height: i64,
    /// Heights per chain; `None` = until stopped.
    pub heights: Option<u64>,
    /// A proposal every K heights (0 = never).
    pub proposal_every: u64,
    /// Every K heights round 0 fails with nil votes (0 = never).
    pub nil_round_every: u64,
    /// A ping after every K completed heights (0 = never).
    pub ping_every: u64,
    pub order: ChainOrder,
}

/// A vote step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VoteStep {
    Prevote,
    Precommit,
}

/// The CometBFT FilePV step number (1 propose, 2 prevote, 3 precommit).
pub const STEP_PROPOSE: u8 = 1;

impl VoteStep {
    pub fn step_number(self) -> u8 {
        match self {
            Self::Prevote => 2,
            Self::Precommit => 3,
        }
    }

    /// `SignedMsgType` on the wire.
    pub fn msg_type(self) -> i32 {
        match self {
            Self::Prevote => 1,
            Self::Precommit => 2,
        }
    }
}

/// One thing the node does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    PubKey {
        chain: usize,
    },
    Ping,
    Proposal {
        chain: usize,
        height: i64,
        round: i32,
    },
    Vote {
        chain: usize,
        height: i64,
        round: i32,
        step: VoteStep,
        nil: bool,
    },
    /// The height committed (the driver paces block time here).
    Committed {
        chain: usize,
        height: i64,
    },
}

/// The schedule, generated lazily so unbounded runs need no memory.
#[derive(Debug)]
pub struct Plan {
    cfg: PlanConfig,
    queue: VecDeque<Action>,
    /// Next (chain, height offset) to schedule.
    chain: usize,
    offset: u64,
    completed_heights: u64,
    done: bool,
}

impl Plan {
    pub fn new(cfg: PlanConfig) -> Self {
        let done = cfg.chains.is_empty() || cfg.heights == Some(0);
        Self {
            cfg,
            queue: VecDeque::new(),
            chain: 0,
            offset: 0,
            completed_heights: 0,
            done,
        }
    }

    fn schedule_height(&mut self) {
        let chain = self.chain;
        let offset = self.offset;
        let height = self.cfg.start_height.saturating_add(offset as i64);
        // The node re-reads the key after every commit (and at start).
        self.queue.push_back(Action::PubKey { chain });
        let nil_round = self.cfg.nil_round_every > 0
            && offset % self.cfg.nil_round_every == self.cfg.nil_round_every - 1;
        let mut round = 0;
        if nil_round {
            for step in [VoteStep::Prevote, VoteStep::Precommit] {
                self.queue.push_back(Action::Vote {
                    chain,
                    height,
                    round,
                    step,
                    nil: true,
                });
            }
            round = 1;
        }
        if self.cfg.proposal_every > 0 && offset.is_multiple_of(self.cfg.proposal_every) {
            self.queue.push_back(Action::Proposal {
                chain,
                height,
                round,
            });
        }
        for step in [VoteStep::Prevote, VoteStep::Precommit] {
            self.queue.push_back(Action::Vote {
                chain,
                height,
                round,
                step,
                nil: false,
            });
        }
        self.queue.push_back(Action::Committed { chain, height });
        self.completed_heights += 1;
        if self.cfg.ping_every > 0 && self.completed_heights.is_multiple_of(self.cfg.ping_every) {
            self.queue.push_back(Action::Ping);
        }
        self.advance();
    }

    fn advance(&mut self) {
        let n_chains = self.cfg.chains.len();
        let last_offset = |o: u64| self.cfg.heights.is_some_and(|h| o + 1 >= h);
        match self.cfg.order {
            ChainOrder::Interleaved => {
                if self.chain + 1 < n_chains {
                    self.chain += 1;
                } else if last_offset(self.offset) {
                    self.done = true;
                } else {
                    self.chain = 0;
                    self.offset += 1;
                }
            }
            ChainOrder::Sequential => {
                if !last_offset(self.offset) {
                    self.offset += 1;
                } else if self.chain + 1 < n_chains {
                    self.chain += 1;
                    self.offset = 0;
                } else {
                    self.done = true;
                }
            }
        }
    }
}

impl Iterator for Plan {
    type Item = Action;
    fn next(&mut self) -> Option<Action> {
        if self.queue.is_empty() && !self.done {
            self.schedule_height();
        }
        self.queue.pop_front()
    }
}

/// The deterministic block the node votes for at (chain, height, round); `variant` makes a
/// different block at the same place (for conflicting requests).
pub fn block_id(chain_id: &str, height: i64, round: i32, variant: &str) -> BlockId {
    let tag = format!("{chain_id}/{height}/{round}/{variant}");
    BlockId {
        hash: Sha256::digest(format!("block {tag}")).to_vec(),
        part_set_header: Some(PartSetHeader {
            total: 1,
            hash: Sha256::digest(format!("parts {tag}")).to_vec(),
        }),
    }
}

/// A nil block ID exactly as a Go node encodes it (non-nullable: an empty struct).
pub fn nil_block_id() -> BlockId {
    BlockId {
        hash: Vec::new(),
        part_set_header: Some(PartSetHeader {
            total: 0,
            hash: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(chains: &[&str], heights: Option<u64>) -> PlanConfig {
        PlanConfig {
            chains: chains.iter().map(|c| c.to_string()).collect(),
            start_height: 10,
            heights,
            proposal_every: 1,
            nil_round_every: 0,
            ping_every: 0,
            order: ChainOrder::Interleaved,
        }
    }

    #[test]
    fn one_height_is_pubkey_proposal_prevote_precommit() {
        let actions: Vec<_> = Plan::new(cfg(&["a"], Some(1))).collect();
        assert_eq!(
            actions,
            vec![
                Action::PubKey { chain: 0 },
                Action::Proposal {
                    chain: 0,
                    height: 10,
                    round: 0
                },
                Action::Vote {
                    chain: 0,
                    height: 10,
                    round: 0,
                    step: VoteStep::Prevote,
                    nil: false
                },
                Action::Vote {
                    chain: 0,
                    height: 10,
                    round: 0,
                    step: VoteStep::Precommit,
                    nil: false
                },
                Action::Committed {
                    chain: 0,
                    height: 10
                },
            ]
        );
    }

    #[test]
    fn nil_round_then_round_one() {
        let mut c = cfg(&["a"], Some(2));
        c.nil_round_every = 2;
        c.proposal_every = 2;
        let actions: Vec<_> = Plan::new(c).collect();
        // Height 10: normal round 0 with proposal; height 11: nil round 0, round 1, no proposal.
        assert_eq!(actions.len(), 5 + 6);
        assert_eq!(
            actions[6],
            Action::Vote {
                chain: 0,
                height: 11,
                round: 0,
                step: VoteStep::Prevote,
                nil: true
            }
        );
        assert_eq!(
            actions[8],
            Action::Vote {
                chain: 0,
                height: 11,
                round: 1,
                step: VoteStep::Prevote,
                nil: false
            }
        );
        assert!(!actions.contains(&Action::Proposal {
            chain: 0,
            height: 11,
            round: 1
        }));
    }

    #[test]
    fn chain_orders() {
        let committed = |order| {
            let mut c = cfg(&["a", "b"], Some(2));
            c.order = order;
            Plan::new(c)
                .filter_map(|a| match a {
                    Action::Committed { chain, height } => Some((chain, height)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            committed(ChainOrder::Interleaved),
            vec![(0, 10), (1, 10), (0, 11), (1, 11)]
        );
        assert_eq!(
            committed(ChainOrder::Sequential),
            vec![(0, 10), (0, 11), (1, 10), (1, 11)]
        );
    }

    #[test]
    fn pings_and_unbounded_plans() {
        let mut c = cfg(&["a"], None);
        c.ping_every = 3;
        let actions: Vec<_> = Plan::new(c).take(1000).collect();
        assert_eq!(actions.len(), 1000);
        let pings = actions.iter().filter(|a| **a == Action::Ping).count();
        let heights = actions
            .iter()
            .filter(|a| matches!(a, Action::Committed { .. }))
            .count();
        assert_eq!(pings, heights / 3);
    }

    #[test]
    fn block_ids_differ_by_variant() {
        assert_ne!(block_id("a", 1, 0, ""), block_id("a", 1, 0, "conflict"));
        assert_eq!(block_id("a", 1, 0, "").hash.len(), 32);
    }
}
