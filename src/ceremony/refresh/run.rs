//! The network edge of a refresh: checks the directory, runs the refresh ceremony with the
//! members over the cluster transport (the same machine and driving loop as a DKG), stages
//! the new share, then settles with every member by the commit rule ([`super::settle`]) and
//! switches or drops. A directory with a staged share from an interrupted refresh skips the
//! ceremony and only settles. With `--add`, the member also answers the joining cosigner
//! and runs the repair ([`MemberJoin`]) beside the refresh machine, whose members then
//! include the joining cosigner and whose old package is extended by its verifying share.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_core::OsRng;
use tokio::time::Instant;
use tracing::{info, warn};

use super::linger::{linger_until_told, Told};
pub use super::prepare::{prepare, Prepared};
pub use super::report::Report;
use super::settle::{decide, Decision};
use super::COMMAND;
use crate::ceremony::abort::Abort;
use crate::ceremony::join::repair::MemberJoin;
use crate::ceremony::join::steps;

/// After a refresh stopped without staging: how long we keep telling members that staged.
const LINGER_AFTER_FAILURE: Duration = Duration::from_secs(10);
use crate::ceremony::machine::{KeySource, Machine, OldShare, Progress, Setup};
use crate::ceremony::messages::{Ask, CeremonyResponse, RefreshStatus};
use crate::ceremony::output;
use crate::ceremony::run::{
    drive, lock, refuse_while_in_ceremony, take_into_machine, waiting_lines, CeremonyError, Hooks,
    LINGER_AFTER_SUCCESS,
};
use crate::cluster::{Cluster, PeerId};
use crate::key_forms::PublicKeyForms;
use crate::signer::fault::{test_crash, CrashPoint};
use crate::threshold::epoch::{EpochId, KeyEpoch};
use crate::threshold::key_share::{self, members_list};
use crate::threshold::messages::{ClusterRequest, ClusterResponse};

/// What this host tells the others about its files, and who fetched it after a decision.
pub(super) struct Disk {
    pub(super) status: RefreshStatus,
    pub(super) decided: bool,
    pub(super) fetched_after_decision: BTreeSet<PeerId>,
}

pub(super) fn disk(d: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

fn joining(j: &Mutex<MemberJoin>) -> MutexGuard<'_, MemberJoin> {
    // Plain data changed in small steps, as the machine.
    j.lock().unwrap_or_else(|e| e.into_inner())
}

/// The refresh's hooks for the driving loop: the machine until the share is staged, then
/// every member's status until the commit rule decides.
struct RefreshHooks<'a> {
    machine: Option<&'a Mutex<Machine>>,
    /// `--add`: the repair, asked before the machine.
    join: Option<&'a Mutex<MemberJoin>>,
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
                // Staged before the machine stops saying "pending", both under the machine's
                // lock: a peer asking meanwhile must never hear neither (it would drop).
                disk(self.disk).status.staged = Some(new);
                m.mark_staged();
                self.new = Some(new);
                info!("{COMMAND}: test signature verified, new share staged");
                test_crash(CrashPoint::RefreshAfterStage);
            }
            Err(e) => {
                // A staged config without its share would only be dropped at the next run.
                let cleaned = p.files.abort().err().map_or(String::new(), |e| {
                    format!("; removing what was staged failed too: {e}")
                });
                m.fail(Abort::local(format!(
                    "cannot stage the new share: {e}{cleaned} (nothing switched; every \
                     cosigner stops)"
                )))
            }
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
            (None, Some(machine)) => self
                .join
                .and_then(|j| joining(j).next_ask(peer))
                .or_else(|| lock(machine).next_ask(peer)),
            (None, None) => None,
        }
    }

    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String> {
        if let (Ask::Delta, Some(join)) = (ask, self.join) {
            let machine = self.machine?;
            return take_delta(&mut joining(join), &mut lock(machine), peer, response);
        }
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

    /// A member that answered our status question after it decided counts us as told and
    /// may stop answering; dropping its answer (we decided on another's first) would leave
    /// us waiting out the linger for a question it never asks again.
    fn takes_late_answers(&self) -> bool {
        self.new.is_some()
    }
}

/// A helper's repair delta for us; a failure of the repair stops the machine too.
fn take_delta(
    join: &mut MemberJoin,
    machine: &mut Machine,
    peer: PeerId,
    response: ClusterResponse,
) -> Option<String> {
    let taken = match response {
        ClusterResponse::Ceremony(response) => join.take(peer, response),
        ClusterResponse::Refused(refusal) => Err(Abort::Peer {
            peer,
            reason: refusal.reason,
        }),
        _ => Err(Abort::culprit(
            peer,
            "asked for its repair delta, it sent a signing answer",
        )),
    };
    match taken {
        Ok(Progress::NotYet(reason)) => Some(reason),
        Ok(Progress::Got) => {
            test_crash(CrashPoint::JoinRepair);
            None
        }
        Err(abort) => {
            machine.fail(abort);
            None
        }
    }
}

/// Runs the refresh (or settles an interrupted one) within `timeout`.
pub async fn run(prepared: Prepared, timeout: Duration) -> Result<Report, CeremonyError> {
    let deadline = Instant::now() + timeout;
    let p = &prepared;
    let old = p.current.epoch().id;
    let staged_epoch = p.staged.as_ref().map(|s| s.epoch().id);
    let aborted = |abort| CeremonyError::Aborted {
        command: COMMAND,
        abort,
    };
    let join = match (&p.staged, &p.join) {
        (None, Some(j)) => Some(Arc::new(Mutex::new(
            MemberJoin::new(
                p.me,
                j.joiner,
                p.current.key_package(),
                p.current.public_key_package(),
                j.info.clone(),
                j.prelude,
                p.session,
                &mut OsRng,
            )
            .map_err(aborted)?,
        ))),
        _ => None,
    };
    // A join refreshes over the package extended by the new cosigner's verifying share.
    let old_package = match &p.join {
        Some(j) => steps::extended(p.current.public_key_package(), j.joiner).map_err(aborted)?,
        None => p.current.public_key_package().clone(),
    };
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
                    public_key_package: old_package,
                    epoch: p.current.epoch().number,
                    seed_escrow: p.current.seed_escrow().cloned(),
                })),
            };
            let m = Machine::new(setup, &mut OsRng).map_err(aborted)?;
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
    let served_join = join.clone();
    cluster.serve(move |peer, request: ClusterRequest| {
        let (machine, disk_state) = (served_machine.clone(), served_disk.clone());
        let join = served_join.clone();
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
            let failed = machine.as_ref().is_some_and(|m| lock(m).failed().is_some());
            if let Some(answer) = join
                .as_ref()
                .filter(|_| !failed)
                .and_then(|j| joining(j).answer(peer, &r))
            {
                return ClusterResponse::Ceremony(answer);
            }
            ClusterResponse::Ceremony(match &machine {
                Some(m) => {
                    let mut m = lock(m);
                    let answer = m.answer(peer, &r);
                    if m.failed().is_some() {
                        // It learns that we stopped: it stops (or drops) too.
                        disk(&disk_state).fetched_after_decision.insert(peer);
                    }
                    answer
                }
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
        join: join.as_deref(),
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
    let driven = drive(&cluster, p.session, peers.clone(), deadline, &mut hooks).await;
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
        lock_fail(&machine, timeout);
        // A member that staged decides from our status ("old, nothing staged": it drops),
        // so we answer until every member has heard that we stopped, bounded.
        disk(&disk_state).decided = true;
        linger_until_told(
            |peer| disk(&disk_state).fetched_after_decision.contains(&peer),
            &heard,
            None,
            LINGER_AFTER_FAILURE,
        )
        .await;
        cluster.shutdown().await;
        return Err(match waiting {
            Some(waiting) => CeremonyError::TimedOut {
                command: COMMAND,
                after: timeout,
                waiting,
            },
            None => CeremonyError::Aborted {
                command: COMMAND,
                abort: failed.unwrap_or_else(|| Abort::local("the refresh stopped")),
            },
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
            linger_until_told(
                |peer| disk(&disk_state).fetched_after_decision.contains(&peer),
                &heard,
                Some(new),
                LINGER_AFTER_SUCCESS,
            )
            .await;
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
    test_crash(CrashPoint::RefreshBeforeSwitch);
    p.files.switch().map_err(|e| {
        CeremonyError::Setup(format!(
            "every cosigner staged the new share, but this host cannot switch to it: {e}. The \
             staged file stays: once the disk is fixed, `cosigner start` (or `cosigner \
             refresh`) settles it and switches"
        ))
    })?;
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
    let mut told = Told {
        disk: &disk_state,
        heard,
        new,
    };
    drive(
        &cluster,
        p.session,
        peers,
        Instant::now() + LINGER_AFTER_SUCCESS,
        &mut told,
    )
    .await;
    cluster.shutdown().await;
    let share = key_share::load(&p.files.key_share)
        .map_err(|e| CeremonyError::Setup(format!("the new share does not load: {e}")))?;
    let forms = PublicKeyForms::new(&share.group_public_key(), None)
        .map_err(|e| CeremonyError::Setup(e.to_string()))?;
    Ok(Report {
        me: p.me,
        threshold: p.threshold,
        members: p.members.clone(),
        removed: p.removed.clone(),
        added: p.join.as_ref().map(|j| j.joiner),
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
