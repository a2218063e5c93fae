//! Double-sign protection: the rules that decide whether a signature may be made, and the
//! durable per-chain watermark they are checked against.
//!
//! - [`rules`]: the pure FilePV rules ([`check`]) and the forward-jump bound.
//! - [`store`]: the crash-safe state file ([`StateFile`]).
//! - [`guard`]: the per-chain guard ([`ChainSignState`]) that makes check-then-persist one
//!   atomic step, and learns what the validator signed elsewhere.
//! - [`proof`]: what the guard vouches for ([`Recorded`], [`ValidatorSigned`]).
//! - [`import`]: reading CometBFT's `priv_validator_state.json`, and `cosigner state show`.

pub(crate) mod guard;
pub mod import;
pub(crate) mod proof;
pub(crate) mod rules;
pub mod store;

pub use guard::{ChainSignState, Observed, DEFAULT_MAX_HEIGHT_JUMP};
pub use proof::{NotSigned, Recorded, ValidatorSigned};
pub use rules::{check, Difference, LastSigned, Position, Refusal, SignState, Verdict};
pub use store::{StateError, StateFile};

use crate::consensus::Timestamp;

/// Why a signature was not made.
#[derive(Debug, thiserror::Error)]
pub enum SignStateError {
    /// The request breaks the double-sign rules: answer the node with a
    /// `RemoteSignerError` carrying this message.
    #[error(transparent)]
    Refused(Refusal),
    /// The watermark could not be recorded: refuse to sign and log loudly; the operator has
    /// to look at the disk.
    #[error(transparent)]
    Storage(#[from] StateError),
    /// The signing callback failed; nothing was recorded.
    #[error("signing failed: {0}")]
    Signing(Box<dyn std::error::Error + Send + Sync>),
    /// An earlier holder of the lock panicked; the in-memory state is no longer trusted.
    #[error("sign state of chain `{0}` is unusable after a panic; restart the cosigner")]
    Poisoned(String),
}

impl From<Refusal> for SignStateError {
    fn from(r: Refusal) -> Self {
        SignStateError::Refused(r)
    }
}

/// A signature made (or found) in single-key mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The Ed25519 signature over the sign bytes (with the stored timestamp on a replay).
    pub signature: [u8; 64],
    /// The timestamp to return to the node: the stored one for a timestamp-only replay,
    /// since the node adopts it and it is what `signature` covers.
    pub timestamp: Timestamp,
}
