//! The disk edge of a ceremony: what is checked before it starts, the key share staged once
//! the test signature verified, and the share (with, for an import, the sign states)
//! published once every cosigner verified. Also what the operator is told at the end.

use std::fmt;
use std::path::{Path, PathBuf};

use super::abort::Abort;
use super::file::CeremonyKind;
use super::horcrux::state::{self as horcrux_state, HorcruxStateKind};
use super::machine::Keys;
use crate::cluster::PeerId;
use crate::key_forms::PublicKeyForms;
use crate::sign_state::import::{describe, import_into, ImportError};
use crate::sign_state::{SignState, StateError, StateFile};
use crate::staged_dir::StagedFile;
use crate::threshold::key_share::{KeyShareFile, KEY_SHARE_VERSION};

/// Refuses to run a ceremony over an existing share, and removes the staged copies a
/// ceremony killed between staging and publishing left behind (they were never published:
/// no cosigner uses them).
pub fn prepare_share_path(key_share: &Path, kind: CeremonyKind) -> Result<(), String> {
    if key_share.symlink_metadata().is_ok() {
        return Err(format!(
            "{} exists: this cosigner has its key share already (`{}` ran before, or the \
             directory came from a split). Refusing to replace it",
            key_share.display(),
            kind.command()
        ));
    }
    let (Some(dir), Some(prefix)) = (key_share.parent(), StagedFile::staging_prefix(key_share))
    else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| {
                format!(
                    "cannot remove the stale staged share {}: {e}",
                    path.display()
                )
            })?;
        }
    }
    Ok(())
}

/// The share file our new keys make.
pub fn share_file(me: PeerId, threshold: u16, shares: u16, keys: &Keys) -> KeyShareFile {
    KeyShareFile {
        version: KEY_SHARE_VERSION,
        id: me,
        threshold,
        shares,
        epoch: keys.epoch,
        key_package: keys.key_package.clone(),
        public_key_package: keys.public_key_package.clone(),
        seed_escrow: keys.seed_escrow.clone(),
    }
}

/// Writes our share under a temporary name, fsynced: the next step is one atomic link.
pub fn stage_share(
    key_share: &Path,
    me: PeerId,
    threshold: u16,
    shares: u16,
    keys: &Keys,
) -> Result<StagedFile, Abort> {
    let json = share_file(me, threshold, shares, keys)
        .to_json()
        .map_err(|e| Abort::local(format!("cannot encode the key share: {e}")))?;
    StagedFile::write(key_share, json.as_bytes()).map_err(|e| {
        Abort::local(format!(
            "cannot write the key share (nothing was published; every cosigner stops): {e}"
        ))
    })
}

/// The watermark an imported chain is raised to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePlan {
    /// The chain whose watermark is raised.
    pub chain: String,
    /// What is written: `None` if this directory's state is already as high.
    pub write: Option<SignState>,
    /// What the chain's state is after the import, described.
    pub result: String,
    /// Where it came from, for the operator.
    pub source: String,
}

/// Reads Horcrux's two state files of every chain and decides each chain's watermark (the
/// higher of the two, never below what `state_dir` holds). A chain with no state anywhere
/// stops the import: starting it empty could sign twice.
pub fn plan_horcrux_states(
    horcrux_state_dir: &Path,
    state_dir: &Path,
    chains: &[String],
    config: &Path,
) -> Result<Vec<StatePlan>, String> {
    let mut plans = Vec::new();
    for chain in chains {
        let mut found: Vec<(PathBuf, SignState)> = Vec::new();
        for kind in HorcruxStateKind::ALL {
            let path = kind.path(horcrux_state_dir, chain);
            if let Some(state) = horcrux_state::load(&path, chain)? {
                found.push((path, state));
            }
        }
        let existing = match StateFile::open(state_dir, chain) {
            Ok((_, state)) => Some(state),
            Err(StateError::Missing { .. }) => None,
            Err(e) => return Err(e.to_string()),
        };
        let mut imported: Option<SignState> = None;
        for (_, state) in &found {
            imported = Some(match imported {
                None => state.clone(),
                Some(held) => horcrux_state::higher(held, state.clone())?,
            });
        }
        let source = found
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        let plan = match (imported, existing) {
            (None, None) => {
                return Err(format!(
                    "no sign state for chain `{chain}`: neither {} nor {} exists, and this \
                     directory has none either. Give the Horcrux state directory \
                     (--horcrux-state-dir), or import the validator's last state first: \
                     `cosigner state import PRIV_VALIDATOR_STATE_JSON --config {} --chain-id \
                     {chain}`",
                    HorcruxStateKind::ShareSignState
                        .path(horcrux_state_dir, chain)
                        .display(),
                    HorcruxStateKind::PrivValidatorState
                        .path(horcrux_state_dir, chain)
                        .display(),
                    crate::shell::quote(config)
                ))
            }
            (None, Some(have)) => StatePlan {
                chain: chain.clone(),
                write: None,
                result: describe(&have),
                source: "this directory (no Horcrux state found)".into(),
            },
            (Some(new), existing) => match horcrux_state::to_write(existing.as_ref(), new) {
                Some(state) => StatePlan {
                    chain: chain.clone(),
                    result: describe(&state),
                    write: Some(state),
                    source,
                },
                None => StatePlan {
                    chain: chain.clone(),
                    write: None,
                    result: describe(existing.as_ref().unwrap_or(&SignState::fresh())),
                    source: format!("this directory (already at or above {source})"),
                },
            },
        };
        plans.push(plan);
    }
    Ok(plans)
}

/// Publishes the ceremony's result: first the sign states (a share never exists without
/// its watermark), then the share itself. A state raised meanwhile is left as it is.
pub fn publish(
    staged: StagedFile,
    state_dir: &Path,
    states: &[StatePlan],
) -> Result<PathBuf, String> {
    for plan in states {
        let Some(state) = &plan.write else {
            continue;
        };
        match import_into(state_dir, &plan.chain, state.clone(), false) {
            Ok(_) | Err(ImportError::WouldLower { .. }) => {}
            Err(e) => {
                return Err(format!(
                    "cannot write the sign state of chain `{}`: {e}",
                    plan.chain
                ))
            }
        }
    }
    staged
        .commit()
        .map_err(|e| format!("cannot publish the key share: {e}"))
}

/// What a finished ceremony tells the operator.
#[derive(Debug)]
pub struct Report {
    /// Which ceremony ran.
    pub kind: CeremonyKind,
    /// This cosigner's identifier.
    pub me: PeerId,
    /// How many cosigners must sign together (`t`).
    pub threshold: u16,
    /// How many cosigners hold shares (`n`).
    pub shares: u16,
    /// Where the share was written.
    pub key_share: PathBuf,
    /// The config file to start the cosigner with.
    pub config: PathBuf,
    /// The validator public key in every form an operator needs.
    pub forms: PublicKeyForms,
    /// The watermarks written, one per imported chain.
    pub states: Vec<StatePlan>,
    /// Peers that did not fetch our confirmation before we stopped waiting.
    pub unconfirmed: Vec<PeerId>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CeremonyKind::Dkg => "DKG complete",
            CeremonyKind::HorcruxImport => "Horcrux import complete",
            CeremonyKind::Join => "join complete",
        };
        writeln!(
            f,
            "{what}: cosigner {} of a {}-of-{} cluster. Every cosigner verified a test signature \
             by all {} under the key below.",
            self.me, self.threshold, self.shares, self.shares
        )?;
        writeln!(f, "key share: {}", self.key_share.display())?;
        writeln!(f)?;
        write!(f, "{}", self.forms)?;
        for plan in &self.states {
            writeln!(
                f,
                "sign state of `{}` (from {}): {}",
                plan.chain,
                plan.source,
                plan.result.replace('\n', "; ")
            )?;
        }
        if !self.unconfirmed.is_empty() {
            writeln!(
                f,
                "WARNING: cosigner(s) {:?} did not fetch this cosigner's confirmation in time and \
                 may not have written their share; check their output. The cluster signs with \
                 any {} that did.",
                self.unconfirmed, self.threshold
            )?;
        }
        writeln!(f)?;
        let config = crate::shell::quote(&self.config);
        match self.kind {
            CeremonyKind::Dkg => writeln!(
                f,
                "Next: back up {} (this host's share: one backup, offline, as secret as the \
                 share itself); put the public key in the genesis or `create-validator`; then \
                 `cosigner start --config {config}` on every host.",
                self.key_share.display()
            ),
            CeremonyKind::HorcruxImport => writeln!(
                f,
                "Next: with Horcrux stopped on every host for good, `cosigner start --config \
                 {config}` on every host. The Horcrux shard is still a share of the validator \
                 key: keep it offline or destroy it, and never run Horcrux again."
            ),
            CeremonyKind::Join => writeln!(f, "Next: `cosigner start --config {config}`."),
        }
    }
}
