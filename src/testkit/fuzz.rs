//! The property checks of the four fuzz targets, one function each. Each takes the fuzzer's
//! bytes, panics if a property fails, and otherwise says what the input amounted to, so that
//! the corpus replay test can show that the seeds reach what they are meant to reach.
//!
//! - [`privval_stream`]: a node's byte stream, read as a session reads it.
//! - [`sign_bytes`]: candidate sign bytes, parsed as a participant parses them.
//! - [`cluster_participant`]: cluster frames served by a real 2-of-3 participant.
//! - [`state_file`]: arbitrary contents of a state file, opened as a cosigner opens it.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use prost::Message as _;

use crate::consensus::canonical::{parse, parse_extension};
use crate::consensus::{ExtensionDoc, SignDoc, Step};
use crate::privval::messages::{
    self, decode_delimited, decode_length_prefix, FrameError, LengthPrefix, Message, Request,
    RequestKind, SignedMsgType, MAX_MESSAGE_LEN,
};
use crate::privval::secret_connection::SecretConnectionError;
use crate::privval::session::{self, ReadExact, SessionError};
use crate::privval::sign_doc::{
    extension_sign_doc, looks_like_consensus_message, proposal_sign_doc, vote_sign_doc,
};

pub use super::participant::{
    cluster_input, cluster_participant, commitment_ref, ClusterSummary, OWN_ID,
};
pub use super::state_file::{
    state_file, state_input, StateOutcome, COMPACT, FIX_CHECKSUM_0, FIX_CHECKSUM_1,
};

/// What candidate sign bytes turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignBytesOutcome {
    /// Canonical prevote or precommit sign bytes.
    Vote,
    /// Canonical proposal sign bytes.
    Proposal,
    /// Canonical vote extension sign bytes.
    Extension,
    /// Not canonical sign bytes of anything.
    Rejected,
}

/// Sign bytes: whatever [`parse`] or [`parse_extension`] accepts is exactly what our encoder
/// makes of the document it parsed to (so accepted bytes have one reading), no bytes are both
/// a vote or proposal and an extension, and SignBytes requests for them are refused.
pub fn sign_bytes(data: &[u8]) -> SignBytesOutcome {
    match (parse(data), parse_extension(data)) {
        (Ok(doc), Ok(ext)) => {
            panic!("bytes parse as {doc:?} and as extension {ext:?}")
        }
        (Ok(doc), Err(_)) => {
            assert_eq!(doc.sign_bytes, data, "the document keeps other bytes");
            assert_eq!(reencode(&doc), doc, "re-encoding differs");
            assert!(
                looks_like_consensus_message(data),
                "SignBytes would sign it"
            );
            match doc.hrs.step {
                Step::Propose => SignBytesOutcome::Proposal,
                Step::Prevote | Step::Precommit => SignBytesOutcome::Vote,
            }
        }
        (Err(_), Ok(ext)) => {
            assert_eq!(ext.sign_bytes, data, "the extension keeps other bytes");
            assert_eq!(reencode_extension(&ext), ext, "re-encoding differs");
            assert!(
                looks_like_consensus_message(data),
                "SignBytes would sign it"
            );
            SignBytesOutcome::Extension
        }
        (Err(_), Err(_)) => SignBytesOutcome::Rejected,
    }
}

fn int32(what: &str, value: i64) -> i32 {
    i32::try_from(value).unwrap_or_else(|_| panic!("parsed a {what} of {value}, beyond int32"))
}

fn request_block_id(doc: &SignDoc) -> Option<messages::WireBlockId> {
    doc.block_id.as_ref().map(|b| messages::WireBlockId {
        hash: b.hash.clone(),
        part_set_header: Some(messages::WirePartSetHeader {
            total: b.part_set_total,
            hash: b.part_set_hash.clone(),
        }),
    })
}

/// What our encoder makes of a request for `doc`, as a node would send it.
fn reencode(doc: &SignDoc) -> SignDoc {
    let round = int32("round", doc.hrs.round);
    let timestamp = Some(doc.timestamp);
    let encoded = match doc.hrs.step {
        Step::Propose => proposal_sign_doc(
            &doc.chain_id,
            &messages::Proposal {
                r#type: SignedMsgType::Proposal as i32,
                height: doc.hrs.height,
                round,
                pol_round: int32("proof-of-lock round", doc.pol_round),
                block_id: request_block_id(doc),
                timestamp,
                signature: Vec::new(),
            },
        ),
        Step::Prevote | Step::Precommit => vote_sign_doc(
            &doc.chain_id,
            &messages::Vote {
                r#type: if doc.hrs.step == Step::Prevote {
                    SignedMsgType::Prevote as i32
                } else {
                    SignedMsgType::Precommit as i32
                },
                height: doc.hrs.height,
                round,
                block_id: request_block_id(doc),
                timestamp,
                ..Default::default()
            },
        ),
    };
    encoded.unwrap_or_else(|e| panic!("parsed {doc:?}, which our encoder refuses: {e}"))
}

/// What our encoder makes of the extension of a non-nil precommit at `ext`'s height and
/// round (the block does not enter extension sign bytes).
fn reencode_extension(ext: &ExtensionDoc) -> ExtensionDoc {
    let vote = messages::Vote {
        r#type: SignedMsgType::Precommit as i32,
        height: ext.height,
        round: int32("round", ext.round),
        block_id: Some(messages::WireBlockId {
            hash: vec![1; 32],
            part_set_header: Some(messages::WirePartSetHeader {
                total: 1,
                hash: vec![2; 32],
            }),
        }),
        timestamp: Some(messages::Timestamp::default()),
        extension: ext.extension.clone(),
        ..Default::default()
    };
    extension_sign_doc(&ext.chain_id, &vote)
        .unwrap_or_else(|e| panic!("parsed {ext:?}, which our encoder refuses: {e}"))
}

/// How a node's byte stream ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StreamEnd {
    /// After a whole message.
    #[default]
    Exhausted,
    /// Inside a message.
    Truncated,
    /// At a message the session refuses, dropping the connection.
    Refused(FrameError),
}

/// What a node's byte stream held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivvalSummary {
    /// The requests read, in order.
    pub requests: Vec<RequestKind>,
    /// Messages read that are no request (responses, an empty oneof).
    pub not_requests: usize,
    /// Messages whose bytes were exactly our own encoding of them.
    pub canonical: usize,
    /// Sign documents derived from the requests (votes, proposals, extensions).
    pub sign_docs: usize,
    /// How the stream ended.
    pub end: StreamEnd,
}

/// Bytes from memory, handed out as a SecretConnection hands out plaintext.
struct Feed<'a> {
    rest: &'a [u8],
}

impl ReadExact for Feed<'_> {
    fn read_exact(
        &mut self,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<(), SessionError>> + Send {
        // The session allocates each buffer just before reading into it.
        assert!(
            buf.len() <= MAX_MESSAGE_LEN,
            "the session allocated {} bytes for one read",
            buf.len()
        );
        let result = match self.rest.split_at_checked(buf.len()) {
            Some((head, tail)) => {
                buf.copy_from_slice(head);
                self.rest = tail;
                Ok(())
            }
            None => {
                self.rest = &[];
                Err(SessionError::Connection(SecretConnectionError::Closed))
            }
        };
        std::future::ready(result)
    }
}

fn read_message(feed: &mut Feed<'_>) -> Result<Message, SessionError> {
    let mut read = std::pin::pin!(session::read_message(feed));
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("reading from memory waited"),
    }
}

/// Privval decoding: reads `data` message by message with the session's own reader, which
/// must agree with the buffering decoder ([`decode_delimited`]) on every message and on where
/// and why the stream stops, and never allocates more than the node's limit for a read.
/// Every message re-encodes to bytes that decode to it and re-encode identically, and every
/// sign request that yields sign bytes yields canonical ones that carry the request's chain,
/// height, round, type, block and timestamp.
pub fn privval_stream(data: &[u8]) -> PrivvalSummary {
    let mut summary = PrivvalSummary::default();
    let mut feed = Feed { rest: data };
    while !feed.rest.is_empty() {
        let at = feed.rest;
        match read_message(&mut feed) {
            Ok(msg) => {
                let used = at.len() - feed.rest.len();
                match decode_delimited(at) {
                    Ok(Some((other, n))) if other == msg && n == used => {}
                    other => panic!(
                        "the session read {msg:?} in {used} bytes, the buffering decoder {other:?}"
                    ),
                }
                let Ok(LengthPrefix::Complete { prefix_len, .. }) = decode_length_prefix(at) else {
                    panic!("a message was read without a complete length prefix");
                };
                check_message(msg, &at[prefix_len..used], &mut summary);
            }
            Err(SessionError::Frame(e)) => {
                assert_eq!(decode_delimited(at).err().as_ref(), Some(&e));
                summary.end = StreamEnd::Refused(e);
                return summary;
            }
            Err(SessionError::Connection(SecretConnectionError::Closed)) => {
                assert!(
                    matches!(decode_delimited(at), Ok(None)),
                    "truncation not seen"
                );
                summary.end = StreamEnd::Truncated;
                return summary;
            }
            Err(other) => panic!("reading from memory failed: {other}"),
        }
    }
    summary
}

fn check_message(msg: Message, body: &[u8], summary: &mut PrivvalSummary) {
    let encoded = msg.encode_to_vec();
    let again = Message::decode(encoded.as_slice())
        .unwrap_or_else(|e| panic!("our encoding of {msg:?} does not decode: {e}"));
    assert_eq!(again, msg, "our encoding decodes to another message");
    assert_eq!(again.encode_to_vec(), encoded, "re-encoding is not stable");
    if encoded == body {
        summary.canonical += 1;
    }
    match Request::from_message(msg) {
        Ok(request) => {
            summary.requests.push(request.kind());
            summary.sign_docs += check_request(request);
        }
        Err(_) => summary.not_requests += 1,
    }
}

/// Checks the sign documents a session would derive from `request`; returns how many.
fn check_request(request: Request) -> usize {
    match request {
        Request::SignVote(r) => r.vote.map_or(0, |vote| check_vote(&r.chain_id, &vote)),
        Request::SignProposal(r) => r.proposal.map_or(0, |p| check_proposal(&r.chain_id, &p)),
        Request::SignBytes(r) => {
            // SignBytes is refused for anything that parses; the check says so.
            sign_bytes(&r.value);
            0
        }
        Request::PubKey(_) | Request::Ping => 0,
    }
}

fn check_vote(chain_id: &str, vote: &messages::Vote) -> usize {
    let Ok(doc) = vote_sign_doc(chain_id, vote) else {
        assert!(
            extension_sign_doc(chain_id, vote).is_err(),
            "an invalid vote has extension sign bytes"
        );
        return 0;
    };
    assert_eq!(sign_bytes(&doc.sign_bytes), SignBytesOutcome::Vote);
    assert_eq!(parse(&doc.sign_bytes).as_ref(), Ok(&doc));
    let step = match SignedMsgType::try_from(vote.r#type) {
        Ok(SignedMsgType::Prevote) => Step::Prevote,
        Ok(SignedMsgType::Precommit) => Step::Precommit,
        other => panic!("a vote of type {other:?} has sign bytes"),
    };
    assert_eq!(
        (
            doc.chain_id.as_str(),
            doc.hrs.height,
            doc.hrs.round,
            doc.hrs.step
        ),
        (chain_id, vote.height, i64::from(vote.round), step)
    );
    assert_eq!(Some(doc.timestamp), vote.timestamp);
    assert_eq!(
        doc.block_id.is_some(),
        vote.block_id.as_ref().is_some_and(|b| !b.hash.is_empty())
    );
    let extension = extension_sign_doc(chain_id, vote);
    if step == Step::Precommit && doc.block_id.is_some() {
        let ext = extension.unwrap_or_else(|e| panic!("a valid precommit has no extension: {e}"));
        assert_eq!(sign_bytes(&ext.sign_bytes), SignBytesOutcome::Extension);
        assert_eq!(
            (ext.chain_id.as_str(), ext.height, ext.round, &ext.extension),
            (chain_id, doc.hrs.height, doc.hrs.round, &vote.extension)
        );
        2
    } else {
        assert!(
            extension.is_err(),
            "a {step} without a block has an extension"
        );
        1
    }
}

fn check_proposal(chain_id: &str, p: &messages::Proposal) -> usize {
    let Ok(doc) = proposal_sign_doc(chain_id, p) else {
        return 0;
    };
    assert_eq!(sign_bytes(&doc.sign_bytes), SignBytesOutcome::Proposal);
    assert_eq!(
        (
            doc.chain_id.as_str(),
            doc.hrs.height,
            doc.hrs.round,
            doc.pol_round
        ),
        (
            chain_id,
            p.height,
            i64::from(p.round),
            i64::from(p.pol_round)
        )
    );
    assert_eq!(Some(doc.timestamp), p.timestamp);
    1
}
