//! The durable watermark: one state file per chain, `<state_dir>/<chain_id>.state`.
//!
//! The file is preallocated once (written to a temporary file, fsynced, linked into place,
//! directory fsynced) and then holds two fixed slots written alternately in place, each
//! followed by `fdatasync`. A slot is
//! `magic ‖ format version ‖ reserved ‖ sequence ‖ payload length ‖ payload ‖ CRC32`, the
//! CRC covering everything before it; the newest slot whose checksum verifies wins. A torn
//! write can only damage the slot being written, whose content was never released, so the
//! other slot is the last durable watermark. A file in which no slot verifies is corrupt and
//! is reported as such: it never silently starts over at height 0.
//!
//! The file is held under an exclusive `flock` while open, so two processes (or two opens in
//! one process) can never each believe they own the watermark. A lock is on the inode, not
//! the path, so before each write the file is also checked to still be the one at its path
//! (see [`StateFile::persist`]): a watermark written into a deleted or replaced file would
//! be lost at the next start.
//!
//! A state file is created once, with the cosigner directory (`split-key`, `init-single`)
//! or by an explicit `cosigner state init` / `state import`; opening never creates one,
//! since a missing file on a host that has signed is how double signs happen.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

mod error;
mod slot;

use self::error::io_err;
pub use self::error::{missing_state_help, StateError};
use self::slot::{decode_slot, encode_slot, Slot, FILE_SIZE, SLOT_SIZE};
use super::rules::SignState;
use crate::consensus::ChainId;

/// The path of the state file for `chain_id` in `state_dir`.
pub fn state_path(state_dir: &Path, chain_id: &str) -> Result<PathBuf, StateError> {
    if !ChainId::is_valid(chain_id) {
        return Err(StateError::InvalidChainId(chain_id.to_string()));
    }
    Ok(state_dir.join(format!("{chain_id}.state")))
}

/// An open, locked state file. Dropping it releases the lock.
pub struct StateFile {
    path: PathBuf,
    file: File,
    chain_id: String,
    /// Sequence number of the newest durable slot.
    seq: u64,
    /// Index (0 or 1) of the newest durable slot; the next write goes to the other one.
    newest: usize,
    /// The file's contents as this process last read or wrote them, to notice a file
    /// overwritten in place (`cp backup.state chain.state` keeps the inode).
    on_disk: Vec<u8>,
    /// Where the file is read back into before each write.
    scratch: Vec<u8>,
    poisoned: bool,
    #[cfg(test)]
    fault: Option<Fault>,
}

impl std::fmt::Debug for StateFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFile")
            .field("path", &self.path)
            .field("chain_id", &self.chain_id)
            .field("seq", &self.seq)
            .field("newest", &self.newest)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Failures injected in tests, since no file permission stops root writing an open file.
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// Write only this many bytes of the slot, then fail (a crash mid-write).
    TornWrite(usize),
    /// The write succeeds but `fdatasync` fails.
    Sync,
}

impl StateFile {
    /// Opens (and locks) the existing state file of `chain_id`; a missing one is
    /// [`StateError::Missing`], never created here.
    pub fn open(state_dir: &Path, chain_id: &str) -> Result<(StateFile, SignState), StateError> {
        let path = state_path(state_dir, chain_id)?;
        if !state_dir.is_dir() {
            return Err(StateError::NoStateDir(state_dir.to_path_buf()));
        }
        Self::open_existing(&path, chain_id)
    }

    /// Creates the state file of `chain_id` holding `initial`; fails if it already exists.
    pub fn create(state_dir: &Path, chain_id: &str, initial: &SignState) -> Result<(), StateError> {
        let path = state_path(state_dir, chain_id)?;
        let slot = encode_slot(&path, chain_id, 1, initial)?;
        let mut image = vec![0u8; FILE_SIZE as usize];
        image[..slot.len()].copy_from_slice(&slot);

        let tmp = state_dir.join(format!(".{chain_id}.state.tmp.{}", std::process::id()));
        // A leftover from a crash of this very pid number; it never held a watermark.
        let _ = fs::remove_file(&tmp);
        // Errors name the state file, not the temporary one: that is the file the operator
        // knows, and the temporary one is removed below.
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err(&path, "create a temporary file for"))?;
            file.write_all_at(&image, 0)
                .map_err(io_err(&path, "write a temporary file for"))?;
            file.sync_all()
                .map_err(io_err(&path, "fsync a temporary file for"))?;
            // A link, unlike a rename, never replaces a state file that appeared meanwhile
            // (and may already be in use).
            fs::hard_link(&tmp, &path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    StateError::AlreadyExists(path.clone())
                } else {
                    io_err(&path, "link into place")(e)
                }
            })
        })();
        let _ = fs::remove_file(&tmp);
        result?;
        File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(state_dir, "fsync the directory of"))
    }

    fn open_existing(path: &Path, chain_id: &str) -> Result<(StateFile, SignState), StateError> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::Missing {
                    path: path.to_path_buf(),
                    chain_id: chain_id.to_string(),
                })
            }
            Err(e) => return Err(io_err(path, "open")(e)),
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StateError::Locked(path.to_path_buf()))
            }
            Err(e) => return Err(io_err(path, "lock")(e.into())),
        }
        let image = read_image(&file, path)?;
        let (newest, seq, state) = newest_slot(path, chain_id, &image)?;
        Ok((
            StateFile {
                path: path.to_path_buf(),
                file,
                chain_id: chain_id.to_string(),
                seq,
                newest,
                on_disk: image,
                scratch: vec![0u8; FILE_SIZE as usize],
                poisoned: false,
                #[cfg(test)]
                fault: None,
            },
            state,
        ))
    }

    /// Reads the state of `chain_id` without locking or writing the file, so that it can be
    /// shown while a cosigner holds it (`cosigner state show`). A slot being written at that
    /// moment fails its checksum, and the other one, the watermark before it, is read.
    pub fn read(state_dir: &Path, chain_id: &str) -> Result<SignState, StateError> {
        let path = state_path(state_dir, chain_id)?;
        if !state_dir.is_dir() {
            return Err(StateError::NoStateDir(state_dir.to_path_buf()));
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::Missing {
                    path,
                    chain_id: chain_id.to_string(),
                })
            }
            Err(e) => return Err(io_err(&path, "open")(e)),
        };
        // Two writes while one read is in progress could leave no slot verifying in what
        // was read; the file itself is fine then, so read it again.
        let mut tries = 0;
        loop {
            let image = read_image(&file, &path)?;
            match newest_slot(&path, chain_id, &image) {
                Ok((_, _, state)) => return Ok(state),
                Err(StateError::Corrupt { .. }) if tries < 2 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The whole file, checked to be of the size every state file has.
fn read_image(file: &File, path: &Path) -> Result<Vec<u8>, StateError> {
    let meta = file.metadata().map_err(io_err(path, "stat"))?;
    if !meta.is_file() || meta.len() != FILE_SIZE {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("size is {} bytes, expected {FILE_SIZE}", meta.len()),
        });
    }
    let mut image = vec![0u8; FILE_SIZE as usize];
    file.read_exact_at(&mut image, 0)
        .map_err(io_err(path, "read"))?;
    Ok(image)
}

/// The newest slot of `image` that verifies: its index, sequence number and state.
fn newest_slot(
    path: &Path,
    chain_id: &str,
    image: &[u8],
) -> Result<(usize, u64, SignState), StateError> {
    let mut best: Option<(usize, u64, SignState)> = None;
    let mut rejected = Vec::new();
    for (i, slot) in image.chunks_exact(SLOT_SIZE).enumerate() {
        match decode_slot(path, chain_id, slot)? {
            Slot::Valid { seq, state } => match &best {
                Some((_, best_seq, _)) if *best_seq == seq => {
                    return Err(StateError::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!("both slots claim sequence number {seq}"),
                    })
                }
                Some((_, best_seq, _)) if *best_seq > seq => {}
                _ => best = Some((i, seq, state)),
            },
            Slot::Invalid(why) => rejected.push(format!("slot {i}: {why}")),
        }
    }
    let Some((newest, seq, state)) = best else {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("no slot verifies ({})", rejected.join("; ")),
        });
    };
    for why in &rejected {
        // Expected once after a crash mid-write, and on a file never written twice.
        tracing::debug!(path = %path.display(), "ignoring invalid state slot: {why}");
    }
    Ok((newest, seq, state))
}

impl StateFile {
    /// Durably records `state`. When this returns `Ok` the state survives a crash; on any
    /// error nothing may be released on its strength, and the file refuses further writes.
    ///
    /// First it checks that the open file is still the one at its path (see
    /// [`StateFile::check_still_in_place`]): a write into a deleted file, or into one that
    /// another file has replaced at the path, reaches no later start. That refusal poisons
    /// the file like a failed write, so the cosigner gives way as for a failing disk.
    pub fn persist(&mut self, state: &SignState) -> Result<(), StateError> {
        if self.poisoned {
            return Err(StateError::Poisoned(self.path.clone()));
        }
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| StateError::Unstorable {
                path: self.path.clone(),
                reason: "sequence number exhausted".into(),
            })?;
        let slot = encode_slot(&self.path, &self.chain_id, seq, state)?;
        let target = 1 - self.newest;
        // Whatever happens below, the disk may now differ from what we believe it holds.
        self.poisoned = true;
        self.check_still_in_place()?;
        self.write_slot(target, &slot)?;
        self.seq = seq;
        self.newest = target;
        self.poisoned = false;
        Ok(())
    }

    /// Whether the open file is still the one a restart would read, holding what this
    /// process wrote: not unlinked (link count 0 on the descriptor), the path naming the
    /// same file (device and inode), and its contents unchanged (a copy written over it
    /// keeps the inode). Three syscalls, `fstat`, `stat` and an 8 KiB `pread` from the page
    /// cache: a few microseconds against an `fdatasync` of 100 µs or more (measured by the
    /// `the_check_before_a_write_costs_little` test).
    fn check_still_in_place(&mut self) -> Result<(), StateError> {
        let open = self.file.metadata().map_err(io_err(&self.path, "fstat"))?;
        // The path first: a file renamed over ours also leaves ours with no links, and
        // "replaced" is the better account of that.
        match fs::metadata(&self.path) {
            Ok(at_path) if (at_path.dev(), at_path.ino()) != (open.dev(), open.ino()) => {
                return Err(StateError::Replaced(self.path.clone()))
            }
            Ok(_) => {}
            // Deleted, renamed away, or deleted while another link keeps it alive.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::Deleted(self.path.clone()))
            }
            Err(e) => return Err(io_err(&self.path, "stat")(e)),
        }
        // Not while the path names it, unless the file system is confused; cheap to ask.
        if open.nlink() == 0 {
            return Err(StateError::Deleted(self.path.clone()));
        }
        match self.file.read_exact_at(&mut self.scratch, 0) {
            Ok(()) if self.scratch == self.on_disk => Ok(()),
            Ok(()) => Err(StateError::Replaced(self.path.clone())),
            // Shorter than it was: truncated, or overwritten by a shorter file.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(StateError::Replaced(self.path.clone()))
            }
            Err(e) => Err(io_err(&self.path, "read back")(e)),
        }
    }

    fn write_slot(&mut self, target: usize, slot: &[u8]) -> Result<(), StateError> {
        let offset = (target * SLOT_SIZE) as u64;
        #[cfg(test)]
        match self.fault.take() {
            Some(Fault::TornWrite(n)) => {
                let n = n.min(slot.len());
                self.file
                    .write_all_at(&slot[..n], offset)
                    .map_err(io_err(&self.path, "write"))?;
                return Err(io_err(&self.path, "write")(io::Error::other(
                    "injected torn write",
                )));
            }
            Some(Fault::Sync) => {
                self.file
                    .write_all_at(slot, offset)
                    .map_err(io_err(&self.path, "write"))?;
                return Err(io_err(&self.path, "fdatasync")(io::Error::other(
                    "injected fdatasync failure",
                )));
            }
            None => {}
        }
        self.file
            .write_all_at(slot, offset)
            .map_err(io_err(&self.path, "write"))?;
        self.file
            .sync_data()
            .map_err(io_err(&self.path, "fdatasync"))?;
        let at = offset as usize;
        self.on_disk[at..at + slot.len()].copy_from_slice(slot);
        Ok(())
    }

    /// The file's path, as opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chain the file is for.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    #[cfg(test)]
    pub(crate) fn inject(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }
}

#[cfg(test)]
mod tests {
    use super::slot::HEADER_LEN;
    use super::*;
    use crate::consensus::Step;
    use crate::consensus::Step::{Precommit, Prevote, Propose};
    use crate::sign_state::rules::tests::{doc, CHAIN};

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn state_at(height: i64, step: Step) -> SignState {
        SignState::after(&doc(height, 0, step, Some(1), height), Some([9; 64]))
    }

    /// A new state file, as a fresh cosigner directory holds, opened.
    fn created(d: &Path) -> (StateFile, SignState) {
        StateFile::create(d, CHAIN, &SignState::fresh()).unwrap();
        StateFile::open(d, CHAIN).unwrap()
    }

    fn file_of(d: &Path) -> PathBuf {
        state_path(d, CHAIN).unwrap()
    }

    fn flip_byte(path: &Path, offset: usize) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset] ^= 0x55;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn fresh_file_round_trips_and_keeps_the_watermark_across_restarts() {
        let d = dir();
        let (mut f, s) = created(d.path());
        assert_eq!(s, SignState::fresh());
        assert_eq!(f.path(), file_of(d.path()));
        assert_eq!(fs::metadata(f.path()).unwrap().len(), FILE_SIZE);
        let mut participant = SignState::after(&doc(3, 1, Precommit, None, 7), None);
        participant.last.as_mut().unwrap().doc.pol_round = 0;
        for s in [
            state_at(1, Propose),
            state_at(1, Prevote),
            participant.clone(),
        ] {
            f.persist(&s).unwrap();
        }
        drop(f);
        let (mut f, s) = StateFile::open(d.path(), CHAIN).unwrap();
        assert_eq!(s, participant);
        f.persist(&state_at(4, Prevote)).unwrap();
        drop(f);
        let (_, s) = StateFile::open(d.path(), CHAIN).unwrap();
        assert_eq!(s, state_at(4, Prevote));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn torn_newest_slot_falls_back_to_the_older_one() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap(); // slot 1
        f.persist(&state_at(2, Prevote)).unwrap(); // slot 0
        drop(f);
        // Damage the newest slot's payload, as a torn write would.
        flip_byte(&file_of(d.path()), HEADER_LEN + 10);
        let (_, s) = StateFile::open(d.path(), CHAIN).unwrap();
        assert_eq!(s, state_at(1, Prevote));
    }

    #[test]
    fn injected_torn_write_fails_persist_and_leaves_the_previous_state() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap();
        f.inject(Fault::TornWrite(HEADER_LEN + 5));
        assert!(matches!(
            f.persist(&state_at(2, Prevote)),
            Err(StateError::Io { op: "write", .. })
        ));
        // Nothing more is written through a file whose content is unknown.
        assert!(matches!(
            f.persist(&state_at(3, Prevote)),
            Err(StateError::Poisoned(_))
        ));
        drop(f);
        let (mut f, s) = StateFile::open(d.path(), CHAIN).unwrap();
        assert_eq!(s, state_at(1, Prevote));
        // And writing resumes correctly after the restart.
        f.persist(&state_at(5, Prevote)).unwrap();
        drop(f);
        assert_eq!(
            StateFile::open(d.path(), CHAIN).unwrap().1,
            state_at(5, Prevote)
        );
    }

    #[test]
    fn failed_sync_poisons() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.inject(Fault::Sync);
        assert!(matches!(
            f.persist(&state_at(2, Prevote)),
            Err(StateError::Io {
                op: "fdatasync",
                ..
            })
        ));
        assert!(matches!(
            f.persist(&state_at(2, Prevote)),
            Err(StateError::Poisoned(_))
        ));
    }

    #[test]
    fn both_slots_corrupt_is_an_error_naming_the_file() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap();
        drop(f);
        let path = file_of(d.path());
        flip_byte(&path, HEADER_LEN + 3);
        flip_byte(&path, SLOT_SIZE + HEADER_LEN + 3);
        let err = StateFile::open(d.path(), CHAIN).unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { path: p, .. } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
        // allow_fresh does not paper over corruption, and the file is left alone.
        assert_eq!(fs::metadata(&path).unwrap().len(), FILE_SIZE);
    }

    #[test]
    fn bad_magic_in_both_slots_is_corrupt() {
        let d = dir();
        drop(created(d.path()));
        let path = file_of(d.path());
        fs::write(&path, vec![0u8; FILE_SIZE as usize]).unwrap();
        assert!(matches!(
            StateFile::open(d.path(), CHAIN),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn truncated_or_empty_file_is_corrupt() {
        let d = dir();
        drop(created(d.path()));
        let path = file_of(d.path());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..SLOT_SIZE + 100]).unwrap();
        let err = StateFile::open(d.path(), CHAIN).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        fs::write(&path, b"").unwrap();
        assert!(matches!(
            StateFile::open(d.path(), CHAIN),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_never_created_by_opening() {
        let d = dir();
        let err = StateFile::open(d.path(), CHAIN).unwrap_err();
        assert!(matches!(&err, StateError::Missing { chain_id, .. } if chain_id == CHAIN));
        let msg = err.to_string();
        let path = file_of(d.path()).display().to_string();
        assert!(
            msg.contains(&path)
                && msg.contains(&format!("cosigner state import PRIV_VALIDATOR_STATE_JSON --config COSIGNER_TOML --chain-id {CHAIN}"))
                && msg.contains(&format!("cosigner state init --config COSIGNER_TOML --chain-id {CHAIN}")),
            "{msg}"
        );
        assert!(!msg.contains("allow_fresh_state"), "{msg}");
        assert!(!file_of(d.path()).exists());
        let with_config = missing_state_help(
            &file_of(d.path()),
            CHAIN,
            Some(Path::new("/etc/my cosigner.toml")),
        );
        assert!(
            with_config.contains(&format!(
                "state init --config '/etc/my cosigner.toml' --chain-id {CHAIN}"
            )),
            "{with_config}"
        );
    }

    #[test]
    fn missing_directory_and_bad_chain_id_are_reported() {
        let d = dir();
        let missing = d.path().join("nope");
        assert!(matches!(
            StateFile::open(&missing, CHAIN),
            Err(StateError::NoStateDir(_))
        ));
        assert!(matches!(
            StateFile::open(d.path(), "../etc"),
            Err(StateError::InvalidChainId(_))
        ));
    }

    #[test]
    fn second_open_is_refused_while_the_first_holds_the_lock() {
        let d = dir();
        let (f, _) = created(d.path());
        assert!(matches!(
            StateFile::open(d.path(), CHAIN),
            Err(StateError::Locked(_))
        ));
        drop(f);
        assert!(StateFile::open(d.path(), CHAIN).is_ok());
    }

    #[test]
    fn reading_needs_no_lock_and_changes_nothing() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(5, Prevote)).unwrap();
        let before = fs::read(f.path()).unwrap();
        assert_eq!(
            StateFile::read(d.path(), CHAIN).unwrap(),
            state_at(5, Prevote)
        );
        assert_eq!(fs::read(f.path()).unwrap(), before);
        // The holder writes on, and a read sees the newest slot.
        f.persist(&state_at(6, Propose)).unwrap();
        assert_eq!(
            StateFile::read(d.path(), CHAIN).unwrap(),
            state_at(6, Propose)
        );
        assert!(matches!(
            StateFile::read(d.path(), "other-chain"),
            Err(StateError::Missing { .. })
        ));
    }

    #[test]
    fn a_file_of_another_chain_is_refused() {
        let d = dir();
        drop(created(d.path()));
        fs::rename(file_of(d.path()), d.path().join("other.state")).unwrap();
        assert!(matches!(
            StateFile::open(d.path(), "other"),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn unknown_format_version_is_not_skipped() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap(); // slot 1 newest
        drop(f);
        let path = file_of(d.path());
        let mut bytes = fs::read(&path).unwrap();
        let slot = &mut bytes[SLOT_SIZE..];
        slot[8] = 2;
        let len = u32::from_le_bytes(slot[20..24].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&slot[..HEADER_LEN + len]);
        slot[HEADER_LEN + len..HEADER_LEN + len + 4].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            StateFile::open(d.path(), CHAIN),
            Err(StateError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn create_never_replaces_an_existing_file() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(7, Prevote)).unwrap();
        drop(f);
        assert!(matches!(
            StateFile::create(d.path(), CHAIN, &SignState::fresh()),
            Err(StateError::AlreadyExists(_))
        ));
        assert_eq!(
            StateFile::open(d.path(), CHAIN).unwrap().1,
            state_at(7, Prevote)
        );
    }

    #[test]
    fn inconsistent_or_oversized_states_are_not_written() {
        let d = dir();
        let (mut f, _) = created(d.path());
        let mut s = state_at(3, Prevote);
        s.height = 4;
        assert!(matches!(f.persist(&s), Err(StateError::Unstorable { .. })));
        let mut s = state_at(3, Prevote);
        s.last.as_mut().unwrap().doc.sign_bytes = vec![0; SLOT_SIZE];
        assert!(matches!(f.persist(&s), Err(StateError::Unstorable { .. })));
        // Refusing to encode is not a failed write: the file stays usable.
        f.persist(&state_at(3, Prevote)).unwrap();
    }

    /// Asserts that `persist` refuses with `want`, naming the file, and that the file is
    /// poisoned from then on, like after a failed write.
    fn refuses_and_poisons(f: &mut StateFile, want: fn(&StateError) -> bool, what: &str) {
        let path = f.path().to_path_buf();
        let err = f.persist(&state_at(9, Prevote)).unwrap_err();
        assert!(want(&err), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(what),
            "{msg}"
        );
        assert!(
            matches!(f.persist(&state_at(9, Prevote)), Err(StateError::Poisoned(p)) if p == path)
        );
        assert!(matches!(
            f.persist(&state_at(10, Prevote)),
            Err(StateError::Poisoned(_))
        ));
    }

    #[test]
    fn a_state_file_deleted_while_open_is_not_written_on() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap();
        fs::remove_file(file_of(d.path())).unwrap();
        refuses_and_poisons(&mut f, |e| matches!(e, StateError::Deleted(_)), "deleted");
        // Nothing was recreated behind the operator's back.
        assert!(!file_of(d.path()).exists());
    }

    #[test]
    fn a_state_file_moved_away_while_open_is_not_written_on() {
        let d = dir();
        let (mut f, _) = created(d.path());
        let aside = d.path().join("aside.state");
        fs::rename(file_of(d.path()), &aside).unwrap();
        refuses_and_poisons(
            &mut f,
            |e| matches!(e, StateError::Deleted(_)),
            "moved away",
        );
        // The file it was writing still holds the fresh state, untouched.
        assert_eq!(fs::read(&aside).unwrap().len() as u64, FILE_SIZE);
    }

    /// An older backup put in place the way tar, rsync or `mv` do it: a new inode.
    #[test]
    fn a_state_file_replaced_by_an_older_copy_is_not_written_on() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap();
        let backup = d.path().join("backup");
        fs::copy(file_of(d.path()), &backup).unwrap();
        f.persist(&state_at(5, Prevote)).unwrap();
        fs::rename(&backup, file_of(d.path())).unwrap();
        refuses_and_poisons(&mut f, |e| matches!(e, StateError::Replaced(_)), "replaced");
        drop(f);
        // The backup is what a restart reads; it was not written on.
        assert_eq!(
            StateFile::open(d.path(), CHAIN).unwrap().1,
            state_at(1, Prevote)
        );
    }

    /// An older backup copied over the file in place (`cp` keeps the inode).
    #[test]
    fn a_state_file_overwritten_by_an_older_copy_is_not_written_on() {
        let d = dir();
        let (mut f, _) = created(d.path());
        f.persist(&state_at(1, Prevote)).unwrap();
        let backup = fs::read(file_of(d.path())).unwrap();
        f.persist(&state_at(5, Prevote)).unwrap();
        f.persist(&state_at(6, Prevote)).unwrap();
        let ino = fs::metadata(file_of(d.path())).unwrap().ino();
        fs::write(file_of(d.path()), &backup).unwrap();
        assert_eq!(fs::metadata(file_of(d.path())).unwrap().ino(), ino);
        refuses_and_poisons(
            &mut f,
            |e| matches!(e, StateError::Replaced(_)),
            "overwritten",
        );
    }

    #[test]
    fn a_state_file_truncated_while_open_is_not_written_on() {
        let d = dir();
        let (mut f, _) = created(d.path());
        fs::write(file_of(d.path()), b"").unwrap();
        refuses_and_poisons(
            &mut f,
            |e| matches!(e, StateError::Replaced(_)),
            "overwritten",
        );
    }

    #[test]
    fn writes_go_on_while_the_file_stays_in_place() {
        let d = dir();
        let (mut f, _) = created(d.path());
        // Another name for the same file (a hard link a backup tool made) is harmless.
        fs::hard_link(file_of(d.path()), d.path().join("link")).unwrap();
        for h in 1..=20 {
            f.persist(&state_at(h, Prevote)).unwrap();
        }
        drop(f);
        // Reopened, the contents it compares against are what it read.
        let (mut f, s) = StateFile::open(d.path(), CHAIN).unwrap();
        assert_eq!(s, state_at(20, Prevote));
        f.persist(&state_at(21, Prevote)).unwrap();
    }

    /// The cost of the check `persist` makes before each write, next to a whole persist
    /// (which includes it). Printed for the record; the bound only catches a pathology.
    #[test]
    fn the_check_before_a_write_costs_little() {
        use std::time::Instant;
        let d = dir();
        let (mut f, _) = created(d.path());
        let median = |mut v: Vec<u128>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        let checks: Vec<u128> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                f.check_still_in_place().unwrap();
                t.elapsed().as_nanos()
            })
            .collect();
        let persists: Vec<u128> = (1..=200)
            .map(|h| {
                let t = Instant::now();
                f.persist(&state_at(h, Prevote)).unwrap();
                t.elapsed().as_nanos()
            })
            .collect();
        let (check, persist) = (median(checks), median(persists));
        eprintln!(
            "check before a write: median {:.1} us; whole persist (check, pwrite, fdatasync): \
             median {:.1} us",
            check as f64 / 1e3,
            persist as f64 / 1e3
        );
        assert!(check < 1_000_000, "the check took {check} ns");
    }

    /// Creation fails cleanly where the directory cannot take a new file.
    #[test]
    fn unwritable_state_location_fails_creation() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir();
        let ro = d.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        let probe = ro.join("probe");
        if fs::write(&probe, b"x").is_ok() {
            // Running as root (or with CAP_DAC_OVERRIDE): permissions do not stop writes,
            // so make the location itself unusable instead: a file where the directory was.
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
            fs::remove_dir_all(&ro).unwrap();
            fs::write(&ro, b"not a directory").unwrap();
        }
        let err = StateFile::create(&ro, CHAIN, &SignState::fresh()).unwrap_err();
        assert!(
            matches!(err, StateError::Io { .. } | StateError::Corrupt { .. }),
            "{err}"
        );
        // The operator is told about the state file, not a temporary file next to it.
        let named = format!("{}:", file_of(&ro).display());
        assert!(err.to_string().contains(&named), "{err}");
        if ro.is_dir() {
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
}
