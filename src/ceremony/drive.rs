//! The driving loop every ceremony shares: it asks each peer what the protocol needs (one
//! request in flight per peer), retries "not yet" and unreachable peers, and stops when the
//! protocol is done or the deadline passes. What to ask and what to make of an answer is the
//! protocol's ([`Hooks`]): a DKG's or an import's machine ([`super::run`]), or a refresh's
//! machine and then its commit rule ([`super::refresh::run`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};

use super::abort::Abort;
use super::file::SessionId;
use super::machine::{Machine, Progress};
use super::messages::{Ask, CeremonyRequest};
use crate::cluster::{Cluster, ClusterError, PeerId};
use crate::threshold::messages::{ClusterRequest, ClusterResponse};

/// One request and its answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Asking again after "not yet".
const RETRY_NOT_YET: Duration = Duration::from_millis(100);
/// Asking again after no answer (a peer not started yet, or unreachable).
const RETRY_UNREACHABLE: Duration = Duration::from_millis(250);
/// How often the loop looks at the protocol when no answer arrives.
pub(crate) const TICK: Duration = Duration::from_millis(25);

/// What we last heard from one peer, for the timeout message.
#[derive(Default)]
pub(crate) struct Track {
    busy: bool,
    next: Option<Instant>,
    answered: bool,
    last: Option<String>,
}

/// One line per peer we still needed something from (`next_ask`), naming it, its address,
/// what we asked for and what we last heard; `otherwise` if there is none.
pub(crate) fn waiting_lines(
    next_ask: &dyn Fn(PeerId) -> Option<Ask>,
    otherwise: &str,
    tracks: &BTreeMap<PeerId, Track>,
    cluster: &Cluster,
    addresses: &BTreeMap<PeerId, String>,
    command: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (&peer, track) in tracks {
        let Some(ask) = next_ask(peer) else {
            continue;
        };
        let address = addresses.get(&peer).map_or("?", String::as_str);
        let connected = cluster.peer_status(peer).is_some_and(|s| s.connected);
        let heard = match (&track.last, track.answered || connected) {
            (Some(last), true) => last.clone(),
            (_, false) => format!(
                "never reached: is `{command}` running there, and is its UDP port open to this \
                 host?"
            ),
            (None, true) => "no answer yet".to_string(),
        };
        lines.push(format!(
            "cosigner {peer} at {address} ({}): {heard}",
            ask.describe()
        ));
    }
    if lines.is_empty() {
        lines.push(otherwise.to_string());
    }
    lines
}

/// What a ceremony's driving loop asks of the protocol it drives: the DKG and import
/// (`run::CeremonyHooks`) and a refresh (`super::refresh::run`) share the loop.
pub(crate) trait Hooks {
    /// Moves on locally (staging a share, deciding); true once nothing more is to be asked.
    fn done(&mut self) -> bool;
    /// What to ask `peer` now, if anything.
    fn next_ask(&self, peer: PeerId) -> Option<Ask>;
    /// `peer`'s answer to `ask`: `Some(reason)` if it said "not yet" (asked again soon).
    fn take(&mut self, peer: PeerId, ask: Ask, response: ClusterResponse) -> Option<String>;
    /// The loop itself failed.
    fn fail(&mut self, abort: Abort);
    /// Whether the answers still in flight once the protocol is done go to [`Hooks::take`]
    /// (each bounded by its request's timeout) instead of being dropped: a peer that has
    /// answered counts us as told, so what it told us must not be lost.
    fn takes_late_answers(&self) -> bool {
        false
    }
}

/// How the driving loop ended.
pub(crate) struct Driven {
    pub timed_out: bool,
    pub tracks: BTreeMap<PeerId, Track>,
}

/// Asks every peer what `hooks` needs (one request in flight per peer, retrying "not yet"
/// and unreachable peers) until `hooks` is done or `deadline` passes.
pub(crate) async fn drive(
    cluster: &Arc<Cluster>,
    session: SessionId,
    peers: Vec<PeerId>,
    deadline: Instant,
    hooks: &mut dyn Hooks,
) -> Driven {
    let mut tracks: BTreeMap<PeerId, Track> =
        peers.into_iter().map(|p| (p, Track::default())).collect();
    let mut tasks: JoinSet<(PeerId, Ask, Result<ClusterResponse, ClusterError>)> = JoinSet::new();
    let mut timed_out = false;
    loop {
        if hooks.done() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            break;
        }
        for (&peer, track) in tracks.iter_mut() {
            if track.busy || track.next.is_some_and(|t| t > now) {
                continue;
            }
            let Some(ask) = hooks.next_ask(peer) else {
                continue;
            };
            track.busy = true;
            let cluster = cluster.clone();
            let request = ClusterRequest::Ceremony(CeremonyRequest { session, ask });
            let limit = REQUEST_TIMEOUT.min(deadline.saturating_duration_since(now));
            tasks.spawn(async move {
                let result = cluster.request(peer, &request, limit).await;
                (peer, ask, result)
            });
        }
        let joined = tokio::select! {
            joined = tasks.join_next(), if !tasks.is_empty() => joined,
            _ = sleep(TICK) => None,
            _ = sleep_until(deadline) => None,
        };
        let Some(joined) = joined else {
            continue;
        };
        let (peer, ask, result) = match joined {
            Ok(done) => done,
            Err(e) => {
                hooks.fail(Abort::local(format!("a ceremony task failed: {e}")));
                continue;
            }
        };
        let Some(track) = tracks.get_mut(&peer) else {
            continue;
        };
        track.busy = false;
        let now = Instant::now();
        match result {
            Ok(response) => {
                track.answered = true;
                match hooks.take(peer, ask, response) {
                    None => track.next = None,
                    Some(reason) => {
                        track.last = Some(format!("it is running, but {reason}"));
                        track.next = Some(now + RETRY_NOT_YET);
                    }
                }
            }
            Err(e) => {
                track.last = Some(e.to_string());
                track.next = Some(now + RETRY_UNREACHABLE);
            }
        }
    }
    if !timed_out && hooks.takes_late_answers() {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((peer, ask, Ok(response))) = joined {
                let _ = hooks.take(peer, ask, response);
            }
        }
    }
    tasks.abort_all();
    Driven { timed_out, tracks }
}

/// Gives `peer`'s answer to the machine; a refusal or a signing answer stops it.
pub(crate) fn take_into_machine(
    m: &mut Machine,
    peer: PeerId,
    ask: Ask,
    response: ClusterResponse,
) -> Option<String> {
    match response {
        ClusterResponse::Ceremony(response) => match m.absorb(peer, ask, response, &mut OsRng) {
            Ok(Progress::NotYet(reason)) => Some(reason),
            // Taken, or remembered by the machine (the loop then ends).
            Ok(Progress::Got) | Err(_) => None,
        },
        ClusterResponse::Refused(refusal) => {
            m.fail(Abort::Peer {
                peer,
                reason: refusal.reason,
            });
            None
        }
        _ => {
            m.fail(Abort::culprit(
                peer,
                format!("asked for {}, it sent a signing answer", ask.describe()),
            ));
            None
        }
    }
}
