//! `split-key`: deals an existing CometBFT validator key into FROST shares and writes one
//! self-contained directory per cosigner (share, TLS identity, SecretConnection identity,
//! every chain's initial sign state, `cosigner.toml`). `split-key combine` ([`combine`])
//! goes the other way, for leaving the cluster.
//!
//! With `--dkg` or `--horcrux-pubkey` it writes the same directories without a share, for
//! the cosigners to make theirs in a key ceremony ([`ceremony_dirs`]).
//!
//! The validator key is only read. Every input is checked before anything is written; the
//! output is built in a temporary directory next to the destination and renamed into place
//! only once it is complete, synced and re-loaded the way a cosigner would load it, so a
//! failure leaves nothing behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Input decides whether these would panic; outside tests every failure is a typed error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod ceremony_dirs;
mod plan;
mod report;

use std::fs;
use std::path::{Path, PathBuf};

use cosigner::cluster::identity::{issue_cluster, IssueError, IssuedCluster, IssuedIdentity};
use cosigner::config::{
    ChainConfig, Config, Mode, NodeConfig, PeerConfig, ThresholdConfig, Timeouts,
};
use cosigner::key_forms::{Bech32Error, PublicKeyForms};
use cosigner::layout::{
    CLUSTER_CA_FILE, CONFIG_FILE, IDENTITY_KEY_FILE, KEY_SHARE_FILE, STATE_DIR, TLS_CERT_FILE,
    TLS_KEY_FILE,
};
use cosigner::sign_state::import::{write_initial_states, ImportError};
use cosigner::sign_state::{SignState, StateFile};
use cosigner::staged_dir::{StagedDir, StagedDirError};
use cosigner::threshold::deal::{self, DealError};
use cosigner::threshold::key_share::ThresholdError;
use cosigner::validator_key::{
    identity_key_file_contents, load_identity_key, KeyFileError, ValidatorKey,
};
use rand_core::{CryptoRng, RngCore};

pub use cosigner::key_forms::{valcons, valconspub};
pub(crate) use plan::output_location;
pub use plan::{plan, Args, CosignerAddress, Plan, Source};
pub use report::{Deployment, Report, Written};

pub mod combine;

/// Why nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The validator key file cannot be used.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The threshold and share count do not make a safe cluster.
    #[error("--threshold {t} --shares {n}: {error}")]
    Threshold {
        /// `--threshold`.
        t: u16,
        /// `--shares`.
        n: u16,
        /// Why they do not.
        error: ThresholdError,
    },
    /// No `--chain-id` was given.
    #[error("at least one --chain-id is required: a signer must know which chains it signs for")]
    NoChainId,
    /// A `--chain-id` is not a valid chain ID.
    #[error("--chain-id `{0}` is not a chain ID: 1 to 50 characters of A-Z a-z 0-9 . _ -")]
    BadChainId(String),
    /// A `--chain-id` is given twice.
    #[error("--chain-id `{0}` is given twice")]
    DuplicateChainId(String),
    /// The number of `--cosigner` addresses is neither 0 nor `--shares`.
    #[error("--cosigner given {given} times; give it once per share ({n}) or not at all")]
    CosignerCount {
        /// How many were given.
        given: usize,
        /// `--shares`.
        n: u16,
    },
    /// A `--cosigner` address cannot be used.
    #[error("--cosigner `{address}`: {problem}")]
    BadCosigner {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A `--node` address cannot be used.
    #[error("--node `{address}`: {problem}")]
    BadNode {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        problem: String,
    },
    /// `--bech32-prefix` is not a bech32 prefix.
    #[error("--bech32-prefix `{0}`: expected lowercase letters and digits, like `cosmos`")]
    BadPrefix(String),
    /// `--horcrux-pubkey` is not an Ed25519 public key in any accepted form.
    #[error("--horcrux-pubkey `{0}`: expected base64 or hex of a 32-byte Ed25519 public key, or a Horcrux shard's pubKey")]
    BadPublicKey(String),
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
    /// The key could not be dealt.
    #[error(transparent)]
    Deal(#[from] DealError),
    /// The cluster's TLS identities could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// Reading or writing a file failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The output directory could not be written atomically.
    #[error(transparent)]
    Output(#[from] StagedDirError),
    /// A `--state` argument cannot be used.
    #[error("--state `{arg}`: {problem}")]
    BadState {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A chain's initial sign state could not be written.
    #[error("cannot seed the sign state of chain `{chain}`: {error}")]
    SeedState {
        /// The chain.
        chain: String,
        /// Why its state could not be written.
        error: ImportError,
    },
    /// A written directory did not load back the way a cosigner loads it; says what failed.
    #[error("written output failed its check: {0}")]
    Check(String),
    /// The bech32 forms of the key could not be made.
    #[error(transparent)]
    Bech32(#[from] Bech32Error),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SplitError + '_ {
    move |error| SplitError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Checks the inputs, deals the key (or prepares a ceremony) and writes the directories.
pub fn run<R: RngCore + CryptoRng>(args: &Args, rng: &mut R) -> Result<Written, SplitError> {
    let plan = plan(args)?;
    write(&plan, rng)
}

/// Writes the directories of a checked plan atomically.
pub fn write<R: RngCore + CryptoRng>(plan: &Plan, rng: &mut R) -> Result<Written, SplitError> {
    match &plan.source {
        Source::Split { key_file, key } => split(plan, key_file, key, rng).map(Written::Split),
        Source::Dkg | Source::Horcrux { .. } => {
            ceremony_dirs::write(plan, rng).map(Written::CeremonyDirs)
        }
    }
}

/// Every cosigner's config, checked as a cosigner would check it.
pub(crate) fn checked_configs(
    plan: &Plan,
    cluster: &IssuedCluster,
) -> Result<Vec<Config>, SplitError> {
    let configs: Vec<Config> = (1..=plan.shares)
        .map(|id| cosigner_config(plan, id, cluster))
        .collect();
    for (config, id) in configs.iter().zip(1u16..) {
        config.validate().map_err(|(field, problem)| {
            SplitError::Check(format!("cosigner-{id} config: {field}: {problem}"))
        })?;
    }
    Ok(configs)
}

/// Starts the output directory: built next to the destination and renamed into place;
/// dropping it on any early return removes everything it holds.
pub(crate) fn stage_output(plan: &Plan) -> Result<StagedDir, SplitError> {
    StagedDir::create(&plan.out).map_err(|e| match e {
        StagedDirError::Exists(path) => SplitError::OutputExists(path),
        other => SplitError::OutputLocation {
            path: plan.out.clone(),
            problem: other.to_string(),
        },
    })
}

/// Writes what every cosigner directory has whatever its share's origin: its TLS identity,
/// the cluster CA, a fresh SecretConnection identity and `cosigner.toml`.
pub(crate) fn write_identity<R: RngCore + CryptoRng>(
    staged: &StagedDir,
    dir: &Path,
    identity: &IssuedIdentity,
    cluster: &IssuedCluster,
    config_text: &str,
    rng: &mut R,
) -> Result<(), SplitError> {
    staged.write_file(&dir.join(TLS_CERT_FILE), identity.cert_pem.as_bytes())?;
    staged.write_file(&dir.join(TLS_KEY_FILE), identity.key_pem.as_bytes())?;
    staged.write_file(&dir.join(CLUSTER_CA_FILE), cluster.ca_cert_pem.as_bytes())?;
    let session_key = ed25519_dalek::SigningKey::generate(rng);
    staged.write_file(
        &dir.join(IDENTITY_KEY_FILE),
        identity_key_file_contents(&session_key).as_bytes(),
    )?;
    staged.write_file(&dir.join(CONFIG_FILE), config_text.as_bytes())?;
    Ok(())
}

/// Deals `key` and writes the directories atomically.
fn split<R: RngCore + CryptoRng>(
    plan: &Plan,
    key_file: &Path,
    key: &ValidatorKey,
    rng: &mut R,
) -> Result<Report, SplitError> {
    let (t, n) = (plan.threshold, plan.shares);
    let dealt = deal::deal(key, t, n, rng)?;
    let address_hex = key.address_hex();
    let cluster = issue_cluster(n, &format!("validator {address_hex}"))?;
    let forms = PublicKeyForms::new(&key.public_key(), plan.bech32_prefix.as_deref())?;
    let configs = checked_configs(plan, &cluster)?;
    let staged = stage_output(plan)?;
    for ((identity, file), config) in cluster
        .identities
        .iter()
        .zip(dealt.share_files())
        .zip(&configs)
    {
        let dir = PathBuf::from(format!("cosigner-{}", identity.id));
        staged.create_dir(&dir.join(STATE_DIR))?;
        write_initial_states(
            &staged.path().join(&dir).join(STATE_DIR),
            &plan.chain_ids,
            &plan.states,
        )
        .map_err(|e| SplitError::SeedState {
            chain: e.chain,
            error: e.error,
        })?;
        let share_json = file
            .to_json()
            .map_err(|e| SplitError::Check(format!("cannot encode share {}: {e}", file.id)))?;
        staged.write_file(&dir.join(KEY_SHARE_FILE), share_json.as_bytes())?;
        let header = config_header(
            identity.id,
            &format!(
                "share {} of a {t}-of-{n} FROST split of validator {address_hex}",
                identity.id
            ),
        );
        let text = format!("{header}{}{}", config.to_toml(), metrics_hint(config));
        write_identity(&staged, &dir, identity, &cluster, &text, rng)?;
    }
    check_written(staged.path(), plan, key, &dealt)?;
    staged.commit()?;

    Ok(Report {
        key_file: key_file.to_path_buf(),
        subsets_checked: dealt.subsets_checked(),
        forms,
        deployment: Deployment::of(plan),
    })
}

fn cosigner_config(
    plan: &Plan,
    id: u16,
    cluster: &cosigner::cluster::identity::IssuedCluster,
) -> Config {
    let me = &plan.cosigners[usize::from(id - 1)];
    let peers = cluster
        .identities
        .iter()
        .filter(|i| i.id != id)
        .map(|i| PeerConfig {
            id: i.id,
            address: plan.cosigners[usize::from(i.id - 1)].address.clone(),
            cert_sha256: i.cert_sha256.clone(),
        })
        .collect();
    Config {
        state_dir: STATE_DIR.into(),
        identity_key: IDENTITY_KEY_FILE.into(),
        chains: plan
            .chain_ids
            .iter()
            .map(|id| ChainConfig {
                id: id.clone(),
                max_height_jump: None,
                key: None,
            })
            .collect(),
        nodes: plan
            .nodes
            .iter()
            .map(|address| NodeConfig {
                address: address.clone(),
                protocol: plan.protocol,
                allow_sign_bytes: false,
                key: None,
            })
            .collect(),
        mode: Mode::Threshold(ThresholdConfig {
            id,
            threshold: plan.threshold,
            listen: me.listen,
            key_share: KEY_SHARE_FILE.into(),
            tls_cert: TLS_CERT_FILE.into(),
            tls_key: TLS_KEY_FILE.into(),
            cluster_ca: Some(CLUSTER_CA_FILE.into()),
            peers,
            joining: Vec::new(),
            allowed_sources: Vec::new(),
        }),
        timeouts: Timeouts::default(),
        metrics: None,
    }
}

/// The `[metrics]` section each written config carries, commented out
/// ([`cosigner::config::metrics::commented_section`]).
pub(crate) fn metrics_hint(config: &Config) -> String {
    config
        .threshold()
        .map(|th| cosigner::config::metrics::commented_section(th.listen))
        .unwrap_or_default()
}

/// The comment at the top of a `cosigner.toml`; `what` says whose share it is.
pub(crate) fn config_header(id: u16, what: &str) -> String {
    format!(
        "# cosigner-{id}: {what},\n\
         # written by split-key. Paths are relative to this file's directory.\n\
         #\n\
         # Each chain's sign state is in state/<chain-id>.state, written with this directory.\n\
         # A missing state file stops the start: it means lost history, and starting empty\n\
         # could sign twice.\n\n"
    )
}

/// Re-loads every written directory the way a cosigner does and checks it against the plan.
fn check_written(
    root: &Path,
    plan: &Plan,
    key: &ValidatorKey,
    dealt: &deal::DealtShares,
) -> Result<(), SplitError> {
    let check = |what: String| SplitError::Check(what);
    for id in 1..=plan.shares {
        let dir = root.join(format!("cosigner-{id}"));
        let loaded = Config::load(&dir.join(CONFIG_FILE)).map_err(|e| check(e.to_string()))?;
        let threshold = loaded
            .config
            .threshold()
            .ok_or_else(|| check(format!("cosigner-{id}: no [threshold]")))?;
        let share = loaded
            .load_key_share(threshold)
            .map_err(|e| check(e.to_string()))?;
        if share.index() != id
            || threshold.id != id
            || share.threshold() != plan.threshold
            || share.group_public_key() != key.public_key()
            || share.public_key_package() != dealt.public_key_package()
            || share.seed_escrow().is_none()
            || share.seed_escrow()
                != dealt.share_files()[usize::from(id - 1)]
                    .seed_escrow
                    .as_ref()
        {
            return Err(check(format!(
                "cosigner-{id}: share does not match what was dealt"
            )));
        }
        check_identity_and_states(&loaded, threshold, plan, id, &plan.chain_ids)?;
    }
    Ok(())
}

/// Checks a written directory's identity files, and the sign state of `chains` against the
/// plan's (seeded, or empty).
pub(crate) fn check_identity_and_states(
    loaded: &cosigner::config::LoadedConfig,
    threshold: &ThresholdConfig,
    plan: &Plan,
    id: u16,
    chains: &[String],
) -> Result<(), SplitError> {
    let check = |what: String| SplitError::Check(what);
    load_identity_key(&loaded.resolve(&loaded.config.identity_key))
        .map_err(|e| check(e.to_string()))?;
    for path in [&threshold.tls_cert, &threshold.tls_key]
        .into_iter()
        .chain(threshold.cluster_ca.as_ref())
    {
        let path = loaded.resolve(path);
        let len = fs::metadata(&path).map_err(io_err(&path))?.len();
        if len == 0 {
            return Err(check(format!("{} is empty", path.display())));
        }
    }
    let state_dir = loaded.resolve(&loaded.config.state_dir);
    for chain in chains {
        let expected = plan
            .states
            .iter()
            .find(|(c, _)| c == chain)
            .map_or_else(SignState::fresh, |(_, s)| s.clone());
        let (_, state) =
            StateFile::open(&state_dir, chain).map_err(|e| check(format!("cosigner-{id}: {e}")))?;
        if state != expected {
            return Err(check(format!(
                "cosigner-{id}: the sign state of `{chain}` differs from what was written"
            )));
        }
    }
    Ok(())
}
