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
    #[error("{}: already exists; refusing to overwrite (move it away or choose another --out)", .0.display())]
    OutputExists(PathBuf),
    #[error("{}: cannot write here: {problem}", path.display())]
    OutputLocation { path: PathBuf, problem: String },
    #[error("{}: {error}", dir.display())]
    Config { dir: PathBuf, error: ConfigError },
    #[error(
        "{}: a single-key signer's directory, not a cosigner of a split: its key file is the \
         whole key already",
        .0.display()
    )]
    NotThreshold(PathBuf),
    #[error("{}: {error}", dir.display())]
    Shares { dir: PathBuf, error: KeySharesError },
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
        dir: PathBuf,
        wanted: Option<String>,
        keys: String,
    },
    #[error(
        "{} holds a share of validator {first_address}, but {} one of validator \
         {other_address}: give directories of one cluster",
        first.display(), other.display()
    )]
    DifferentKeys {
        first: PathBuf,
        first_address: String,
        other: PathBuf,
        other_address: String,
    },
    #[error(
        "{} and {} hold shares of the same validator key from two different splits (their \
         public key packages differ); shares of different splits do not combine: give \
         directories of one split",
        first.display(), other.display()
    )]
    DifferentSplits { first: PathBuf, other: PathBuf },
    #[error(
        "{} and {} are both cosigner {id}: give directories of {threshold} different cosigners",
        first.display(), other.display()
    )]
    SameCosigner {
        first: PathBuf,
        other: PathBuf,
        id: u16,
        threshold: u16,
    },
    #[error(
        "{given} cosigner director{} given (cosigner {ids}), but this is a {threshold}-of-{shares} \
         split: give at least {threshold}. Fewer shares cannot rebuild the key, and fewer sign \
         states might all be below what the cluster last signed",
        if *given == 1 { "y" } else { "ies" }
    )]
    TooFew {
        given: usize,
        ids: String,
        threshold: u16,
        shares: u16,
    },
    #[error(
        "sign state {} is in use by another process: stop the cosigner of {} (and every other \
         cosigner of this cluster) before combining; a cluster that still signs moves its \
         watermark past what would be written",
        path.display(), dir.display()
    )]
    StateInUse { path: PathBuf, dir: PathBuf },
    #[error("{}: {error}", dir.display())]
    State { dir: PathBuf, error: StateError },
    #[error(
        "chain `{chain}` is configured in only {have} of the given directories (cosigner \
         {ids}), but this is a {threshold}-of-n cluster: the highest of fewer than \
         {threshold} sign states may be below what the cluster last signed on that chain. \
         Give at least {threshold} directories that sign `{chain}`"
    )]
    ChainTooFew {
        chain: String,
        have: usize,
        ids: String,
        threshold: u16,
    },
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
    #[error(
        "the seed escrows in {} and {} differ, so at least one share file was altered: give \
         other directories, or restore the altered one from a backup",
        first.display(), other.display()
    )]
    EscrowsDiffer { first: PathBuf, other: PathBuf },
    #[error("cannot recover the seed: {0}")]
    Escrow(EscrowError),
    #[error("the shares do not combine: {0}")]
    Reconstruct(frost::Error),
    #[error("the combined shares do not give the validator public key; nothing was written")]
    RebuiltMismatch,
    #[error(transparent)]
    Output(#[from] StagedDirError),
    #[error("written output failed its check: {0}")]
    Check(String),
}
