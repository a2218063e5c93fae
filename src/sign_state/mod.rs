//! Double-sign protection: the rules that decide whether a signature may be made, and the
//! durable per-chain watermark they are checked against.
//!
//! - [`rules`]: the pure FilePV rules ([`check`]).
//! - [`store`]: the crash-safe state file ([`StateFile`]).
//! - [`import`]: reading CometBFT's `priv_validator_state.json`, and `cosigner state show`.
//! - [`ChainSignState`] (here): the per-chain guard that makes check-then-persist one atomic
//!   step, so that two concurrent requests for the same position can never both pass the
//!   check before either has recorded its signature (the Horcrux double-sign bug).

pub mod import;
pub mod rules;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use rules::{check, Difference, LastSigned, Position, Refusal, SignState, Verdict};
pub use store::{StateError, StateFile};

use crate::consensus::{SignDoc, Timestamp};

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
    pub signature: [u8; 64],
    /// The timestamp to return to the node: the stored one for a timestamp-only replay,
    /// since the node adopts it and it is what `signature` covers.
    pub timestamp: Timestamp,
}

struct Guarded {
    file: StateFile,
    state: SignState,
}

/// The double-sign guard of one chain: its watermark in memory and on disk, behind one lock.
pub struct ChainSignState {
    chain_id: String,
    path: PathBuf,
    inner: Mutex<Guarded>,
}

impl std::fmt::Debug for ChainSignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSignState")
            .field("chain_id", &self.chain_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ChainSignState {
    /// Opens (and locks) the existing state file of `chain_id`; see [`StateFile::open`].
    pub fn open(state_dir: &Path, chain_id: &str) -> Result<ChainSignState, StateError> {
        let (file, state) = StateFile::open(state_dir, chain_id)?;
        Ok(ChainSignState::new(file, state))
    }

    /// Wraps an open state file and the state read from it.
    pub fn new(file: StateFile, state: SignState) -> ChainSignState {
        ChainSignState {
            chain_id: file.chain_id().to_string(),
            path: file.path().to_path_buf(),
            inner: Mutex::new(Guarded { file, state }),
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current watermark.
    pub fn snapshot(&self) -> SignState {
        // Reading is harmless even after a panic elsewhere: the state only ever changes
        // after a successful persist.
        match self.inner.lock() {
            Ok(g) => g.state.clone(),
            Err(poisoned) => poisoned.into_inner().state.clone(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Guarded>, SignStateError> {
        self.inner
            .lock()
            .map_err(|_| SignStateError::Poisoned(self.chain_id.clone()))
    }

    fn check_locked(&self, g: &Guarded, doc: &SignDoc) -> Result<Verdict, SignStateError> {
        if doc.chain_id != self.chain_id {
            return Err(Refusal::ChainMismatch {
                expected: self.chain_id.clone(),
                requested: doc.chain_id.clone(),
            }
            .into());
        }
        Ok(check(&g.state, doc)?)
    }

    /// For a threshold participant: may a share for `doc` be released? On
    /// [`Verdict::Advance`] the new watermark is durable before this returns; the caller may
    /// then sign `doc.sign_bytes`. A same-position replay (identical, or timestamp-only)
    /// needs no write, and the caller may sign the requested bytes again.
    pub fn authorize(&self, doc: &SignDoc) -> Result<Verdict, SignStateError> {
        let mut g = self.lock()?;
        let verdict = self.check_locked(&g, doc)?;
        if verdict == Verdict::Advance {
            let next = SignState::after(doc, None);
            g.file.persist(&next)?;
            g.state = next;
        }
        Ok(verdict)
    }

    /// For a single key: signs `doc` with `sign` if the rules allow, recording the
    /// signature durably before returning it. A same-position replay returns the stored
    /// signature (and, for timestamp-only, the stored timestamp) without signing.
    pub fn sign_with<E>(
        &self,
        doc: &SignDoc,
        sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
    ) -> Result<Signed, SignStateError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut g = self.lock()?;
        let timestamp = match self.check_locked(&g, doc)? {
            Verdict::Advance => {
                let signature =
                    sign(&doc.sign_bytes).map_err(|e| SignStateError::Signing(e.into()))?;
                let next = SignState::after(doc, Some(signature));
                g.file.persist(&next)?;
                g.state = next;
                return Ok(Signed {
                    signature,
                    timestamp: doc.timestamp,
                });
            }
            Verdict::Identical => doc.timestamp,
            Verdict::TimestampOnly { stored } => stored,
        };
        match g.state.last.as_ref().and_then(|l| l.signature) {
            Some(signature) => Ok(Signed {
                signature,
                timestamp,
            }),
            None => Err(Refusal::NoStoredSignature { at: doc.hrs }.into()),
        }
    }

    #[cfg(test)]
    fn inject(&self, fault: store::Fault) {
        if let Ok(mut g) = self.inner.lock() {
            g.file.inject(fault);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::Step::{Precommit, Prevote};
    use crate::sign_state::rules::tests::{doc, CHAIN};
    use std::sync::{Arc, Barrier};

    fn guard() -> (tempfile::TempDir, ChainSignState) {
        let d = tempfile::tempdir().unwrap();
        StateFile::create(d.path(), CHAIN, &SignState::fresh()).unwrap();
        let g = ChainSignState::open(d.path(), CHAIN).unwrap();
        (d, g)
    }

    fn sig_of(bytes: &[u8]) -> Result<[u8; 64], std::io::Error> {
        let mut s = [0u8; 64];
        for (i, b) in bytes.iter().enumerate() {
            s[i % 64] ^= b.wrapping_add(i as u8);
        }
        Ok(s)
    }

    #[test]
    fn concurrent_conflicting_requests_sign_once() {
        let (_d, g) = guard();
        let g = Arc::new(g);
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16u8)
            .map(|i| {
                let (g, barrier) = (g.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let d = doc(10, 0, Precommit, Some(i), 1);
                    barrier.wait();
                    (i, g.authorize(&d))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(Verdict::Advance)))
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for (_, r) in &results {
            assert!(
                matches!(
                    r,
                    Ok(Verdict::Advance)
                        | Err(SignStateError::Refused(Refusal::Conflict {
                            what: Difference::Block,
                            ..
                        }))
                ),
                "{r:?}"
            );
        }
        let stored = g.snapshot();
        assert_eq!(
            stored.last.unwrap().doc,
            doc(10, 0, Precommit, Some(winners[0]), 1)
        );
    }

    #[test]
    fn authorize_persists_before_returning() {
        let (d, g) = guard();
        let a = doc(5, 0, Prevote, Some(1), 1);
        assert_eq!(g.authorize(&a).unwrap(), Verdict::Advance);
        assert_eq!(g.authorize(&a).unwrap(), Verdict::Identical);
        assert_eq!(
            g.authorize(&doc(5, 0, Prevote, Some(1), 2)).unwrap(),
            Verdict::TimestampOnly {
                stored: a.timestamp
            }
        );
        drop(g);
        let g = ChainSignState::open(d.path(), CHAIN).unwrap();
        assert_eq!(g.snapshot(), SignState::after(&a, None));
        assert!(matches!(
            g.authorize(&doc(5, 0, Prevote, Some(2), 1)),
            Err(SignStateError::Refused(Refusal::Conflict { .. }))
        ));
    }

    #[test]
    fn failed_write_refuses_and_keeps_the_old_state() {
        let (_d, g) = guard();
        let a = doc(5, 0, Prevote, Some(1), 1);
        g.authorize(&a).unwrap();
        let before = g.snapshot();
        g.inject(store::Fault::Sync);
        let b = doc(6, 0, Prevote, Some(1), 1);
        assert!(matches!(
            g.authorize(&b),
            Err(SignStateError::Storage(StateError::Io { .. }))
        ));
        assert_eq!(g.snapshot(), before);
        // The file is poisoned: nothing further is authorized until a restart.
        assert!(matches!(
            g.authorize(&b),
            Err(SignStateError::Storage(StateError::Poisoned(_)))
        ));
        let mut signed = false;
        let r = g.sign_with(&b, |bytes| {
            signed = true;
            sig_of(bytes)
        });
        assert!(matches!(r, Err(SignStateError::Storage(_))));
        assert!(signed, "the signature is made, but must not be returned");
        assert_eq!(g.snapshot(), before);
    }

    #[test]
    fn single_key_replays_return_the_stored_signature_and_timestamp() {
        let (_d, g) = guard();
        let a = doc(7, 1, Precommit, Some(3), 100);
        let first = g.sign_with(&a, sig_of).unwrap();
        assert_eq!(first.timestamp, a.timestamp);
        assert_eq!(first.signature, sig_of(&a.sign_bytes).unwrap());

        let never =
            |_: &[u8]| -> Result<[u8; 64], std::io::Error> { panic!("a replay must not sign") };
        assert_eq!(g.sign_with(&a, never).unwrap(), first);
        let later = doc(7, 1, Precommit, Some(3), 150);
        assert_eq!(g.sign_with(&later, never).unwrap(), first);
        assert!(matches!(
            g.sign_with(&doc(7, 1, Precommit, None, 100), never),
            Err(SignStateError::Refused(Refusal::Conflict {
                what: Difference::NilAfterBlock,
                ..
            }))
        ));
        assert!(matches!(
            g.sign_with(&doc(7, 0, Precommit, Some(3), 100), never),
            Err(SignStateError::Refused(Refusal::RoundRegression { .. }))
        ));
    }

    #[test]
    fn single_key_replay_without_stored_signature_is_refused() {
        let (_d, g) = guard();
        let a = doc(7, 1, Precommit, Some(3), 100);
        g.authorize(&a).unwrap();
        assert!(matches!(
            g.sign_with(&a, sig_of),
            Err(SignStateError::Refused(Refusal::NoStoredSignature { .. }))
        ));
    }

    #[test]
    fn signer_failure_records_nothing() {
        let (_d, g) = guard();
        let a = doc(7, 1, Precommit, Some(3), 100);
        let r = g.sign_with(&a, |_| Err(std::io::Error::other("hsm gone")));
        assert!(matches!(r, Err(SignStateError::Signing(_))));
        assert_eq!(g.snapshot(), SignState::fresh());
        assert!(g.sign_with(&a, sig_of).is_ok());
    }

    #[test]
    fn other_chain_is_refused_on_a_fresh_state() {
        let (_d, g) = guard();
        let mut a = doc(7, 1, Precommit, Some(3), 100);
        a.chain_id = "other-chain".into();
        let err = g.authorize(&a).unwrap_err();
        assert!(matches!(
            err,
            SignStateError::Refused(Refusal::ChainMismatch { .. })
        ));
        assert_eq!(g.snapshot(), SignState::fresh());
    }
}
