//! Why a state file cannot be opened or written, and what the operator is told to do.

use std::io;
use std::path::{Path, PathBuf};

/// Why the state file cannot be opened or written. Every variant names the file, since the
/// operator has to act on it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The chain ID is not a valid one
    /// ([`ChainId::is_valid`](crate::consensus::ChainId::is_valid)), so it cannot name a file.
    #[error("`{0}` is not a valid chain ID for a state file")]
    InvalidChainId(String),
    /// The configured state directory is missing.
    #[error("state directory {} does not exist or is not a directory", .0.display())]
    NoStateDir(PathBuf),
    /// The chain has no state file; the message says how to make one.
    #[error("{}", missing_state_help(path, chain_id, None))]
    Missing {
        /// Where the state file should be.
        path: PathBuf,
        /// The chain it is for.
        chain_id: String,
    },
    /// The state file fails its checks.
    #[error("sign state {} is corrupt ({reason}); refusing to start. Restore it from a backup, \
             or move it aside and import a state at least as high as the last one signed \
             (`cosigner state import`)", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// The state file was written in a format version this cosigner does not know.
    #[error("sign state {} has format version {version}, which this cosigner does not know; \
             it was written by a newer version", path.display())]
    UnsupportedVersion {
        /// The state file.
        path: PathBuf,
        /// The format version it carries.
        version: u16,
    },
    /// Another process (or this one) holds the file's lock.
    #[error("sign state {} is in use by another process (or opened twice)", .0.display())]
    Locked(PathBuf),
    /// A state was to be created where one already is.
    #[error("sign state {} already exists", .0.display())]
    AlreadyExists(PathBuf),
    // The OS error is in the message, which is also what a participant sends its
    // coordinator; it is deliberately not a `source` as well, or error chains print it twice.
    /// An OS call on the state file failed.
    #[error("cannot {op} sign state {}: {error}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// What was being done (`open`, `write`, `fdatasync`, ...).
        op: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// An earlier write failed or was refused; the file is not written again before a restart.
    #[error("sign state {} had a failed or refused write; what reached the disk is unknown, so \
             no further writes are attempted until the cosigner restarts", .0.display())]
    Poisoned(PathBuf),
    /// The file was deleted or moved while in use, so its watermark would not survive a restart.
    #[error("sign state {} was deleted or moved away while in use: a watermark written on \
             would be lost at the next start, so nothing more is signed with it. Stop the \
             cosigner and put back a state at least as high as the last one signed (`cosigner \
             state import` of the validator's latest priv_validator_state.json) before \
             starting it again; `cosigner state init` is only for a key that never signed on \
             this chain", .0.display())]
    Deleted(PathBuf),
    /// Another file took the path while in use, so the watermark written is not the one read
    /// at start.
    #[error("sign state {} was replaced or overwritten by another file while in use (a \
             restored backup or a copy?): it may hold a lower watermark than was signed, so \
             nothing more is signed with it. Stop the cosigner and make sure the file holds a \
             state at least as high as the last one signed (`cosigner state show`, `cosigner \
             state import`) before starting it again", .0.display())]
    Replaced(PathBuf),
    /// The state cannot be encoded in the file's slot.
    #[error("cannot store this state in {}: {reason}", path.display())]
    Unstorable {
        /// The state file.
        path: PathBuf,
        /// Why it does not fit.
        reason: String,
    },
}

pub(super) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |error| StateError::Io {
        path: path.to_path_buf(),
        op,
        error,
    }
}

/// What to tell an operator whose state file for `chain_id` is missing: the two commands that
/// recreate it, with `config` filled in when known. One text for every place that finds a
/// state file missing.
pub fn missing_state_help(path: &Path, chain_id: &str, config: Option<&Path>) -> String {
    let config = config.map_or_else(|| "COSIGNER_TOML".to_string(), crate::shell::quote);
    format!(
        "no sign state at {}. State files are written with the cosigner directory, so this \
         one was lost or not copied. If this key may ever have signed on chain `{chain_id}`, \
         import a state at least as high as the last one it signed: `cosigner state import \
         PRIV_VALIDATOR_STATE_JSON --config {config} --chain-id {chain_id}`. Only if it never \
         signed on `{chain_id}`: `cosigner state init --config {config} --chain-id {chain_id}`",
        path.display()
    )
}
