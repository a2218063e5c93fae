//! The state file's slot codec, pure: a slot is
//! `magic ‖ format version ‖ reserved ‖ sequence ‖ payload length ‖ payload ‖ CRC32`, the CRC
//! covering everything before it, in one of the file's two fixed 4 KiB slots. The payload
//! is spelled out field by field so that the on-disk format does not change when the
//! in-memory types do. Paths appear only to name the file in errors.

use std::path::Path;

use bincode::Options;
use serde::{Deserialize, Serialize};

use super::StateError;
use crate::consensus::{BlockId, Hrs, SignDoc, Step, Timestamp};
use crate::sign_state::rules::{LastSigned, SignState};

pub(super) const MAGIC: [u8; 8] = *b"CSGNSTAT";
pub(super) const FORMAT_VERSION: u16 = 1;
pub(super) const SLOT_SIZE: usize = 4096;
pub(super) const FILE_SIZE: u64 = 2 * SLOT_SIZE as u64;
/// magic (8) + version (2) + reserved (2) + sequence (8) + payload length (4).
pub(super) const HEADER_LEN: usize = 24;
pub(super) const CRC_LEN: usize = 4;
pub(super) const MAX_PAYLOAD: usize = SLOT_SIZE - HEADER_LEN - CRC_LEN;

/// The payload, spelled out field by field so that the on-disk format does not change when
/// the in-memory types do.
#[derive(Serialize, Deserialize)]
struct Record {
    chain_id: String,
    height: i64,
    round: i64,
    step: u8,
    last: Option<StoredLast>,
}

#[derive(Serialize, Deserialize)]
struct StoredLast {
    height: i64,
    round: i64,
    step: u8,
    block: Option<(Vec<u8>, u32, Vec<u8>)>,
    ts_seconds: i64,
    ts_nanos: i32,
    pol_round: i64,
    sign_bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
}

fn payload_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_PAYLOAD as u64)
        .reject_trailing_bytes()
}

pub(super) fn encode_slot(
    path: &Path,
    chain_id: &str,
    seq: u64,
    state: &SignState,
) -> Result<Vec<u8>, StateError> {
    let unstorable = |reason: String| StateError::Unstorable {
        path: path.to_path_buf(),
        reason,
    };
    state.validate().map_err(unstorable)?;
    let last = match &state.last {
        None => None,
        Some(l) if l.doc.chain_id != chain_id => {
            return Err(unstorable(format!(
                "last signed document is for chain `{}`",
                l.doc.chain_id
            )))
        }
        Some(l) => Some(StoredLast {
            height: l.doc.hrs.height,
            round: l.doc.hrs.round,
            step: l.doc.hrs.step.number(),
            block: l
                .doc
                .block_id
                .as_ref()
                .map(|b| (b.hash.clone(), b.part_set_total, b.part_set_hash.clone())),
            ts_seconds: l.doc.timestamp.seconds,
            ts_nanos: l.doc.timestamp.nanos,
            pol_round: l.doc.pol_round,
            sign_bytes: l.doc.sign_bytes.clone(),
            signature: l.signature.map(|s| s.to_vec()),
        }),
    };
    let record = Record {
        chain_id: chain_id.to_string(),
        height: state.height,
        round: state.round,
        step: state.step,
        last,
    };
    let payload = payload_options()
        .serialize(&record)
        .map_err(|e| unstorable(format!("encoding failed: {e}")))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= MAX_PAYLOAD)
        .ok_or_else(|| unstorable(format!("{} bytes exceed a slot", payload.len())))?;
    let mut slot = Vec::with_capacity(HEADER_LEN + payload.len() + CRC_LEN);
    slot.extend_from_slice(&MAGIC);
    slot.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    slot.extend_from_slice(&0u16.to_le_bytes());
    slot.extend_from_slice(&seq.to_le_bytes());
    slot.extend_from_slice(&len.to_le_bytes());
    slot.extend_from_slice(&payload);
    let crc = crc32fast::hash(&slot);
    slot.extend_from_slice(&crc.to_le_bytes());
    Ok(slot)
}

/// What one slot holds. A slot that does not verify is normal after a torn write; a slot
/// that verifies but cannot be understood makes the whole file unusable (it must not be
/// skipped in favour of an older one), so that is an `Err` of [`decode_slot`] instead.
// Two of these exist, briefly, per open: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Slot {
    Valid { seq: u64, state: SignState },
    Invalid(String),
}

pub(super) fn decode_slot(path: &Path, chain_id: &str, slot: &[u8]) -> Result<Slot, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let le = |range: std::ops::Range<usize>| -> &[u8] { &slot[range] };
    if le(0..8) != MAGIC {
        return Ok(Slot::Invalid("bad magic".into()));
    }
    let len = u32::from_le_bytes([slot[20], slot[21], slot[22], slot[23]]) as usize;
    if len > MAX_PAYLOAD {
        return Ok(Slot::Invalid(format!("payload length {len} out of range")));
    }
    let end = HEADER_LEN + len;
    let stored_crc = u32::from_le_bytes([slot[end], slot[end + 1], slot[end + 2], slot[end + 3]]);
    if crc32fast::hash(&slot[..end]) != stored_crc {
        return Ok(Slot::Invalid("checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([slot[8], slot[9]]);
    if version != FORMAT_VERSION {
        return Err(StateError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(le(12..20));
    let seq = u64::from_le_bytes(seq_bytes);
    let record: Record = payload_options()
        .deserialize(&slot[HEADER_LEN..end])
        .map_err(|e| corrupt(format!("a verified slot does not decode: {e}")))?;
    if record.chain_id != chain_id {
        return Err(corrupt(format!(
            "it belongs to chain `{}`, not `{chain_id}`",
            record.chain_id
        )));
    }
    let last = match record.last {
        None => None,
        Some(l) => {
            let step = Step::from_number(l.step)
                .ok_or_else(|| corrupt(format!("stored step {} is not 1..=3", l.step)))?;
            let signature = match l.signature {
                None => None,
                Some(s) => Some(<[u8; 64]>::try_from(s.as_slice()).map_err(|_| {
                    corrupt(format!("stored signature is {} bytes, not 64", s.len()))
                })?),
            };
            Some(LastSigned {
                doc: SignDoc {
                    chain_id: record.chain_id.clone(),
                    hrs: Hrs {
                        height: l.height,
                        round: l.round,
                        step,
                    },
                    block_id: l
                        .block
                        .map(|(hash, part_set_total, part_set_hash)| BlockId {
                            hash,
                            part_set_total,
                            part_set_hash,
                        }),
                    timestamp: Timestamp {
                        seconds: l.ts_seconds,
                        nanos: l.ts_nanos,
                    },
                    pol_round: l.pol_round,
                    sign_bytes: l.sign_bytes,
                },
                signature,
            })
        }
    };
    let state = SignState {
        height: record.height,
        round: record.round,
        step: record.step,
        last,
    };
    state
        .validate()
        .map_err(|why| corrupt(format!("stored state is inconsistent: {why}")))?;
    Ok(Slot::Valid { seq, state })
}
