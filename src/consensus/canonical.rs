//! Canonical sign bytes, pure: encoding what a signature is for, and parsing bytes back
//! strictly.
//!
//! Sign bytes are `varint(len) ‖ protobuf(CanonicalVote | CanonicalProposal |
//! CanonicalVoteExtension)`. [`parse`] accepts only bytes that are exactly the canonical
//! encoding of a valid vote or proposal (it re-encodes what it decoded and demands equality),
//! so any bytes we sign have exactly one reading, and every check a signer makes can be made
//! on the bytes themselves. The encoders ([`vote_bytes`], [`proposal_bytes`],
//! [`extension_bytes`]) take values their caller has checked with the same rules.
//!
//! The three canonical messages cannot be confused: a CanonicalVote or CanonicalProposal
//! starts with field 1 as a varint (`0x08`, type 1, 2 or 32), a CanonicalVoteExtension with
//! field 1 as bytes (`0x0A`) or, if the extension is empty, field 2 (`0x11`).

use prost::Message as _;

use super::proto::{
    CanonicalBlockId, CanonicalPartSetHeader, CanonicalProposal, CanonicalVote,
    CanonicalVoteExtension, SignedMsgType,
};
use super::{BlockId, ChainId, ExtensionDoc, Hrs, SignDoc, Step, Timestamp};

/// Why bytes are not the canonical sign bytes of a vote, proposal or vote extension, or why
/// a request cannot be turned into them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignBytesError {
    /// No bytes at all.
    #[error("sign bytes are empty")]
    Empty,
    /// The bytes do not begin with a varint.
    #[error("sign bytes do not start with a valid varint length prefix")]
    BadLengthPrefix,
    /// The length varint has superfluous zero groups, so one length has two encodings.
    #[error("length prefix is not minimally encoded")]
    NonMinimalLengthPrefix,
    /// The length prefix does not match the bytes after it.
    #[error("length prefix declares {declared} bytes but {actual} follow")]
    LengthMismatch {
        /// The length the prefix declares.
        declared: u64,
        /// How many bytes follow it.
        actual: usize,
    },
    /// The first field is not the message type (field 1).
    #[error("sign bytes do not start with a message type field")]
    MissingType,
    /// The message type is not one that is signed.
    #[error("message type {0} is not prevote (1), precommit (2) or proposal (32)")]
    UnknownType(u64),
    /// The message type is not the kind the caller expects.
    #[error("expected a {expected}, got message type {got}")]
    WrongType {
        /// The kind expected.
        expected: &'static str,
        /// The type the bytes carry.
        got: i32,
    },
    /// The body is not valid protobuf for the canonical message; carries prost's reason.
    #[error("not a valid protobuf encoding: {0}")]
    Decode(String),
    /// Re-encoding what was decoded does not give the same bytes, so the bytes are not signed.
    #[error("bytes decode but are not the canonical encoding of what they decode to")]
    NotCanonical,
    /// A height of 0 or below.
    #[error("height {0} is not positive")]
    InvalidHeight(i64),
    /// A round below 0 or above `i32::MAX`.
    #[error("round {0} is negative or does not fit in int32")]
    InvalidRound(i64),
    /// A proposal's proof-of-lock round that is neither -1 nor an earlier round.
    #[error("proof-of-lock round {pol_round} is neither -1 nor in 0..{round}")]
    InvalidPolRound {
        /// The proof-of-lock round.
        pol_round: i64,
        /// The proposal's round.
        round: i64,
    },
    /// A proposal without a block; names what lacks it.
    #[error("block ID is missing or nil, but a {0} must name a block")]
    MissingBlockId(&'static str),
    /// A block ID with some of its parts empty.
    #[error("block ID is neither nil nor complete: {0}")]
    InvalidBlockId(&'static str),
    /// A vote or proposal without a timestamp.
    #[error("timestamp is missing")]
    MissingTimestamp,
    /// A timestamp outside years 1..=9999, or with nanos outside 0..=999,999,999.
    #[error("timestamp ({seconds} s, {nanos} ns) is outside years 1..=9999 or has invalid nanos")]
    InvalidTimestamp {
        /// Seconds since the Unix epoch.
        seconds: i64,
        /// The fraction of a second, in nanoseconds.
        nanos: i32,
    },
    /// The chain ID is not one a signer accepts ([`ChainId::is_valid`](super::ChainId::is_valid)).
    #[error("chain ID {0:?} is not a valid chain ID")]
    InvalidChainId(String),
    /// A vote that is no non-nil precommit carries extension data.
    #[error("a {0} carries a vote extension or extension signature; only a non-nil precommit may")]
    UnexpectedExtension(&'static str),
    /// An extension signature was asked for a vote that is no non-nil precommit; names it.
    #[error("only a non-nil precommit has a vote extension to sign, not a {0}")]
    NoExtensionToSign(&'static str),
}

pub(crate) const PREVOTE: i32 = SignedMsgType::Prevote as i32;
pub(crate) const PRECOMMIT: i32 = SignedMsgType::Precommit as i32;
pub(crate) const PROPOSAL: i32 = SignedMsgType::Proposal as i32;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range Go's `ptypes` accepts.
pub(crate) const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
pub(crate) const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

pub(crate) fn check_height(height: i64) -> Result<(), SignBytesError> {
    if height < 1 {
        return Err(SignBytesError::InvalidHeight(height));
    }
    Ok(())
}

/// Rounds are int32 in votes and proposals even though canonical bytes widen them.
pub(crate) fn check_round(round: i64) -> Result<(), SignBytesError> {
    if !(0..=i64::from(i32::MAX)).contains(&round) {
        return Err(SignBytesError::InvalidRound(round));
    }
    Ok(())
}

pub(crate) fn check_pol_round(pol_round: i64, round: i64) -> Result<(), SignBytesError> {
    if pol_round != -1 && !(0..round).contains(&pol_round) {
        return Err(SignBytesError::InvalidPolRound { pol_round, round });
    }
    Ok(())
}

pub(crate) fn check_timestamp(ts: Option<&Timestamp>) -> Result<Timestamp, SignBytesError> {
    let ts = ts.ok_or(SignBytesError::MissingTimestamp)?;
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(SignBytesError::InvalidTimestamp {
            seconds: ts.seconds,
            nanos: ts.nanos,
        });
    }
    Ok(*ts)
}

pub(crate) fn check_chain_id(chain_id: &str) -> Result<(), SignBytesError> {
    if !ChainId::is_valid(chain_id) {
        return Err(SignBytesError::InvalidChainId(chain_id.to_owned()));
    }
    Ok(())
}

/// CometBFT's rule: a block ID is either entirely zero (nil) or complete. `Ok(None)` is nil.
pub(crate) fn check_block_id(
    hash: &[u8],
    total: u32,
    parts_hash: &[u8],
) -> Result<Option<BlockId>, SignBytesError> {
    if hash.is_empty() && total == 0 && parts_hash.is_empty() {
        return Ok(None);
    }
    if hash.len() != 32 {
        return Err(SignBytesError::InvalidBlockId("block hash is not 32 bytes"));
    }
    if total == 0 {
        return Err(SignBytesError::InvalidBlockId("part set total is zero"));
    }
    if parts_hash.len() != 32 {
        return Err(SignBytesError::InvalidBlockId(
            "part set hash is not 32 bytes",
        ));
    }
    Ok(Some(BlockId {
        hash: hash.to_vec(),
        part_set_total: total,
        part_set_hash: parts_hash.to_vec(),
    }))
}

/// Canonical bytes carry a nil block ID by omitting it, so a present one must be complete.
fn check_canonical_block_id(
    b: Option<&CanonicalBlockId>,
) -> Result<Option<BlockId>, SignBytesError> {
    let Some(b) = b else { return Ok(None) };
    let Some(p) = b.part_set_header.as_ref() else {
        return Err(SignBytesError::InvalidBlockId("part set header is missing"));
    };
    match check_block_id(&b.hash, p.total, &p.hash)? {
        None => Err(SignBytesError::InvalidBlockId(
            "a nil block ID must be omitted from sign bytes",
        )),
        some => Ok(some),
    }
}

pub(crate) fn to_canonical_block_id(b: &BlockId) -> CanonicalBlockId {
    CanonicalBlockId {
        hash: b.hash.clone(),
        part_set_header: Some(CanonicalPartSetHeader {
            total: b.part_set_total,
            hash: b.part_set_hash.clone(),
        }),
    }
}

/// The step of a vote of type `r#type`.
pub(crate) fn vote_step(r#type: i32) -> Result<Step, SignBytesError> {
    match r#type {
        PREVOTE => Ok(Step::Prevote),
        PRECOMMIT => Ok(Step::Precommit),
        got => Err(SignBytesError::WrongType {
            expected: "prevote or precommit",
            got,
        }),
    }
}

/// The message type of a vote at `step` (a proposal is not a vote).
fn vote_type(step: Step) -> i32 {
    match step {
        Step::Prevote => PREVOTE,
        Step::Precommit | Step::Propose => PRECOMMIT,
    }
}

/// The sign bytes of a vote at `hrs` (a prevote or precommit) for `block_id` (`None`: nil).
pub fn vote_bytes(
    chain_id: &str,
    hrs: Hrs,
    block_id: Option<&BlockId>,
    timestamp: Timestamp,
) -> Vec<u8> {
    CanonicalVote {
        r#type: vote_type(hrs.step),
        height: hrs.height,
        round: hrs.round,
        block_id: block_id.map(to_canonical_block_id),
        timestamp: Some(timestamp),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

/// The sign bytes of a proposal at `height`/`round` for `block_id`.
pub fn proposal_bytes(
    chain_id: &str,
    height: i64,
    round: i64,
    pol_round: i64,
    block_id: &BlockId,
    timestamp: Timestamp,
) -> Vec<u8> {
    CanonicalProposal {
        r#type: PROPOSAL,
        height,
        round,
        pol_round,
        block_id: Some(to_canonical_block_id(block_id)),
        timestamp: Some(timestamp),
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

/// The sign bytes of the vote extension `extension` of a precommit at `height`/`round`.
pub fn extension_bytes(chain_id: &str, height: i64, round: i64, extension: &[u8]) -> Vec<u8> {
    CanonicalVoteExtension {
        extension: extension.to_vec(),
        height,
        round,
        chain_id: chain_id.to_owned(),
    }
    .encode_length_delimited_to_vec()
}

/// The message after a length prefix that must cover exactly the rest of `bytes`.
fn strip_length_prefix(bytes: &[u8]) -> Result<&[u8], SignBytesError> {
    if bytes.is_empty() {
        return Err(SignBytesError::Empty);
    }
    let mut rest = bytes;
    let declared =
        prost::encoding::decode_varint(&mut rest).map_err(|_| SignBytesError::BadLengthPrefix)?;
    // The body is checked by re-encoding; the prefix needs its own check.
    if prost::encoding::encoded_len_varint(declared) != bytes.len() - rest.len() {
        return Err(SignBytesError::NonMinimalLengthPrefix);
    }
    if usize::try_from(declared).ok() != Some(rest.len()) {
        return Err(SignBytesError::LengthMismatch {
            declared,
            actual: rest.len(),
        });
    }
    Ok(rest)
}

/// Decodes `body` as `M` and insists that `M` encodes back to exactly `body`.
fn decode_canonical<M: prost::Message + Default>(body: &[u8]) -> Result<M, SignBytesError> {
    let msg = M::decode(body).map_err(|e| SignBytesError::Decode(e.to_string()))?;
    if msg.encode_to_vec() != body {
        return Err(SignBytesError::NotCanonical);
    }
    Ok(msg)
}

/// Parses canonical vote or proposal sign bytes (varint length prefix included).
pub fn parse(sign_bytes: &[u8]) -> Result<SignDoc, SignBytesError> {
    let body = strip_length_prefix(sign_bytes)?;
    if body.first() != Some(&0x08) {
        return Err(SignBytesError::MissingType);
    }
    let mut after_tag = &body[1..];
    let r#type = prost::encoding::decode_varint(&mut after_tag)
        .map_err(|e| SignBytesError::Decode(e.to_string()))?;
    match r#type {
        1 | 2 => parse_vote(body, sign_bytes),
        32 => parse_proposal(body, sign_bytes),
        other => Err(SignBytesError::UnknownType(other)),
    }
}

fn parse_vote(body: &[u8], sign_bytes: &[u8]) -> Result<SignDoc, SignBytesError> {
    let v: CanonicalVote = decode_canonical(body)?;
    let step = vote_step(v.r#type)?;
    check_height(v.height)?;
    check_round(v.round)?;
    let block_id = check_canonical_block_id(v.block_id.as_ref())?;
    let timestamp = check_timestamp(v.timestamp.as_ref())?;
    check_chain_id(&v.chain_id)?;
    Ok(SignDoc {
        chain_id: v.chain_id,
        hrs: Hrs {
            height: v.height,
            round: v.round,
            step,
        },
        block_id,
        timestamp,
        pol_round: 0,
        sign_bytes: sign_bytes.to_vec(),
    })
}

fn parse_proposal(body: &[u8], sign_bytes: &[u8]) -> Result<SignDoc, SignBytesError> {
    let p: CanonicalProposal = decode_canonical(body)?;
    check_height(p.height)?;
    check_round(p.round)?;
    check_pol_round(p.pol_round, p.round)?;
    let block_id = check_canonical_block_id(p.block_id.as_ref())?
        .ok_or(SignBytesError::MissingBlockId("proposal"))?;
    let timestamp = check_timestamp(p.timestamp.as_ref())?;
    check_chain_id(&p.chain_id)?;
    Ok(SignDoc {
        chain_id: p.chain_id,
        hrs: Hrs {
            height: p.height,
            round: p.round,
            step: Step::Propose,
        },
        block_id: Some(block_id),
        timestamp,
        pol_round: p.pol_round,
        sign_bytes: sign_bytes.to_vec(),
    })
}

/// Parses canonical vote extension sign bytes (varint length prefix included).
pub fn parse_extension(sign_bytes: &[u8]) -> Result<ExtensionDoc, SignBytesError> {
    let body = strip_length_prefix(sign_bytes)?;
    let e: CanonicalVoteExtension = decode_canonical(body)?;
    check_height(e.height)?;
    check_round(e.round)?;
    check_chain_id(&e.chain_id)?;
    Ok(ExtensionDoc {
        chain_id: e.chain_id,
        height: e.height,
        round: e.round,
        extension: e.extension,
        sign_bytes: sign_bytes.to_vec(),
    })
}

/// Whether two signatures at the same position differ only in their timestamp: same chain,
/// height, round, step, block and proof-of-lock round.
pub fn same_except_timestamp(a: &SignDoc, b: &SignDoc) -> bool {
    a.chain_id == b.chain_id
        && a.hrs == b.hrs
        && a.block_id == b.block_id
        && a.pol_round == b.pol_round
}

/// Whether `body` loosely decodes as a canonical vote, proposal or extension with a
/// plausible type, height or chain: for refusing raw bytes that might be taken for one.
pub(crate) fn loosely_decodes(body: &[u8]) -> bool {
    let plausible = |t: i32| matches!(t, PREVOTE | PRECOMMIT | PROPOSAL);
    CanonicalVote::decode(body).is_ok_and(|m| plausible(m.r#type))
        || CanonicalProposal::decode(body).is_ok_and(|m| plausible(m.r#type))
        || CanonicalVoteExtension::decode(body)
            .is_ok_and(|m| m.height != 0 || m.round != 0 || !m.chain_id.is_empty())
}
