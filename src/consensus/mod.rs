//! What a consensus signature is for.
//!
//! CometBFT signs canonical protobuf encodings of votes and proposals ("sign bytes"). This
//! module owns the types that describe one such signature (chain, height, round, step, block,
//! timestamp) and, in [`sign_bytes`], the encoding of requests into sign bytes and the strict
//! parsing of sign bytes back into those facts. Participants derive everything they check from
//! the bytes they are asked to sign, never from metadata sent alongside them.

pub mod sign_bytes;

use serde::{Deserialize, Serialize};

/// The step of a signature, numbered as CometBFT's FilePV numbers them, so that
/// `(height, round, step)` orders signatures in the order a validator makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    Propose = 1,
    Prevote = 2,
    Precommit = 3,
}

impl Step {
    /// FilePV's number for this step (1 propose, 2 prevote, 3 precommit).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The step for a FilePV step number; 0 ("nothing signed yet") and others are `None`.
    pub fn from_number(n: u8) -> Option<Step> {
        match n {
            1 => Some(Step::Propose),
            2 => Some(Step::Prevote),
            3 => Some(Step::Precommit),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Propose => "proposal",
            Step::Prevote => "prevote",
            Step::Precommit => "precommit",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Height, round and step: the position of a signature in consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hrs {
    pub height: i64,
    pub round: i64,
    pub step: Step,
}

impl std::fmt::Display for Hrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.height, self.round, self.step)
    }
}

/// A protobuf timestamp as it appears in sign bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

/// A block ID as it appears in canonical sign bytes. A nil vote has none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockId {
    pub hash: Vec<u8>,
    pub part_set_total: u32,
    pub part_set_hash: Vec<u8>,
}

/// Everything a signer needs to know about one vote or proposal signature, all of it
/// derived from (and consistent with) `sign_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignDoc {
    pub chain_id: String,
    pub hrs: Hrs,
    /// `None` for a nil vote.
    pub block_id: Option<BlockId>,
    pub timestamp: Timestamp,
    /// For proposals: the proof-of-lock round (-1 if none). Zero for votes.
    pub pol_round: i64,
    /// The exact bytes that are signed (varint length prefix included).
    pub sign_bytes: Vec<u8>,
}

/// The vote extension of a non-nil precommit, as signed (CometBFT v0.38 and later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionDoc {
    pub chain_id: String,
    pub height: i64,
    pub round: i64,
    pub extension: Vec<u8>,
    /// The exact bytes that are signed (varint length prefix included).
    pub sign_bytes: Vec<u8>,
}

/// Why a vote extension does not belong to a vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionMismatch {
    #[error("an extension comes only with a non-nil precommit, not a {0}")]
    NotANonNilPrecommit(String),
    #[error("extension is for {ext_chain} {ext_height}/{ext_round}, the vote for {chain} {height}/{round}")]
    OtherVote {
        ext_chain: String,
        ext_height: i64,
        ext_round: i64,
        chain: String,
        height: i64,
        round: i64,
    },
}

impl ExtensionDoc {
    /// Whether this is the extension CometBFT attaches to `vote`: that of a non-nil precommit
    /// of the same chain, height and round.
    pub fn belongs_to(&self, vote: &SignDoc) -> Result<(), ExtensionMismatch> {
        if vote.hrs.step != Step::Precommit || vote.block_id.is_none() {
            return Err(ExtensionMismatch::NotANonNilPrecommit(format!(
                "{}{}",
                if vote.block_id.is_none() { "nil " } else { "" },
                vote.hrs.step
            )));
        }
        if self.chain_id != vote.chain_id
            || self.height != vote.hrs.height
            || self.round != vote.hrs.round
        {
            return Err(ExtensionMismatch::OtherVote {
                ext_chain: self.chain_id.clone(),
                ext_height: self.height,
                ext_round: self.round,
                chain: vote.chain_id.clone(),
                height: vote.hrs.height,
                round: vote.hrs.round,
            });
        }
        Ok(())
    }
}
