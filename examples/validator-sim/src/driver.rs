//! The run loop: turns the consensus plan into concrete requests (clock, validator address,
//! random vote extensions), sends them through the node, verifies every answer, feeds the
//! double-sign ledger, and runs the replay / timestamp-replay / conflict probes at the end.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use rand_core::{OsRng, RngCore};
use tendermint_proto::google::protobuf::Timestamp;
use tendermint_proto::v0_38::types::{Proposal, Vote};

use crate::consensus::{self, Action, Plan, PlanConfig, VoteStep, STEP_PROPOSE};
use crate::doublesign::{HrsKey, Ledger};
use crate::node::{Answer, Node, NodeConfig, NodeError};
use crate::report::{Recorder, Report};
use crate::verify::{self, Failure, Verified};
use crate::wire::{Request, Response};
use crate::{Listener, SimConfig, SimError};

/// What the node expects from a sign request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Signature,
    /// A conflicting request: only a RemoteSignerError is acceptable.
    Refusal,
}

/// A request the signer signed, kept for the replay and conflict probes.
#[derive(Clone)]
struct Signed {
    key: HrsKey,
    request: Request,
    returned: Timestamp,
}

struct Driver<'a> {
    cfg: &'a SimConfig,
    node: Node,
    rec: Recorder,
    ledger: Ledger,
    signatures_out: Option<std::fs::File>,
    key: Option<VerifyingKey>,
    address: Vec<u8>,
    history: HashMap<String, VecDeque<Signed>>,
    history_len: usize,
    last_activity: Instant,
    started: Instant,
}

fn now_timestamp() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Random extension: often small, sometimes empty, sometimes spanning several frames.
fn random_extension() -> Vec<u8> {
    let roll = OsRng.next_u32() % 100;
    let len = match roll {
        0..=24 => 0,
        25..=89 => 1 + (OsRng.next_u32() % 64) as usize,
        _ => 1024 + (OsRng.next_u32() % 2048) as usize,
    };
    let mut ext = vec![0u8; len];
    OsRng.fill_bytes(&mut ext);
    ext
}

fn describe(req: &Request) -> String {
    match req {
        Request::PubKey { chain_id } => chain_id.clone(),
        Request::SignVote { chain_id, vote, .. } => {
            format!(
                "{chain_id} h={} r={} type={}",
                vote.height, vote.round, vote.r#type
            )
        }
        Request::SignProposal { chain_id, proposal } => {
            format!("{chain_id} h={} r={}", proposal.height, proposal.round)
        }
        Request::Ping => "ping".into(),
        Request::SignBytes { value } => format!("{} bytes", value.len()),
    }
}

fn hrs_key(req: &Request) -> Option<HrsKey> {
    match req {
        Request::SignVote { chain_id, vote, .. } => Some(HrsKey {
            chain_id: chain_id.clone(),
            height: vote.height,
            round: vote.round,
            step: if vote.r#type == 1 { 2 } else { 3 },
        }),
        Request::SignProposal { chain_id, proposal } => Some(HrsKey {
            chain_id: chain_id.clone(),
            height: proposal.height,
            round: proposal.round,
            step: STEP_PROPOSE,
        }),
        _ => None,
    }
}

fn set_timestamp(req: &mut Request, ts: Timestamp) {
    match req {
        Request::SignVote { vote, .. } => vote.timestamp = Some(ts),
        Request::SignProposal { proposal, .. } => proposal.timestamp = Some(ts),
        _ => {}
    }
}

impl<'a> Driver<'a> {
    fn out_of_time(&self) -> bool {
        self.cfg.stop.load(Ordering::Relaxed)
            || self
                .cfg
                .duration
                .is_some_and(|d| self.started.elapsed() >= d)
    }

    fn vote_request(
        &self,
        chain_id: &str,
        height: i64,
        round: i32,
        step: VoteStep,
        nil: bool,
        variant: &str,
    ) -> Request {
        let non_nil_precommit = step == VoteStep::Precommit && !nil;
        let extension = if self.cfg.protocol.has_extensions() && non_nil_precommit {
            random_extension()
        } else {
            Vec::new()
        };
        let block_id = if nil {
            consensus::nil_block_id()
        } else {
            consensus::block_id(chain_id, height, round, variant)
        };
        Request::SignVote {
            chain_id: chain_id.to_owned(),
            vote: Vote {
                r#type: step.msg_type(),
                height,
                round,
                block_id: Some(block_id),
                timestamp: Some(now_timestamp()),
                validator_address: self.address.clone(),
                validator_index: self.cfg.validator_index,
                signature: Vec::new(),
                extension,
                extension_signature: Vec::new(),
            },
            skip_extension_signing: !non_nil_precommit,
        }
    }

    fn proposal_request(chain_id: &str, height: i64, round: i32, variant: &str) -> Request {
        Request::SignProposal {
            chain_id: chain_id.to_owned(),
            proposal: Proposal {
                r#type: 32,
                height,
                round,
                pol_round: -1,
                block_id: Some(consensus::block_id(chain_id, height, round, variant)),
                timestamp: Some(now_timestamp()),
                signature: Vec::new(),
            },
        }
    }

    fn learn_key(&mut self, key: VerifyingKey) {
        if self.key.is_none() {
            self.address = verify::validator_address(&key);
            self.rec.report_mut().validator_pubkey =
                Some(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()));
            self.key = Some(key);
        }
    }

    fn pubkey(&mut self, chain_id: &str) {
        let req = Request::PubKey {
            chain_id: chain_id.to_owned(),
        };
        let what = describe(&req);
        let answer = match self.node.request(self.cfg.protocol, &req) {
            Ok(a) => a,
            // A run stopped mid-request is not the signer's failure.
            Err(f) if matches!(f.error, NodeError::Stopped) => return Default::default(),
            Err(f) => {
                let detail = format!("{} after {} attempts", f.error, f.attempts);
                self.rec
                    .fail("pubkey", &what, f.error.label(), &detail, f.total);
                return;
            }
        };
        self.last_activity = Instant::now();
        if let Some(err) = answer.response.error() {
            self.rec.refusal(&err.description);
            self.rec.fail(
                "pubkey",
                &what,
                "unexpected_refusal",
                &err.description,
                answer.total,
            );
            return;
        }
        let Response::PubKey { key, .. } = &answer.response else {
            self.rec.fail(
                "pubkey",
                &what,
                "wrong_response_type",
                "not a PubKeyResponse",
                answer.total,
            );
            return;
        };
        match verify::verify_pubkey(key.as_ref(), self.key.as_ref()) {
            Ok(vk) => {
                self.learn_key(vk);
                self.finish_ok("pubkey", &what, &answer);
            }
            Err(f) => self
                .rec
                .fail("pubkey", &what, f.label(), &f.to_string(), answer.total),
        }
    }

    fn finish_ok(&mut self, kind: &str, what: &str, answer: &Answer) {
        if answer.wrong_types > 0 {
            let detail = format!(
                "{} wrong-type answers before a good one",
                answer.wrong_types
            );
            self.rec
                .fail(kind, what, "wrong_response_type", &detail, answer.total);
        } else {
            self.rec.pass(kind, what, answer.rtt, answer.total);
        }
    }

    fn verify_answer(&self, req: &Request, resp: &Response) -> Result<Verified, Failure> {
        let key = self.key.as_ref().ok_or(Failure::NoValidatorKey)?;
        match (req, resp) {
            (Request::SignVote { chain_id, vote, .. }, Response::SignedVote { vote: got, .. }) => {
                let got = got.as_ref().ok_or(Failure::MissingPayload)?;
                verify::verify_vote(self.cfg.protocol, chain_id, vote, got, key)
            }
            (
                Request::SignProposal { chain_id, proposal },
                Response::SignedProposal { proposal: got, .. },
            ) => {
                let got = got.as_ref().ok_or(Failure::MissingPayload)?;
                verify::verify_proposal(chain_id, proposal, got, key)
            }
            (_, other) => Err(Failure::WrongType(format!("{:?}", other.kind()))),
        }
    }

    /// Sends a sign request and accounts for the answer; returns what got signed.
    fn sign(&mut self, kind: &str, req: Request, expect: Expect) -> Option<Signed> {
        let what = describe(&req);
        if self.key.is_none() {
            // Without a key there is no validator address to put in the vote, nor anything
            // to verify against; a real node would not have got this far.
            let f = Failure::NoValidatorKey;
            self.rec
                .fail(kind, &what, f.label(), &f.to_string(), Duration::ZERO);
            return None;
        }
        let answer = match self.node.request(self.cfg.protocol, &req) {
            Ok(a) => a,
            // A run stopped mid-request is not the signer's failure.
            Err(f) if matches!(f.error, NodeError::Stopped) => return Default::default(),
            Err(f) => {
                let detail = format!("{} after {} attempts", f.error, f.attempts);
                self.rec
                    .fail(kind, &what, f.error.label(), &detail, f.total);
                return None;
            }
        };
        self.last_activity = Instant::now();
        if let Some(err) = answer.response.error() {
            self.rec.refusal(&err.description);
            match expect {
                Expect::Refusal => self.finish_ok(kind, &what, &answer),
                Expect::Signature => {
                    let detail = format!("code {}: {}", err.code, err.description);
                    self.rec
                        .fail(kind, &what, "unexpected_refusal", &detail, answer.total);
                }
            }
            return None;
        }
        let verified = match self.verify_answer(&req, &answer.response) {
            Ok(v) => v,
            Err(f) => {
                self.rec
                    .fail(kind, &what, f.label(), &f.to_string(), answer.total);
                return None;
            }
        };
        let key = hrs_key(&req)?;
        if let Some(out) = self.signatures_out.as_mut() {
            if let Err(e) = crate::doublesign::write_signature(
                out,
                &key,
                &verified.normalized,
                &verified.sign_bytes,
                &verified.signature,
            ) {
                self.rec
                    .fail(kind, &what, "signature_log", &e.to_string(), answer.total);
            }
        }
        if let Some(ds) = self
            .ledger
            .record(key.clone(), verified.normalized, &verified.sign_bytes)
        {
            self.rec.double_sign(ds);
        }
        match expect {
            Expect::Signature => self.finish_ok(kind, &what, &answer),
            Expect::Refusal => {
                self.rec.fail(
                    kind,
                    &what,
                    "signed_conflict",
                    "a conflicting request was signed",
                    answer.total,
                );
            }
        }
        Some(Signed {
            key,
            request: req,
            returned: verified.timestamp,
        })
    }

    fn remember(&mut self, signed: Signed) {
        let h = self.history.entry(signed.key.chain_id.clone()).or_default();
        if h.len() >= self.history_len {
            h.pop_front();
        }
        h.push_back(signed);
    }

    fn ping(&mut self) {
        match self.node.ping(self.cfg.protocol) {
            None => {}
            Some(Ok(answer)) => {
                self.last_activity = Instant::now();
                self.finish_ok("ping", "", &answer);
            }
            Some(Err(f)) if f.wrong_types > 0 => {
                self.rec.fail(
                    "ping",
                    "",
                    "wrong_response_type",
                    &f.error.to_string(),
                    f.total,
                );
            }
            // The node just reconnects; counted in the connection statistics.
            Some(Err(_)) => {}
        }
    }

    /// Waits out the block time, pinging when idle like the node's ping loop.
    fn idle(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        let ping_interval = self.cfg.node.read_write_timeout * 2 / 3;
        while !self.out_of_time() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let next_ping = self.last_activity + ping_interval;
            if now >= next_ping {
                self.ping();
                continue;
            }
            // Short slices so a stop request is honoured promptly.
            let slice = until
                .min(next_ping)
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            thread::sleep(slice);
        }
    }

    fn run_plan(&mut self) {
        let plan = Plan::new(PlanConfig {
            chains: self.cfg.chain_ids.clone(),
            start_height: self.cfg.start_height,
            heights: self.cfg.heights,
            proposal_every: self.cfg.proposal_every,
            nil_round_every: self.cfg.nil_round_every,
            ping_every: self.cfg.ping_every,
            order: self.cfg.chain_order,
        });
        for action in plan {
            if self.out_of_time() {
                break;
            }
            match action {
                Action::PubKey { chain } => {
                    let chain_id = self.cfg.chain_ids[chain].clone();
                    self.pubkey(&chain_id);
                }
                Action::Ping => self.ping(),
                Action::Proposal {
                    chain,
                    height,
                    round,
                } => {
                    let req = Self::proposal_request(
                        &self.cfg.chain_ids[chain],
                        height,
                        round,
                        &self.cfg.block_variant,
                    );
                    if let Some(s) = self.sign("proposal", req, Expect::Signature) {
                        self.remember(s);
                    }
                }
                Action::Vote {
                    chain,
                    height,
                    round,
                    step,
                    nil,
                } => {
                    let req = self.vote_request(
                        &self.cfg.chain_ids[chain],
                        height,
                        round,
                        step,
                        nil,
                        &self.cfg.block_variant,
                    );
                    let kind = match step {
                        VoteStep::Prevote => "prevote",
                        VoteStep::Precommit => "precommit",
                    };
                    if let Some(s) = self.sign(kind, req, Expect::Signature) {
                        self.remember(s);
                    }
                }
                Action::Committed { chain, height } => {
                    self.rec.committed();
                    if self.cfg.progress {
                        use std::io::Write as _;
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(
                            out,
                            "height {height} committed {}",
                            self.cfg.chain_ids[chain]
                        );
                        let _ = out.flush();
                    }
                    if !self.cfg.block_time.is_zero() {
                        self.idle(self.cfg.block_time);
                    }
                }
            }
        }
    }

    fn last_signed(&self) -> Vec<Signed> {
        self.cfg
            .chain_ids
            .iter()
            .filter_map(|c| self.history.get(c).and_then(|h| h.back()).cloned())
            .collect()
    }

    /// Identical resend of each chain's last signed request (what a node's retry does).
    fn replay(&mut self) {
        for last in self.last_signed() {
            self.sign("replay", last.request, Expect::Signature);
        }
    }

    /// Resend of each chain's last signed request with only the timestamp changed.
    fn timestamp_replay(&mut self) {
        for last in self.last_signed() {
            let mut req = last.request.clone();
            let mut ts = now_timestamp();
            if ts == last.returned {
                ts.nanos = (ts.nanos + 1) % 1_000_000_000;
            }
            set_timestamp(&mut req, ts);
            if let Some(s) = self.sign("timestamp_replay", req, Expect::Signature) {
                let tr = &mut self.rec.report_mut().timestamp_replay;
                if s.returned == last.returned {
                    tr.returned_stored += 1;
                } else if s.returned == ts {
                    tr.returned_new += 1;
                } else {
                    tr.returned_other += 1;
                }
            }
        }
    }

    /// For up to K signed heights per chain (newest first), a same-HRS request for another block.
    fn conflicts(&mut self) {
        for chain_id in self.cfg.chain_ids.clone() {
            let Some(hist) = self.history.get(&chain_id) else {
                continue;
            };
            let mut heights: Vec<i64> = hist.iter().rev().map(|s| s.key.height).collect();
            heights.dedup();
            let targets: Vec<Signed> = heights
                .iter()
                .take(self.cfg.conflicts)
                .enumerate()
                .filter_map(|(i, h)| {
                    let at: Vec<&Signed> =
                        hist.iter().rev().filter(|s| s.key.height == *h).collect();
                    at.get(i % at.len().max(1)).map(|s| (*s).clone())
                })
                .collect();
            for (i, target) in targets.into_iter().enumerate() {
                let variant = format!("conflict-{i}");
                let k = &target.key;
                let req = match &target.request {
                    Request::SignVote { vote, .. } => {
                        let step = if vote.r#type == 1 {
                            VoteStep::Prevote
                        } else {
                            VoteStep::Precommit
                        };
                        self.vote_request(&chain_id, k.height, k.round, step, false, &variant)
                    }
                    _ => Self::proposal_request(&chain_id, k.height, k.round, &variant),
                };
                self.sign("conflict", req, Expect::Refusal);
            }
        }
    }
}

/// Runs the simulation on a bound listener until the plan, the duration or the stop flag ends it.
pub fn run(listener: impl Into<Listener>, cfg: &SimConfig) -> Result<Report, SimError> {
    cfg.validate()?;
    let expected = cfg
        .expect_pubkey
        .map(|b| VerifyingKey::from_bytes(&b))
        .transpose()
        .map_err(|_| SimError::Config("--expect-pubkey is not a valid ed25519 key".into()))?;
    let node_cfg = NodeConfig {
        stop: cfg.stop.clone(),
        ..cfg.node.clone()
    };
    let node = Node::new(listener.into(), node_cfg).map_err(SimError::Io)?;
    let mut d = Driver {
        cfg,
        node,
        rec: Recorder::new(cfg.protocol.name(), &cfg.chain_ids),
        ledger: Ledger::new(cfg.ledger_max_keys),
        signatures_out: match &cfg.signatures_out {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(SimError::Io)?,
            ),
            None => None,
        },
        key: None,
        address: Vec::new(),
        history: HashMap::new(),
        history_len: 3 * (cfg.conflicts + 1),
        last_activity: Instant::now(),
        started: Instant::now(),
    };
    if let Some(vk) = expected {
        d.learn_key(vk);
    }
    d.run_plan();
    let stopped = cfg.stop.load(Ordering::Relaxed);
    if !stopped && cfg.replay {
        d.replay();
    }
    if !stopped && cfg.timestamp_replay {
        d.timestamp_replay();
    }
    if !stopped && cfg.conflicts > 0 {
        d.conflicts();
    }
    let elapsed = d.started.elapsed();
    let stats = d.node.stats().clone();
    let ids = d.node.signer_ids().to_vec();
    let pruned = d.ledger.pruned();
    let mut report = d.rec.finish(elapsed);
    report.connections = stats;
    report.signer_ids = ids;
    report.ledger_pruned = pruned;
    report.stopped_early = stopped;
    Ok(report)
}
