//! Sign bytes against the golden vectors of privval-protocol.md §(c), and against the
//! independent encoder of the `tendermint` crate for many random votes and proposals; the
//! superset privval schema against `tendermint-proto`'s v0.34 and v0.38 messages.

use cosigner::consensus::canonical::{parse, parse_extension};
use cosigner::consensus::{BlockId, Step, Timestamp};
use cosigner::privval::messages::{
    self, decode_delimited, encode_delimited, message::Sum, pubkey_response, public_key,
    signed_vote_response, Proposal, Vote, WirePartSetHeader,
};
use cosigner::privval::sign_doc::{extension_sign_doc, proposal_sign_doc, vote_sign_doc};
use cosigner::privval::ProtocolVersion;
use prost::Message as _;
use sha2::{Digest, Sha256};

const CHAIN: &str = "example-chain";
const SECONDS: i64 = 1_767_323_045; // 2026-01-02T03:04:05Z
const NANOS: i32 = 123_456_789;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn example_block() -> messages::WireBlockId {
    messages::WireBlockId {
        hash: Sha256::digest(b"example block").to_vec(),
        part_set_header: Some(WirePartSetHeader {
            total: 1,
            hash: Sha256::digest(b"example parts").to_vec(),
        }),
    }
}

fn example_vote(r#type: messages::SignedMsgType, block_id: messages::WireBlockId) -> Vote {
    Vote {
        r#type: r#type as i32,
        height: 12,
        round: 0,
        block_id: Some(block_id),
        timestamp: Some(messages::Timestamp {
            seconds: SECONDS,
            nanos: NANOS,
        }),
        validator_address: vec![0x11; 20],
        validator_index: 0,
        ..Default::default()
    }
}

fn nil_block() -> messages::WireBlockId {
    messages::WireBlockId {
        hash: vec![],
        part_set_header: Some(WirePartSetHeader::default()),
    }
}

// Pieces of the worked example, shared by the vote and proposal vectors.
const HEIGHT_12: &str = "11 0C00000000000000";
const BLOCK_BODY: &str = "0A20 A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652 \
                          1224 0801 1220 F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF1";
const TIME_BODY: &str = "08A5EBDCCA06 10959AEF3A";
const CHAIN_HEX: &str = "6578616D706C652D636861696E";

#[test]
fn golden_precommit() {
    let want = hex(&format!(
        "71 0802 {HEIGHT_12} 2248 {BLOCK_BODY} 2A0B {TIME_BODY} 320D {CHAIN_HEX}"
    ));
    assert_eq!(want.len(), 114);
    let doc = vote_sign_doc(
        CHAIN,
        &example_vote(messages::SignedMsgType::Precommit, example_block()),
    )
    .unwrap();
    assert_eq!(doc.sign_bytes, want);
    assert_eq!(doc.hrs.step, Step::Precommit);
    // The same bytes as priv_validator_state.json's signbytes in §(d).
    assert_eq!(hex::encode_upper(&doc.sign_bytes), "710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E");
}

#[test]
fn golden_nil_prevote() {
    let want = hex("27 08 01 11 0C00000000000000 2A 0B 08A5EBDCCA06 10959AEF3A 32 0D 6578616D706C652D636861696E");
    let doc = vote_sign_doc(
        CHAIN,
        &example_vote(messages::SignedMsgType::Prevote, nil_block()),
    )
    .unwrap();
    assert_eq!(doc.sign_bytes, want);
    assert_eq!(doc.block_id, None);
    assert_eq!(doc.hrs.step, Step::Prevote);
    assert_eq!(parse(&want).unwrap(), doc);
}

#[test]
fn golden_extension() {
    let want = hex("2B 0A 11 6578616D706C6520657874656E73696F6E 11 0C00000000000000 22 0D 6578616D706C652D636861696E");
    let mut vote = example_vote(messages::SignedMsgType::Precommit, example_block());
    vote.extension = b"example extension".to_vec();
    let doc = extension_sign_doc(CHAIN, &vote).unwrap();
    assert_eq!(doc.sign_bytes, want);
    assert_eq!(doc.extension, b"example extension");
    assert_eq!((doc.height, doc.round), (12, 0));
    assert_eq!(parse_extension(&want).unwrap(), doc);
}

#[test]
fn golden_proposal() {
    let want = hex(&format!(
        "7C 0820 {HEIGHT_12} 20 FFFFFFFFFFFFFFFFFF01 2A48 {BLOCK_BODY} 320B {TIME_BODY} 3A0D {CHAIN_HEX}"
    ));
    let p = Proposal {
        r#type: messages::SignedMsgType::Proposal as i32,
        height: 12,
        round: 0,
        pol_round: -1,
        block_id: Some(example_block()),
        timestamp: Some(messages::Timestamp {
            seconds: SECONDS,
            nanos: NANOS,
        }),
        signature: vec![],
    };
    let doc = proposal_sign_doc(CHAIN, &p).unwrap();
    assert_eq!(doc.sign_bytes, want);
    assert_eq!(doc.sign_bytes.len(), 125);
    assert_eq!(doc.hrs.step, Step::Propose);
    assert_eq!(doc.pol_round, -1);
    assert_eq!(parse(&want).unwrap(), doc);
}

/// SplitMix64: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
    /// Small values often (zero matters: it is omitted), extremes sometimes.
    fn height(&mut self) -> i64 {
        match self.below(4) {
            0 => 1 + self.below(100) as i64,
            1 => i64::MAX - self.below(3) as i64,
            _ => 1 + self.below(i64::MAX as u64) as i64,
        }
    }
    fn round(&mut self) -> i32 {
        match self.below(4) {
            0 => 0,
            1 => self.below(5) as i32,
            2 => i32::MAX,
            _ => self.below(i32::MAX as u64 + 1) as i32,
        }
    }
    fn timestamp(&mut self) -> (i64, i32) {
        const MIN: i64 = -62_135_596_800;
        const MAX: i64 = 253_402_300_799;
        let seconds = match self.below(5) {
            0 => 0,
            1 => MIN,
            2 => MAX,
            _ => MIN + self.below((MAX - MIN + 1) as u64) as i64,
        };
        let nanos = if self.coin() {
            0
        } else {
            self.below(1_000_000_000) as i32
        };
        (seconds, nanos)
    }
    fn chain_id(&mut self) -> String {
        const ALPHABET: &[u8] =
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
        let len = 1 + self.below(50) as usize;
        let mut s: String = (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect();
        if s == "." || s == ".." {
            s = "x".into();
        }
        s
    }
    fn block(&mut self) -> Option<([u8; 32], u32, [u8; 32])> {
        if self.below(3) == 0 {
            return None;
        }
        let total = if self.coin() {
            1 + self.below(10) as u32
        } else {
            1 + self.below(u32::MAX as u64) as u32
        };
        Some((self.bytes32(), total, self.bytes32()))
    }
}

fn tm_block(b: &([u8; 32], u32, [u8; 32])) -> tendermint::block::Id {
    tendermint::block::Id {
        hash: tendermint::Hash::Sha256(b.0),
        part_set_header: tendermint::block::parts::Header::new(b.1, tendermint::Hash::Sha256(b.2))
            .unwrap(),
    }
}

fn our_block(b: &Option<([u8; 32], u32, [u8; 32])>) -> messages::WireBlockId {
    match b {
        None => nil_block(),
        Some((hash, total, parts)) => messages::WireBlockId {
            hash: hash.to_vec(),
            part_set_header: Some(WirePartSetHeader {
                total: *total,
                hash: parts.to_vec(),
            }),
        },
    }
}

fn doc_block(b: &Option<([u8; 32], u32, [u8; 32])>) -> Option<BlockId> {
    b.as_ref().map(|(hash, total, parts)| BlockId {
        hash: hash.to_vec(),
        part_set_total: *total,
        part_set_hash: parts.to_vec(),
    })
}

#[test]
fn random_votes_match_tendermint_rs() {
    let mut rng = Rng(0x5EED_0001);
    for case in 0..3000 {
        let precommit = rng.coin();
        let height = rng.height();
        let round = rng.round();
        let block = rng.block();
        let (seconds, nanos) = rng.timestamp();
        let chain_id = rng.chain_id();
        let extension: Vec<u8> = if precommit && block.is_some() {
            (0..rng.below(64)).map(|_| rng.next() as u8).collect()
        } else {
            vec![]
        };

        let ours = Vote {
            r#type: if precommit { 2 } else { 1 },
            height,
            round,
            block_id: Some(our_block(&block)),
            timestamp: Some(messages::Timestamp { seconds, nanos }),
            validator_address: vec![7; 20],
            validator_index: rng.below(100) as i32,
            extension: extension.clone(),
            ..Default::default()
        };
        let theirs = tendermint::vote::Vote {
            vote_type: if precommit {
                tendermint::vote::Type::Precommit
            } else {
                tendermint::vote::Type::Prevote
            },
            height: height.try_into().unwrap(),
            round: round.try_into().unwrap(),
            block_id: block.as_ref().map(tm_block),
            timestamp: Some(tendermint::Time::from_unix_timestamp(seconds, nanos as u32).unwrap()),
            validator_address: tendermint::account::Id::new([7; 20]),
            validator_index: 0u32.try_into().unwrap(),
            signature: None,
            extension: extension.clone(),
            extension_signature: None,
        };
        let tm_chain = tendermint::chain::Id::try_from(chain_id.as_str()).unwrap();
        let want = theirs.into_signable_vec(tm_chain);

        let doc = vote_sign_doc(&chain_id, &ours).unwrap();
        assert_eq!(
            doc.sign_bytes, want,
            "case {case}: {ours:?} on {chain_id:?}"
        );
        let parsed = parse(&want).unwrap();
        assert_eq!(parsed, doc, "case {case}");
        assert_eq!(parsed.chain_id, chain_id);
        assert_eq!(parsed.hrs.height, height);
        assert_eq!(parsed.hrs.round, i64::from(round));
        let step = if precommit {
            Step::Precommit
        } else {
            Step::Prevote
        };
        assert_eq!(parsed.hrs.step, step);
        assert_eq!(parsed.block_id, doc_block(&block));
        assert_eq!(parsed.timestamp, Timestamp { seconds, nanos });

        if precommit && block.is_some() {
            let want = tendermint_proto::v0_38::types::CanonicalVoteExtension {
                extension: extension.clone(),
                height,
                round: i64::from(round),
                chain_id: chain_id.clone(),
            }
            .encode_length_delimited_to_vec();
            let ext = extension_sign_doc(&chain_id, &ours).unwrap();
            assert_eq!(ext.sign_bytes, want, "case {case}");
            let parsed = parse_extension(&want).unwrap();
            assert_eq!(parsed, ext);
            assert_eq!(parsed.extension, extension);
        } else {
            assert!(extension_sign_doc(&chain_id, &ours).is_err());
        }
    }
}

#[test]
fn random_proposals_match_tendermint_rs() {
    let mut rng = Rng(0x5EED_0002);
    for case in 0..3000 {
        let height = rng.height();
        let round = rng.round();
        let pol_round = if round == 0 || rng.coin() {
            -1
        } else {
            rng.below(round as u64) as i32
        };
        let block = loop {
            if let Some(b) = rng.block() {
                break b;
            }
        };
        let (seconds, nanos) = rng.timestamp();
        let chain_id = rng.chain_id();

        let ours = Proposal {
            r#type: 32,
            height,
            round,
            pol_round,
            block_id: Some(our_block(&Some(block))),
            timestamp: Some(messages::Timestamp { seconds, nanos }),
            signature: vec![],
        };
        let theirs = tendermint::proposal::Proposal {
            msg_type: tendermint::proposal::Type::Proposal,
            height: height.try_into().unwrap(),
            round: round.try_into().unwrap(),
            pol_round: (pol_round >= 0).then(|| pol_round.try_into().unwrap()),
            block_id: Some(tm_block(&block)),
            timestamp: Some(tendermint::Time::from_unix_timestamp(seconds, nanos as u32).unwrap()),
            signature: None,
        };
        let tm_chain = tendermint::chain::Id::try_from(chain_id.as_str()).unwrap();
        let want = theirs.into_signable_vec(tm_chain);

        let doc = proposal_sign_doc(&chain_id, &ours).unwrap();
        assert_eq!(
            doc.sign_bytes, want,
            "case {case}: {ours:?} on {chain_id:?}"
        );
        let parsed = parse(&want).unwrap();
        assert_eq!(parsed, doc);
        assert_eq!(parsed.chain_id, chain_id);
        assert_eq!(
            (parsed.hrs.height, parsed.hrs.round, parsed.hrs.step),
            (height, i64::from(round), Step::Propose)
        );
        assert_eq!(parsed.pol_round, i64::from(pol_round));
        assert_eq!(parsed.block_id, doc_block(&Some(block)));
        assert_eq!(parsed.timestamp, Timestamp { seconds, nanos });
    }
}

fn tm_timestamp() -> tendermint_proto::google::protobuf::Timestamp {
    tendermint_proto::google::protobuf::Timestamp {
        seconds: SECONDS,
        nanos: NANOS,
    }
}

#[test]
fn v0_38_sign_vote_request_decodes_in_superset_schema() {
    use tendermint_proto::v0_38::{privval, types};
    let block = example_block();
    let psh = block.part_set_header.clone().unwrap();
    let vote = types::Vote {
        r#type: types::SignedMsgType::Precommit as i32,
        height: 12,
        round: 0,
        block_id: Some(types::BlockId {
            hash: block.hash.clone(),
            part_set_header: Some(types::PartSetHeader {
                total: psh.total,
                hash: psh.hash.clone(),
            }),
        }),
        timestamp: Some(tm_timestamp()),
        validator_address: vec![0x11; 20],
        validator_index: 0,
        signature: vec![],
        extension: b"example extension".to_vec(),
        extension_signature: vec![],
    };
    let msg = privval::Message {
        sum: Some(privval::message::Sum::SignVoteRequest(
            privval::SignVoteRequest {
                vote: Some(vote.clone()),
                chain_id: CHAIN.into(),
            },
        )),
    };
    let wire = msg.encode_length_delimited_to_vec();
    let (ours, used) = decode_delimited(&wire).unwrap().unwrap();
    assert_eq!(used, wire.len());
    let Some(Sum::SignVoteRequest(req)) = ours.sum else {
        panic!("not a SignVoteRequest: {ours:?}")
    };
    assert_eq!(req.chain_id, CHAIN);
    assert!(!req.skip_extension_signing);
    let mut expected = example_vote(messages::SignedMsgType::Precommit, example_block());
    expected.extension = b"example extension".to_vec();
    assert_eq!(req.vote.as_ref(), Some(&expected));
    let doc = vote_sign_doc(&req.chain_id, req.vote.as_ref().unwrap()).unwrap();
    assert_eq!(doc.sign_bytes.len(), 114);

    // Our signed response decodes as v0.38's, extension signature included.
    let mut signed = expected.clone();
    signed.signature = vec![0xAB; 64];
    signed.extension_signature = vec![0xCD; 64];
    let mut out = Vec::new();
    encode_delimited(&signed_vote_response(signed), &mut out);
    let back = privval::Message::decode_length_delimited(out.as_slice()).unwrap();
    let Some(privval::message::Sum::SignedVoteResponse(resp)) = back.sum else {
        panic!("not a SignedVoteResponse")
    };
    assert!(resp.error.is_none());
    let mut want = vote;
    want.signature = vec![0xAB; 64];
    want.extension_signature = vec![0xCD; 64];
    assert_eq!(resp.vote, Some(want));
}

#[test]
fn v0_34_messages_decode_in_superset_schema() {
    use tendermint_proto::v0_34::{crypto, privval, types};
    // A Go node's nil prevote: block ID present but empty.
    let vote = types::Vote {
        r#type: types::SignedMsgType::Prevote as i32,
        height: 12,
        round: 0,
        block_id: Some(types::BlockId {
            hash: vec![],
            part_set_header: Some(types::PartSetHeader::default()),
        }),
        timestamp: Some(tm_timestamp()),
        validator_address: vec![0x11; 20],
        validator_index: 0,
        signature: vec![],
    };
    let msg = privval::Message {
        sum: Some(privval::message::Sum::SignVoteRequest(
            privval::SignVoteRequest {
                vote: Some(vote),
                chain_id: CHAIN.into(),
            },
        )),
    };
    let wire = msg.encode_length_delimited_to_vec();
    let (ours, _) = decode_delimited(&wire).unwrap().unwrap();
    let Some(Sum::SignVoteRequest(req)) = ours.sum else {
        panic!("not a SignVoteRequest")
    };
    let v = req.vote.unwrap();
    assert_eq!(
        v,
        example_vote(messages::SignedMsgType::Prevote, nil_block())
    );
    let doc = vote_sign_doc(&req.chain_id, &v).unwrap();
    assert_eq!(doc.block_id, None);
    // Echoing the vote back reproduces the node's encoding of it.
    let vote_bytes = match &msg.sum {
        Some(privval::message::Sum::SignVoteRequest(r)) => r.vote.as_ref().unwrap().encode_to_vec(),
        _ => unreachable!(),
    };
    assert_eq!(v.encode_to_vec(), vote_bytes);

    // Proposal request.
    let proposal = types::Proposal {
        r#type: types::SignedMsgType::Proposal as i32,
        height: 12,
        round: 1,
        pol_round: 0,
        block_id: Some(types::BlockId {
            hash: vec![3; 32],
            part_set_header: Some(types::PartSetHeader {
                total: 2,
                hash: vec![4; 32],
            }),
        }),
        timestamp: Some(tm_timestamp()),
        signature: vec![],
    };
    let msg = privval::Message {
        sum: Some(privval::message::Sum::SignProposalRequest(
            privval::SignProposalRequest {
                proposal: Some(proposal),
                chain_id: CHAIN.into(),
            },
        )),
    };
    let (ours, _) = decode_delimited(&msg.encode_length_delimited_to_vec())
        .unwrap()
        .unwrap();
    let Some(Sum::SignProposalRequest(req)) = ours.sum else {
        panic!("not a SignProposalRequest")
    };
    let doc = proposal_sign_doc(&req.chain_id, req.proposal.as_ref().unwrap()).unwrap();
    assert_eq!((doc.hrs.height, doc.hrs.round, doc.pol_round), (12, 1, 0));

    // PubKey and Ping requests.
    let msg = privval::Message {
        sum: Some(privval::message::Sum::PubKeyRequest(
            privval::PubKeyRequest {
                chain_id: CHAIN.into(),
            },
        )),
    };
    let (ours, _) = decode_delimited(&msg.encode_length_delimited_to_vec())
        .unwrap()
        .unwrap();
    assert!(matches!(ours.sum, Some(Sum::PubKeyRequest(ref r)) if r.chain_id == CHAIN));
    let msg = privval::Message {
        sum: Some(privval::message::Sum::PingRequest(privval::PingRequest {})),
    };
    let (ours, _) = decode_delimited(&msg.encode_length_delimited_to_vec())
        .unwrap()
        .unwrap();
    assert!(matches!(ours.sum, Some(Sum::PingRequest(_))));

    // Our v0.34 public key response decodes as v0.34's; the v1 layout does not carry
    // field 1, which is why the version matters.
    let key = [9u8; 32];
    for (version, present) in [(ProtocolVersion::V0_34, true), (ProtocolVersion::V1, false)] {
        let mut out = Vec::new();
        encode_delimited(&pubkey_response(version, &key), &mut out);
        let back = privval::Message::decode_length_delimited(out.as_slice()).unwrap();
        let Some(privval::message::Sum::PubKeyResponse(resp)) = back.sum else {
            panic!("not a PubKeyResponse")
        };
        let got = resp.pub_key.and_then(|k| k.sum);
        if present {
            assert_eq!(got, Some(crypto::public_key::Sum::Ed25519(key.to_vec())));
        } else {
            assert_eq!(got, None);
        }
    }
    let msg = pubkey_response(ProtocolVersion::V1, &key);
    let Some(Sum::PubKeyResponse(r)) = msg.sum else {
        panic!()
    };
    assert_eq!(r.pub_key_bytes, key);
    assert_eq!(r.pub_key_type, "ed25519");
    assert!(matches!(
        pubkey_response(ProtocolVersion::V0_38, &key).sum,
        Some(Sum::PubKeyResponse(messages::PubKeyResponse {
            pub_key: Some(messages::PublicKey {
                sum: Some(public_key::Sum::Ed25519(_))
            }),
            ..
        }))
    ));
}
