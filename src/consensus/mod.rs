//! What a consensus signature is for.
//!
//! CometBFT signs canonical protobuf encodings of votes and proposals ("sign bytes"). This
//! module owns the types that describe one such signature (chain, height, round, step, block,
//! timestamp), their protobuf shapes ([`proto`]) and, in [`canonical`], the encoding of those
//! facts into sign bytes and the strict parsing of sign bytes back into them. It is pure and
//! knows nothing of how requests arrive (`privval::sign_doc` turns a node's request into a
//! [`SignDoc`]). Participants derive everything they check from the bytes they are asked to
//! sign, never from metadata sent alongside them.

pub mod canonical;
pub(crate) mod proto;

pub use proto::{SignedMsgType, Timestamp};

use serde::{Deserialize, Serialize};

/// The step of a signature, numbered as CometBFT's FilePV numbers them, so that
/// `(height, round, step)` orders signatures in the order a validator makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Signing a block proposal (FilePV step 1).
    Propose = 1,
    /// Signing a prevote (FilePV step 2).
    Prevote = 2,
    /// Signing a precommit (FilePV step 3).
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

    /// How messages name the signed message: `proposal`, `prevote` or `precommit`.
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

/// A chain ID this signer accepts. CometBFT allows up to 50 bytes of any kind; we also
/// restrict the characters (A-Z a-z 0-9 . _ -) because the ID names the chain's state file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChainId(String);

/// Why a string is not a [`ChainId`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a chain ID: 1 to 50 characters of A-Z a-z 0-9 . _ -")]
pub struct InvalidChainId(pub String);

impl ChainId {
    /// Whether `id` is a chain ID this signer accepts.
    pub fn is_valid(id: &str) -> bool {
        !id.is_empty()
            && id.len() <= 50
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && id != "."
            && id != ".."
    }

    /// The chain ID as the node sends it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChainId {
    type Error = InvalidChainId;

    fn try_from(id: String) -> Result<ChainId, InvalidChainId> {
        if ChainId::is_valid(&id) {
            Ok(ChainId(id))
        } else {
            Err(InvalidChainId(id))
        }
    }
}

impl std::str::FromStr for ChainId {
    type Err = InvalidChainId;

    fn from_str(id: &str) -> Result<ChainId, InvalidChainId> {
        ChainId::try_from(id.to_string())
    }
}

impl From<ChainId> for String {
    fn from(id: ChainId) -> String {
        id.0
    }
}

impl std::borrow::Borrow<str> for ChainId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Height, round and step: the position of a signature in consensus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hrs {
    /// The block height.
    pub height: i64,
    /// The consensus round within the height.
    pub round: i64,
    /// Which message of the round.
    pub step: Step,
}

impl std::fmt::Display for Hrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.height, self.round, self.step)
    }
}

/// A block ID as it appears in canonical sign bytes. A nil vote has none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockId {
    /// The block's header hash.
    pub hash: Vec<u8>,
    /// How many gossip parts the block was split into.
    pub part_set_total: u32,
    /// The Merkle root of the parts.
    pub part_set_hash: Vec<u8>,
}

/// Everything a signer needs to know about one vote or proposal signature, all of it
/// derived from (and consistent with) `sign_bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignDoc {
    /// The chain the signature is for; part of the sign bytes, so a signature binds it.
    pub chain_id: String,
    /// Where the signature stands in consensus.
    pub hrs: Hrs,
    /// `None` for a nil vote.
    pub block_id: Option<BlockId>,
    /// The time the validator stamped on the vote or proposal.
    pub timestamp: Timestamp,
    /// For proposals: the proof-of-lock round (-1 if none). Zero for votes.
    pub pol_round: i64,
    /// The exact bytes that are signed (varint length prefix included).
    pub sign_bytes: Vec<u8>,
}

/// The vote extension of a non-nil precommit, as signed (CometBFT v0.38 and later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionDoc {
    /// The chain of the precommit the extension belongs to.
    pub chain_id: String,
    /// The precommit's height.
    pub height: i64,
    /// The precommit's round.
    pub round: i64,
    /// The application data, as signed.
    pub extension: Vec<u8>,
    /// The exact bytes that are signed (varint length prefix included).
    pub sign_bytes: Vec<u8>,
}

/// Why a vote extension does not belong to a vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionMismatch {
    /// The vote is no non-nil precommit; names what it is.
    #[error("an extension comes only with a non-nil precommit, not a {0}")]
    NotANonNilPrecommit(String),
    /// The extension and the vote are for different chains or positions.
    #[error("extension is for {ext_chain} {ext_height}/{ext_round}, the vote for {chain} {height}/{round}")]
    OtherVote {
        /// The extension's chain.
        ext_chain: String,
        /// The extension's height.
        ext_height: i64,
        /// The extension's round.
        ext_round: i64,
        /// The vote's chain.
        chain: String,
        /// The vote's height.
        height: i64,
        /// The vote's round.
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
