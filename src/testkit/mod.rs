//! Test and fuzzing support (cargo feature `testkit`; not a stable API, not in the binary).
//!
//! [`fuzz`] holds one property check per fuzz target. The cargo-afl targets in `fuzz/` and the
//! corpus replay test (`tests/fuzz_corpus.rs`) call the very same functions, so a seed or a
//! finding committed under `fuzz/corpus/<target>/` is checked by `cargo test` exactly as the
//! fuzzer checked it. A check panics when a property fails: that is the fuzzer's crash report.
//!
//! Everything here that touches an API other sessions are changing is in this file, so that
//! adapting the kit is one edit.

pub mod fuzz;
mod participant;
mod state_file;

use std::collections::HashMap;
use std::path::Path;

use crate::sign_state::{ChainSignState, SignState, StateError, StateFile};
use crate::signer::threshold::ChainWatermarks;

/// The one chain the participant harness and the state-file harness serve.
pub const CHAIN: &str = "test-chain";

/// A directory for one check's files, removed when dropped. It honours `TMPDIR`, so that
/// `scripts/fuzz.sh` can put it on a tmpfs: the state file's fsyncs are then nearly free.
fn scratch_dir() -> tempfile::TempDir {
    // Without a writable temporary directory no check can run: fail loudly, not silently.
    tempfile::Builder::new()
        .prefix("cosigner-testkit")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// Opens `dir`'s state file of [`CHAIN`] as a cosigner does at start, creating an empty one
/// when `create` is set.
fn open_state(dir: &Path, create: bool) -> Result<ChainSignState, StateError> {
    if create {
        match StateFile::create(dir, CHAIN, &SignState::fresh()) {
            Ok(()) | Err(StateError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    ChainSignState::open(dir, CHAIN)
}

/// Opens `dir`'s state file of [`CHAIN`] without creating it.
fn open_state_file(dir: &Path) -> Result<(StateFile, SignState), StateError> {
    StateFile::open(dir, CHAIN)
}

/// The participant's watermark exactly as a threshold cosigner builds it from its states.
fn watermarks(state: ChainSignState) -> ChainWatermarks {
    ChainWatermarks::new(HashMap::from([(CHAIN.to_string(), state)]))
}
