//! `cosigner join`'s checks before anything runs: a directory from `cosigner enroll` (its
//! `ceremony.json` marks a pending join, it holds no share), its members and their pins,
//! and any share an interrupted join staged (then it only settles).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ceremony::file::{CeremonyFile, CeremonyKind, CEREMONY_FILE};
use crate::ceremony::refresh::files::Files;
use crate::ceremony::run::{member_pins, CeremonyError};
use crate::cluster::{ClusterConfig, PeerId};
use crate::config::Config;
use crate::threshold::key_share::KeyShare;

pub(super) const COMMAND: &str = "cosigner join";

/// A checked directory of a cosigner being added, ready to join (or to settle a join).
pub struct Prepared {
    pub(super) me: PeerId,
    pub(super) threshold: u16,
    /// The members, ascending (this cosigner not among them).
    pub(super) members: Vec<PeerId>,
    pub(super) pins: BTreeMap<PeerId, String>,
    pub(super) cluster: ClusterConfig,
    pub(super) addresses: BTreeMap<PeerId, String>,
    pub(super) files: Files,
    /// `ceremony.json`, removed once the join switched.
    pub(super) marker: PathBuf,
    pub(super) state_dir: PathBuf,
    pub(super) chains: Vec<String>,
    /// The share an interrupted join staged: only settle.
    pub(super) staged: Option<KeyShare>,
}

impl Prepared {
    /// Whether an interrupted join waits to be settled here (rather than a new one).
    pub fn settles(&self) -> bool {
        self.staged.is_some()
    }
}

fn setup(m: impl Into<String>) -> CeremonyError {
    CeremonyError::Setup(m.into())
}

/// Loads `config_path` and checks it for a join. Removes stale temporaries and a marker a
/// crash left after the switch; writes nothing else.
pub fn prepare(config_path: &Path) -> Result<Prepared, CeremonyError> {
    let loaded = Config::load(config_path).map_err(|e| setup(e.to_string()))?;
    let th = loaded.config.threshold().ok_or_else(|| {
        setup(format!(
            "{}: `{COMMAND}` works on a directory `cosigner enroll` wrote (one threshold key)",
            loaded.path.display()
        ))
    })?;
    let files = Files {
        key_share: loaded.resolve(&th.key_share),
        config: loaded.path.clone(),
    };
    let marker = loaded.resolve(Path::new(CEREMONY_FILE));
    if files.key_share.symlink_metadata().is_ok() {
        if marker.symlink_metadata().is_ok() && files.read_staged().ok().flatten().is_none() {
            // The switch happened; only the marker's removal was left.
            remove_marker(&marker).map_err(setup)?;
        }
        return Err(setup(format!(
            "{}: this cosigner holds its share already: the join is complete. Run `cosigner \
             start --config {}`",
            files.key_share.display(),
            crate::shell::quote(config_path)
        )));
    }
    let file = CeremonyFile::load(&marker).map_err(|e| {
        setup(format!(
            "{e}. A directory for `{COMMAND}` comes from `cosigner enroll`"
        ))
    })?;
    if file.kind != CeremonyKind::Join {
        return Err(setup(format!(
            "{}: this directory is for `{}`, not `{COMMAND}`",
            marker.display(),
            file.kind.command()
        )));
    }
    files.remove_stale_temporaries().map_err(setup)?;
    let staged = files.read_staged().map_err(setup)?;
    let cluster = loaded.cluster_config(th);
    let pins = member_pins(&cluster, th.id).map_err(setup)?;
    let mut members: Vec<PeerId> = th.peers.iter().map(|p| p.id).collect();
    members.sort_unstable();
    if let Some(staged) = &staged {
        let mut expected = members.clone();
        expected.push(th.id);
        expected.sort_unstable();
        let held = staged.file().members().map_err(|e| setup(e.to_string()))?;
        if staged.index() != th.id || staged.threshold() != th.threshold || held != expected {
            return Err(setup(format!(
                "{}: the staged share is not this cosigner's share of cosigners {}: it was not \
                 written by `{COMMAND}` for this directory; move it away and run again",
                files.staged_share().display(),
                crate::threshold::key_share::members_list(&expected)
            )));
        }
    }
    Ok(Prepared {
        me: th.id,
        threshold: th.threshold,
        members,
        pins,
        addresses: th.peers.iter().map(|p| (p.id, p.address.clone())).collect(),
        cluster,
        files,
        marker,
        state_dir: loaded.resolve(&loaded.config.state_dir),
        chains: loaded.config.chains.iter().map(|c| c.id.clone()).collect(),
        staged,
    })
}

/// Removes the pending-join marker, durably: from then on the directory is a member's.
pub(super) fn remove_marker(marker: &Path) -> Result<(), String> {
    match std::fs::remove_file(marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", marker.display())),
    }
    let parent = match marker.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", parent.display()))
}
