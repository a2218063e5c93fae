//! The network edge of `cosigner join`, on the host being added: the prelude (every
//! member's public data, which must agree), the repair ([`Joiner`]: the helpers' sigmas,
//! the repaired share checked), the refresh machine of all members from the repaired share,
//! then every chain's watermark written durably, the share staged, and the commit rule
//! ([`decide_joining`]) decides with the members whether all switch or all drop. A
//! directory with a staged share from an interrupted join only settles.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::OsRng;
use tokio::time::Instant;
use tracing::{info, warn};

pub use super::prepare::{prepare, Prepared};
use super::prepare::{remove_marker, COMMAND};
use super::repair::Joiner;
pub use super::report::Report;
use super::shared::{guard, take_into_joiner, Prelude, Shared};
use super::states;
use crate::ceremony::abort::Abort;
use crate::ceremony::machine::{KeySource, Machine, Setup};
use crate::ceremony::messages::{Ask, CeremonyResponse, RefreshStatus, Watermark};
use crate::ceremony::output;
use crate::ceremony::refresh::linger::linger_until_told;
use crate::ceremony::refresh::settle::{decide_joining, Decision};
use crate::ceremony::run::{
    drive, refuse_while_in_ceremony, take_into_machine, waiting_lines, CeremonyError, Hooks,
    LINGER_AFTER_SUCCESS,
};
use crate::cluster::{Cluster, PeerId};
use crate::key_forms::PublicKeyForms;
use crate::signer::fault::{test_crash, CrashPoint};
use crate::threshold::epoch::{EpochId, KeyEpoch};
use crate::threshold::key_share::{self, members_list};
use crate::threshold::messages::{ClusterRequest, ClusterResponse};

/// After a join stopped without switching: how long we keep telling members that staged.
const LINGER_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The repair, the refresh and the commit rule, under the join's session.
struct JoinHooks<'a> {
    shared: &'a Mutex<Shared>,
    p: &'a Prepared,
    session: crate::ceremony::file::SessionId,
    new: Option<EpochId>,
    watermarks: Vec<Watermark>,
    heard: BTreeMap<PeerId, Option<RefreshStatus>>,
    decision: Option<Decision>,
}

impl JoinHooks<'_> {
    /// Moves on locally: the machine once the repaired share is checked, then the
    /// watermarks and the staged share once the test signature verified.
    fn advance(&mut self, s: &mut Shared) {
        let p = self.p;
        if s.machine.is_none() && s.failed.is_none() {
            if let Some(old) = s.joiner.old_share() {
                let mut members = p.members.clone();
                members.push(p.me);
                members.sort_unstable();
                let setup = Setup {
                    me: p.me,
                    threshold: p.threshold,
                    members,
                    session: self.session,
                    source: KeySource::Refresh(Box::new(old)),
                };
                match Machine::new(setup, &mut OsRng) {
                    Ok(m) => {
                        info!("{COMMAND}: repaired share checked; refreshing with every member");
                        s.machine = Some(m);
                    }
                    Err(abort) => s.fail(abort),
                }
            }
        }
        let Some(m) = &mut s.machine else {
            return;
        };
        let Some(keys) = m.needs_staging() else {
            return;
        };
        let shares = u16::try_from(p.members.len() + 1).unwrap_or(u16::MAX);
        let file = output::share_file(p.me, p.threshold, shares, keys);
        let new = KeyEpoch::of(file.epoch, &file.public_key_package).id;
        // The watermarks first: the share never exists on disk without them.
        if let Err(e) = states::write(&p.state_dir, &p.chains, &self.watermarks) {
            m.fail(Abort::local(format!(
                "{e} (nothing staged; every cosigner stops)"
            )));
            return;
        }
        match p.files.stage(&file, None) {
            Ok(()) => {
                s.status.staged = Some(new);
                m.mark_staged();
                self.new = Some(new);
                info!("{COMMAND}: test signature verified, watermarks written, share staged");
                test_crash(CrashPoint::JoinAfterStage);
            }
            Err(e) => {
                let cleaned = p.files.abort().err().map_or(String::new(), |e| {
                    format!("; removing what was staged failed too: {e}")
                });
                m.fail(Abort::local(format!(
                    "cannot stage the new share: {e}{cleaned} (nothing switched; every \
                     cosigner stops)"
                )));
            }
        }
    }
}

impl Hooks for JoinHooks<'_> {
    fn done(&mut self) -> bool {
        if self.new.is_none() {
            let mut g = guard(self.shared);
            self.advance(&mut g);
            if g.failure().is_some() {
                return true;
            }
        }
        let Some(new) = self.new else {
            return false;
        };
        match decide_joining(new, &self.heard) {
            Decision::Wait(_) => false,
            decided => {
                self.decision = Some(decided);
                true
            }
        }
    }

    fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        if self.new.is_some() {
            return Some(Ask::Status);
        }
        let s = guard(self.shared);
        match &s.machine {
            Some(m) => m.next_ask(peer),
            None => s.joiner.next_ask(peer),
        }
    }

    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String> {
        match ask {
            Ask::Status => {
                let reason = match response {
                    ClusterResponse::Ceremony(CeremonyResponse::Status(status)) => {
                        self.heard.insert(peer, Some(status));
                        "has not decided yet".to_string()
                    }
                    ClusterResponse::Ceremony(CeremonyResponse::Refused(r)) => r,
                    ClusterResponse::Refused(r) => r.reason,
                    _ => "answered something else than its status".to_string(),
                };
                Some(reason)
            }
            Ask::JoinInfo | Ask::Sigma => {
                take_into_joiner(&mut guard(self.shared), peer, ask, response)
            }
            _ => match &mut guard(self.shared).machine {
                Some(m) => take_into_machine(m, peer, ask, response),
                None => None,
            },
        }
    }

    fn fail(&mut self, abort: Abort) {
        guard(self.shared).fail(abort);
    }

    fn takes_late_answers(&self) -> bool {
        self.new.is_some()
    }
}

/// Runs the join (or settles an interrupted one) within `timeout`.
pub async fn run(prepared: Prepared, timeout: Duration) -> Result<Report, CeremonyError> {
    let deadline = Instant::now() + timeout;
    let p = &prepared;
    let me = p.me;
    let joiner = Joiner::new(me, p.threshold, p.members.clone(), p.pins.clone());
    let prelude = joiner.prelude();
    let staged = p.staged.as_ref().map(|s| s.epoch().id);
    let shared = Arc::new(Mutex::new(Shared {
        joiner,
        machine: None,
        failed: None,
        status: RefreshStatus {
            current: EpochId::NONE,
            staged,
            pending: None,
        },
        decided: false,
        fetched_after_decision: BTreeSet::new(),
    }));
    let cluster = Arc::new(Cluster::bind(p.cluster.clone()).await?);
    let served = shared.clone();
    cluster.serve(move |peer, request: ClusterRequest| {
        let shared = served.clone();
        async move {
            match request {
                ClusterRequest::Ceremony(r) => {
                    ClusterResponse::Ceremony(guard(&shared).answer(me, peer, &r))
                }
                _ => ClusterResponse::Refused(refuse_while_in_ceremony(COMMAND)),
            }
        }
    });
    info!(
        cosigner = me,
        members = members_list(&p.members),
        "{COMMAND}: {} with every member",
        if staged.is_some() {
            "settling an interrupted join"
        } else {
            "joining"
        }
    );
    let peers = p.members.clone();
    let mut tracks = BTreeMap::new();
    let mut timed_out = false;
    let mut session = prelude;
    let mut watermarks = Vec::new();
    if staged.is_none() {
        let mut hooks = Prelude { shared: &shared };
        let driven = drive(&cluster, prelude, peers.clone(), deadline, &mut hooks).await;
        (timed_out, tracks) = (driven.timed_out, driven.tracks);
        if let Some(agreed) = guard(&shared).joiner.agreed() {
            session = agreed.session;
            watermarks = agreed.watermarks.clone();
            info!(
                "{COMMAND}: every member agrees on {} (cosigners {}); repairing",
                KeyEpoch::of(agreed.epoch, &agreed.old),
                members_list(&p.members)
            );
        }
    }
    let mut hooks = JoinHooks {
        shared: &shared,
        p,
        session,
        new: staged,
        watermarks,
        heard: peers.iter().map(|m| (*m, None)).collect(),
        decision: None,
    };
    if !timed_out && guard(&shared).failure().is_none() {
        let driven = drive(&cluster, session, peers.clone(), deadline, &mut hooks).await;
        (timed_out, tracks) = (driven.timed_out, driven.tracks);
    }
    let (new, decision, heard) = (hooks.new, hooks.decision.take(), hooks.heard.clone());

    let Some(new) = new else {
        let waiting = timed_out.then(|| {
            let s = guard(&shared);
            let ask = |peer| match &s.machine {
                Some(m) => m.next_ask(peer),
                None => s.joiner.next_ask(peer),
            };
            let otherwise = match &s.machine {
                Some(m) => m.waiting_for(),
                None => s.joiner.waiting_for(),
            };
            waiting_lines(&ask, &otherwise, &tracks, &cluster, &p.addresses, COMMAND)
        });
        let failed = {
            let mut s = guard(&shared);
            s.fail(Abort::local(format!(
                "timed out after {}s",
                timeout.as_secs()
            )));
            s.decided = true;
            s.failure()
        };
        linger_until_told(
            |peer| guard(&shared).fetched_after_decision.contains(&peer),
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
                abort: failed.unwrap_or_else(|| Abort::local("the join stopped")),
            },
        });
    };
    let because = match decision {
        Some(Decision::Commit { because }) => because,
        Some(Decision::Abort { because }) => {
            warn!("{COMMAND}: dropping the staged share: {because}");
            let dropped = p.files.abort();
            {
                let mut s = guard(&shared);
                if dropped.is_ok() {
                    s.status.staged = None;
                }
                s.decided = true;
            }
            linger_until_told(
                |peer| guard(&shared).fetched_after_decision.contains(&peer),
                &heard,
                Some(new),
                LINGER_AFTER_FAILURE,
            )
            .await;
            cluster.shutdown().await;
            let removed = match dropped {
                Ok(()) => String::new(),
                Err(e) => format!(
                    " The staged share could not be removed ({e}): remove {} by hand.",
                    p.files.staged_share().display()
                ),
            };
            return Err(CeremonyError::Setup(format!(
                "the join is dropped: {because}. The members keep their old shares and \
                 membership.{removed} Run `cosigner refresh --config FILE --add {me}` on every \
                 member host and `{COMMAND}` here again"
            )));
        }
        Some(Decision::Wait(_)) | None => {
            let waiting = match decide_joining(new, &heard) {
                Decision::Wait(lines) => lines,
                _ => Vec::new(),
            };
            cluster.shutdown().await;
            return Err(CeremonyError::Setup(format!(
                "`{COMMAND}` staged this cosigner's share ({}) but could not settle with the \
                 members within {}s, still waiting for:\n{}\nRun `{COMMAND}` here again (and \
                 `cosigner refresh --config FILE` on the hosts named) once they are \
                 reachable: all switch together or all drop together",
                p.files.staged_share().display(),
                timeout.as_secs(),
                waiting
                    .iter()
                    .map(|w| format!("  - {w}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )));
        }
    };
    let switched = p.files.switch().and_then(|()| remove_marker(&p.marker));
    switched.map_err(|e| {
        CeremonyError::Setup(format!(
            "every cosigner staged the new shares, but this host cannot switch to its share: \
             {e}. The staged file stays: once the disk is fixed, run `{COMMAND}` again here"
        ))
    })?;
    {
        let mut s = guard(&shared);
        s.status = RefreshStatus {
            current: new,
            staged: None,
            pending: None,
        };
        s.decided = true;
    }
    info!("{COMMAND}: switched to the new share ({because})");
    linger_until_told(
        |peer| guard(&shared).fetched_after_decision.contains(&peer),
        &heard,
        Some(new),
        LINGER_AFTER_SUCCESS,
    )
    .await;
    cluster.shutdown().await;
    let share = key_share::load(&p.files.key_share)
        .map_err(|e| CeremonyError::Setup(format!("the new share does not load: {e}")))?;
    let forms = PublicKeyForms::new(&share.group_public_key(), None)
        .map_err(|e| CeremonyError::Setup(e.to_string()))?;
    let members = share
        .file()
        .members()
        .map_err(|e| CeremonyError::Setup(e.to_string()))?;
    Ok(Report {
        me,
        threshold: p.threshold,
        members,
        epoch: share.epoch(),
        forms,
        key_share: p.files.key_share.clone(),
        config: p.files.config.clone(),
        because,
    })
}
