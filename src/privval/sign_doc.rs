//! From a node's request to what is signed: the checks CometBFT's `ValidateBasic` makes on a
//! vote or proposal (those that concern what is signed, and a few stricter ones: height >= 1,
//! a timestamp Go can represent, a chain ID we accept), then the canonical sign bytes, parsed
//! back into the [`SignDoc`] every later check is made on.

use prost::Message as _;

use super::messages::{self, SignedMsgType};
use crate::consensus::canonical::{
    self, check_block_id, check_chain_id, check_height, check_pol_round, check_round,
    check_timestamp, vote_step, SignBytesError, PROPOSAL,
};
use crate::consensus::{BlockId, ExtensionDoc, Hrs, SignDoc, Step};

fn check_request_block_id(
    b: Option<&messages::WireBlockId>,
) -> Result<Option<BlockId>, SignBytesError> {
    // An absent block ID means nil too: tendermint-rs omits it where Go sends it empty.
    let Some(b) = b else { return Ok(None) };
    let (total, parts_hash) = b
        .part_set_header
        .as_ref()
        .map_or((0, &[][..]), |p| (p.total, p.hash.as_slice()));
    check_block_id(&b.hash, total, parts_hash)
}

/// The canonical sign bytes of `vote` on `chain_id`, after the checks of CometBFT's
/// `Vote.ValidateBasic` that concern what is signed.
pub fn vote_sign_doc(chain_id: &str, vote: &messages::Vote) -> Result<SignDoc, SignBytesError> {
    let step = vote_step(vote.r#type)?;
    check_height(vote.height)?;
    check_round(i64::from(vote.round))?;
    let block_id = check_request_block_id(vote.block_id.as_ref())?;
    let timestamp = check_timestamp(vote.timestamp.as_ref())?;
    check_chain_id(chain_id)?;
    let may_extend = step == Step::Precommit && block_id.is_some();
    if !may_extend && (!vote.extension.is_empty() || !vote.extension_signature.is_empty()) {
        let what = if step == Step::Prevote {
            "prevote"
        } else {
            "nil precommit"
        };
        return Err(SignBytesError::UnexpectedExtension(what));
    }
    let hrs = Hrs {
        height: vote.height,
        round: i64::from(vote.round),
        step,
    };
    canonical::parse(&canonical::vote_bytes(
        chain_id,
        hrs,
        block_id.as_ref(),
        timestamp,
    ))
}

/// The canonical sign bytes of proposal `p` on `chain_id`, after the checks of CometBFT's
/// `Proposal.ValidateBasic` that concern what is signed.
pub fn proposal_sign_doc(
    chain_id: &str,
    p: &messages::Proposal,
) -> Result<SignDoc, SignBytesError> {
    if p.r#type != PROPOSAL {
        return Err(SignBytesError::WrongType {
            expected: "proposal",
            got: p.r#type,
        });
    }
    check_height(p.height)?;
    let round = i64::from(p.round);
    check_round(round)?;
    check_pol_round(i64::from(p.pol_round), round)?;
    let block_id = check_request_block_id(p.block_id.as_ref())?
        .ok_or(SignBytesError::MissingBlockId("proposal"))?;
    let timestamp = check_timestamp(p.timestamp.as_ref())?;
    check_chain_id(chain_id)?;
    canonical::parse(&canonical::proposal_bytes(
        chain_id,
        p.height,
        round,
        i64::from(p.pol_round),
        &block_id,
        timestamp,
    ))
}

/// The canonical extension sign bytes of `vote` on `chain_id`. Only a valid non-nil
/// precommit has them (the extension may be empty).
pub fn extension_sign_doc(
    chain_id: &str,
    vote: &messages::Vote,
) -> Result<ExtensionDoc, SignBytesError> {
    let doc = vote_sign_doc(chain_id, vote)?;
    if doc.hrs.step != Step::Precommit {
        return Err(SignBytesError::NoExtensionToSign("prevote"));
    }
    if doc.block_id.is_none() {
        return Err(SignBytesError::NoExtensionToSign("nil precommit"));
    }
    canonical::parse_extension(&canonical::extension_bytes(
        chain_id,
        vote.height,
        i64::from(vote.round),
        &vote.extension,
    ))
}

/// Whether `bytes` might be taken for a vote, proposal or vote extension, so that a v1
/// SignBytesRequest for them must be refused. Deliberately broad: besides exact sign bytes,
/// anything that (with or without a leading varint) loosely decodes as a canonical or wire
/// vote, proposal or extension with a plausible type, height or chain counts.
pub fn looks_like_consensus_message(bytes: &[u8]) -> bool {
    if canonical::parse(bytes).is_ok() || canonical::parse_extension(bytes).is_ok() {
        return true;
    }
    if loosely_decodes(bytes) {
        return true;
    }
    // Skip any leading varint, whether or not it matches the remaining length.
    let mut rest = bytes;
    prost::encoding::decode_varint(&mut rest).is_ok() && loosely_decodes(rest)
}

fn loosely_decodes(body: &[u8]) -> bool {
    let plausible = |t: i32| {
        matches!(
            SignedMsgType::try_from(t),
            Ok(SignedMsgType::Prevote | SignedMsgType::Precommit | SignedMsgType::Proposal)
        )
    };
    canonical::loosely_decodes(body)
        || messages::Vote::decode(body).is_ok_and(|m| plausible(m.r#type))
        || messages::Proposal::decode(body).is_ok_and(|m| plausible(m.r#type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::canonical::*;
    use crate::consensus::proto::*;
    use crate::consensus::BlockId;
    use messages::{Proposal, Vote, WirePartSetHeader as PartSetHeader};
    use sha2::{Digest, Sha256};

    const CHAIN: &str = "example-chain";
    const PRECOMMIT_HEX: &str = "710802110C0000000000000022480A20A20082BBF9C7C0603767978E85A30D82D18FB7BFCB97741FA857B48621E17652122408011220F2258662FCC8D3F138B77FBC95747906611EF340294F1B86F615EE64CBB15EF12A0B08A5EBDCCA0610959AEF3A320D6578616D706C652D636861696E";

    fn block() -> messages::WireBlockId {
        messages::WireBlockId {
            hash: Sha256::digest(b"example block").to_vec(),
            part_set_header: Some(PartSetHeader {
                total: 1,
                hash: Sha256::digest(b"example parts").to_vec(),
            }),
        }
    }

    fn nil_block() -> messages::WireBlockId {
        messages::WireBlockId {
            hash: vec![],
            part_set_header: Some(PartSetHeader::default()),
        }
    }

    fn ts() -> messages::Timestamp {
        messages::Timestamp {
            seconds: 1_767_323_045,
            nanos: 123_456_789,
        }
    }

    fn vote(r#type: i32, block_id: messages::WireBlockId) -> Vote {
        Vote {
            r#type,
            height: 12,
            round: 0,
            block_id: Some(block_id),
            timestamp: Some(ts()),
            validator_address: vec![0xAA; 20],
            validator_index: 3,
            ..Default::default()
        }
    }

    fn proposal() -> Proposal {
        Proposal {
            r#type: PROPOSAL,
            height: 12,
            round: 0,
            pol_round: -1,
            block_id: Some(block()),
            timestamp: Some(ts()),
            signature: vec![],
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// Re-prefixes a modified body so that only the body is at fault.
    fn with_prefix(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn precommit_matches_golden_and_parses_back() {
        let doc = vote_sign_doc(CHAIN, &vote(PRECOMMIT, block())).unwrap();
        assert_eq!(doc.sign_bytes, hex(PRECOMMIT_HEX));
        assert_eq!(doc.sign_bytes.len(), 114);
        assert_eq!(
            doc.hrs,
            Hrs {
                height: 12,
                round: 0,
                step: Step::Precommit
            }
        );
        assert_eq!(doc.chain_id, CHAIN);
        assert_eq!(doc.pol_round, 0);
        assert_eq!(doc.timestamp, ts());
        let b = doc.block_id.clone().unwrap();
        assert_eq!(b.part_set_total, 1);
        assert_eq!(parse(&doc.sign_bytes).unwrap(), doc);
    }

    #[test]
    fn nil_vote_absent_or_empty_block_id_is_the_same() {
        let a = vote_sign_doc(CHAIN, &vote(PREVOTE, nil_block())).unwrap();
        let mut v = vote(PREVOTE, nil_block());
        v.block_id = None;
        let b = vote_sign_doc(CHAIN, &v).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.block_id, None);
        let mut v = vote(PREVOTE, nil_block());
        v.block_id = Some(messages::WireBlockId::default());
        assert_eq!(vote_sign_doc(CHAIN, &v).unwrap(), a);
    }

    #[test]
    fn vote_type_must_be_prevote_or_precommit() {
        for t in [0, 3, PROPOSAL, -1] {
            assert_eq!(
                vote_sign_doc(CHAIN, &vote(t, block())),
                Err(SignBytesError::WrongType {
                    expected: "prevote or precommit",
                    got: t
                })
            );
        }
    }

    #[test]
    fn vote_height_and_round_are_checked() {
        for h in [0, -1, i64::MIN] {
            let mut v = vote(PREVOTE, block());
            v.height = h;
            assert_eq!(
                vote_sign_doc(CHAIN, &v),
                Err(SignBytesError::InvalidHeight(h))
            );
        }
        let mut v = vote(PREVOTE, block());
        v.round = -1;
        assert_eq!(
            vote_sign_doc(CHAIN, &v),
            Err(SignBytesError::InvalidRound(-1))
        );
        v.round = i32::MAX;
        assert!(vote_sign_doc(CHAIN, &v).is_ok());
    }

    #[test]
    fn partial_block_ids_are_refused() {
        let cases: Vec<(messages::WireBlockId, &str)> = vec![
            (
                messages::WireBlockId {
                    hash: vec![1; 31],
                    ..block()
                },
                "block hash is not 32 bytes",
            ),
            (
                messages::WireBlockId {
                    hash: vec![],
                    ..block()
                },
                "block hash is not 32 bytes",
            ),
            (
                messages::WireBlockId {
                    part_set_header: None,
                    ..block()
                },
                "part set total is zero",
            ),
            (
                messages::WireBlockId {
                    part_set_header: Some(PartSetHeader {
                        total: 0,
                        hash: vec![2; 32],
                    }),
                    ..block()
                },
                "part set total is zero",
            ),
            (
                messages::WireBlockId {
                    part_set_header: Some(PartSetHeader {
                        total: 1,
                        hash: vec![],
                    }),
                    ..block()
                },
                "part set hash is not 32 bytes",
            ),
            (
                messages::WireBlockId {
                    hash: vec![],
                    part_set_header: Some(PartSetHeader {
                        total: 1,
                        hash: vec![],
                    }),
                },
                "block hash is not 32 bytes",
            ),
        ];
        for (b, why) in cases {
            assert_eq!(
                vote_sign_doc(CHAIN, &vote(PRECOMMIT, b.clone())),
                Err(SignBytesError::InvalidBlockId(why)),
                "{b:?}"
            );
        }
    }

    #[test]
    fn timestamp_is_required_and_representable() {
        let mut v = vote(PREVOTE, block());
        v.timestamp = None;
        assert_eq!(
            vote_sign_doc(CHAIN, &v),
            Err(SignBytesError::MissingTimestamp)
        );
        for (seconds, nanos) in [
            (0, -1),
            (0, 1_000_000_000),
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
        ] {
            v.timestamp = Some(messages::Timestamp { seconds, nanos });
            assert_eq!(
                vote_sign_doc(CHAIN, &v),
                Err(SignBytesError::InvalidTimestamp { seconds, nanos })
            );
        }
        for (seconds, nanos) in [
            (0, 0),
            (MIN_TIMESTAMP_SECONDS, 0),
            (MAX_TIMESTAMP_SECONDS, 999_999_999),
        ] {
            v.timestamp = Some(messages::Timestamp { seconds, nanos });
            let doc = vote_sign_doc(CHAIN, &v).unwrap();
            assert_eq!(doc.timestamp, Timestamp { seconds, nanos });
        }
    }

    #[test]
    fn chain_id_is_checked() {
        for bad in ["", "a b", &"x".repeat(51)] {
            assert_eq!(
                vote_sign_doc(bad, &vote(PREVOTE, block())),
                Err(SignBytesError::InvalidChainId(bad.to_owned()))
            );
        }
    }

    #[test]
    fn extensions_only_on_non_nil_precommits() {
        let mut v = vote(PREVOTE, block());
        v.extension = b"x".to_vec();
        assert_eq!(
            vote_sign_doc(CHAIN, &v),
            Err(SignBytesError::UnexpectedExtension("prevote"))
        );
        let mut v = vote(PRECOMMIT, nil_block());
        v.extension_signature = vec![1; 64];
        assert_eq!(
            vote_sign_doc(CHAIN, &v),
            Err(SignBytesError::UnexpectedExtension("nil precommit"))
        );
        let mut v = vote(PRECOMMIT, block());
        v.extension = b"x".to_vec();
        assert!(vote_sign_doc(CHAIN, &v).is_ok());

        assert_eq!(
            extension_sign_doc(CHAIN, &vote(PREVOTE, block())),
            Err(SignBytesError::NoExtensionToSign("prevote"))
        );
        assert_eq!(
            extension_sign_doc(CHAIN, &vote(PRECOMMIT, nil_block())),
            Err(SignBytesError::NoExtensionToSign("nil precommit"))
        );
        // An invalid vote gets no extension signature either.
        let mut v = vote(PRECOMMIT, block());
        v.height = 0;
        assert_eq!(
            extension_sign_doc(CHAIN, &v),
            Err(SignBytesError::InvalidHeight(0))
        );
    }

    #[test]
    fn empty_extension_is_signed() {
        let doc = extension_sign_doc(CHAIN, &vote(PRECOMMIT, block())).unwrap();
        assert_eq!(doc.extension, Vec::<u8>::new());
        assert_eq!(
            doc.sign_bytes,
            hex("18110C00000000000000220D6578616D706C652D636861696E")
        );
        assert_eq!(parse_extension(&doc.sign_bytes).unwrap(), doc);
    }

    #[test]
    fn proposal_checks() {
        let doc = proposal_sign_doc(CHAIN, &proposal()).unwrap();
        assert_eq!(doc.hrs.step, Step::Propose);
        assert_eq!(doc.pol_round, -1);

        let mut p = proposal();
        p.r#type = PREVOTE;
        assert_eq!(
            proposal_sign_doc(CHAIN, &p),
            Err(SignBytesError::WrongType {
                expected: "proposal",
                got: PREVOTE
            })
        );
        let mut p = proposal();
        p.height = 0;
        assert_eq!(
            proposal_sign_doc(CHAIN, &p),
            Err(SignBytesError::InvalidHeight(0))
        );
        let mut p = proposal();
        p.round = -1;
        assert_eq!(
            proposal_sign_doc(CHAIN, &p),
            Err(SignBytesError::InvalidRound(-1))
        );
        for (round, pol_round) in [(0, -2), (0, 0), (3, 3), (3, 4)] {
            let mut p = proposal();
            p.round = round;
            p.pol_round = pol_round;
            assert_eq!(
                proposal_sign_doc(CHAIN, &p),
                Err(SignBytesError::InvalidPolRound {
                    pol_round: pol_round.into(),
                    round: round.into()
                })
            );
        }
        let mut p = proposal();
        p.round = 3;
        p.pol_round = 2;
        assert_eq!(proposal_sign_doc(CHAIN, &p).unwrap().pol_round, 2);
        for b in [None, Some(nil_block())] {
            let mut p = proposal();
            p.block_id = b;
            assert_eq!(
                proposal_sign_doc(CHAIN, &p),
                Err(SignBytesError::MissingBlockId("proposal"))
            );
        }
        let mut p = proposal();
        p.timestamp = None;
        assert_eq!(
            proposal_sign_doc(CHAIN, &p),
            Err(SignBytesError::MissingTimestamp)
        );
        assert!(matches!(
            proposal_sign_doc("", &proposal()),
            Err(SignBytesError::InvalidChainId(_))
        ));
    }

    #[test]
    fn parse_rejects_framing_errors() {
        let good = hex(PRECOMMIT_HEX);
        assert_eq!(parse(&[]), Err(SignBytesError::Empty));
        assert_eq!(parse(&[0xFF]), Err(SignBytesError::BadLengthPrefix));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            parse(&long),
            Err(SignBytesError::LengthMismatch {
                declared: 113,
                actual: 114
            })
        );
        assert_eq!(
            parse(&good[..113]),
            Err(SignBytesError::LengthMismatch {
                declared: 113,
                actual: 112
            })
        );
        assert_eq!(
            parse(&good[1..]),
            Err(SignBytesError::LengthMismatch {
                declared: 8,
                actual: 112
            })
        );
        assert_eq!(parse(&[0x00]), Err(SignBytesError::MissingType));
        assert_eq!(
            parse(&with_prefix(&good[3..])),
            Err(SignBytesError::MissingType)
        );
        let mut body = good[1..].to_vec();
        body[1] = 3;
        assert_eq!(
            parse(&with_prefix(&body)),
            Err(SignBytesError::UnknownType(3))
        );
        body[1] = 0;
        assert_eq!(
            parse(&with_prefix(&body)),
            Err(SignBytesError::UnknownType(0))
        );
        assert!(matches!(
            parse(&with_prefix(&[0x08])),
            Err(SignBytesError::Decode(_))
        ));
        // Truncated body with a consistent prefix.
        assert!(matches!(
            parse(&with_prefix(&good[1..50])),
            Err(SignBytesError::Decode(_))
        ));
    }

    #[test]
    fn parse_rejects_non_canonical_encodings() {
        let good = hex(PRECOMMIT_HEX);
        let body = &good[1..];
        // An unknown trailing field.
        let mut b = body.to_vec();
        b.extend_from_slice(&[0x40, 0x01]);
        assert_eq!(parse(&with_prefix(&b)), Err(SignBytesError::NotCanonical));
        // A non-minimal varint for the type.
        let mut b = vec![0x08, 0x82, 0x00];
        b.extend_from_slice(&body[2..]);
        assert_eq!(parse(&with_prefix(&b)), Err(SignBytesError::NotCanonical));
        // Round 0 written out instead of omitted.
        let mut b = body[..11].to_vec();
        b.extend_from_slice(&[0x19, 0, 0, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&body[11..]);
        assert_eq!(parse(&with_prefix(&b)), Err(SignBytesError::NotCanonical));
        // Chain ID moved before the timestamp (fields out of order).
        let ts_at = body.len() - 15 - 13;
        let mut b = body[..ts_at].to_vec();
        b.extend_from_slice(&body[body.len() - 15..]);
        b.extend_from_slice(&body[ts_at..body.len() - 15]);
        assert_eq!(parse(&with_prefix(&b)).ok(), None);
        assert_eq!(parse(&with_prefix(&b)), Err(SignBytesError::NotCanonical));
        // The height field twice (last one wins when decoding).
        let mut b = body[..11].to_vec();
        b.extend_from_slice(&body[2..11]);
        b.extend_from_slice(&body[11..]);
        assert_eq!(parse(&with_prefix(&b)), Err(SignBytesError::NotCanonical));
        // A non-minimal length prefix.
        let mut b = vec![0xF1, 0x00];
        b.extend_from_slice(body);
        assert_eq!(parse(&b), Err(SignBytesError::NonMinimalLengthPrefix));
        b[0] = 0x80;
        b[1] = 0x80;
        b.insert(2, 0x00);
        assert!(parse(&b).is_err());
    }

    #[test]
    fn parse_checks_semantics_of_canonical_bytes() {
        let enc = |v: CanonicalVote| v.encode_length_delimited_to_vec();
        let base = CanonicalVote {
            r#type: PREVOTE,
            height: 5,
            round: 0,
            block_id: None,
            timestamp: Some(ts()),
            chain_id: CHAIN.into(),
        };
        assert!(parse(&enc(base.clone())).is_ok());
        let zero_block = CanonicalBlockId {
            hash: vec![],
            part_set_header: Some(CanonicalPartSetHeader::default()),
        };
        assert_eq!(
            parse(&enc(CanonicalVote {
                block_id: Some(zero_block),
                ..base.clone()
            })),
            Err(SignBytesError::InvalidBlockId(
                "a nil block ID must be omitted from sign bytes"
            ))
        );
        assert_eq!(
            parse(&enc(CanonicalVote {
                block_id: Some(CanonicalBlockId {
                    hash: vec![1; 32],
                    part_set_header: None
                }),
                ..base.clone()
            })),
            Err(SignBytesError::InvalidBlockId("part set header is missing"))
        );
        assert_eq!(
            parse(&enc(CanonicalVote {
                timestamp: None,
                ..base.clone()
            })),
            Err(SignBytesError::MissingTimestamp)
        );
        assert_eq!(
            parse(&enc(CanonicalVote {
                height: -3,
                ..base.clone()
            })),
            Err(SignBytesError::InvalidHeight(-3))
        );
        let big = i64::from(i32::MAX) + 1;
        assert_eq!(
            parse(&enc(CanonicalVote {
                round: big,
                ..base.clone()
            })),
            Err(SignBytesError::InvalidRound(big))
        );
        assert_eq!(
            parse(&enc(CanonicalVote {
                chain_id: String::new(),
                ..base.clone()
            })),
            Err(SignBytesError::InvalidChainId(String::new()))
        );
        let prop = CanonicalProposal {
            r#type: PROPOSAL,
            height: 5,
            round: 2,
            pol_round: 2,
            block_id: Some(to_canonical_block_id(&BlockId {
                hash: vec![1; 32],
                part_set_total: 1,
                part_set_hash: vec![2; 32],
            })),
            timestamp: Some(ts()),
            chain_id: CHAIN.into(),
        };
        assert_eq!(
            parse(&prop.encode_length_delimited_to_vec()),
            Err(SignBytesError::InvalidPolRound {
                pol_round: 2,
                round: 2
            })
        );
        let ok = CanonicalProposal {
            pol_round: 1,
            ..prop.clone()
        };
        assert_eq!(
            parse(&ok.encode_length_delimited_to_vec())
                .unwrap()
                .pol_round,
            1
        );
        assert_eq!(
            parse(
                &CanonicalProposal {
                    block_id: None,
                    ..ok
                }
                .encode_length_delimited_to_vec()
            ),
            Err(SignBytesError::MissingBlockId("proposal"))
        );
    }

    #[test]
    fn extension_and_vote_bytes_never_cross_parse() {
        let v = vote(PRECOMMIT, block());
        let doc = vote_sign_doc(CHAIN, &v).unwrap();
        let ext = extension_sign_doc(CHAIN, &v).unwrap();
        assert!(parse_extension(&doc.sign_bytes).is_err());
        assert!(parse(&ext.sign_bytes).is_err());
        let mut e = vote(PRECOMMIT, block());
        e.extension = b"hello".to_vec();
        let ext = extension_sign_doc(CHAIN, &e).unwrap();
        assert!(parse(&ext.sign_bytes).is_err());
    }

    #[test]
    fn parse_extension_errors() {
        assert_eq!(parse_extension(&[]), Err(SignBytesError::Empty));
        let zero_height = CanonicalVoteExtension {
            extension: vec![1],
            height: 0,
            round: 0,
            chain_id: CHAIN.into(),
        };
        assert_eq!(
            parse_extension(&zero_height.encode_length_delimited_to_vec()),
            Err(SignBytesError::InvalidHeight(0))
        );
        let neg_round = CanonicalVoteExtension {
            height: 1,
            round: -1,
            ..zero_height.clone()
        };
        assert_eq!(
            parse_extension(&neg_round.encode_length_delimited_to_vec()),
            Err(SignBytesError::InvalidRound(-1))
        );
        let no_chain = CanonicalVoteExtension {
            height: 1,
            chain_id: String::new(),
            ..zero_height.clone()
        };
        assert_eq!(
            parse_extension(&no_chain.encode_length_delimited_to_vec()),
            Err(SignBytesError::InvalidChainId(String::new()))
        );
        let good = CanonicalVoteExtension {
            height: 1,
            ..zero_height
        }
        .encode_length_delimited_to_vec();
        let mut b = good[1..].to_vec();
        b.extend_from_slice(&[0x28, 0x01]);
        assert_eq!(
            parse_extension(&with_prefix(&b)),
            Err(SignBytesError::NotCanonical)
        );
    }

    #[test]
    fn consensus_lookalikes_are_detected() {
        use prost::Message as _;
        let v = vote(PRECOMMIT, block());
        let doc = vote_sign_doc(CHAIN, &v).unwrap();
        let ext = extension_sign_doc(CHAIN, &v).unwrap();
        let prop = proposal_sign_doc(CHAIN, &proposal()).unwrap();
        for bytes in [&doc.sign_bytes, &ext.sign_bytes, &prop.sign_bytes] {
            assert!(looks_like_consensus_message(bytes));
            // Without the prefix too.
            assert!(looks_like_consensus_message(&bytes[1..]));
            // With a wrong prefix or trailing junk.
            let mut junk = bytes.clone();
            junk[0] = 0x05;
            assert!(looks_like_consensus_message(&junk));
        }
        // Not canonical but still a vote.
        let mut b = doc.sign_bytes[1..].to_vec();
        b.extend_from_slice(&[0x40, 0x01]);
        assert!(looks_like_consensus_message(&b));
        assert!(looks_like_consensus_message(&with_prefix(&b)));
        // Wire-format Vote and Proposal, as a node would send them.
        assert!(looks_like_consensus_message(&v.encode_to_vec()));
        assert!(looks_like_consensus_message(
            &v.encode_length_delimited_to_vec()
        ));
        assert!(looks_like_consensus_message(&proposal().encode_to_vec()));

        for harmless in [
            &b""[..],
            b"hello world",
            b"{\"height\":\"12\",\"round\":0}",
            &[0xFF; 40],
            &[0x08, 0x05, 0x10, 0x01],
        ] {
            assert!(!looks_like_consensus_message(harmless), "{harmless:?}");
        }
    }

    /// Rebuilds the request a SignDoc describes and encodes it again.
    fn reencode(doc: &SignDoc) -> Vec<u8> {
        let block_id = doc.block_id.as_ref().map(|b| messages::WireBlockId {
            hash: b.hash.clone(),
            part_set_header: Some(PartSetHeader {
                total: b.part_set_total,
                hash: b.part_set_hash.clone(),
            }),
        });
        let timestamp = Some(doc.timestamp);
        let round = i32::try_from(doc.hrs.round).unwrap();
        let again = match doc.hrs.step {
            Step::Propose => proposal_sign_doc(
                &doc.chain_id,
                &Proposal {
                    r#type: PROPOSAL,
                    height: doc.hrs.height,
                    round,
                    pol_round: i32::try_from(doc.pol_round).unwrap(),
                    block_id,
                    timestamp,
                    signature: vec![],
                },
            ),
            step => vote_sign_doc(
                &doc.chain_id,
                &Vote {
                    r#type: if step == Step::Prevote {
                        PREVOTE
                    } else {
                        PRECOMMIT
                    },
                    height: doc.hrs.height,
                    round,
                    block_id,
                    timestamp,
                    ..Default::default()
                },
            ),
        };
        again.unwrap().sign_bytes
    }

    /// Any bytes `parse` accepts are exactly what our encoder makes of their reading, however
    /// they were corrupted; and parsing never panics.
    #[test]
    fn mutated_sign_bytes_have_at_most_one_reading() {
        let mut seeds = vec![
            vote_sign_doc(CHAIN, &vote(PRECOMMIT, block())).unwrap(),
            vote_sign_doc(CHAIN, &vote(PREVOTE, nil_block())).unwrap(),
            proposal_sign_doc(CHAIN, &proposal()).unwrap(),
        ];
        let mut p = proposal();
        p.round = 5;
        p.pol_round = 4;
        seeds.push(proposal_sign_doc(CHAIN, &p).unwrap());
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let seed = &seeds[(next() % seeds.len() as u64) as usize];
            let mut b = seed.sign_bytes.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % b.len() as u64) as usize;
                match next() % 4 {
                    0 => b[i] ^= 1 << (next() % 8),
                    1 => b[i] = next() as u8,
                    2 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            // Keep the prefix consistent half the time so the body checks are reached.
            if next() % 2 == 0 && b.len() > 1 {
                b = with_prefix(&b[1..]);
            }
            if let Ok(doc) = parse(&b) {
                accepted += 1;
                assert_eq!(doc.sign_bytes, b);
                assert_eq!(reencode(&doc), b, "{}", ::hex::encode(&b));
                assert!(looks_like_consensus_message(&b));
            }
            let _ = parse_extension(&b);
            let _ = looks_like_consensus_message(&b);
        }
        // Flipping bits in hashes, heights or the chain ID keeps bytes valid, so some
        // mutants must have been accepted for the property to have been exercised.
        assert!(accepted > 100, "only {accepted} mutants parsed");
    }

    #[test]
    fn same_except_timestamp_compares_everything_else() {
        let a = vote_sign_doc(CHAIN, &vote(PRECOMMIT, block())).unwrap();
        let mut v = vote(PRECOMMIT, block());
        v.timestamp = Some(messages::Timestamp {
            seconds: 1_767_323_046,
            nanos: 0,
        });
        let b = vote_sign_doc(CHAIN, &v).unwrap();
        assert_ne!(a.sign_bytes, b.sign_bytes);
        assert!(same_except_timestamp(&a, &b));
        let nil = vote_sign_doc(CHAIN, &vote(PRECOMMIT, nil_block())).unwrap();
        assert!(!same_except_timestamp(&a, &nil));
        let mut v = vote(PRECOMMIT, block());
        v.round = 1;
        assert!(!same_except_timestamp(
            &a,
            &vote_sign_doc(CHAIN, &v).unwrap()
        ));
        let other = vote_sign_doc("other-chain", &vote(PRECOMMIT, block())).unwrap();
        assert!(!same_except_timestamp(&a, &other));
    }
}
