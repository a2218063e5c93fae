//! What the new cosigner's server and driver share during a join: the repair, the refresh
//! machine once it exists, and the status the members settle by; its answers to the
//! members, and the prelude's hooks (every member's public data).

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use super::repair::Joiner;
use crate::ceremony::abort::Abort;
use crate::ceremony::machine::{Machine, Progress};
use crate::ceremony::messages::{Ask, CeremonyRequest, CeremonyResponse, RefreshStatus};
use crate::ceremony::run::Hooks;
use crate::cluster::PeerId;
use crate::threshold::epoch::KeyEpoch;
use crate::threshold::messages::ClusterResponse;

/// What this host holds, answers and has heard, shared by the server and the driver.
pub(super) struct Shared {
    pub(super) joiner: Joiner,
    /// The refresh, once the repaired share is checked.
    pub(super) machine: Option<Machine>,
    /// Why the join stopped before the machine existed.
    pub(super) failed: Option<Abort>,
    pub(super) status: RefreshStatus,
    pub(super) decided: bool,
    pub(super) fetched_after_decision: BTreeSet<PeerId>,
}

pub(super) fn guard(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // Plain data changed in small steps; a panic elsewhere leaves it usable.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn fail(&mut self, abort: Abort) {
        match &mut self.machine {
            Some(m) => m.fail(abort),
            None => {
                self.failed.get_or_insert(abort);
            }
        }
    }

    pub(super) fn failure(&self) -> Option<Abort> {
        self.machine
            .as_ref()
            .and_then(|m| m.failed().cloned())
            .or_else(|| self.failed.clone())
    }

    pub(super) fn answer(
        &mut self,
        me: PeerId,
        peer: PeerId,
        r: &CeremonyRequest,
    ) -> CeremonyResponse {
        if r.ask == Ask::Status {
            if self.decided {
                self.fetched_after_decision.insert(peer);
            }
            let pending = self
                .machine
                .as_ref()
                .and_then(Machine::pending)
                .map(|k| KeyEpoch::of(k.epoch, &k.public_key_package).id)
                .filter(|_| self.status.staged.is_none());
            return CeremonyResponse::Status(RefreshStatus {
                pending,
                ..self.status
            });
        }
        if let Some(m) = &mut self.machine {
            let answer = m.answer(peer, r);
            if m.failed().is_some() {
                self.fetched_after_decision.insert(peer);
            }
            return answer;
        }
        if let Some(abort) = &self.failed {
            self.fetched_after_decision.insert(peer);
            return CeremonyResponse::Aborted(abort.to_string());
        }
        match r.ask {
            Ask::JoinInfo | Ask::Delta | Ask::Sigma => CeremonyResponse::Refused(format!(
                "cosigner {me} is the cosigner being added: it has no share to tell or repair"
            )),
            _ => CeremonyResponse::NotYet(format!("cosigner {me} is still repairing its share")),
        }
    }
}

/// The answer of a peer to our join request, into the repair.
pub(super) fn take_into_joiner(
    s: &mut Shared,
    peer: PeerId,
    ask: Ask,
    response: ClusterResponse,
) -> Option<String> {
    let taken = match response {
        ClusterResponse::Ceremony(response) => s.joiner.take(peer, ask, response),
        ClusterResponse::Refused(refusal) => Err(Abort::Peer {
            peer,
            reason: refusal.reason,
        }),
        _ => Err(Abort::culprit(
            peer,
            format!("asked for {}, it sent a signing answer", ask.describe()),
        )),
    };
    match taken {
        Ok(Progress::NotYet(reason)) => Some(reason),
        Ok(Progress::Got) => None,
        Err(abort) => {
            s.fail(abort);
            None
        }
    }
}

/// The prelude: every member's public data, under the prelude session.
pub(super) struct Prelude<'a> {
    pub(super) shared: &'a Mutex<Shared>,
}

impl Hooks for Prelude<'_> {
    fn done(&mut self) -> bool {
        let s = guard(self.shared);
        s.failed.is_some() || s.joiner.agreed().is_some()
    }

    fn next_ask(&self, peer: PeerId) -> Option<Ask> {
        guard(self.shared)
            .joiner
            .next_ask(peer)
            .filter(|a| *a == Ask::JoinInfo)
    }

    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String> {
        take_into_joiner(&mut guard(self.shared), peer, ask, response)
    }

    fn fail(&mut self, abort: Abort) {
        guard(self.shared).fail(abort);
    }
}
