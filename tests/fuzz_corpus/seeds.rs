//! The generated seeds of each fuzz target, from real messages, and what each must amount to.
//!
//! Privval requests are encoded by the validator simulator with `tendermint-proto` (each
//! protocol version's own messages), never by our schema. Sign bytes are the golden vectors
//! of `tests/sign_bytes_vectors.rs` and our encoder's output. Cluster seeds are real
//! `ClusterRequest` frames whose commitments are references (see `cosigner::testkit::fuzz`).
//! State files are written by the state file code itself, then damaged.

use std::collections::BTreeMap;

use cosigner::privval::messages::{self as ours, FrameError, RequestKind};
use cosigner::privval::sign_doc::{extension_sign_doc, proposal_sign_doc, vote_sign_doc};
use cosigner::sign_state::{SignState, StateFile};
use cosigner::testkit::fuzz::{
    cluster_input, commitment_ref, state_input, ClusterSummary, SignBytesOutcome, StateOutcome,
    StreamEnd, COMPACT, FIX_CHECKSUM_0, FIX_CHECKSUM_1, OWN_ID,
};
use cosigner::testkit::CHAIN;
use cosigner::threshold::messages::{
    ClusterRequest, Commitment, PeerId, RefusalKind, SignPart, SignRequest,
};
use sha2::{Digest, Sha256};
use tendermint_proto::google::protobuf::Timestamp as TmTimestamp;
use tendermint_proto::v0_38::types as tm;
use validator_sim::wire::{encode_request, write_msg, Protocol, Request as SimRequest};

/// What a seed must amount to under its target's check.
#[derive(Debug)]
pub enum Expect {
    Privval {
        requests: Vec<RequestKind>,
        sign_docs: usize,
        /// Messages that are exactly our own encoding of them.
        canonical: usize,
        end: StreamEnd,
    },
    SignBytes(SignBytesOutcome),
    Cluster(ClusterSummary),
    State(StateOutcome),
}

#[derive(Debug)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

pub fn all() -> Vec<Seed> {
    let mut seeds = privval();
    seeds.extend(sign_bytes());
    seeds.extend(cluster());
    seeds.extend(state());
    seeds
}

const EXAMPLE_CHAIN: &str = "example-chain";
const SECONDS: i64 = 1_767_323_045;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

// ---- privval ----

fn tm_block(name: &str) -> tm::BlockId {
    tm::BlockId {
        hash: Sha256::digest(name.as_bytes()).to_vec(),
        part_set_header: Some(tm::PartSetHeader {
            total: 1,
            hash: Sha256::digest(format!("parts of {name}").as_bytes()).to_vec(),
        }),
    }
}

/// A Go node's nil block ID: present, empty.
fn tm_nil() -> tm::BlockId {
    tm::BlockId {
        hash: vec![],
        part_set_header: Some(tm::PartSetHeader::default()),
    }
}

fn tm_vote(r#type: tm::SignedMsgType, height: i64, block: tm::BlockId, ext: &[u8]) -> tm::Vote {
    tm::Vote {
        r#type: r#type as i32,
        height,
        round: 0,
        block_id: Some(block),
        timestamp: Some(TmTimestamp {
            seconds: SECONDS,
            nanos: 123_456_789,
        }),
        validator_address: vec![0x11; 20],
        validator_index: 0,
        signature: vec![],
        extension: ext.to_vec(),
        extension_signature: vec![],
    }
}

fn tm_proposal(round: i32, pol_round: i32) -> tm::Proposal {
    tm::Proposal {
        r#type: tm::SignedMsgType::Proposal as i32,
        height: 12,
        round,
        pol_round,
        block_id: Some(tm_block("B")),
        timestamp: Some(TmTimestamp {
            seconds: SECONDS,
            nanos: 0,
        }),
        signature: vec![],
    }
}

fn vote_request(vote: tm::Vote) -> SimRequest {
    SimRequest::SignVote {
        chain_id: EXAMPLE_CHAIN.into(),
        vote,
        skip_extension_signing: false,
    }
}

fn delimited(protocol: Protocol, requests: &[SimRequest]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        write_msg(&mut out, &encode_request(protocol, r).unwrap()).unwrap();
    }
    out
}

fn privval_seed(name: String, bytes: Vec<u8>, expect: Expect) -> Seed {
    Seed {
        target: "privval_decode",
        name,
        bytes,
        expect,
    }
}

fn fine(requests: Vec<RequestKind>, sign_docs: usize) -> Expect {
    Expect::Privval {
        canonical: requests.len(),
        requests,
        sign_docs,
        end: StreamEnd::Exhausted,
    }
}

fn privval() -> Vec<Seed> {
    use tm::SignedMsgType::{Precommit, Prevote};
    use RequestKind::{Ping, PubKey, SignBytes, SignProposal, SignVote};
    let pubkey = SimRequest::PubKey {
        chain_id: EXAMPLE_CHAIN.into(),
    };
    let prevote = vote_request(tm_vote(Prevote, 12, tm_block("B"), b""));
    let proposal = SimRequest::SignProposal {
        chain_id: EXAMPLE_CHAIN.into(),
        proposal: tm_proposal(0, -1),
    };
    let mut seeds = Vec::new();
    for protocol in [
        Protocol::V0_34,
        Protocol::V0_37,
        Protocol::V0_38,
        Protocol::V1,
    ] {
        let v = protocol.name();
        // Older versions drop the extension field; the vote is still a non-nil precommit.
        let precommit = vote_request(tm_vote(Precommit, 12, tm_block("B"), b"extension"));
        let cases: Vec<(&str, Vec<SimRequest>, Vec<RequestKind>, usize)> = vec![
            ("pubkey", vec![pubkey.clone()], vec![PubKey], 0),
            ("ping", vec![SimRequest::Ping], vec![Ping], 0),
            ("prevote", vec![prevote.clone()], vec![SignVote], 1),
            (
                "nil-prevote",
                vec![vote_request(tm_vote(Prevote, 12, tm_nil(), b""))],
                vec![SignVote],
                1,
            ),
            ("precommit", vec![precommit], vec![SignVote], 2),
            ("proposal", vec![proposal.clone()], vec![SignProposal], 1),
            (
                "stream",
                vec![
                    SimRequest::Ping,
                    pubkey.clone(),
                    prevote.clone(),
                    proposal.clone(),
                ],
                vec![Ping, PubKey, SignVote, SignProposal],
                2,
            ),
        ];
        for (name, requests, kinds, docs) in cases {
            let bytes = delimited(protocol, &requests);
            seeds.push(privval_seed(
                format!("{v}-{name}"),
                bytes,
                fine(kinds, docs),
            ));
        }
    }
    let v1 = |requests: &[SimRequest]| delimited(Protocol::V1, requests);
    let vote_bytes = vote_sign_doc(EXAMPLE_CHAIN, &ours_vote())
        .unwrap()
        .sign_bytes;
    let mut skip = tm_vote(Precommit, 13, tm_block("C"), b"");
    skip.round = 2;
    let more = [
        (
            "v1-sign-bytes",
            v1(&[SimRequest::SignBytes {
                value: b"hello".to_vec(),
            }]),
            fine(vec![SignBytes], 0),
        ),
        (
            "v1-sign-bytes-of-a-vote",
            v1(&[SimRequest::SignBytes { value: vote_bytes }]),
            fine(vec![SignBytes], 0),
        ),
        (
            "v1-skip-extension",
            v1(&[SimRequest::SignVote {
                chain_id: EXAMPLE_CHAIN.into(),
                vote: skip,
                skip_extension_signing: true,
            }]),
            fine(vec![SignVote], 2),
        ),
        (
            "v0.38-height-zero",
            delimited(
                Protocol::V0_38,
                &[vote_request(tm_vote(Prevote, 0, tm_block("B"), b""))],
            ),
            fine(vec![SignVote], 0),
        ),
        (
            "v0.38-pol-round",
            delimited(
                Protocol::V0_38,
                &[SimRequest::SignProposal {
                    chain_id: EXAMPLE_CHAIN.into(),
                    proposal: tm_proposal(3, 1),
                }],
            ),
            fine(vec![SignProposal], 1),
        ),
    ];
    for (name, bytes, expect) in more {
        seeds.push(privval_seed(name.into(), bytes, expect));
    }

    let mut truncated = delimited(Protocol::V0_38, std::slice::from_ref(&prevote));
    truncated.truncate(truncated.len() - 5);
    let refused = |e: FrameError, requests: Vec<RequestKind>| Expect::Privval {
        canonical: requests.len(),
        requests,
        sign_docs: 0,
        end: StreamEnd::Refused(e),
    };
    let damaged = [
        (
            "oversized-prefix",
            vec![0x81, 0x50, 0x0A],
            refused(FrameError::Oversized { len: 10241 }, vec![]),
        ),
        (
            "non-minimal-prefix",
            vec![0x85, 0x00, 0x3A, 0x00, 0x00, 0x00, 0x00],
            refused(FrameError::NonMinimalPrefix, vec![]),
        ),
        (
            "long-prefix",
            [&[0x02, 0x3A, 0x00][..], &[0xFF, 0xFF, 0x03]].concat(),
            refused(FrameError::PrefixTooLong, vec![Ping]),
        ),
        (
            "bad-protobuf",
            vec![0x02, 0x0F, 0x00],
            refused(ours::decode_message(&[0x0F, 0x00]).unwrap_err(), vec![]),
        ),
        (
            "truncated-vote",
            truncated,
            Expect::Privval {
                requests: vec![],
                sign_docs: 0,
                canonical: 0,
                end: StreamEnd::Truncated,
            },
        ),
        (
            "ping-response",
            vec![0x02, 0x42, 0x00],
            Expect::Privval {
                requests: vec![],
                sign_docs: 0,
                canonical: 1,
                end: StreamEnd::Exhausted,
            },
        ),
    ];
    for (name, bytes, expect) in damaged {
        seeds.push(privval_seed(name.into(), bytes, expect));
    }
    seeds
}

// ---- sign bytes ----

fn block(name: &str) -> ours::WireBlockId {
    ours::WireBlockId {
        hash: Sha256::digest(name.as_bytes()).to_vec(),
        part_set_header: Some(ours::WirePartSetHeader {
            total: 1,
            hash: Sha256::digest(format!("parts of {name}").as_bytes()).to_vec(),
        }),
    }
}

fn ours_vote() -> ours::Vote {
    ours::Vote {
        r#type: ours::SignedMsgType::Prevote as i32,
        height: 12,
        round: 0,
        block_id: Some(block("B")),
        timestamp: Some(ours::Timestamp {
            seconds: SECONDS,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Canonical vote sign bytes on `chain`.
fn vote_bytes(
    chain: &str,
    height: i64,
    round: i32,
    r#type: ours::SignedMsgType,
    block_name: Option<&str>,
    seconds: i64,
) -> Vec<u8> {
    let vote = ours::Vote {
        r#type: r#type as i32,
        height,
        round,
        block_id: block_name.map(block),
        timestamp: Some(ours::Timestamp { seconds, nanos: 0 }),
        ..Default::default()
    };
    vote_sign_doc(chain, &vote).unwrap().sign_bytes
}

fn proposal_bytes(chain: &str, height: i64, round: i32, pol_round: i32) -> Vec<u8> {
    let p = ours::Proposal {
        r#type: ours::SignedMsgType::Proposal as i32,
        height,
        round,
        pol_round,
        block_id: Some(block("B")),
        timestamp: Some(ours::Timestamp {
            seconds: SECONDS,
            nanos: 5,
        }),
        signature: vec![],
    };
    proposal_sign_doc(chain, &p).unwrap().sign_bytes
}

fn extension_bytes(chain: &str, height: i64, round: i32, extension: &[u8]) -> Vec<u8> {
    let mut vote = ours_vote();
    vote.r#type = ours::SignedMsgType::Precommit as i32;
    vote.height = height;
    vote.round = round;
    vote.extension = extension.to_vec();
    extension_sign_doc(chain, &vote).unwrap().sign_bytes
}

fn sign_bytes() -> Vec<Seed> {
    use ours::SignedMsgType::{Precommit, Prevote};
    use SignBytesOutcome::{Extension, Proposal, Rejected, Vote};
    let golden_precommit = hex("710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E");
    let golden_nil_prevote = hex("27 08 01 11 0C00000000000000 2A 0B 08A5EBDCCA06 10959AEF3A 32 0D 6578616D706C652D636861696E");
    let golden_extension = hex("2B 0A 11 6578616D706C6520657874656E73696F6E 11 0C00000000000000 22 0D 6578616D706C652D636861696E");
    let golden_proposal = hex("7C 0820 11 0C00000000000000 20 FFFFFFFFFFFFFFFFFF01 2A48 0A20 A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652 1224 0801 1220 F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF1 320B 08A5EBDCCA06 10959AEF3A 3A0D 6578616D706C652D636861696E");

    let with = |bytes: &[u8], at: usize, value: u8| {
        let mut b = bytes.to_vec();
        b[at] = value;
        b
    };
    let mut non_minimal = vec![0xF1, 0x00];
    non_minimal.extend_from_slice(&golden_precommit[1..]);
    // The nil prevote with its timestamp's nanos as a 5-byte varint instead of 4: it decodes,
    // but is not canonical.
    let padded = hex(
        "28 0801 110C00000000000000 2A0C 08A5EBDCCA06 10959AEFBA00 320D 6578616D706C652D636861696E",
    );

    let cases: Vec<(&str, Vec<u8>, SignBytesOutcome)> = vec![
        ("golden-precommit", golden_precommit.clone(), Vote),
        ("golden-nil-prevote", golden_nil_prevote.clone(), Vote),
        ("golden-extension", golden_extension.clone(), Extension),
        ("golden-proposal", golden_proposal.clone(), Proposal),
        (
            "precommit-high",
            vote_bytes(CHAIN, 1 << 40, 7, Precommit, Some("X"), 0),
            Vote,
        ),
        (
            "nil-precommit",
            vote_bytes(CHAIN, 3, 1, Precommit, None, -62_135_596_800),
            Vote,
        ),
        (
            "prevote-max-round",
            vote_bytes(CHAIN, 1, i32::MAX, Prevote, Some("Y"), 253_402_300_799),
            Vote,
        ),
        (
            "proposal-pol-round",
            proposal_bytes(CHAIN, 9, 4, 3),
            Proposal,
        ),
        (
            "extension-empty",
            extension_bytes(CHAIN, 12, 0, b""),
            Extension,
        ),
        (
            "extension-long",
            extension_bytes(CHAIN, 12, 1, &[0xAB; 300]),
            Extension,
        ),
        ("non-minimal-prefix", non_minimal, Rejected),
        ("short-prefix", with(&golden_precommit, 0, 0x70), Rejected),
        ("type-3", with(&golden_precommit, 2, 3), Rejected),
        ("non-canonical-nanos", padded, Rejected),
        (
            "truncated",
            golden_proposal[..golden_proposal.len() - 1].to_vec(),
            Rejected,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, bytes, outcome)| Seed {
            target: "sign_bytes",
            name: name.into(),
            bytes,
            expect: Expect::SignBytes(outcome),
        })
        .collect()
}

// ---- cluster ----

/// A part signed by `signers`, each naming one of its real commitments by index.
fn part(bytes: Vec<u8>, signers: &[(PeerId, u8)]) -> SignPart {
    SignPart {
        sign_bytes: bytes,
        commitments: signers
            .iter()
            .map(|(p, i)| (*p, commitment_ref(*i)))
            .collect(),
    }
}

fn sign(vote: SignPart, extension: Option<SignPart>) -> ClusterRequest {
    ClusterRequest::Sign(SignRequest {
        vote,
        extension,
        upcoming: BTreeMap::new(),
    })
}

fn prevote_at(height: i64, block_name: &str, ours_index: u8) -> ClusterRequest {
    let bytes = vote_bytes(
        CHAIN,
        height,
        0,
        ours::SignedMsgType::Prevote,
        Some(block_name),
        SECONDS,
    );
    sign(part(bytes, &[(1, 0), (OWN_ID, ours_index)]), None)
}

fn summary(
    requests: usize,
    released: usize,
    with_extension: usize,
    refusals: Vec<RefusalKind>,
) -> ClusterSummary {
    ClusterSummary {
        requests,
        released,
        released_with_extension: with_extension,
        refusals,
        ..Default::default()
    }
}

fn cluster() -> Vec<Seed> {
    use ours::SignedMsgType::{Precommit, Prevote};
    use RefusalKind::{BadRequest, SignBytes, UnknownCommitment, Watermark};
    let precommit = vote_bytes(CHAIN, 10, 0, Precommit, Some("B"), SECONDS);
    let with_extension = sign(
        part(precommit.clone(), &[(1, 0), (OWN_ID, 0)]),
        Some(part(
            extension_bytes(CHAIN, 10, 0, b"ext"),
            &[(1, 1), (OWN_ID, 1)],
        )),
    );
    let proposal = sign(
        part(proposal_bytes(CHAIN, 10, 0, -1), &[(OWN_ID, 0), (3, 0)]),
        None,
    );
    let mut upcoming = SignRequest {
        vote: part(
            vote_bytes(CHAIN, 5, 0, Prevote, Some("A"), SECONDS),
            &[(1, 0), (OWN_ID, 0)],
        ),
        extension: None,
        upcoming: BTreeMap::from([(1, vec![commitment_ref(2)]), (3, vec![commitment_ref(1)])]),
    };
    let announced = ClusterRequest::Sign(upcoming.clone());
    upcoming.vote = part(
        vote_bytes(CHAIN, 6, 0, Prevote, Some("A"), SECONDS),
        &[(1, 2), (OWN_ID, 1)],
    );
    upcoming.upcoming.clear();
    let invalid_point = {
        let mut p = part(precommit.clone(), &[(1, 0), (OWN_ID, 0)]);
        p.commitments.insert(
            1,
            Commitment {
                hiding: [0xFF; 32],
                binding: [0xFF; 32],
            },
        );
        sign(p, None)
    };
    let mut garbage_frame = cluster_input(1, &[ClusterRequest::Commitments { count: 1 }]);
    garbage_frame[6] = 9; // an enum variant that does not exist
    let commitments = |count| ClusterRequest::Commitments { count };

    let cases: Vec<(&str, u8, Vec<ClusterRequest>, ClusterSummary)> = vec![
        (
            "prevote",
            1,
            vec![prevote_at(10, "B", 0)],
            summary(1, 1, 0, vec![]),
        ),
        (
            "precommit-extension",
            1,
            vec![with_extension],
            summary(1, 1, 1, vec![]),
        ),
        (
            "proposal-peer-3",
            3,
            vec![proposal],
            summary(1, 1, 0, vec![]),
        ),
        (
            "commitments",
            1,
            vec![commitments(3)],
            ClusterSummary {
                requests: 1,
                commitments_issued: 3,
                ..Default::default()
            },
        ),
        (
            "commitments-then-sign",
            1,
            vec![commitments(2), prevote_at(10, "B", 5)],
            ClusterSummary {
                requests: 2,
                commitments_issued: 2,
                released: 1,
                ..Default::default()
            },
        ),
        (
            "heights",
            1,
            vec![
                prevote_at(10, "B", 0),
                sign(part(precommit.clone(), &[(1, 1), (OWN_ID, 1)]), None),
                prevote_at(11, "C", 2),
            ],
            summary(3, 3, 0, vec![]),
        ),
        (
            "double-sign",
            1,
            vec![prevote_at(10, "A", 0), prevote_at(10, "B", 1)],
            summary(2, 1, 0, vec![Watermark]),
        ),
        (
            "timestamp-only",
            1,
            vec![
                prevote_at(10, "A", 0),
                sign(
                    part(
                        vote_bytes(CHAIN, 10, 0, Prevote, Some("A"), SECONDS + 1),
                        &[(3, 0), (OWN_ID, 1)],
                    ),
                    None,
                ),
            ],
            summary(2, 2, 0, vec![]),
        ),
        (
            "regression",
            1,
            vec![prevote_at(11, "A", 0), prevote_at(10, "A", 1)],
            summary(2, 1, 0, vec![Watermark]),
        ),
        (
            "nonce-reuse",
            1,
            vec![prevote_at(10, "A", 0), prevote_at(11, "A", 0)],
            summary(2, 1, 0, vec![UnknownCommitment]),
        ),
        (
            "upcoming",
            1,
            vec![announced, ClusterRequest::Sign(upcoming)],
            summary(2, 2, 0, vec![]),
        ),
        (
            "bad-sign-bytes",
            1,
            vec![sign(
                part(b"not sign bytes".to_vec(), &[(1, 0), (OWN_ID, 0)]),
                None,
            )],
            summary(1, 0, 0, vec![SignBytes]),
        ),
        (
            "other-chain",
            1,
            vec![sign(
                part(
                    vote_bytes("other-chain", 10, 0, Prevote, Some("A"), SECONDS),
                    &[(1, 0), (OWN_ID, 0)],
                ),
                None,
            )],
            summary(1, 0, 0, vec![Watermark]),
        ),
        (
            "stranger",
            7,
            vec![commitments(2), prevote_at(10, "A", 0)],
            summary(2, 0, 0, vec![BadRequest]),
        ),
        (
            "below-threshold",
            1,
            vec![sign(part(precommit.clone(), &[(OWN_ID, 0)]), None)],
            summary(1, 0, 0, vec![BadRequest]),
        ),
        (
            "extension-other-height",
            1,
            vec![sign(
                part(precommit.clone(), &[(1, 0), (OWN_ID, 0)]),
                Some(part(
                    extension_bytes(CHAIN, 11, 0, b"ext"),
                    &[(1, 1), (OWN_ID, 1)],
                )),
            )],
            summary(1, 0, 0, vec![SignBytes]),
        ),
        (
            "extension-reuses-nonce",
            1,
            vec![sign(
                part(precommit.clone(), &[(1, 0), (OWN_ID, 0)]),
                Some(part(
                    extension_bytes(CHAIN, 10, 0, b"ext"),
                    &[(1, 1), (OWN_ID, 0)],
                )),
            )],
            summary(1, 0, 0, vec![BadRequest]),
        ),
        (
            "invalid-point",
            1,
            vec![invalid_point],
            summary(1, 0, 0, vec![BadRequest]),
        ),
    ];
    let mut seeds: Vec<Seed> = cases
        .into_iter()
        .map(|(name, coordinator, requests, expect)| Seed {
            target: "cluster_participant",
            name: name.into(),
            bytes: cluster_input(coordinator, &requests),
            expect: Expect::Cluster(expect),
        })
        .collect();
    seeds.push(Seed {
        target: "cluster_participant",
        name: "undecodable".into(),
        bytes: garbage_frame,
        expect: Expect::Cluster(ClusterSummary {
            undecodable: 1,
            ..Default::default()
        }),
    });
    let mut bad_version = cluster_input(1, &[commitments(1)]);
    bad_version[1] ^= 0xFF;
    seeds.push(Seed {
        target: "cluster_participant",
        name: "bad-frame-version".into(),
        bytes: bad_version,
        expect: Expect::Cluster(ClusterSummary::default()),
    });
    seeds
}

// ---- state files ----

const SLOT: usize = 4096;

fn signed_state(height: i64, signature: Option<[u8; 64]>) -> SignState {
    let bytes = vote_bytes(
        CHAIN,
        height,
        0,
        ours::SignedMsgType::Prevote,
        Some("A"),
        SECONDS,
    );
    let doc = cosigner::consensus::canonical::parse(&bytes).unwrap();
    SignState::after(&doc, signature)
}

/// The file of `chain` after creating it empty and persisting `states` in turn.
fn state_file_after(chain: &str, states: &[SignState]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    StateFile::create(dir.path(), chain, &SignState::fresh()).unwrap();
    let (mut file, _) = StateFile::open(dir.path(), chain).unwrap();
    for s in states {
        file.persist(s).unwrap();
    }
    drop(file);
    std::fs::read(dir.path().join(format!("{chain}.state"))).unwrap()
}

fn state() -> Vec<Seed> {
    use StateOutcome::{Loaded, Refused};
    let prevote = state_file_after(CHAIN, &[signed_state(10, None)]);
    let flip = |file: &[u8], at: usize| {
        let mut f = file.to_vec();
        f[at] ^= 0x55;
        f
    };
    let imported = SignState {
        height: 5,
        round: 0,
        step: 2,
        last: None,
    };
    // Slot 1 holds the newest state (sequence 2); its payload starts at 4096 + 24.
    let newest_payload = SLOT + 24;
    let mut future_version = prevote.clone();
    future_version[SLOT + 8] = 2;
    let mut same_sequence = prevote.clone();
    same_sequence.copy_within(0..SLOT, SLOT);
    let mut bad_step = prevote.clone();
    // The record's step byte: after the chain ID (8-byte length + 10 bytes) and two i64s.
    bad_step[newest_payload + 8 + CHAIN.len() + 16] = 4;

    let compact = |file: &[u8]| state_input(COMPACT, file);
    let fixed = |file: &[u8]| state_input(COMPACT | FIX_CHECKSUM_0 | FIX_CHECKSUM_1, file);
    let cases: Vec<(&str, Vec<u8>, StateOutcome)> = vec![
        ("fresh", compact(&state_file_after(CHAIN, &[])), Loaded),
        ("prevote", compact(&prevote), Loaded),
        (
            "single-key-signature",
            compact(&state_file_after(CHAIN, &[signed_state(7, Some([7; 64]))])),
            Loaded,
        ),
        (
            "three-writes",
            compact(&state_file_after(
                CHAIN,
                &[
                    signed_state(1, None),
                    signed_state(2, None),
                    signed_state(3, None),
                ],
            )),
            Loaded,
        ),
        (
            "imported",
            compact(&state_file_after(CHAIN, &[imported])),
            Loaded,
        ),
        ("raw", state_input(0, &prevote), Loaded),
        (
            "torn-newest",
            compact(&flip(&prevote, newest_payload + 3)),
            Loaded,
        ),
        (
            "both-torn",
            compact(&flip(&flip(&prevote, newest_payload + 3), 24 + 3)),
            Refused,
        ),
        (
            "height-changed",
            fixed(&flip(&prevote, newest_payload + 8 + CHAIN.len())),
            Refused,
        ),
        ("future-version", fixed(&future_version), Refused),
        ("same-sequence", compact(&same_sequence), Refused),
        ("bad-step", fixed(&bad_step), Refused),
        (
            "other-chain",
            compact(&state_file_after("other-chain", &[])),
            Refused,
        ),
        ("truncated", state_input(0, &prevote[..SLOT + 100]), Refused),
        ("empty", state_input(0, &[]), Refused),
    ];
    cases
        .into_iter()
        .map(|(name, bytes, outcome)| Seed {
            target: "state_file",
            name: name.into(),
            bytes,
            expect: Expect::State(outcome),
        })
        .collect()
}
