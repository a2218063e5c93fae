//! The network edge of a refresh: checks the directory, runs the refresh ceremony with the
//! members over the cluster transport (the same machine and driving loop as a DKG), stages
//! the new share, then settles with every member by the commit rule ([`super::settle`]) and
//! switches or drops. A directory with a staged share from an interrupted refresh skips the
//! ceremony and only settles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_core::OsRng;
use sha2::{Digest as _, Sha256};
use tokio::time::{sleep, Instant};
use tracing::{info, warn};

use super::files::Files;
use super::settle::{decide, Decision};
use crate::ceremony::abort::Abort;
use crate::ceremony::file::SessionId;
use crate::ceremony::machine::{KeySource, Machine, OldShare, Setup};
use crate::ceremony::messages::{Ask, CeremonyResponse, RefreshStatus};
use crate::ceremony::output;
use crate::ceremony::run::{
    drive, lock, refuse_while_in_ceremony, take_into_machine, waiting_lines, CeremonyError, Hooks,
    LINGER_AFTER_SUCCESS,
};
use crate::cluster::tls::TlsIdentity;
use crate::cluster::{Cluster, ClusterConfig, PeerId};
use crate::config::{Config, LoadedConfig};
use crate::key_forms::PublicKeyForms;
use crate::signer::fault::{test_crash, CrashPoint};
use crate::threshold::epoch::{EpochId, KeyEpoch};
use crate::threshold::key_share::{self, check_threshold, members_list, KeyShare};
use crate::threshold::messages::{ClusterRequest, ClusterResponse};

const COMMAND: &str = "cosigner refresh";

/// A checked directory, ready to refresh (or to settle an interrupted refresh).
pub struct Prepared {
    me: PeerId,
    threshold: u16,
    /// The cosigners of the new shares, ascending.
    members: Vec<PeerId>,
    removed: Vec<PeerId>,
    session: SessionId,
    cluster: ClusterConfig,
    addresses: BTreeMap<PeerId, String>,
    files: Files,
    current: KeyShare,
    /// The share an interrupted refresh staged: only settle.
    staged: Option<KeyShare>,
    new_config: Option<Config>,
}

fn setup(m: impl Into<String>) -> CeremonyError {
    CeremonyError::Setup(m.into())
}

/// Loads `config_path` and checks it for a refresh without the cosigners `remove`
/// (`threshold`: what the operator expects t to stay). Finishes a switch a crash
/// interrupted between its two renames, removes stale temporaries; writes nothing else.
pub fn prepare(
    config_path: &Path,
    remove: &[PeerId],
    threshold: Option<u16>,
) -> Result<Prepared, CeremonyError> {
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
            if !remove.is_empty() {
                return Err(setup(format!(
                    "{}: an interrupted refresh is waiting to be settled; run `{COMMAND} \
                     --config {}` without --remove first",
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
        None => plan_members(th.id, t, &old_members, remove)?,
    };
    let new_config = match removed.is_empty() {
        true => None,
        false => Some(
            loaded
                .config
                .without_peers(&removed)
                .ok_or_else(|| setup("not a one-key threshold config"))?,
        ),
    };
    let mut cluster = loaded.cluster_config(&th);
    cluster.peers.retain(|p| members.contains(&p.id));
    let identity = TlsIdentity::load(&cluster.tls).map_err(|e| setup(e.to_string()))?;
    let own_pin = identity.fingerprint().ok_or_else(|| {
        setup(format!(
            "{}: no certificate found",
            cluster.tls.cert.display()
        ))
    })?;
    let mut pins: BTreeMap<PeerId, String> = cluster
        .peers
        .iter()
        .map(|p| (p.id, p.cert_sha256.clone()))
        .collect();
    pins.insert(th.id, own_pin);
    let session = session_id(current.epoch().id, t, &pins);
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
    })
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

/// What this host tells the others about its files, and who fetched it after a decision.
struct Disk {
    status: RefreshStatus,
    decided: bool,
    fetched_after_decision: BTreeSet<PeerId>,
}

fn disk(d: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// The refresh's hooks for the driving loop: the machine until the share is staged, then
/// every member's status until the commit rule decides.
struct RefreshHooks<'a> {
    machine: Option<&'a Mutex<Machine>>,
    prepared: &'a Prepared,
    disk: &'a Mutex<Disk>,
    /// The staged generation, once staged.
    new: Option<EpochId>,
    heard: BTreeMap<PeerId, Option<RefreshStatus>>,
    decision: Option<Decision>,
}

impl RefreshHooks<'_> {
    fn stage(&mut self, m: &mut Machine) {
        let Some(keys) = m.needs_staging() else {
            return;
        };
        let p = self.prepared;
        let shares = u16::try_from(p.members.len()).unwrap_or(u16::MAX);
        let file = output::share_file(p.me, p.threshold, shares, keys);
        let new = KeyEpoch::of(file.epoch, &file.public_key_package).id;
        match p.files.stage(&file, p.new_config.as_ref()) {
            Ok(()) => {
                m.mark_staged();
                disk(self.disk).status.staged = Some(new);
                self.new = Some(new);
                info!("{COMMAND}: test signature verified, new share staged");
                test_crash(CrashPoint::RefreshAfterStage);
            }
            Err(e) => m.fail(Abort::local(format!(
                "cannot stage the new share: {e} (nothing switched; every cosigner stops)"
            ))),
        }
    }
}

impl Hooks for RefreshHooks<'_> {
    fn done(&mut self) -> bool {
        if self.new.is_none() {
            let Some(machine) = self.machine else {
                return true;
            };
            let mut m = lock(machine);
            self.stage(&mut m);
            if m.failed().is_some() {
                return true;
            }
        }
        let Some(new) = self.new else {
            return false;
        };
        match decide(self.prepared.current.epoch().id, new, &self.heard) {
            Decision::Wait(_) => false,
            decided => {
                self.decision = Some(decided);
                true
            }
        }
    }

    fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        match (self.new, self.machine) {
            (Some(_), _) => Some(Ask::Status),
            (None, Some(machine)) => lock(machine).next_ask(peer),
            (None, None) => None,
        }
    }

    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String> {
        if ask != Ask::Status {
            let machine = self.machine?;
            return take_into_machine(&mut lock(machine), peer, ask, response);
        }
        let reason = match response {
            ClusterResponse::Ceremony(CeremonyResponse::Status(status)) => {
                self.heard.insert(peer, Some(status));
                "has not decided yet".to_string()
            }
            ClusterResponse::Ceremony(CeremonyResponse::Refused(r)) => r,
            ClusterResponse::Refused(r) => r.reason,
            _ => "answered something else than its status".to_string(),
        };
        // Asked again until the rule decides.
        Some(reason)
    }

    fn fail(&mut self, abort: Abort) {
        if let Some(machine) = self.machine {
            lock(machine).fail(abort);
        }
    }
}

/// What a refresh did on this host.
pub struct Report {
    me: PeerId,
    threshold: u16,
    members: Vec<PeerId>,
    removed: Vec<PeerId>,
    epoch: KeyEpoch,
    forms: PublicKeyForms,
    key_share: PathBuf,
    config: PathBuf,
    because: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cosigner {}: new share of the same validator key, {} ({}-of-{}, cosigners {}); \
             {}",
            self.me,
            self.epoch,
            self.threshold,
            self.members.len(),
            members_list(&self.members),
            self.because
        )?;
        writeln!(f, "  validator public key: {}", self.forms.base64)?;
        writeln!(
            f,
            "  {} replaced: the old share is gone from this host (no copy kept)",
            self.key_share.display()
        )?;
        if !self.removed.is_empty() {
            writeln!(
                f,
                "  {} no longer lists cosigner(s) {}: their identities are refused",
                self.config.display(),
                members_list(&self.removed)
            )?;
        }
        writeln!(
            f,
            "next: `cosigner start --config {}` (the watermarks were not touched)",
            crate::shell::quote(&self.config)
        )
    }
}

/// Runs the refresh (or settles an interrupted one) within `timeout`.
pub async fn run(prepared: Prepared, timeout: Duration) -> Result<Report, CeremonyError> {
    let deadline = Instant::now() + timeout;
    let p = &prepared;
    let old = p.current.epoch().id;
    let staged_epoch = p.staged.as_ref().map(|s| s.epoch().id);
    let machine = match &p.staged {
        Some(_) => None,
        None => {
            let setup = Setup {
                me: p.me,
                threshold: p.threshold,
                members: p.members.clone(),
                session: p.session,
                source: KeySource::Refresh(Box::new(OldShare {
                    key_package: p.current.key_package().clone(),
                    public_key_package: p.current.public_key_package().clone(),
                    epoch: p.current.epoch().number,
                    seed_escrow: p.current.seed_escrow().cloned(),
                })),
            };
            let m = Machine::new(setup, &mut OsRng).map_err(|abort| CeremonyError::Aborted {
                command: COMMAND,
                abort,
            })?;
            Some(Arc::new(Mutex::new(m)))
        }
    };
    let disk_state = Arc::new(Mutex::new(Disk {
        status: RefreshStatus {
            current: old,
            staged: staged_epoch,
            pending: None,
        },
        decided: false,
        fetched_after_decision: BTreeSet::new(),
    }));
    let cluster = Arc::new(Cluster::bind(p.cluster.clone()).await?);
    let (served_machine, served_disk) = (machine.clone(), disk_state.clone());
    cluster.serve(move |peer, request: ClusterRequest| {
        let (machine, disk_state) = (served_machine.clone(), served_disk.clone());
        async move {
            let ClusterRequest::Ceremony(r) = request else {
                return ClusterResponse::Refused(refuse_while_in_ceremony(COMMAND));
            };
            if r.ask == Ask::Status {
                let pending = machine.as_ref().and_then(|m| {
                    let m = lock(m);
                    m.pending()
                        .map(|k| KeyEpoch::of(k.epoch, &k.public_key_package).id)
                });
                let mut d = disk(&disk_state);
                if d.decided {
                    d.fetched_after_decision.insert(peer);
                }
                let status = RefreshStatus {
                    pending: pending.filter(|_| d.status.staged.is_none()),
                    ..d.status
                };
                return ClusterResponse::Ceremony(CeremonyResponse::Status(status));
            }
            ClusterResponse::Ceremony(match &machine {
                Some(m) => lock(m).answer(peer, &r),
                None => CeremonyResponse::Refused(
                    "this cosigner is settling an interrupted refresh, not running a new one: \
                     run `cosigner refresh` on it again once it is done"
                        .into(),
                ),
            })
        }
    });
    info!(
        cosigner = p.me,
        members = members_list(&p.members),
        "{COMMAND}: {} with every cosigner",
        if staged_epoch.is_some() {
            "settling an interrupted refresh"
        } else {
            "refreshing"
        }
    );
    let mut hooks = RefreshHooks {
        machine: machine.as_deref(),
        prepared: p,
        disk: &disk_state,
        new: staged_epoch,
        heard: p
            .members
            .iter()
            .filter(|m| **m != p.me)
            .map(|m| (*m, None))
            .collect(),
        decision: None,
    };
    let peers: Vec<PeerId> = hooks.heard.keys().copied().collect();
    let driven = drive(&cluster, p.session, peers, deadline, &mut hooks).await;
    let (new, decision, heard) = (hooks.new, hooks.decision.take(), hooks.heard.clone());

    let Some(new) = new else {
        // Nothing staged: as for a DKG, nothing was written.
        let failed = machine.as_ref().and_then(|m| lock(m).failed().cloned());
        let waiting = match (&machine, driven.timed_out) {
            (Some(m), true) => {
                let m = lock(m);
                Some(waiting_lines(
                    &|peer| m.next_ask(peer),
                    &m.waiting_for(),
                    &driven.tracks,
                    &cluster,
                    &p.addresses,
                    COMMAND,
                ))
            }
            _ => None,
        };
        if let Some(waiting) = waiting {
            lock_fail(&machine, timeout);
            crate::ceremony::run::linger_failed(&cluster).await;
            return Err(CeremonyError::TimedOut {
                command: COMMAND,
                after: timeout,
                waiting,
            });
        }
        crate::ceremony::run::linger_failed(&cluster).await;
        return Err(CeremonyError::Aborted {
            command: COMMAND,
            abort: failed.unwrap_or_else(|| Abort::local("the refresh stopped")),
        });
    };
    let because = match decision {
        Some(Decision::Commit { because }) => because,
        Some(Decision::Abort { because }) => {
            warn!("{COMMAND}: dropping the staged share: {because}");
            let dropped = p.files.abort();
            {
                let mut d = disk(&disk_state);
                if dropped.is_ok() {
                    d.status.staged = None;
                }
                d.decided = true;
            }
            linger_after_decision(&disk_state, &heard, new).await;
            cluster.shutdown().await;
            return Err(match dropped {
                Ok(()) => CeremonyError::RefreshDropped(because),
                Err(e) => CeremonyError::Setup(format!(
                    "the refresh is dropped ({because}), but the staged share could not be \
                     removed: {e}. Remove {} by hand; the old share stays in use",
                    p.files.staged_share().display()
                )),
            });
        }
        Some(Decision::Wait(_)) | None => {
            let waiting = match decide(old, new, &heard) {
                Decision::Wait(lines) => lines,
                _ => Vec::new(),
            };
            cluster.shutdown().await;
            return Err(CeremonyError::Unsettled {
                after: timeout,
                waiting,
                staged: p.files.staged_share(),
            });
        }
    };
    p.files
        .switch()
        .map_err(|e| CeremonyError::Publish(format!("cannot switch to the new share: {e}")))?;
    {
        let mut d = disk(&disk_state);
        d.status = RefreshStatus {
            current: new,
            staged: None,
            pending: None,
        };
        d.decided = true;
    }
    info!("{COMMAND}: switched to the new share ({because})");
    linger_after_decision(&disk_state, &heard, new).await;
    cluster.shutdown().await;
    let share = key_share::load(&p.files.key_share)
        .map_err(|e| CeremonyError::Publish(format!("the new share does not load: {e}")))?;
    let forms = PublicKeyForms::new(&share.group_public_key(), None)
        .map_err(|e| CeremonyError::Setup(e.to_string()))?;
    Ok(Report {
        me: p.me,
        threshold: p.threshold,
        members: p.members.clone(),
        removed: p.removed.clone(),
        epoch: share.epoch(),
        forms,
        key_share: p.files.key_share.clone(),
        config: p.files.config.clone(),
        because,
    })
}

fn lock_fail(machine: &Option<Arc<Mutex<Machine>>>, timeout: Duration) {
    if let Some(m) = machine {
        lock(m).fail(Abort::local(format!(
            "timed out after {}s",
            timeout.as_secs()
        )));
    }
}

/// Keeps answering until every member that has not switched as far as we heard has fetched
/// our decided status (it decides from it at once), at most [`LINGER_AFTER_SUCCESS`].
async fn linger_after_decision(
    disk_state: &Mutex<Disk>,
    heard: &BTreeMap<PeerId, Option<RefreshStatus>>,
    new: EpochId,
) {
    let until = Instant::now() + LINGER_AFTER_SUCCESS;
    loop {
        let waiting = {
            let d = disk(disk_state);
            heard.iter().any(|(peer, status)| {
                !status.is_some_and(|s| s.current == new)
                    && !d.fetched_after_decision.contains(peer)
            })
        };
        if !waiting || Instant::now() >= until {
            return;
        }
        sleep(Duration::from_millis(25)).await;
    }
}
