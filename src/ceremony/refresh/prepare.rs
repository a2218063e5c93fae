//! A refresh's checks before anything runs: the directory (one threshold key), the share
//! and any staged share of an interrupted refresh, the threshold the operator expects, the
//! new membership (`--remove`, or `--add` of a joining cosigner, keeping t > n/2) and the
//! session id.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use tracing::info;

use super::files::Files;
use super::COMMAND;
use crate::ceremony::file::SessionId;
use crate::ceremony::join::{repair, states};
use crate::ceremony::messages::JoinInfo;
use crate::ceremony::run::{member_pins, CeremonyError};
use crate::cluster::{ClusterConfig, PeerId};
use crate::config::{promote_joining, Config, LoadedConfig};
use crate::threshold::epoch::EpochId;
use crate::threshold::key_share::{self, check_threshold, members_list, KeyShare};

/// A checked directory, ready to refresh (or to settle an interrupted refresh).
pub struct Prepared {
    pub(super) me: PeerId,
    pub(super) threshold: u16,
    /// The cosigners of the new shares, ascending.
    pub(super) members: Vec<PeerId>,
    pub(super) removed: Vec<PeerId>,
    pub(super) session: SessionId,
    pub(super) cluster: ClusterConfig,
    pub(super) addresses: BTreeMap<PeerId, String>,
    pub(super) files: Files,
    pub(super) current: KeyShare,
    /// The share an interrupted refresh staged: only settle.
    pub(super) staged: Option<KeyShare>,
    pub(super) new_config: Option<Config>,
    /// `--add`: the cosigner being added, and what it is told.
    pub(super) join: Option<Joining>,
}

/// A member's plan for adding a cosigner (`--add`): the repair before the refresh.
pub(super) struct Joining {
    /// The cosigner being added.
    pub(super) joiner: PeerId,
    /// The prelude session its first requests carry.
    pub(super) prelude: SessionId,
    /// What we tell it: the key's public data and our watermarks.
    pub(super) info: JoinInfo,
}

impl Prepared {
    /// Whether an interrupted refresh waits to be settled here (rather than a new one).
    pub fn settles(&self) -> bool {
        self.staged.is_some()
    }
}

fn setup(m: impl Into<String>) -> CeremonyError {
    CeremonyError::Setup(m.into())
}

/// Loads `config_path` and checks it for a refresh without the cosigners `remove`, or with
/// the joining cosigner `add` (`threshold`: what the operator expects t to stay). Finishes
/// a switch a crash interrupted between its two renames, removes stale temporaries; writes
/// nothing else.
pub fn prepare(
    config_path: &Path,
    remove: &[PeerId],
    add: Option<PeerId>,
    threshold: Option<u16>,
) -> Result<Prepared, CeremonyError> {
    if let (Some(add), false) = (add, remove.is_empty()) {
        return Err(setup(format!(
            "--add {add} with --remove {}: a refresh either adds a cosigner or removes some, \
             not both. Run them as two refreshes (remove first, then add)",
            members_list(remove)
        )));
    }
    let mut loaded = Config::load(config_path).map_err(|e| setup(e.to_string()))?;
    let th = one_key(&loaded)?;
    let files = Files {
        key_share: loaded.resolve(&th.key_share),
        config: loaded.path.clone(),
    };
    files.remove_stale_temporaries().map_err(setup)?;
    let raw = key_share::load(&files.key_share).map_err(|e| setup(e.to_string()))?;
    if files.finish(&raw).map_err(setup)? {
        info!("{COMMAND}: finished the config switch of an interrupted refresh");
        loaded = Config::load(config_path).map_err(|e| setup(e.to_string()))?;
    }
    let th = one_key(&loaded)?.clone();
    let current = loaded
        .load_key_share(&th)
        .map_err(|e| setup(e.to_string()))?;
    let t = current.threshold();
    if let Some(wanted) = threshold.filter(|w| *w != t) {
        return Err(setup(format!(
            "--threshold {wanted}: a refresh keeps the threshold ({t}): frost's refresh cannot \
             change it, and a refresh that did would let old shares combine with new ones. To \
             sign with {wanted}-of-n, either make a new validator key with a DKG (`split-key \
             --dkg --threshold {wanted} ...`, then `cosigner dkg` on every host; the validator \
             then moves to the new key on chain), or leave the cluster with `split-key combine` \
             and split the key again (`split-key --threshold {wanted}`; the key exists whole on \
             that machine for the time it takes, and the old share directories must be \
             destroyed)"
        )));
    }
    let old_members = current.file().members().map_err(|e| setup(e.to_string()))?;
    let staged = files.read_staged().map_err(setup)?;
    let (members, removed) = match &staged {
        Some(next) => {
            if !remove.is_empty() || add.is_some() {
                return Err(setup(format!(
                    "{}: an interrupted refresh is waiting to be settled; run `{COMMAND} \
                     --config {}` without --remove or --add first",
                    files.staged_share().display(),
                    crate::shell::quote(config_path)
                )));
            }
            check_staged(&current, next)?;
            let members = next.file().members().map_err(|e| setup(e.to_string()))?;
            let removed = old_members
                .iter()
                .copied()
                .filter(|m| !members.contains(m))
                .collect();
            (members, removed)
        }
        None => match add {
            Some(add) => (plan_added(&th, t, &old_members, add)?, Vec::new()),
            None => plan_members(th.id, t, &old_members, remove)?,
        },
    };
    let new_config = match (removed.is_empty(), add) {
        (false, _) => Some(
            loaded
                .config
                .without_peers(&removed)
                .ok_or_else(|| setup("not a one-key threshold config"))?,
        ),
        (true, Some(add)) => Some(
            promote_joining(&loaded.config, add)
                .map_err(|e| setup(format!("{}: {e}", config_path.display())))?,
        ),
        (true, None) => None,
    };
    // A join's members include the joining cosigner (also when settling one).
    let joins = th.joining.iter().any(|j| members.contains(&j.id));
    let mut cluster = match joins {
        true => loaded.cluster_config_with_joining(&th),
        false => loaded.cluster_config(&th),
    };
    cluster.peers.retain(|p| members.contains(&p.id));
    let pins = member_pins(&cluster, th.id).map_err(setup)?;
    let (session, join) = match add {
        Some(joiner) => {
            let chains: Vec<String> = loaded.config.chains.iter().map(|c| c.id.clone()).collect();
            let state_dir = loaded.resolve(&loaded.config.state_dir);
            let info = JoinInfo {
                public_key_package: current
                    .public_key_package()
                    .serialize()
                    .map_err(|e| setup(format!("cannot encode the key package: {e}")))?,
                epoch: current.epoch().number,
                seed_escrow: current.seed_escrow().cloned(),
                watermarks: states::read(&state_dir, &chains).map_err(setup)?,
            };
            let join = Joining {
                joiner,
                prelude: repair::prelude_id(t, joiner, &pins),
                info,
            };
            let session = repair::session_id(current.epoch().id, t, joiner, &pins);
            (session, Some(join))
        }
        None => (session_id(current.epoch().id, t, &pins), None),
    };
    Ok(Prepared {
        me: th.id,
        threshold: t,
        members,
        removed,
        session,
        addresses: cluster
            .peers
            .iter()
            .map(|p| (p.id, p.address.clone()))
            .collect(),
        cluster,
        files,
        current,
        staged,
        new_config,
        join,
    })
}

/// The membership with the joining cosigner `add`, which must keep t > n/2.
fn plan_added(
    th: &crate::config::ThresholdConfig,
    t: u16,
    old: &[PeerId],
    add: PeerId,
) -> Result<Vec<PeerId>, CeremonyError> {
    if old.contains(&add) {
        return Err(setup(format!(
            "--add {add}: already a cosigner of this key (its cosigners are {})",
            members_list(old)
        )));
    }
    if !th.joining.iter().any(|j| j.id == add) {
        return Err(setup(format!(
            "--add {add}: this config does not pin cosigner {add} as joining: run `cosigner \
             add-peer --config FILE --id {add} --address HOST:PORT --cert-sha256 FP` first \
             (with the fingerprint its `cosigner enroll` printed)"
        )));
    }
    let mut members = old.to_vec();
    members.push(add);
    members.sort_unstable();
    let n = u16::try_from(members.len()).unwrap_or(u16::MAX);
    check_threshold(t, n).map_err(|e| setup(format!("adding {add} makes {t}-of-{n}: {e}")))?;
    Ok(members)
}

fn one_key(loaded: &LoadedConfig) -> Result<&crate::config::ThresholdConfig, CeremonyError> {
    loaded.config.threshold().ok_or_else(|| {
        setup(format!(
            "{}: `{COMMAND}` works on a threshold cosigner with one key ([threshold]); a \
             single-key signer has nothing to refresh, and a directory with [[key]] entries \
             cannot be refreshed yet",
            loaded.path.display()
        ))
    })
}

/// The new membership: the old one without `remove`, which must keep t > n/2.
fn plan_members(
    me: PeerId,
    t: u16,
    old: &[PeerId],
    remove: &[PeerId],
) -> Result<(Vec<PeerId>, Vec<PeerId>), CeremonyError> {
    for id in remove {
        if *id == me {
            return Err(setup(format!(
                "--remove {id}: that is this cosigner. Run `{COMMAND} --remove {id}` on every \
                 other cosigner's host; this one takes no part (stop it and destroy its \
                 directory)"
            )));
        }
        if !old.contains(id) {
            return Err(setup(format!(
                "--remove {id}: not a cosigner of this key (its cosigners are {})",
                members_list(old)
            )));
        }
    }
    let members: Vec<PeerId> = old
        .iter()
        .copied()
        .filter(|m| !remove.contains(m))
        .collect();
    let n = u16::try_from(members.len()).unwrap_or(u16::MAX);
    if n < t {
        return Err(setup(format!(
            "removing {} leaves {n} cosigners, fewer than the threshold {t}: the key could \
             never sign again. Remove fewer, or add a cosigner first",
            members_list(remove)
        )));
    }
    check_threshold(t, n).map_err(|e| {
        setup(format!(
            "removing {} leaves {t}-of-{n}: {e}",
            members_list(remove)
        ))
    })?;
    let mut removed = remove.to_vec();
    removed.sort_unstable();
    removed.dedup();
    Ok((members, removed))
}

/// A staged share must be a later generation of the same key for the same cosigner.
fn check_staged(current: &KeyShare, next: &KeyShare) -> Result<(), CeremonyError> {
    if next.group_public_key() != current.group_public_key()
        || next.index() != current.index()
        || next.threshold() != current.threshold()
        || next.epoch().number != current.epoch().number.saturating_add(1)
    {
        return Err(setup(format!(
            "the staged share is not the next generation of this cosigner's share ({} is {}, \
             the share is {}); it was not written by `{COMMAND}` for this directory: move it \
             away and run again",
            "key_share.json.next",
            next.epoch(),
            current.epoch()
        )));
    }
    Ok(())
}

/// The session of a refresh: the generation it starts from, the threshold, and every
/// member with its certificate pin. Members agree on it exactly when they refresh the same
/// shares with the same membership.
fn session_id(epoch: EpochId, t: u16, pins: &BTreeMap<PeerId, String>) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"cosigner refresh v1\x00");
    h.update(epoch.0);
    h.update(t.to_be_bytes());
    for (id, pin) in pins {
        h.update(id.to_be_bytes());
        h.update(pin.as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_and_removing_in_one_refresh_is_refused_before_anything_is_read() {
        let Err(CeremonyError::Setup(why)) =
            prepare(Path::new("/nonexistent/cosigner.toml"), &[3], Some(4), None)
        else {
            panic!("--add with --remove was accepted");
        };
        assert!(why.contains("two refreshes"), "{why}");
    }
}
