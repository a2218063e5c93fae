//! Canonical sign bytes: encoding requests into them and parsing them back, strictly.

use super::{ExtensionDoc, SignDoc};

/// Why bytes are not the canonical sign bytes of a vote, proposal or vote extension.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignBytesError {
    #[error("sign bytes are not implemented yet")]
    Unimplemented,
}

/// Parses canonical vote or proposal sign bytes (varint length prefix included).
pub fn parse(sign_bytes: &[u8]) -> Result<SignDoc, SignBytesError> {
    let _ = sign_bytes;
    Err(SignBytesError::Unimplemented)
}

/// Parses canonical vote extension sign bytes (varint length prefix included).
pub fn parse_extension(sign_bytes: &[u8]) -> Result<ExtensionDoc, SignBytesError> {
    let _ = sign_bytes;
    Err(SignBytesError::Unimplemented)
}

/// Whether two signatures at the same position differ only in their timestamp: same chain,
/// height, round, step, block and proof-of-lock round.
pub fn same_except_timestamp(a: &SignDoc, b: &SignDoc) -> bool {
    a.chain_id == b.chain_id
        && a.hrs == b.hrs
        && a.block_id == b.block_id
        && a.pol_round == b.pol_round
}
