//! The double-sign guard of one chain: its watermark in memory and on disk, behind one lock,
//! so that check-then-persist is one atomic step and two concurrent requests for the same
//! position can never both pass the check before either has recorded its signature (the
//! Horcrux double-sign bug).
//!
//! Besides what this cosigner signs itself, the guard learns what the validator signed
//! elsewhere ([`ChainSignState::observe`]): a document whose signature verifies under the
//! validator key raises the watermark as if this cosigner had signed it. The raise is made in
//! memory at once and written to disk later, coalesced ([`ChainSignState::flush`]); a share
//! released on the strength of a raised position waits for that write, so nothing is ever
//! released on a watermark that is not on disk.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::proof::{Recorded, ValidatorSigned};
use super::rules::{check, check_jump, Refusal, SignState, Verdict};
use super::store::{StateError, StateFile};
use super::{SignStateError, Signed};
use crate::consensus::SignDoc;

/// Heights a request may lie above the highest height the validator is known to have signed,
/// unless the chain's config says otherwise. About 28 hours of one-second blocks, or a week
/// of six-second ones: a validator that was down longer than that is jailed on most chains
/// and needs an operator anyway, who then raises the watermark with `cosigner state import`.
pub const DEFAULT_MAX_HEIGHT_JUMP: u64 = 100_000;

struct Guarded {
    file: StateFile,
    state: SignState,
    /// Whether `state` is ahead of the file: raised by an observed signature and not written
    /// yet.
    unsaved: bool,
    /// The highest height the validator is known to have signed: the watermark at open (what
    /// this cosigner signed, or an operator imported), then every signature observed. `None`
    /// until a key that never signed on this chain takes its first position here.
    anchor: Option<i64>,
    /// The highest signature of the validator this cosigner has seen, for peers catching up.
    highest_signed: Option<ValidatorSigned>,
}

/// What an observed signature did to the watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// It is above the watermark, which now holds it (in memory; [`ChainSignState::flush`]
    /// writes it).
    Raised,
    /// At or below the watermark and consistent with it: nothing to do.
    Known,
    /// At the watermark's position but not what this cosigner recorded there: either this
    /// state or the validator double-signed. The watermark keeps its own record.
    Conflict(Refusal),
}

/// The double-sign guard of one chain.
pub struct ChainSignState {
    chain_id: String,
    path: PathBuf,
    max_jump: u64,
    inner: Mutex<Guarded>,
}

impl std::fmt::Debug for ChainSignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSignState")
            .field("chain_id", &self.chain_id)
            .field("path", &self.path)
            .field("max_jump", &self.max_jump)
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
        let anchor = (state.position() != SignState::fresh().position()).then_some(state.height);
        ChainSignState {
            chain_id: file.chain_id().to_string(),
            path: file.path().to_path_buf(),
            max_jump: DEFAULT_MAX_HEIGHT_JUMP,
            inner: Mutex::new(Guarded {
                file,
                state,
                unsaved: false,
                anchor,
                highest_signed: None,
            }),
        }
    }

    /// Sets how far above the highest known signature a request may be.
    pub fn with_max_jump(mut self, max_jump: u64) -> ChainSignState {
        self.max_jump = max_jump;
        self
    }

    /// The chain whose watermark this guards.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The state file behind it, for messages that name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current watermark (possibly not on disk yet, see [`ChainSignState::observe`]).
    pub fn snapshot(&self) -> SignState {
        self.read(|g| g.state.clone())
    }

    /// The highest signature of the validator on this chain that this cosigner has seen
    /// since it started.
    pub fn highest_signed(&self) -> Option<ValidatorSigned> {
        self.read(|g| g.highest_signed.clone())
    }

    fn read<T>(&self, f: impl FnOnce(&Guarded) -> T) -> T {
        // Reading is harmless even after a panic elsewhere: the state only ever changes
        // after a successful persist or a consistent in-memory raise.
        match self.inner.lock() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
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
        check_jump(g.anchor, self.max_jump, doc)?;
        Ok(check(&g.state, doc)?)
    }

    /// For a threshold participant: may a share for `doc` be released? On success the
    /// watermark covering `doc` is durable before this returns, and the proof says so.
    /// A same-position replay (identical, or timestamp-only) needs no new position, and the
    /// caller may sign the requested bytes again.
    pub fn authorize(&self, doc: &SignDoc) -> Result<(Verdict, Recorded), SignStateError> {
        let mut g = self.lock()?;
        let verdict = self.check_locked(&g, doc)?;
        match verdict {
            Verdict::Advance => {
                let next = SignState::after(doc, None);
                g.file.persist(&next)?;
                g.state = next;
                g.unsaved = false;
                // A key's first signature on a chain fixes where it is; later ones of its own
                // do not move the anchor, or a run of jumps would compound.
                g.anchor.get_or_insert(doc.hrs.height);
            }
            // The position was raised by an observed signature and is not on disk yet.
            Verdict::Identical | Verdict::TimestampOnly { .. } if g.unsaved => {
                let current = g.state.clone();
                g.file.persist(&current)?;
                g.unsaved = false;
            }
            Verdict::Identical | Verdict::TimestampOnly { .. } => {}
        }
        Ok((verdict, Recorded::new(doc)))
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
                g.unsaved = false;
                g.anchor = Some(doc.hrs.height);
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

    /// Learns that the validator signed `signed`: a document above the watermark raises it
    /// (in memory; call [`ChainSignState::flush`] to write it), so that this cosigner refuses
    /// anything conflicting with it even if it took no part in that signing.
    pub fn observe(&self, signed: &ValidatorSigned) -> Result<Observed, SignStateError> {
        let doc = signed.doc();
        let mut g = self.lock()?;
        if doc.chain_id != self.chain_id {
            return Err(Refusal::ChainMismatch {
                expected: self.chain_id.clone(),
                requested: doc.chain_id.clone(),
            }
            .into());
        }
        g.anchor = Some(g.anchor.map_or(doc.hrs.height, |a| a.max(doc.hrs.height)));
        if g.highest_signed
            .as_ref()
            .is_none_or(|held| held.doc().hrs < doc.hrs)
        {
            g.highest_signed = Some(signed.clone());
        }
        Ok(match check(&g.state, doc) {
            Ok(Verdict::Advance) => {
                g.state = SignState::after(doc, Some(signed.signature()));
                g.unsaved = true;
                Observed::Raised
            }
            Ok(Verdict::Identical | Verdict::TimestampOnly { .. }) => Observed::Known,
            // Below the watermark: an older signature, which says nothing new.
            Err(
                Refusal::HeightRegression { .. }
                | Refusal::RoundRegression { .. }
                | Refusal::StepRegression { .. },
            ) => Observed::Known,
            // An imported watermark without sign bytes at this very position: keep it, it
            // already refuses everything there but what it holds.
            Err(Refusal::NoStoredSignBytes { .. }) => Observed::Known,
            Err(conflict) => Observed::Conflict(conflict),
        })
    }

    /// Writes a watermark raised by [`ChainSignState::observe`] to disk, if one is waiting.
    /// Returns whether it wrote.
    pub fn flush(&self) -> Result<bool, SignStateError> {
        let mut g = self.lock()?;
        if !g.unsaved {
            return Ok(false);
        }
        let current = g.state.clone();
        g.file.persist(&current)?;
        g.unsaved = false;
        Ok(true)
    }

    #[cfg(test)]
    pub(super) fn inject(&self, fault: super::store::Fault) {
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
    use crate::sign_state::store;
    use crate::sign_state::Difference;
    use std::sync::{Arc, Barrier};

    fn verdict(g: &ChainSignState, d: &SignDoc) -> Result<Verdict, SignStateError> {
        g.authorize(d).map(|(v, _)| v)
    }

    /// The guard of a new state file, as a fresh cosigner directory holds.
    fn created(d: &std::path::Path) -> ChainSignState {
        StateFile::create(d, CHAIN, &SignState::fresh()).unwrap();
        ChainSignState::open(d, CHAIN).unwrap()
    }

    fn guard() -> (tempfile::TempDir, ChainSignState) {
        let d = tempfile::tempdir().unwrap();
        let g = created(d.path());
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
                    (i, verdict(&g, &d))
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
        let d = tempfile::tempdir().unwrap();
        let g = created(d.path());
        let a = doc(5, 0, Prevote, Some(1), 1);
        assert_eq!(verdict(&g, &a).unwrap(), Verdict::Advance);
        assert_eq!(verdict(&g, &a).unwrap(), Verdict::Identical);
        assert_eq!(
            verdict(&g, &doc(5, 0, Prevote, Some(1), 2)).unwrap(),
            Verdict::TimestampOnly {
                stored: a.timestamp
            }
        );
        drop(g);
        let g = ChainSignState::open(d.path(), CHAIN).unwrap();
        assert_eq!(g.snapshot(), SignState::after(&a, None));
        assert!(matches!(
            verdict(&g, &doc(5, 0, Prevote, Some(2), 1)),
            Err(SignStateError::Refused(Refusal::Conflict { .. }))
        ));
    }

    #[test]
    fn failed_write_refuses_and_keeps_the_old_state() {
        let (_d, g) = guard();
        let a = doc(5, 0, Prevote, Some(1), 1);
        verdict(&g, &a).unwrap();
        let before = g.snapshot();
        g.inject(store::Fault::Sync);
        let b = doc(6, 0, Prevote, Some(1), 1);
        assert!(matches!(
            verdict(&g, &b),
            Err(SignStateError::Storage(StateError::Io { .. }))
        ));
        assert_eq!(g.snapshot(), before);
        // The file is poisoned: nothing further is authorized until a restart.
        assert!(matches!(
            verdict(&g, &b),
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
        verdict(&g, &a).unwrap();
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
        let err = verdict(&g, &a).unwrap_err();
        assert!(matches!(
            err,
            SignStateError::Refused(Refusal::ChainMismatch { .. })
        ));
        assert_eq!(g.snapshot(), SignState::fresh());
    }

    fn seen(d: &SignDoc) -> ValidatorSigned {
        ValidatorSigned::made_here(d.clone(), [9; 64])
    }

    #[test]
    fn an_observed_signature_raises_the_watermark_and_refuses_conflicts() {
        let d = tempfile::tempdir().unwrap();
        let g = created(d.path());
        verdict(&g, &doc(5, 0, Prevote, Some(1), 1)).unwrap();
        let x = doc(6, 0, Prevote, Some(1), 1);
        assert_eq!(g.observe(&seen(&x)).unwrap(), Observed::Raised);
        assert_eq!(g.snapshot(), SignState::after(&x, Some([9; 64])));
        assert!(matches!(
            verdict(&g, &doc(6, 0, Prevote, None, 1)),
            Err(SignStateError::Refused(Refusal::Conflict { .. }))
        ));
        // The same document again, or an older one, changes nothing.
        assert_eq!(g.observe(&seen(&x)).unwrap(), Observed::Known);
        assert_eq!(
            g.observe(&seen(&doc(4, 0, Prevote, Some(7), 1))).unwrap(),
            Observed::Known
        );
        // A signature conflicting with what this cosigner recorded is reported, not taken.
        assert!(matches!(
            g.observe(&seen(&doc(6, 0, Prevote, Some(2), 1))).unwrap(),
            Observed::Conflict(Refusal::Conflict { .. })
        ));
        assert_eq!(g.snapshot().last.unwrap().doc, x);
        assert_eq!(g.highest_signed().unwrap().doc(), &x);

        assert!(g.flush().unwrap());
        assert!(!g.flush().unwrap());
        drop(g);
        let g = ChainSignState::open(d.path(), CHAIN).unwrap();
        assert_eq!(
            g.snapshot().position(),
            SignState::after(&x, None).position()
        );
    }

    #[test]
    fn a_share_for_an_observed_position_waits_for_its_write() {
        let d = tempfile::tempdir().unwrap();
        let g = created(d.path());
        let x = doc(6, 0, Prevote, Some(1), 1);
        g.observe(&seen(&x)).unwrap();
        // Never flushed: the identical request itself must write the position first.
        let (v, recorded) = g.authorize(&x).unwrap();
        assert_eq!(v, Verdict::Identical);
        assert_eq!(recorded.doc(), &x);
        assert!(!g.flush().unwrap(), "the authorization wrote it already");
        drop(g);
        let g = ChainSignState::open(d.path(), CHAIN).unwrap();
        assert_eq!(g.snapshot().last.unwrap().doc, x);
    }

    #[test]
    fn a_failed_write_of_an_observed_position_releases_nothing() {
        let (_d, g) = guard();
        let x = doc(6, 0, Prevote, Some(1), 1);
        g.observe(&seen(&x)).unwrap();
        g.inject(store::Fault::Sync);
        assert!(matches!(
            verdict(&g, &x),
            Err(SignStateError::Storage(StateError::Io { .. }))
        ));
        assert!(matches!(
            g.flush(),
            Err(SignStateError::Storage(StateError::Poisoned(_)))
        ));
    }

    #[test]
    fn requests_far_above_the_highest_known_signature_are_refused() {
        let (_d, g) = guard();
        let g = g.with_max_jump(1000);
        // A key that never signed here may start at any height.
        verdict(&g, &doc(1 << 40, 0, Prevote, None, 1)).unwrap();
        let (_d, g) = guard();
        let g = g.with_max_jump(1000);
        verdict(&g, &doc(100, 0, Prevote, None, 1)).unwrap();
        let far = doc(1101, 0, Prevote, None, 1);
        assert!(matches!(
            verdict(&g, &far),
            Err(SignStateError::Refused(Refusal::TooFarAhead {
                anchor: 100,
                ..
            }))
        ));
        assert_eq!(g.snapshot().height, 100);
        verdict(&g, &doc(1100, 0, Prevote, None, 1)).unwrap();
        // Our own watermark is no anchor: a run of jumps does not compound.
        assert!(matches!(
            verdict(&g, &doc(2100, 0, Prevote, None, 1)),
            Err(SignStateError::Refused(Refusal::TooFarAhead {
                anchor: 100,
                ..
            }))
        ));
        // A signature the validator made is.
        g.observe(&seen(&doc(1500, 0, Prevote, None, 1))).unwrap();
        verdict(&g, &doc(2500, 0, Prevote, None, 1)).unwrap();
    }
}
