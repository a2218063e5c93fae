//! One signing as a coordinator runs it, as a pure state machine: which sets of participants
//! it asks, when it asks more, when it gives up. Events go in (a share, a refusal, a failed
//! request, an aggregation's result, the time); actions come out (start a session with these
//! members, aggregate this one, wake me then, done). Time is passed in and never read, so
//! the simulated cluster in this module's tests can drive it through dead, slow and refusing
//! peers deterministically.
//!
//! A *session* is one FROST signing package: the coordinator and `t - 1` peers, each with a
//! commitment of its own. Every member must answer for the session to complete, and shares
//! of two sessions cannot be combined. So a signing that cannot wait on a late member starts
//! another session (a *hedge*) in which the late member is replaced, with fresh commitments
//! for everyone; the first session to complete wins. Which sessions start:
//! - normally one, with the fastest peers by measured share latency;
//! - on a takeover (the first requests after this cosigner starts serving a node, when the
//!   peer that served before may have just died unnoticed) and while a peer is suspect,
//!   sessions covering every reachable peer at once, each peer in as few as possible;
//! - a hedge when a member has not answered by its expected time (mean plus four
//!   deviations), replacing that member, at most [`MAX_SESSIONS`] in all.
//!
//! Double-sign protection is the participants' (each checks its own watermark); a refusal on
//! those grounds ends the signing at once. The engine only decides whom to ask.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::messages::PeerId;

/// Sessions of one signing that may run at once.
pub(crate) const MAX_SESSIONS: usize = 4;
/// Sessions one signing may start in all; the deadline usually ends it long before.
pub(crate) const MAX_TOTAL_SESSIONS: usize = 8;

/// No member is late before this: a share's work (its fsync above all) varies by
/// milliseconds on a loaded host, and a hedge costs every member of the new session a share.
pub(crate) const MIN_HEDGE_DELAY: Duration = Duration::from_millis(10);
/// A hedge takes a replacement at most this many times slower (typically) than the member
/// it replaces, until the session has waited as long as the replacement typically takes:
/// asking a peer known to answer in 200 ms because a 1 ms peer is 10 ms late buys nothing.
const HEDGE_SLOWER_AT_MOST: u32 = 4;

/// A session's number within its signing.
pub(crate) type SessionId = u32;

/// A peer as the signing sees it when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerView {
    pub id: PeerId,
    /// Typical time from request to share, for ordering.
    pub typical: Duration,
    /// By when a share requested now is late.
    pub expected: Duration,
    /// Commitments of this peer the coordinator holds.
    pub available: usize,
    /// Silent for several round trips: taken for dead until heard from.
    pub suspect: bool,
}

/// What a participant's answer means for the signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Its share(s) arrived and fit the session.
    Share,
    /// Double-sign protection refused: final for the whole signing.
    Refused(String),
    /// It cannot use our commitments (restarted, catching up): leave it out of this session,
    /// and ask it again only with fresh commitments.
    Stale(String),
    /// It cannot sign now (its disk failed, it has a twin, the request was bad): leave it
    /// out of this signing.
    Broken(String),
    /// No answer (the request failed in transport or timed out).
    Silent(String),
}

/// What the engine wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Build a request for these members (this cosigner first), taking one commitment of
    /// each (two with an extension), and send it to every member.
    Start {
        session: SessionId,
        members: Vec<PeerId>,
    },
    /// Every share of this session is in: aggregate it.
    Aggregate { session: SessionId },
    /// Stop waiting for this session's answers.
    Abandon { session: SessionId },
    /// Fetch commitments of these peers: a session could use them.
    Refill { peers: Vec<PeerId> },
    /// This peer did not answer in time: avoid it in the next signings too.
    Suspect { peer: PeerId },
    /// Call [`Signing::on_time`] at this instant (the earliest pending deadline).
    WakeAt(Instant),
    /// The signing is over.
    Done(Outcome),
}

/// How a signing ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// This session's shares aggregated into the signature.
    Signed {
        session: SessionId,
        members: Vec<PeerId>,
    },
    /// Double-sign protection refused (the reason names the cosigner).
    Refused(String),
    /// No quorum answered in time, or this cosigner itself cannot sign.
    GaveUp(String),
}

/// How a signing should start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// One session with the fastest peers.
    Normal,
    /// Sessions covering every reachable peer at once.
    FanOut,
}

/// The fixed parameters of one signing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub self_id: PeerId,
    pub threshold: u16,
    /// One commitment per member and session, or two with a vote extension.
    pub commitments_per_member: usize,
    /// The signing as a whole gives up at this instant.
    pub deadline: Instant,
    /// A session nobody hedged is given up on this long after it started.
    pub attempt_timeout: Duration,
}

#[derive(Clone, Debug)]
struct Session {
    members: Vec<PeerId>,
    started: Instant,
    /// Members still to answer, and by when each is late.
    pending: BTreeMap<PeerId, Instant>,
    /// Whether this session's lateness was already answered with a hedge.
    hedged: bool,
    /// Late, but no replacement is fast enough yet: look again then.
    recheck_at: Option<Instant>,
    state: SessionState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    Open,
    Aggregating,
    Failed,
}

/// One signing's state.
#[derive(Debug)]
pub(crate) struct Signing {
    params: Params,
    peers: BTreeMap<PeerId, PeerView>,
    sessions: BTreeMap<SessionId, Session>,
    next: SessionId,
    /// Peers left out of the rest of this signing.
    excluded: BTreeSet<PeerId>,
    /// Peers that need fresh commitments before they can be asked again.
    stale: BTreeSet<PeerId>,
    problems: Vec<String>,
    done: bool,
    /// Remote shares asked for beyond the `t - 1` one session needs.
    extra_requests: usize,
}

impl Signing {
    /// A signing over `peers` (every other cosigner that is connected; this cosigner is not
    /// among them).
    pub(crate) fn new(params: Params, peers: impl IntoIterator<Item = PeerView>) -> Signing {
        Signing {
            params,
            peers: peers
                .into_iter()
                .filter(|p| p.id != params.self_id)
                .map(|p| (p.id, p))
                .collect(),
            sessions: BTreeMap::new(),
            next: 0,
            excluded: BTreeSet::new(),
            stale: BTreeSet::new(),
            problems: Vec::new(),
            done: false,
            extra_requests: 0,
        }
    }

    fn needed(&self) -> usize {
        usize::from(self.params.threshold.saturating_sub(1))
    }

    /// Remote requests beyond the first session's `t - 1`, so far.
    pub(crate) fn extra_requests(&self) -> usize {
        self.extra_requests
    }

    /// Starts the signing at `now`.
    pub(crate) fn start(&mut self, now: Instant, how: Start) -> Vec<Action> {
        let mut actions = Vec::new();
        let groups = match how {
            Start::Normal => self.fastest(&BTreeSet::new()).into_iter().collect(),
            Start::FanOut => self.cover(),
        };
        if groups.is_empty() {
            return self.stuck(now, actions);
        }
        for group in groups {
            self.open(now, group, &mut actions);
        }
        self.wake(&mut actions);
        actions
    }

    /// The peers one can ask, fastest first: not excluded, not stale, with commitments.
    fn usable(&self, avoid: &BTreeSet<PeerId>) -> Vec<PeerView> {
        let mut usable: Vec<PeerView> = self
            .peers
            .values()
            .filter(|p| {
                !self.excluded.contains(&p.id)
                    && !self.stale.contains(&p.id)
                    && !avoid.contains(&p.id)
                    && p.available >= self.params.commitments_per_member
            })
            .copied()
            .collect();
        // Suspects last: asked only when nobody else can be.
        usable.sort_by_key(|p| (p.suspect, p.typical, p.id));
        usable
    }

    /// The `t - 1` fastest usable peers not in `avoid`, if there are that many.
    fn fastest(&self, avoid: &BTreeSet<PeerId>) -> Option<Vec<PeerId>> {
        let usable = self.usable(avoid);
        (usable.len() >= self.needed())
            .then(|| usable.iter().take(self.needed()).map(|p| p.id).collect())
    }

    /// Groups of `t - 1` covering every usable non-suspect peer, each in as few groups as
    /// possible: disjoint groups by speed, the last filled up with the fastest.
    fn cover(&self) -> Vec<Vec<PeerId>> {
        let needed = self.needed().max(1);
        let usable: Vec<PeerId> = self
            .usable(&BTreeSet::new())
            .into_iter()
            .filter(|p| !p.suspect)
            .map(|p| p.id)
            .collect();
        if usable.len() < needed {
            return self.fastest(&BTreeSet::new()).into_iter().collect();
        }
        let mut groups: Vec<Vec<PeerId>> = usable.chunks(needed).map(<[_]>::to_vec).collect();
        if let Some(last) = groups.last_mut() {
            for p in &usable {
                if last.len() == needed {
                    break;
                }
                if !last.contains(p) {
                    last.push(*p);
                }
            }
        }
        groups.truncate(MAX_SESSIONS);
        groups
    }

    fn open(&mut self, now: Instant, peers: Vec<PeerId>, actions: &mut Vec<Action>) {
        let id = self.next;
        self.next += 1;
        if !self.sessions.is_empty() {
            self.extra_requests += peers.len();
        } else if peers.len() > self.needed() {
            self.extra_requests += peers.len() - self.needed();
        }
        for p in &peers {
            if let Some(view) = self.peers.get_mut(p) {
                view.available = view
                    .available
                    .saturating_sub(self.params.commitments_per_member);
            }
        }
        let pending = peers
            .iter()
            .map(|p| {
                let expected = self
                    .peers
                    .get(p)
                    .map_or(self.params.attempt_timeout, |v| v.expected);
                let late_after = expected
                    .max(MIN_HEDGE_DELAY)
                    .min(self.params.attempt_timeout);
                (*p, now + late_after)
            })
            .chain(std::iter::once((
                self.params.self_id,
                now + self.params.attempt_timeout,
            )))
            .collect();
        let mut members = vec![self.params.self_id];
        members.extend(peers);
        self.sessions.insert(
            id,
            Session {
                members: members.clone(),
                started: now,
                pending,
                hedged: false,
                recheck_at: None,
                state: SessionState::Open,
            },
        );
        actions.push(Action::Start {
            session: id,
            members,
        });
    }

    /// Nothing can be started now: wait for commitments, or give up.
    fn stuck(&mut self, now: Instant, mut actions: Vec<Action>) -> Vec<Action> {
        if self
            .sessions
            .values()
            .any(|s| s.state != SessionState::Failed)
        {
            self.wake(&mut actions);
            return actions;
        }
        // Peers that only lack commitments could still sign.
        let refill: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| !self.excluded.contains(&p.id))
            .filter(|p| {
                self.stale.contains(&p.id) || p.available < self.params.commitments_per_member
            })
            .map(|p| p.id)
            .collect();
        let could = self.peers.len() - self.excluded.len();
        if !refill.is_empty() && could >= self.needed() && now < self.params.deadline {
            actions.push(Action::Refill { peers: refill });
            actions.push(Action::WakeAt(self.params.deadline));
            return actions;
        }
        self.finish(now, Outcome::GaveUp(self.no_quorum()), actions)
    }

    fn no_quorum(&self) -> String {
        let mut text = format!(
            "no quorum: {} cosigners must sign and this one could not gather them",
            self.params.threshold
        );
        if !self.problems.is_empty() {
            text.push_str(": ");
            text.push_str(&self.problems.join("; "));
        }
        text
    }

    fn finish(&mut self, now: Instant, outcome: Outcome, mut actions: Vec<Action>) -> Vec<Action> {
        // A member still pending past its expected time when another set finished the
        // signing is suspect: the next signings should not wait on it before its heartbeats
        // say it is fine. (It may be slow, not dead; then it is heard from at once.)
        if matches!(outcome, Outcome::Signed { .. }) {
            let late = self.late_members(now);
            actions.extend(late.into_iter().map(|peer| Action::Suspect { peer }));
        }
        for (id, s) in &mut self.sessions {
            if s.state == SessionState::Open {
                s.state = SessionState::Failed;
                actions.push(Action::Abandon { session: *id });
            }
        }
        self.done = true;
        actions.push(Action::Done(outcome));
        actions
    }

    /// The answer of `peer` (this cosigner included) in `session`, at `now`.
    pub(crate) fn on_answer(
        &mut self,
        now: Instant,
        session: SessionId,
        peer: PeerId,
        answer: Answer,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.done {
            return actions;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return actions;
        };
        if s.state != SessionState::Open || s.pending.remove(&peer).is_none() {
            return actions;
        }
        match answer {
            Answer::Share => {
                if s.pending.is_empty() {
                    s.state = SessionState::Aggregating;
                    actions.push(Action::Aggregate { session });
                    return actions;
                }
                self.wake(&mut actions);
                actions
            }
            Answer::Refused(reason) => self.finish(now, Outcome::Refused(reason), actions),
            Answer::Stale(reason) => {
                self.problems.push(format!("cosigner {peer}: {reason}"));
                if peer == self.params.self_id {
                    // Our own commitments were stale: the session is lost, not the signing.
                    self.fail_session(session, &mut actions);
                } else {
                    self.stale.insert(peer);
                    self.fail_session(session, &mut actions);
                    actions.push(Action::Refill { peers: vec![peer] });
                }
                self.replace(now, actions)
            }
            Answer::Broken(reason) | Answer::Silent(reason) if peer == self.params.self_id => self
                .finish(
                    now,
                    Outcome::GaveUp(format!("this cosigner cannot sign: {reason}")),
                    actions,
                ),
            Answer::Broken(reason) => {
                self.problems.push(format!("cosigner {peer}: {reason}"));
                self.excluded.insert(peer);
                self.fail_session(session, &mut actions);
                self.replace(now, actions)
            }
            Answer::Silent(reason) => {
                self.problems.push(format!("cosigner {peer}: {reason}"));
                self.excluded.insert(peer);
                actions.push(Action::Suspect { peer });
                self.fail_session(session, &mut actions);
                self.replace(now, actions)
            }
        }
    }

    fn fail_session(&mut self, session: SessionId, actions: &mut Vec<Action>) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if s.state == SessionState::Open {
                s.state = SessionState::Failed;
                actions.push(Action::Abandon { session });
            }
        }
    }

    /// After a session failed: start another unless one still runs that can complete.
    fn replace(&mut self, now: Instant, mut actions: Vec<Action>) -> Vec<Action> {
        if self
            .sessions
            .values()
            .any(|s| s.state == SessionState::Aggregating)
        {
            return actions;
        }
        if self
            .sessions
            .values()
            .any(|s| s.state == SessionState::Open)
        {
            self.wake(&mut actions);
            return actions;
        }
        if now >= self.params.deadline {
            let outcome = Outcome::GaveUp(format!("{} within the deadline", self.no_quorum()));
            return self.finish(now, outcome, actions);
        }
        if self.sessions.len() < MAX_TOTAL_SESSIONS {
            if let Some(peers) = self.fastest(&BTreeSet::new()) {
                self.open(now, peers, &mut actions);
                self.wake(&mut actions);
                return actions;
            }
        }
        self.stuck(now, actions)
    }

    /// The aggregation of `session` succeeded, or named the members whose shares are invalid.
    pub(crate) fn on_aggregated(
        &mut self,
        now: Instant,
        session: SessionId,
        result: Result<(), Vec<PeerId>>,
    ) -> Vec<Action> {
        let actions = Vec::new();
        if self.done {
            return actions;
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return actions;
        };
        match result {
            Ok(()) => {
                let members = s.members.clone();
                self.finish(now, Outcome::Signed { session, members }, actions)
            }
            Err(culprits) => {
                s.state = SessionState::Failed;
                let culprits: Vec<PeerId> = if culprits.is_empty() {
                    // Unattributed: distrust every other member.
                    s.members
                        .iter()
                        .copied()
                        .filter(|p| *p != self.params.self_id)
                        .collect()
                } else {
                    culprits
                };
                if culprits.contains(&self.params.self_id) {
                    return self.finish(
                        now,
                        Outcome::GaveUp("this cosigner's own share is invalid".into()),
                        actions,
                    );
                }
                self.problems
                    .push(format!("invalid shares from {culprits:?}"));
                self.excluded.extend(culprits);
                self.replace(now, actions)
            }
        }
    }

    /// Commitments of `peer` arrived: `available` are held now. If no session can still
    /// complete in its expected time (none is open, or every open one waits on a late
    /// member), another starts with them.
    pub(crate) fn on_commitments(
        &mut self,
        now: Instant,
        peer: PeerId,
        available: usize,
    ) -> Vec<Action> {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.available = available;
        }
        self.stale.remove(&peer);
        if self.done
            || self
                .sessions
                .values()
                .any(|s| s.state == SessionState::Aggregating || self.on_time_yet(s, now))
        {
            return Vec::new();
        }
        let live = self.live_sessions();
        if live == 0 {
            return self.replace(now, Vec::new());
        }
        let mut actions = Vec::new();
        if live < MAX_SESSIONS && self.sessions.len() < MAX_TOTAL_SESSIONS {
            if let Some(peers) = self.fastest(&self.late_members(now)) {
                self.open(now, peers, &mut actions);
            }
        }
        self.wake(&mut actions);
        actions
    }

    fn live_sessions(&self) -> usize {
        self.sessions
            .values()
            .filter(|s| s.state != SessionState::Failed)
            .count()
    }

    /// The earliest instant at which something is due: a member late, a session expired,
    /// the deadline.
    fn wake(&self, actions: &mut Vec<Action>) {
        let mut at = self.params.deadline;
        for s in self
            .sessions
            .values()
            .filter(|s| s.state == SessionState::Open)
        {
            at = at.min(s.started + self.params.attempt_timeout);
            if let Some(recheck) = s.recheck_at {
                at = at.min(recheck);
            } else if !s.hedged {
                for (p, late) in &s.pending {
                    if *p != self.params.self_id {
                        at = at.min(*late);
                    }
                }
            }
        }
        actions.retain(|a| !matches!(a, Action::WakeAt(_)));
        actions.push(Action::WakeAt(at));
    }
}

mod late;
#[cfg(test)]
mod tests;
