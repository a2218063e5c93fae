//! Why `split-key combine` wrote nothing: every error names what is wrong and what to do.

use std::path::PathBuf;

use cosigner::config::{ConfigError, KeySharesError};
use cosigner::sign_state::StateError;
use cosigner::staged_dir::StagedDirError;
use cosigner::threshold::seed_escrow::EscrowError;
use frost_ed25519 as frost;

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// The `--out` directory exists.
    #[error("{}: already exists; refusing to overwrite (move it away or choose another --out)", .0.display())]
    OutputExists(PathBuf),
    /// `--out` cannot be created where it points.
    #[error("{}: cannot write here: {problem}", path.display())]
    OutputLocation {
        /// The `--out` path.
        path: PathBuf,
        /// Why it cannot be written there.
        problem: String,
    },
    /// A directory's `cosigner.toml` cannot be loaded.
    #[error("{}: {error}", dir.display())]
    Config {
        /// The cosigner directory.
        dir: PathBuf,
        /// Why its config cannot be loaded.
        error: ConfigError,
    },
    /// A directory is a single-key signer's, not a cosigner's.
    #[error(
        "{}: a single-key signer's directory, not a cosigner of a split: its key file is the \
         whole key already",
        .0.display()
    )]
    NotThreshold(PathBuf),
    /// A directory's key shares cannot be loaded.
    #[error("{}: {error}", dir.display())]
    Shares {
        /// The cosigner directory.
        dir: PathBuf,
        /// Why its shares cannot be loaded.
        error: KeySharesError,
    },
    /// A directory holds several keys and `--key` does not pick one.
    #[error(
        "{}: {}; the directory holds shares of these keys: {keys}. Give --key with a name or a \
         validator address",
        dir.display(),
        match wanted {
            Some(w) => format!("no key is named `{w}` or has that address"),
            None => "which key to combine?".to_string(),
        }
    )]
    WhichKey {
        /// The cosigner directory.
        dir: PathBuf,
        /// The `--key` given, if any.
        wanted: Option<String>,
        /// The keys it holds, listed for the operator.
        keys: String,
    },
    /// Two directories hold shares of different validator keys.
    #[error(
        "{} holds a share of validator {first_address}, but {} one of validator \
         {other_address}: give directories of one cluster",
        first.display(), other.display()
    )]
    DifferentKeys {
        /// The first directory.
        first: PathBuf,
        /// The validator address of its share.
        first_address: String,
        /// The other directory.
        other: PathBuf,
        /// The validator address of its share.
        other_address: String,
    },
    /// Two directories hold shares of one key from two different splits.
    #[error(
        "{} and {} hold shares of the same validator key from two different splits (their \
         public key packages differ); shares of different splits do not combine: give \
         directories of one split",
        first.display(), other.display()
    )]
    DifferentSplits {
        /// The first directory.
        first: PathBuf,
        /// The other directory.
        other: PathBuf,
    },
    /// Two directories hold the same cosigner's share.
    #[error(
        "{} and {} are both cosigner {id}: give directories of {threshold} different cosigners",
        first.display(), other.display()
    )]
    SameCosigner {
        /// The first directory.
        first: PathBuf,
        /// The other directory.
        other: PathBuf,
        /// The cosigner both are.
        id: u16,
        /// The cluster's threshold.
        threshold: u16,
    },
    /// Fewer directories than the threshold.
    #[error(
        "{given} cosigner director{} given (cosigner {ids}), but this is a {threshold}-of-{shares} \
         split: give at least {threshold}. Fewer shares cannot rebuild the key, and fewer sign \
         states might all be below what the cluster last signed",
        if *given == 1 { "y" } else { "ies" }
    )]
    TooFew {
        /// How many were given.
        given: usize,
        /// Their cosigner identifiers, listed.
        ids: String,
        /// The cluster's threshold.
        threshold: u16,
        /// How many cosigners hold shares.
        shares: u16,
    },
    /// A sign state is locked by a running cosigner.
    #[error(
        "sign state {} is in use by another process: stop the cosigner of {} (and every other \
         cosigner of this cluster) before combining; a cluster that still signs moves its \
         watermark past what would be written",
        path.display(), dir.display()
    )]
    StateInUse {
        /// The state file.
        path: PathBuf,
        /// The directory it belongs to.
        dir: PathBuf,
    },
    /// A directory's sign state cannot be read.
    #[error("{}: {error}", dir.display())]
    State {
        /// The cosigner directory.
        dir: PathBuf,
        /// Why its state cannot be read.
        error: StateError,
    },
    /// Fewer directories than the threshold sign a chain.
    #[error(
        "chain `{chain}` is configured in only {have} of the given directories (cosigner \
         {ids}), but this is a {threshold}-of-n cluster: the highest of fewer than \
         {threshold} sign states may be below what the cluster last signed on that chain. \
         Give at least {threshold} directories that sign `{chain}`"
    )]
    ChainTooFew {
        /// The chain.
        chain: String,
        /// How many of the given directories sign it.
        have: usize,
        /// Their cosigner identifiers, listed.
        ids: String,
        /// The cluster's threshold.
        threshold: u16,
    },
    /// The shares carry no seed escrow, so no `priv_validator_key.json` can be written.
    #[error(
        "the share files hold no seed escrow: they were dealt by a split-key that did not \
         write one, or the key never had a seed (made by a DKG, or imported from Horcrux \
         shards). FROST shares rebuild only the secret scalar, and CometBFT's \
         priv_validator_key.json holds the seed that scalar is derived from, which cannot be \
         computed back, so no key file can be written from them. If you kept the original \
         priv_validator_key.json, use it, with the sign state from `split-key combine \
         --state-only`; a key that never had a seed can only go on signing as a cluster"
    )]
    NoEscrow,
    /// Two directories' seed escrows differ, so a share file was altered.
    #[error(
        "the seed escrows in {} and {} differ, so at least one share file was altered: give \
         other directories, or restore the altered one from a backup",
        first.display(), other.display()
    )]
    EscrowsDiffer {
        /// The first directory.
        first: PathBuf,
        /// The other directory.
        other: PathBuf,
    },
    /// The seed could not be recovered from its escrow.
    #[error("cannot recover the seed: {0}")]
    Escrow(EscrowError),
    /// The shares do not combine into a key.
    #[error("the shares do not combine: {0}")]
    Reconstruct(frost::Error),
    /// The combined key is not the validator's.
    #[error("the combined shares do not give the validator public key; nothing was written")]
    RebuiltMismatch,
    /// The output directory could not be written atomically.
    #[error(transparent)]
    Output(#[from] StagedDirError),
    /// A written file did not load back as it should; says what failed.
    #[error("written output failed its check: {0}")]
    Check(String),
}
