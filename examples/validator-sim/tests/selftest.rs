//! End-to-end self-test: the sim against a tiny in-test signer (tendermint-p2p +
//! ed25519-dalek), proving the loop works for v0.34 and v0.38 and that faults are caught.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use prost::Message as _;
use tendermint_p2p::secret_connection::{SecretConnection, Version};
use tendermint_proto::v0_38::crypto::{public_key, PublicKey};
use tendermint_proto::v0_38::privval::{message::Sum, *};
use tendermint_proto::v0_38::types::{BlockId, CanonicalVoteExtension};
use validator_sim::wire::{write_msg, MsgReader};
use validator_sim::{Protocol, Report, SimConfig};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Sign the extension of no vote (tmkms 0.15's v0.38 bug).
    NoExtensionSignature,
    /// Corrupt the signature of every precommit.
    BadSignature,
    /// Keep no double-sign state at all.
    NoGuard,
    /// Close the connection instead of answering the n-th request.
    DropAt(usize),
    /// Raise the simulation's stop flag after the n-th answer (chaos-run ending).
    StopAt(usize),
}

fn is_nil(b: &Option<BlockId>) -> bool {
    b.as_ref().is_none_or(|b| b.hash.is_empty())
}

/// A signer in a few dozen lines: answers v0.38 messages (wire-compatible with v0.34 when no
/// extension is set) and refuses a different block at an already-signed height/round/step.
/// `connected` fires once the handshake is over (either way).
fn spawn_signer(
    port: u16,
    key: SigningKey,
    fault: Fault,
    connected: mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<usize> {
    thread::spawn(move || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let identity = ed25519_consensus::SigningKey::from([0x42; 32]);
        let handshake = SecretConnection::new(stream, identity, Version::V0_34);
        let _ = connected.send(());
        let Ok(mut sc) = handshake else {
            return 0;
        };
        let mut reader = MsgReader::default();
        let mut signed: HashMap<(String, i64, i32, i32), Option<BlockId>> = HashMap::new();
        let mut answered = 0;
        let refuse = |d: &str| {
            Some(RemoteSignerError {
                code: 2,
                description: d.into(),
            })
        };
        loop {
            let Ok(bytes) = reader.read_msg(&mut sc) else {
                return answered;
            };
            if fault == Fault::DropAt(answered) {
                return answered;
            }
            let sum = match Message::decode(bytes.as_slice()).unwrap().sum.unwrap() {
                Sum::PubKeyRequest(_) => Sum::PubKeyResponse(PubKeyResponse {
                    pub_key: Some(PublicKey {
                        sum: Some(public_key::Sum::Ed25519(
                            key.verifying_key().to_bytes().to_vec(),
                        )),
                    }),
                    error: None,
                }),
                Sum::SignVoteRequest(r) => {
                    let mut v = r.vote.unwrap();
                    let hrs = (r.chain_id.clone(), v.height, v.round, v.r#type);
                    let prior = signed.get(&hrs).cloned();
                    if fault != Fault::NoGuard && prior.is_some_and(|b| b != v.block_id) {
                        Sum::SignedVoteResponse(SignedVoteResponse {
                            vote: None,
                            error: refuse("double sign"),
                        })
                    } else {
                        signed.insert(hrs, v.block_id.clone());
                        let domain = tendermint::vote::Vote::try_from(v.clone()).unwrap();
                        let chain = tendermint::chain::Id::try_from(r.chain_id.clone()).unwrap();
                        let mut sig = key
                            .sign(&domain.into_signable_vec(chain))
                            .to_bytes()
                            .to_vec();
                        if fault == Fault::BadSignature && v.r#type == 2 {
                            sig[0] ^= 1;
                        }
                        v.signature = sig;
                        let ext_wanted = v.r#type == 2 && !is_nil(&v.block_id);
                        if ext_wanted && fault != Fault::NoExtensionSignature {
                            let ext = CanonicalVoteExtension {
                                extension: v.extension.clone(),
                                height: v.height,
                                round: v.round.into(),
                                chain_id: r.chain_id.clone(),
                            };
                            v.extension_signature = key
                                .sign(&ext.encode_length_delimited_to_vec())
                                .to_bytes()
                                .to_vec();
                        }
                        Sum::SignedVoteResponse(SignedVoteResponse {
                            vote: Some(v),
                            error: None,
                        })
                    }
                }
                Sum::SignProposalRequest(r) => {
                    let mut p = r.proposal.unwrap();
                    let hrs = (r.chain_id.clone(), p.height, p.round, 32);
                    let prior = signed.get(&hrs).cloned();
                    if fault != Fault::NoGuard && prior.is_some_and(|b| b != p.block_id) {
                        Sum::SignedProposalResponse(SignedProposalResponse {
                            proposal: None,
                            error: refuse("double sign"),
                        })
                    } else {
                        signed.insert(hrs, p.block_id.clone());
                        let domain = tendermint::proposal::Proposal::try_from(p.clone()).unwrap();
                        let chain = tendermint::chain::Id::try_from(r.chain_id.clone()).unwrap();
                        p.signature = key
                            .sign(&domain.into_signable_vec(chain))
                            .to_bytes()
                            .to_vec();
                        Sum::SignedProposalResponse(SignedProposalResponse {
                            proposal: Some(p),
                            error: None,
                        })
                    }
                }
                Sum::PingRequest(_) => Sum::PingResponse(PingResponse {}),
                other => panic!("signer got {other:?}"),
            };
            if write_msg(&mut sc, &Message { sum: Some(sum) }.encode_to_vec()).is_err() {
                return answered;
            }
            answered += 1;
            if fault == Fault::StopAt(answered) {
                stop.store(true, Ordering::Relaxed);
            }
        }
    })
}

fn config(protocol: Protocol, heights: u64) -> SimConfig {
    let mut cfg = SimConfig::new(protocol, vec!["sim-a".into(), "sim-b".into()]);
    cfg.heights = Some(heights);
    cfg.nil_round_every = 3;
    cfg.proposal_every = 2;
    cfg.ping_every = 2;
    cfg
}

/// Runs the sim against signers started in order: each next one only once the previous
/// is connected, so it waits in the listen backlog (the fail-over path).
fn run_with(cfg: &SimConfig, faults: &[Fault]) -> Report {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sim_cfg = cfg.clone();
    let sim = thread::spawn(move || validator_sim::run(listener, &sim_cfg).unwrap());
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut signers = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        signers.push(spawn_signer(
            port,
            key.clone(),
            *fault,
            tx,
            cfg.stop.clone(),
        ));
        if i + 1 < faults.len() {
            rx.recv_timeout(Duration::from_secs(20)).unwrap();
        }
    }
    let report = sim.join().unwrap();
    for s in signers {
        s.join().unwrap();
    }
    report
}

fn assert_clean(r: &Report) {
    assert_eq!(r.failed, 0, "{}", r.render());
    assert_eq!(r.double_signs, 0);
    assert!(r
        .render()
        .ends_with(&format!("{} passed, 0 failed\n", r.passed)));
}

#[test]
fn v0_34_honest_signer_passes_everything() {
    let mut cfg = config(Protocol::V0_34, 6);
    cfg.replay = true;
    cfg.timestamp_replay = true;
    cfg.conflicts = 2;
    let r = run_with(&cfg, &[Fault::None]);
    assert_clean(&r);
    // 2 chains x 6 heights: a pubkey and both votes per height, proposals every 2nd height,
    // nil rounds (two extra votes) every 3rd.
    assert_eq!(r.by_type["pubkey"].passed, 12);
    assert_eq!(r.by_type["proposal"].passed, 6);
    assert_eq!(r.by_type["prevote"].passed, 12 + 4);
    assert_eq!(r.by_type["precommit"].passed, 12 + 4);
    assert_eq!(r.by_type["ping"].passed, 6);
    assert_eq!(r.by_type["replay"].passed, 2);
    assert_eq!(r.by_type["conflict"].passed, 4);
    assert_eq!(r.refusals["double sign"], 4);
    // The test signer signs the new timestamp (tmkms-like).
    assert_eq!(r.timestamp_replay.returned_new, 2);
    assert!(r.by_type["precommit"].latency.p50_ms > 0.0);
    assert_eq!(r.connections.accepted, 1);
    assert_eq!((r.heights_committed, r.heights_missed), (12, 0));
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["passed"], r.passed);
    assert_eq!(json["protocol"], "v0.34");
    // The end-to-end tests read the report back through the same types: nothing is lost.
    let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.render(), r.render());
    assert_eq!(back.refusals, r.refusals);
}

#[test]
fn v0_38_honest_signer_passes_with_extensions() {
    let mut cfg = config(Protocol::V0_38, 8);
    cfg.replay = true;
    cfg.conflicts = 3;
    let r = run_with(&cfg, &[Fault::None]);
    assert_clean(&r);
    assert_eq!(r.by_type["conflict"].passed, 6);
    assert!(r.validator_pubkey.is_some());
}

#[test]
fn v0_38_missing_extension_signature_is_caught() {
    let r = run_with(&config(Protocol::V0_38, 4), &[Fault::NoExtensionSignature]);
    // Every non-nil precommit (one per height per chain) fails; nil ones pass.
    assert_eq!(
        r.failures["missing_extension_signature"],
        8,
        "{}",
        r.render()
    );
    assert_eq!(r.by_type["precommit"].failed, 8);
    assert_eq!(r.by_type["precommit"].passed, 2);
    assert!(!r.success());
    assert!(r
        .render()
        .ends_with(&format!("{} passed, {} failed\n", r.passed, r.failed)));
}

#[test]
fn bad_signature_is_caught() {
    let r = run_with(&config(Protocol::V0_34, 3), &[Fault::BadSignature]);
    assert_eq!(r.failures["bad_signature"], 8, "{}", r.render());
    assert_eq!(r.by_type["prevote"].failed, 0);
    // Every height has a precommit, so every height is missed.
    assert_eq!((r.heights_committed, r.heights_missed), (6, 6));
    assert!(!r.success());
}

#[test]
fn a_signer_without_protection_is_a_double_signer() {
    let mut cfg = config(Protocol::V0_38, 3);
    cfg.conflicts = 2;
    let r = run_with(&cfg, &[Fault::NoGuard]);
    assert_eq!(r.double_signs, 4, "{}", r.render());
    assert_eq!(r.failures["signed_conflict"], 4);
    assert_eq!(r.double_sign_details.len(), 4);
    assert!(!r.success());
}

#[test]
fn fail_over_to_the_next_signer_retries_the_same_request() {
    let mut cfg = config(Protocol::V0_38, 6);
    cfg.chain_ids.truncate(1);
    // The first signer vanishes mid-run; the second waits in the backlog until accepted.
    let r = run_with(&cfg, &[Fault::DropAt(10), Fault::None]);
    assert_clean(&r);
    assert_eq!(r.connections.accepted, 2, "{}", r.render());
    assert_eq!(r.signer_ids.len(), 1, "both test signers share an identity");
    assert!(r.connections.retries >= 1);
}

#[test]
fn a_v038_signer_cannot_serve_a_v1_node() {
    let r = run_with(&config(Protocol::V1, 1), &[Fault::None]);
    // The key sits in field 1, which v1 reserves: the node sees no key at all.
    assert_eq!(r.by_type["pubkey"].failed, 2, "{}", r.render());
    assert_eq!(r.failures["missing_pubkey"], 2);
    assert!(!r.success());
}

#[test]
fn stop_flag_ends_an_unbounded_run_without_failures() {
    let mut cfg = config(Protocol::V0_38, 1);
    cfg.heights = None;
    cfg.replay = true;
    let r = run_with(&cfg, &[Fault::StopAt(40)]);
    assert!(r.stopped_early);
    assert_eq!(r.failed, 0, "{}", r.render());
    // The plan ends at the next action after the flag; no end-of-run probes after a stop.
    assert!((40..=41).contains(&r.passed), "{}", r.render());
    assert!(!r.by_type.contains_key("replay"));
}
