//! The async driver of one signing: it runs the pure engine ([`Signing`]) and carries out its
//! actions, building each session's request from the commitment inventory, sending it to
//! every member (this cosigner's own participant in process), feeding answers back as they
//! arrive, and aggregating the first session to complete. Every decision (whom to ask, when
//! to hedge, when to give up) is the engine's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use frost_ed25519::keys::PublicKeyPackage;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::super::fault::{test_crash, CrashPoint};
use super::super::SignError;
use super::participate::Incoming;
use super::Inner;
use crate::consensus::{ExtensionDoc, SignDoc};
use crate::threshold::coordinator::{
    build_request, AggregateError, BuildError, Precomputed, Signatures, SigningSession,
};
use crate::threshold::messages::{ClusterRequest, ClusterResponse, PeerId, RefusalKind};
use crate::threshold::signing::{Action, Answer, Outcome, Params, SessionId, Signing, Start};

/// What a signing produced.
pub(super) struct Signed {
    pub(super) signatures: Signatures,
    pub(super) members: Vec<PeerId>,
    /// Remote shares asked for beyond the `t - 1` one session needs (hedges, fan-out).
    pub(super) extra_requests: usize,
}

/// What comes back to the driver while it waits.
enum Event {
    Answer {
        session: SessionId,
        peer: PeerId,
        response: Result<ClusterResponse, String>,
        latency: Duration,
    },
    Commitments {
        peer: PeerId,
        available: usize,
    },
}

/// One session in flight.
struct Running {
    signing: SigningSession,
    requests: Vec<AbortHandle>,
    precompute: Option<oneshot::Receiver<Option<Precomputed>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A request nobody waits for is reset, so the peer stops working on it.
        for request in &self.requests {
            request.abort();
        }
    }
}

impl Inner {
    /// Coordinates the signing of `doc` (and its extension): `takeover` when this cosigner
    /// has just started serving the node, whose previous signer may have died unnoticed.
    pub(super) async fn coordinate(
        self: &Arc<Self>,
        doc: &SignDoc,
        extension: Option<&ExtensionDoc>,
        takeover: bool,
    ) -> Result<Signed, SignError> {
        let per_member = if extension.is_some() { 2 } else { 1 };
        self.ensure_own_commitments(per_member);
        let now = Instant::now();
        let views = self.peer_views(now);
        let how = if takeover || views.iter().any(|v| v.suspect) {
            Start::FanOut
        } else {
            Start::Normal
        };
        let params = Params {
            self_id: self.id,
            threshold: self.threshold,
            commitments_per_member: per_member,
            deadline: now + self.timeouts.total,
            attempt_timeout: self.timeouts.attempt,
        };
        let mut engine = Signing::new(params, views);
        let (events, mut inbox) = mpsc::unbounded_channel();
        let mut run = Run {
            inner: self.clone(),
            vote: doc.sign_bytes.clone(),
            extension: extension.map(|e| e.sign_bytes.clone()),
            deadline: params.deadline,
            sessions: HashMap::new(),
            results: HashMap::new(),
            events,
        };
        let mut actions: VecDeque<Action> = engine.start(now, how).into();
        let mut wake = params.deadline;
        // The health records move on while a signing waits: a peer whose heartbeats stop
        // is given up on at once rather than at the attempt timeout. The first check is one
        // period away: awaiting an interval's first tick, due at once, still waits for the
        // timer's next millisecond tick, which cost each signing about 1 ms.
        let mut health =
            tokio::time::interval_at((now + super::health::POLL).into(), super::health::POLL);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(action) = actions.pop_front() {
                match action {
                    Action::Start { session, members } => {
                        if let Err(BuildError::NotEnoughCommitments(peer)) =
                            run.start(session, &members)
                        {
                            let stale = Answer::Stale("no commitments left".into());
                            actions.extend(engine.on_answer(Instant::now(), session, peer, stale));
                        }
                    }
                    Action::Aggregate { session } => {
                        let result = run.aggregate(session).await;
                        actions.extend(engine.on_aggregated(Instant::now(), session, result));
                    }
                    Action::Abandon { session } => {
                        run.sessions.remove(&session);
                    }
                    Action::Refill { peers } => run.refill(peers),
                    Action::Suspect { peer } => self.found_silent(peer),
                    Action::WakeAt(at) => wake = at,
                    Action::Done(outcome) => {
                        return run.finish(outcome, engine.extra_requests());
                    }
                }
            }
            tokio::select! {
                event = inbox.recv() => {
                    let now = Instant::now();
                    match event {
                        Some(Event::Answer { session, peer, response, latency }) => {
                            let answer = run.answer(session, peer, response, latency);
                            actions.extend(engine.on_answer(now, session, peer, answer));
                        }
                        Some(Event::Commitments { peer, available }) => {
                            actions.extend(engine.on_commitments(now, peer, available));
                        }
                        // The driver holds a sender itself: the channel cannot close.
                        None => actions.extend(engine.on_time(now)),
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    actions.extend(engine.on_time(Instant::now()));
                }
                _ = health.tick() => {
                    let now = Instant::now();
                    actions.extend(engine.on_suspects(now, &self.suspects(now)));
                }
            }
        }
    }
}

/// Computing a session's binding factors and group commitment, for the coordinator's
/// aggregation and, when run by our own participant, for its share.
pub(super) struct Precompute {
    signing: SigningSession,
    to_coordinator: oneshot::Sender<Option<Precomputed>>,
}

impl Precompute {
    /// Computes them and hands them to the coordinator; `None` if that failed (then each
    /// side computes what it needs the ordinary way).
    pub(super) fn run(self, public_key_package: &PublicKeyPackage) -> Option<Precomputed> {
        let pre = self.signing.precompute(public_key_package).ok();
        // Gone only if the coordinator gave this session up.
        let _ = self.to_coordinator.send(pre.clone());
        pre
    }
}

/// The I/O side of one signing.
struct Run {
    inner: Arc<Inner>,
    vote: Vec<u8>,
    extension: Option<Vec<u8>>,
    deadline: Instant,
    sessions: HashMap<SessionId, Running>,
    results: HashMap<SessionId, Signatures>,
    events: mpsc::UnboundedSender<Event>,
}

impl Run {
    /// Builds the session's request from the inventory and sends it to every member.
    fn start(&mut self, session: SessionId, members: &[PeerId]) -> Result<(), BuildError> {
        let inner = &self.inner;
        let (request, signing) = {
            let Ok(mut inventory) = inner.inventory.lock() else {
                return Err(BuildError::NoParticipants);
            };
            build_request(
                &mut inventory,
                inner.participant.epoch(),
                members,
                self.vote.clone(),
                self.extension.clone(),
            )?
        };
        // The group commitment does not depend on the shares: it is computed while they
        // travel, by our own participant, which needs it for its share and is on a blocking
        // thread anyway (a task of its own would be one more hand-off between threads per
        // signing), or by a blocking task if we are not a member of this session.
        let (precomputed_tx, precomputed_rx) = oneshot::channel();
        let mut precompute = Some(Precompute {
            signing: signing.clone(),
            to_coordinator: precomputed_tx,
        });
        if !members.contains(&inner.id) {
            if let Some(job) = precompute.take() {
                let inner = inner.clone();
                drop(tokio::task::spawn_blocking(move || {
                    job.run(&inner.public_key_package)
                }));
            }
        }
        let request = Arc::new(ClusterRequest::Sign(request));
        let mut requests = Vec::with_capacity(members.len());
        for &peer in members {
            let inner = inner.clone();
            let events = self.events.clone();
            let request = request.clone();
            // Our own participant gets the commitments as the inventory validated them.
            let own = if peer == inner.id {
                precompute
                    .take()
                    .map(|job| Incoming::Own(signing.decoded_request(), job))
            } else {
                None
            };
            let limit = self
                .deadline
                .saturating_duration_since(Instant::now())
                .min(inner.timeouts.attempt);
            let task = tokio::spawn(async move {
                let sent = Instant::now();
                let response = match own {
                    Some(own) => Ok(inner
                        .clone()
                        .participate(peer, own)
                        .await
                        .unwrap_or_else(ClusterResponse::Refused)),
                    None => inner
                        .cluster
                        .request::<_, ClusterResponse>(peer, request.as_ref(), limit)
                        .await
                        .map_err(|e| e.to_string()),
                };
                let _ = events.send(Event::Answer {
                    session,
                    peer,
                    response,
                    latency: sent.elapsed(),
                });
            });
            requests.push(task.abort_handle());
        }
        self.sessions.insert(
            session,
            Running {
                signing,
                requests,
                precompute: Some(precomputed_rx),
            },
        );
        Ok(())
    }

    /// What `peer`'s response in `session` means for the signing; keeps what it brought
    /// (fresh commitments, a latency sample) even for a session given up on.
    fn answer(
        &mut self,
        session: SessionId,
        peer: PeerId,
        response: Result<ClusterResponse, String>,
        latency: Duration,
    ) -> Answer {
        let inner = &self.inner;
        let who = |reason: &str| {
            if peer == inner.id {
                reason.to_string()
            } else {
                format!("cosigner {peer}: {reason}")
            }
        };
        match response {
            Ok(ClusterResponse::Signed(mut response)) => {
                if peer != inner.id {
                    inner.share_arrived(peer, latency);
                }
                // Validating the refill (point decoding, ~80 us) is not needed for this
                // signing: leave it to the background.
                let refill = std::mem::take(&mut response.commitments);
                if !refill.is_empty() {
                    let owner = inner.clone();
                    inner
                        .background
                        .run("validate refill commitments", move || {
                            owner.add_commitments(peer, &refill)
                        });
                }
                match self.sessions.get_mut(&session) {
                    Some(running) => match running.signing.accept(peer, &response) {
                        Ok(()) => Answer::Share,
                        Err(e) => Answer::Broken(e.to_string()),
                    },
                    // Given up on: the engine ignores it.
                    None => Answer::Share,
                }
            }
            Ok(ClusterResponse::Refused(refusal)) => match refusal.kind {
                RefusalKind::Watermark => Answer::Refused(who(&refusal.reason)),
                // It restarted or evicted them: all we hold of it is stale.
                RefusalKind::UnknownCommitment | RefusalKind::CatchingUp => {
                    inner.clear_commitments(peer);
                    Answer::Stale(refusal.reason)
                }
                RefusalKind::Storage | RefusalKind::Epoch => {
                    inner.avoid(peer);
                    Answer::Broken(refusal.reason)
                }
                RefusalKind::Duplicate => {
                    inner.cluster.report_twin(peer, &refusal.reason);
                    Answer::Broken(refusal.reason)
                }
                RefusalKind::BadRequest | RefusalKind::SignBytes | RefusalKind::Internal => {
                    Answer::Broken(refusal.reason)
                }
            },
            Ok(other) => Answer::Broken(format!("unexpected answer {other:?}")),
            Err(e) => Answer::Silent(e),
        }
    }

    /// Aggregates a complete session: `Err` names the members whose shares are invalid.
    async fn aggregate(&mut self, session: SessionId) -> Result<(), Vec<PeerId>> {
        let Some(mut running) = self.sessions.remove(&session) else {
            return Err(Vec::new());
        };
        // Dropped unsent only if our participant refused before computing it: then the
        // session has no share of ours and frost's own aggregation names who is missing.
        let precomputed = match running.precompute.take() {
            Some(rx) => rx.await.ok().flatten(),
            None => None,
        };
        match running
            .signing
            .finish(&self.inner.public_key_package, precomputed.as_ref())
        {
            Ok(signatures) => {
                self.results.insert(session, signatures);
                Ok(())
            }
            Err(AggregateError::InvalidShares { culprits }) => {
                warn!(?culprits, "invalid signature shares; signing without them");
                Err(culprits)
            }
            Err(e) => {
                warn!("aggregation failed: {e}");
                Err(Vec::new())
            }
        }
    }

    /// Fetches commitments of `peers` and reports what each then has.
    fn refill(&self, peers: Vec<PeerId>) {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        for peer in peers {
            let inner = self.inner.clone();
            let events = self.events.clone();
            tokio::spawn(async move {
                let timeout = remaining.min(super::supply::REFILL_TIMEOUT);
                inner.refill_peer(peer, timeout).await;
                let available = inner.available(peer);
                let _ = events.send(Event::Commitments { peer, available });
            });
        }
    }

    fn finish(mut self, outcome: Outcome, extra_requests: usize) -> Result<Signed, SignError> {
        match outcome {
            Outcome::Signed { session, members } => {
                let signatures = self.results.remove(&session).ok_or_else(|| {
                    SignError::GiveWay("the signed session's signature went missing".into())
                })?;
                test_crash(CrashPoint::CoordinatorAfterShares);
                debug!(?members, extra_requests, "aggregated");
                Ok(Signed {
                    signatures,
                    members,
                    extra_requests,
                })
            }
            Outcome::Refused(reason) => Err(SignError::Refused(reason)),
            Outcome::GaveUp(reason) => Err(SignError::GiveWay(reason)),
        }
    }
}
