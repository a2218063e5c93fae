//! The state-file target's check: arbitrary contents opened as a cosigner opens its state
//! file at start. A CRC32 over each slot would keep random bytes away from the payload
//! decoder, so the input may ask for the checksums to be recomputed; and a compact form lets
//! a seed of a few hundred bytes stand for an 8 KiB file.

use std::fs;
use std::path::Path;

use super::{open_state_file, scratch_dir, CHAIN};
use crate::sign_state::{SignState, StateError, StateFile};

/// The state file's layout, as `sign_state::store` documents it: two 4 KiB slots, each
/// `magic (8) ‖ version (2) ‖ reserved (2) ‖ sequence (8) ‖ payload length (4) ‖ payload ‖
/// CRC32`, the CRC covering everything before it.
const SLOT: usize = 4096;
const SLOT_HEADER: usize = 24;
const SLOT_MAX_PAYLOAD: usize = SLOT - SLOT_HEADER - 4;
const MAGIC: &[u8; 8] = b"CSGNSTAT";

/// [`state_file`] input flags: recompute slot 0's (1's) checksum over its declared length,
/// so that the fuzzer reaches the payload decoder; the input is in the compact form.
pub const FIX_CHECKSUM_0: u8 = 1;
/// See [`FIX_CHECKSUM_0`]: the same for slot 1.
pub const FIX_CHECKSUM_1: u8 = 2;
/// The input is in the compact form described at [`state_input`].
pub const COMPACT: u8 = 4;

/// A [`state_file`] input. Raw: `flags ‖ file contents`. [`COMPACT`]: `flags ‖ n (u16 big
/// endian) ‖ n bytes of slot 0 ‖ slot 1`, each slot zero-padded or cut to 4 KiB (a seed of a
/// few hundred bytes then stands for an 8 KiB file).
pub fn state_input(flags: u8, file: &[u8]) -> Vec<u8> {
    let mut input = vec![flags];
    if flags & COMPACT == 0 {
        input.extend_from_slice(file);
        return input;
    }
    let trim = |slot: &[u8]| {
        let end = slot.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        slot[..end].to_vec()
    };
    let (slot0, slot1) = file.split_at(SLOT.min(file.len()));
    let slot0 = trim(slot0);
    let n = u16::try_from(slot0.len()).unwrap_or(u16::MAX);
    input.extend_from_slice(&n.to_be_bytes());
    input.extend_from_slice(&slot0[..usize::from(n)]);
    input.extend_from_slice(&trim(slot1));
    input
}

fn state_image(data: &[u8]) -> Vec<u8> {
    let Some((&flags, rest)) = data.split_first() else {
        return Vec::new();
    };
    let mut image = if flags & COMPACT == 0 {
        rest.to_vec()
    } else {
        let (n, rest) = rest.split_at_checked(2).unwrap_or((&[0, 0], rest));
        let n = usize::from(u16::from_be_bytes([n[0], n[1]])).min(rest.len());
        let (slot0, slot1) = rest.split_at(n);
        let mut image = vec![0u8; 2 * SLOT];
        for (i, part) in [slot0, slot1].into_iter().enumerate() {
            let part = &part[..part.len().min(SLOT)];
            image[i * SLOT..i * SLOT + part.len()].copy_from_slice(part);
        }
        image
    };
    for (i, flag) in [FIX_CHECKSUM_0, FIX_CHECKSUM_1].into_iter().enumerate() {
        if flags & flag != 0 {
            if let Some(slot) = image.get_mut(i * SLOT..(i + 1) * SLOT) {
                if let Some(end) = payload_end(slot) {
                    let crc = crc32fast::hash(&slot[..end]);
                    slot[end..end + 4].copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
    }
    image
}

/// Where a slot's payload ends (its checksum starts), if its declared length fits.
fn payload_end(slot: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(slot.get(20..24)?.try_into().ok()?) as usize;
    (len <= SLOT_MAX_PAYLOAD).then_some(SLOT_HEADER + len)
}

/// A slot's sequence number, if its magic and checksum verify.
fn verified_sequence(slot: &[u8]) -> Option<u64> {
    let end = payload_end(slot)?;
    let crc = u32::from_le_bytes(slot[end..end + 4].try_into().ok()?);
    (slot.starts_with(MAGIC) && crc32fast::hash(&slot[..end]) == crc)
        .then(|| u64::from_le_bytes(slot[12..20].try_into().unwrap_or_default()))
}

/// What opening arbitrary state file contents did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateOutcome {
    /// Opened: the state it held was read.
    Loaded,
    /// Refused as corrupt or of an unknown format version, naming the file.
    Refused,
}

/// The state-file loader: contents either load or are refused as corrupt (or of another
/// version) with an error naming the file; never anything else. A loaded state is valid, came
/// from the newest slot that verifies, and re-encodes to exactly that slot's payload (the
/// next write, in the other slot, under the next sequence number); the rewritten file and a
/// fresh file created with the state both load to the same state.
pub fn state_file(data: &[u8]) -> StateOutcome {
    let image = state_image(data);
    let dir = scratch_dir();
    let path = dir.path().join(format!("{CHAIN}.state"));
    fs::write(&path, &image).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let (mut file, state) = match open_state_file(dir.path()) {
        Ok(opened) => opened,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    StateError::Corrupt { .. } | StateError::UnsupportedVersion { .. }
                ),
                "unexpected error: {e}"
            );
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
            return StateOutcome::Refused;
        }
    };
    state
        .validate()
        .unwrap_or_else(|e| panic!("loaded an invalid state: {e}"));
    assert_eq!(image.len(), 2 * SLOT, "loaded a file of another size");
    let sequences: Vec<Option<u64>> = image.chunks(SLOT).map(verified_sequence).collect();
    let newest = match sequences[..] {
        [Some(a), Some(b)] if a != b => usize::from(b > a),
        [Some(_), None] => 0,
        [None, Some(_)] => 1,
        _ => panic!("loaded a state from slots {sequences:?}"),
    };
    let seq = sequences[newest].unwrap_or_default();
    match file.persist(&state) {
        Ok(()) => {}
        Err(StateError::Unstorable { .. }) if seq == u64::MAX => return StateOutcome::Loaded,
        Err(e) => panic!("cannot store the state just loaded: {e}"),
    }
    let rewritten = fs::read(&path).unwrap_or_else(|e| panic!("cannot read back: {e}"));
    let (old, new) = (
        &image[newest * SLOT..][..SLOT],
        &rewritten[(1 - newest) * SLOT..][..SLOT],
    );
    assert_eq!(
        &rewritten[newest * SLOT..][..SLOT],
        old,
        "the loaded slot was overwritten"
    );
    let end = payload_end(old).unwrap_or_default();
    assert_eq!(verified_sequence(new), Some(seq + 1), "the rewritten slot");
    assert_eq!(
        new[..10],
        old[..10],
        "magic and version re-encode differently"
    );
    assert_eq!(
        new[20..end],
        old[20..end],
        "the payload re-encodes differently"
    );
    drop(file);
    assert_eq!(
        reopened(dir.path()),
        state,
        "the rewritten file loads differently"
    );

    let fresh = scratch_dir();
    StateFile::create(fresh.path(), CHAIN, &state)
        .unwrap_or_else(|e| panic!("cannot create a file holding the state just loaded: {e}"));
    assert_eq!(
        reopened(fresh.path()),
        state,
        "a fresh file loads differently"
    );
    StateOutcome::Loaded
}

fn reopened(dir: &Path) -> SignState {
    match open_state_file(dir) {
        Ok((_, state)) => state,
        Err(e) => panic!("cannot open a state file we wrote: {e}"),
    }
}
