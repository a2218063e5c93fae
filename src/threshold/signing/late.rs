//! When members are late: a hedge replacing them, a session given up on because every
//! peer it waits on is silent, and the time-driven checks that decide both.

use std::collections::BTreeSet;
use std::time::Instant;

use super::HEDGE_SLOWER_AT_MOST;
use super::{Action, Outcome, PeerView, Session, SessionId, SessionState, Signing};
use super::{MAX_SESSIONS, MAX_TOTAL_SESSIONS, MIN_HEDGE_DELAY};
use crate::threshold::messages::PeerId;

impl Signing {
    /// Whether an open session's pending members are all still within their expected time.
    pub(super) fn on_time_yet(&self, s: &Session, now: Instant) -> bool {
        s.state == SessionState::Open
            && s.pending
                .iter()
                .all(|(p, late)| *p == self.params.self_id || now < *late)
    }

    /// Members pending past their expected time in any open session.
    pub(super) fn late_members(&self, now: Instant) -> BTreeSet<PeerId> {
        self.sessions
            .values()
            .filter(|s| s.state == SessionState::Open)
            .flat_map(|s| s.pending.iter())
            .filter(|(p, late)| **p != self.params.self_id && now >= **late)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The coordinator's health records now say `suspects` are silent (their heartbeats
    /// stopped): a session waiting only on suspects will not complete, so it is failed at once
    /// instead of at its attempt timeout, and the signing goes on without them, or gives up
    /// if nobody is left (so that a coordinator cut off from its peers gives way quickly).
    pub(crate) fn on_suspects(&mut self, now: Instant, suspects: &BTreeSet<PeerId>) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.done {
            return actions;
        }
        for p in suspects {
            if let Some(view) = self.peers.get_mut(p) {
                view.suspect = true;
            }
        }
        let hopeless: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.state == SessionState::Open)
            .filter(|(_, s)| {
                let mut waiting = s.pending.keys().filter(|p| **p != self.params.self_id);
                let mut any = false;
                let all_suspect = waiting.all(|p| {
                    any = true;
                    suspects.contains(p)
                });
                any && all_suspect
            })
            .map(|(id, _)| *id)
            .collect();
        if hopeless.is_empty() {
            return actions;
        }
        for id in hopeless {
            let silent: Vec<PeerId> = self.sessions[&id]
                .pending
                .keys()
                .copied()
                .filter(|p| *p != self.params.self_id)
                .collect();
            for peer in silent {
                if self.excluded.insert(peer) {
                    self.problems
                        .push(format!("cosigner {peer}: silent (no heartbeat answered)"));
                }
            }
            self.fail_session(id, &mut actions);
        }
        self.replace(now, actions)
    }

    /// Time has come: hedge late sessions, give up on expired ones or on the signing.
    pub(crate) fn on_time(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.done {
            return actions;
        }
        if now >= self.params.deadline {
            let outcome = Outcome::GaveUp(format!("{} within the deadline", self.no_quorum()));
            return self.finish(now, outcome, actions);
        }
        // Sessions whose time is up: their silent members are taken for dead.
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.state == SessionState::Open && now >= s.started + self.params.attempt_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let silent: Vec<PeerId> = self.sessions[&id].pending.keys().copied().collect();
            for peer in silent {
                if peer == self.params.self_id {
                    continue;
                }
                if self.excluded.insert(peer) {
                    self.problems.push(format!(
                        "cosigner {peer}: no share within {:?}",
                        self.params.attempt_timeout
                    ));
                    actions.push(Action::Suspect { peer });
                }
            }
            self.fail_session(id, &mut actions);
        }
        // Late members of open sessions: hedge each session once, replacing them with the
        // fastest peers that are late nowhere.
        let mut late_anywhere = BTreeSet::new();
        let mut late_sessions = Vec::new();
        for (id, s) in &self.sessions {
            if s.state != SessionState::Open {
                continue;
            }
            let late: BTreeSet<PeerId> = s
                .pending
                .iter()
                .filter(|(p, at)| **p != self.params.self_id && now >= **at)
                .map(|(p, _)| *p)
                .collect();
            late_anywhere.extend(late.iter().copied());
            if !s.hedged && !late.is_empty() {
                late_sessions.push((*id, late));
            }
        }
        for (id, late) in late_sessions {
            if self.sessions[&id].recheck_at.is_some_and(|at| now < at) {
                continue;
            }
            if self.live_sessions() >= MAX_SESSIONS || self.sessions.len() >= MAX_TOTAL_SESSIONS {
                self.mark_hedged(id, None);
                continue;
            }
            let members = &self.sessions[&id].members;
            let keep: Vec<PeerId> = members
                .iter()
                .copied()
                .filter(|p| *p != self.params.self_id && !late.contains(p))
                .collect();
            let mut avoid: BTreeSet<PeerId> = members.iter().copied().collect();
            avoid.extend(late_anywhere.iter().copied());
            let candidates: Vec<PeerView> = self
                .usable(&avoid)
                .into_iter()
                .filter(|p| !p.suspect)
                .collect();
            if candidates.len() < late.len() {
                // Nobody to ask instead: the session waits or expires.
                self.mark_hedged(id, None);
                continue;
            }
            let waited = now.saturating_duration_since(self.sessions[&id].started);
            let slowest_late = late
                .iter()
                .filter_map(|p| self.peers.get(p).map(|v| v.typical))
                .max()
                .unwrap_or(MIN_HEDGE_DELAY);
            let acceptable = (slowest_late * HEDGE_SLOWER_AT_MOST).max(waited);
            // Candidates are fastest first: the late.len()-th decides.
            let needed = candidates[late.len() - 1].typical;
            if needed > acceptable {
                let recheck = self.sessions[&id].started + needed;
                self.mark_hedged(id, Some(recheck));
                continue;
            }
            self.mark_hedged(id, None);
            let mut peers = keep;
            peers.extend(candidates.iter().take(late.len()).map(|p| p.id));
            self.open(now, peers, &mut actions);
        }
        if !actions.iter().any(|a| matches!(a, Action::Start { .. })) && self.live_sessions() == 0 {
            return self.replace(now, actions);
        }
        self.wake(&mut actions);
        actions
    }

    /// Records that a session's lateness was dealt with, or is to be looked at again at
    /// `recheck` (a replacement becomes worth asking then).
    fn mark_hedged(&mut self, id: SessionId, recheck: Option<Instant>) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.recheck_at = recheck;
            s.hedged = recheck.is_none();
        }
    }
}
