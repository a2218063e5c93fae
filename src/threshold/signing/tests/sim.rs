//! A simulated cluster for the signing engine: real FROST participants (dealt keys, nonce
//! pools, the FilePV rules as their watermarks), real requests and aggregation, and a network
//! of simulated time in which peers are dead, slow, partitioned or refusing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use frost_ed25519::keys::PublicKeyPackage;
use rand_core::OsRng;

use super::super::*;
use crate::consensus::{canonical, SignDoc};
use crate::sign_state::{check, Recorded, SignState, Verdict};
use crate::threshold::coordinator::{build_request, CommitmentInventory, SigningSession};
use crate::threshold::epoch::EpochId;
use crate::threshold::messages::{Refusal, RefusalKind, SignRequest, SignResponse};
use crate::threshold::participant::testkit::group;
use crate::threshold::participant::{Participant, Watermark};

pub(super) const CHAIN: &str = "sim-chain";
pub(super) const MS: Duration = Duration::from_millis(1);

/// A participant's watermark in memory, with the real FilePV rules.
#[derive(Default)]
pub(super) struct MemWatermark(Mutex<SignState>);

impl Watermark for MemWatermark {
    fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal> {
        let mut state = self.0.lock().unwrap();
        match check(&state, doc) {
            Ok(Verdict::Advance) => *state = SignState::after(doc, None),
            Ok(_) => {}
            Err(e) => return Err(Refusal::new(RefusalKind::Watermark, e.to_string())),
        }
        Ok(Recorded::assume_recorded(doc))
    }
}

/// How a simulated cosigner behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Behaviour {
    /// Answers after `one_way` each way plus `work`.
    Alive { one_way: Duration, work: Duration },
    /// Receives nothing, answers nothing (killed, its connection not yet timed out).
    Dead,
}

const FAST_ONE_WAY: Duration = Duration::from_micros(150);
const FAST_WORK: Duration = Duration::from_micros(400);
const FAST: Behaviour = Behaviour::Alive {
    one_way: FAST_ONE_WAY,
    work: FAST_WORK,
};

pub(super) struct Node {
    participant: Participant,
    pub(super) watermark: MemWatermark,
    behaviour: Behaviour,
}

/// One coordinator's signing of one document.
pub(super) struct Coordination {
    id: PeerId,
    pub(super) engine: Signing,
    inventory: CommitmentInventory,
    sessions: HashMap<SessionId, SigningSession>,
    sign_bytes: Vec<u8>,
    started: Instant,
    pub(super) outcome: Option<(Outcome, Instant)>,
    pub(super) signature: Option<[u8; 64]>,
    pub(super) remote_requests: usize,
}

enum Event {
    Deliver {
        to: PeerId,
        coord: usize,
        session: SessionId,
        request: SignRequest,
    },
    Reply {
        coord: usize,
        session: SessionId,
        peer: PeerId,
        result: Result<SignResponse, Refusal>,
    },
    Wake {
        coord: usize,
    },
    Commitments {
        coord: usize,
        peer: PeerId,
    },
}

pub(super) struct Sim {
    t0: Instant,
    pub(super) now: Instant,
    pub(super) nodes: BTreeMap<PeerId, Node>,
    pkp: PublicKeyPackage,
    threshold: u16,
    pub(super) coords: Vec<Coordination>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: HashMap<u64, Event>,
    seq: u64,
    /// Links cut in both directions (a partition).
    pub(super) cut: Vec<(PeerId, PeerId)>,
}

impl Sim {
    pub(super) fn new(t: u16, n: u16) -> Sim {
        let (participants, pkp) = group(t, n);
        let nodes = participants
            .into_iter()
            .map(|p| {
                (
                    p.id(),
                    Node {
                        participant: p,
                        watermark: MemWatermark::default(),
                        behaviour: FAST,
                    },
                )
            })
            .collect();
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            nodes,
            pkp,
            threshold: t,
            coords: Vec::new(),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
            cut: Vec::new(),
        }
    }

    /// The peer restarted: its nonces are gone, so every commitment of it we hold is stale.
    pub(super) fn restart(&mut self, peer: PeerId) {
        let node = self.nodes.remove(&peer).unwrap();
        let participant = node
            .participant
            .with_max_outstanding(crate::threshold::nonces::DEFAULT_MAX_OUTSTANDING);
        self.nodes.insert(
            peer,
            Node {
                participant,
                ..node
            },
        );
    }

    pub(super) fn set(&mut self, peer: PeerId, behaviour: Behaviour) {
        self.nodes.get_mut(&peer).unwrap().behaviour = behaviour;
    }

    /// `peer` alive, doing its work quickly, `one_way` away.
    pub(super) fn delay(&mut self, peer: PeerId, one_way: Duration) {
        self.set(
            peer,
            Behaviour::Alive {
                one_way,
                work: FAST_WORK,
            },
        );
    }

    fn one_way(&self, a: PeerId, b: PeerId) -> Option<Duration> {
        if self.cut.contains(&(a, b)) || self.cut.contains(&(b, a)) {
            return None;
        }
        let leg = |p: PeerId| match self.nodes[&p].behaviour {
            Behaviour::Alive { one_way, .. } => Some(one_way),
            Behaviour::Dead => None,
        };
        Some(leg(a)?.max(leg(b)?))
    }

    fn work(&self, p: PeerId) -> Duration {
        match self.nodes[&p].behaviour {
            Behaviour::Alive { work, .. } => work,
            Behaviour::Dead => Duration::ZERO,
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// A coordinator `coord` starts signing `sign_bytes`, knowing its peers as `views` says
    /// (a view from before the faults, as a coordinator's health lags behind a kill).
    pub(super) fn begin(
        &mut self,
        coord: PeerId,
        sign_bytes: Vec<u8>,
        how: Start,
        views: Vec<PeerView>,
    ) -> usize {
        let mut inventory = CommitmentInventory::default();
        for (&id, node) in &self.nodes {
            let c = node
                .participant
                .handle_commitments(coord, 8, &mut OsRng)
                .unwrap();
            inventory.add(id, &c).unwrap();
        }
        let params = Params {
            self_id: coord,
            threshold: self.threshold,
            commitments_per_member: 1,
            deadline: self.now + Duration::from_secs(3),
            attempt_timeout: Duration::from_millis(800),
        };
        let mut engine = Signing::new(params, views);
        let actions = engine.start(self.now, how);
        self.coords.push(Coordination {
            id: coord,
            engine,
            inventory,
            sessions: HashMap::new(),
            sign_bytes,
            started: self.now,
            outcome: None,
            signature: None,
            remote_requests: 0,
        });
        let index = self.coords.len() - 1;
        self.act(index, actions);
        index
    }

    /// What a coordinator that saw every peer answer at `one_way` each way believes.
    pub(super) fn views(&self, coord: PeerId) -> Vec<PeerView> {
        self.nodes
            .keys()
            .filter(|p| **p != coord)
            .map(|&id| {
                let typical = match self.nodes[&id].behaviour {
                    Behaviour::Alive { one_way, work } => 2 * one_way + work,
                    // Killed a moment ago: it still looks as it did.
                    Behaviour::Dead => 2 * FAST_ONE_WAY + FAST_WORK,
                };
                PeerView {
                    id,
                    typical,
                    expected: (typical * 3).max(crate::threshold::health::MIN_EXPECTED),
                    available: 8,
                    suspect: false,
                }
            })
            .collect()
    }

    pub(super) fn act(&mut self, coord: usize, actions: Vec<Action>) {
        for action in actions {
            let c = &mut self.coords[coord];
            match action {
                Action::Start { session, members } => {
                    let built = build_request(
                        &mut c.inventory,
                        EpochId::of(&self.pkp),
                        &members,
                        c.sign_bytes.clone(),
                        None,
                    );
                    let (request, signing) = match built {
                        Ok(built) => built,
                        Err(e) => panic!("the engine asked for commitments it does not have: {e}"),
                    };
                    c.sessions.insert(session, signing);
                    let from = c.id;
                    c.remote_requests += members.len() - 1;
                    for member in members {
                        if member == from {
                            let at = self.now + self.work(from);
                            let result = self.serve(member, from, &request);
                            self.schedule(
                                at,
                                Event::Reply {
                                    coord,
                                    session,
                                    peer: member,
                                    result,
                                },
                            );
                        } else if let Some(leg) = self.one_way(from, member) {
                            self.schedule(
                                self.now + leg,
                                Event::Deliver {
                                    to: member,
                                    coord,
                                    session,
                                    request: request.clone(),
                                },
                            );
                        }
                    }
                }
                Action::Aggregate { session } => {
                    let signing = c.sessions.remove(&session).expect("a session to aggregate");
                    let result = match signing.finish(&self.pkp, None) {
                        Ok(signatures) => {
                            c.signature = Some(signatures.vote);
                            Ok(())
                        }
                        Err(crate::threshold::coordinator::AggregateError::InvalidShares {
                            culprits,
                        }) => Err(culprits),
                        Err(_) => Err(Vec::new()),
                    };
                    let more = c.engine.on_aggregated(self.now, session, result);
                    self.act(coord, more);
                }
                Action::Abandon { session } => {
                    c.sessions.remove(&session);
                }
                Action::Refill { peers } => {
                    let from = c.id;
                    for peer in peers {
                        if let Some(leg) = self.one_way(from, peer) {
                            self.schedule(self.now + 2 * leg, Event::Commitments { coord, peer });
                        }
                    }
                }
                Action::Suspect { .. } => {}
                Action::WakeAt(at) => self.schedule(at, Event::Wake { coord }),
                Action::Done(outcome) => c.outcome = Some((outcome, self.now)),
            }
        }
    }

    fn serve(
        &self,
        node: PeerId,
        coord: PeerId,
        request: &SignRequest,
    ) -> Result<SignResponse, Refusal> {
        let n = &self.nodes[&node];
        n.participant
            .handle_sign(coord, request, &n.watermark, &mut OsRng)
    }

    /// Runs until nothing is left to happen, or `limit` of simulated time.
    pub(super) fn run(&mut self, limit: Duration) {
        let mut steps = 0u32;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            steps += 1;
            assert!(
                steps < 100_000,
                "the simulation does not settle (at {:?})",
                at - self.t0
            );
            if at > self.t0 + limit {
                break;
            }
            self.now = self.now.max(at);
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            match event {
                Event::Deliver {
                    to,
                    coord,
                    session,
                    request,
                } => {
                    let from = self.coords[coord].id;
                    // Dead by now, or cut meanwhile: the request is lost.
                    let Some(leg) = self.one_way(from, to) else {
                        continue;
                    };
                    let result = self.serve(to, from, &request);
                    let at = self.now + self.work(to) + leg;
                    self.schedule(
                        at,
                        Event::Reply {
                            coord,
                            session,
                            peer: to,
                            result,
                        },
                    );
                }
                Event::Reply {
                    coord,
                    session,
                    peer,
                    result,
                } => {
                    let c = &mut self.coords[coord];
                    let answer = match result {
                        Ok(response) => {
                            let _ = c.inventory.add(peer, &response.commitments);
                            match c.sessions.get_mut(&session) {
                                Some(signing) => match signing.accept(peer, &response) {
                                    Ok(()) => Answer::Share,
                                    Err(e) => Answer::Broken(e.to_string()),
                                },
                                // Abandoned: the engine ignores it too.
                                None => Answer::Share,
                            }
                        }
                        Err(r) => match r.kind {
                            RefusalKind::Watermark => Answer::Refused(r.reason),
                            // As the driver does: all we hold of it is stale.
                            RefusalKind::UnknownCommitment | RefusalKind::CatchingUp => {
                                c.inventory.clear(peer);
                                Answer::Stale(r.reason)
                            }
                            _ => Answer::Broken(r.reason),
                        },
                    };
                    let actions = c.engine.on_answer(self.now, session, peer, answer);
                    self.act(coord, actions);
                }
                Event::Wake { coord } => {
                    let actions = self.coords[coord].engine.on_time(self.now);
                    self.act(coord, actions);
                }
                Event::Commitments { coord, peer } => {
                    let from = self.coords[coord].id;
                    let fresh = self.nodes[&peer]
                        .participant
                        .handle_commitments(from, 8, &mut OsRng)
                        .unwrap();
                    let c = &mut self.coords[coord];
                    c.inventory.add(peer, &fresh).unwrap();
                    let available = c.inventory.available(peer);
                    let actions = c.engine.on_commitments(self.now, peer, available);
                    self.act(coord, actions);
                }
            }
        }
    }

    pub(super) fn outcome(&self, coord: usize) -> &Outcome {
        &self.coords[coord]
            .outcome
            .as_ref()
            .expect("the signing ended")
            .0
    }

    /// Who signed, failing the test if the signing did not end in a signature.
    pub(super) fn members(&self, coord: usize) -> &[PeerId] {
        match self.outcome(coord) {
            Outcome::Signed { members, .. } => members,
            other => panic!("{other:?}"),
        }
    }

    pub(super) fn took(&self, coord: usize) -> Duration {
        let c = &self.coords[coord];
        c.outcome.as_ref().expect("the signing ended").1 - c.started
    }

    /// Every signature made verifies, and no two differ at one position but in timestamp.
    pub(super) fn assert_no_double_sign(&self) {
        let key = ed25519_dalek::VerifyingKey::from_bytes(
            &self
                .pkp
                .verifying_key()
                .serialize()
                .unwrap()
                .try_into()
                .unwrap(),
        )
        .unwrap();
        let mut signed: BTreeMap<crate::consensus::Hrs, SignDoc> = BTreeMap::new();
        for c in &self.coords {
            let Some(signature) = c.signature else {
                continue;
            };
            key.verify_strict(
                &c.sign_bytes,
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .expect("a valid signature");
            let doc = canonical::parse(&c.sign_bytes).unwrap();
            if let Some(other) = signed.insert(doc.hrs, doc.clone()) {
                assert!(
                    other == doc || canonical::same_except_timestamp(&other, &doc),
                    "double sign at {}",
                    doc.hrs
                );
            }
        }
    }
}
