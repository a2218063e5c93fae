//! The privval protocol messages of CometBFT v0.34 to v1.0, as one superset schema.
//!
//! Only field numbers are on the wire, and no version reuses a number for a different
//! meaning (v1 reserves `PubKeyResponse.pub_key = 1`, adds fields elsewhere), so one schema
//! decodes every version's requests. Responses differ only for the public key; the builders
//! here take the [`ProtocolVersion`] where it matters. [`framing`] owns the varint length
//! prefix around each message.

pub(crate) mod framing;

pub use framing::{
    decode_delimited, decode_length_prefix, decode_message, encode_delimited, FrameError,
    LengthPrefix, MAX_MESSAGE_LEN, MAX_PREFIX_LEN,
};

use super::version::ProtocolVersion;

/// One privval message (`tendermint.privval.Message` / `cometbft.privval.v1.Message`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(oneof = "message::Sum", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub sum: Option<message::Sum>,
}

/// The `sum` oneof of [`Message`].
pub mod message {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Sum {
        #[prost(message, tag = "1")]
        PubKeyRequest(super::PubKeyRequest),
        #[prost(message, tag = "2")]
        PubKeyResponse(super::PubKeyResponse),
        #[prost(message, tag = "3")]
        SignVoteRequest(super::SignVoteRequest),
        #[prost(message, tag = "4")]
        SignedVoteResponse(super::SignedVoteResponse),
        #[prost(message, tag = "5")]
        SignProposalRequest(super::SignProposalRequest),
        #[prost(message, tag = "6")]
        SignedProposalResponse(super::SignedProposalResponse),
        #[prost(message, tag = "7")]
        PingRequest(super::PingRequest),
        #[prost(message, tag = "8")]
        PingResponse(super::PingResponse),
        /// CometBFT v1.0 only.
        #[prost(message, tag = "9")]
        SignBytesRequest(super::SignBytesRequest),
        /// CometBFT v1.0 only.
        #[prost(message, tag = "10")]
        SignBytesResponse(super::SignBytesResponse),
    }
}

/// `RemoteSignerError`: a final refusal; the node does not retry and ignores the code.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RemoteSignerError {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub description: String,
}

impl RemoteSignerError {
    pub fn new(code: i32, description: impl Into<String>) -> Self {
        RemoteSignerError {
            code,
            description: description.into(),
        }
    }
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PubKeyRequest {
    #[prost(string, tag = "1")]
    pub chain_id: String,
}

/// `tendermint.crypto.PublicKey`, as used by v0.34–v0.38 `PubKeyResponse.pub_key`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PublicKey {
    #[prost(oneof = "public_key::Sum", tags = "1, 2")]
    pub sum: Option<public_key::Sum>,
}

/// The `sum` oneof of [`PublicKey`].
pub mod public_key {
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Sum {
        #[prost(bytes, tag = "1")]
        Ed25519(Vec<u8>),
        #[prost(bytes, tag = "2")]
        Secp256k1(Vec<u8>),
    }
}

/// The union of `PubKeyResponse` across versions: v0.34–v0.38 use `pub_key`, v1 uses
/// `pub_key_bytes` and `pub_key_type` (and reserves field 1).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PubKeyResponse {
    #[prost(message, optional, tag = "1")]
    pub pub_key: Option<PublicKey>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
    #[prost(bytes = "vec", tag = "3")]
    pub pub_key_bytes: Vec<u8>,
    #[prost(string, tag = "4")]
    pub pub_key_type: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignVoteRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    #[prost(string, tag = "2")]
    pub chain_id: String,
    /// v1 only; always false from older nodes.
    #[prost(bool, tag = "3")]
    pub skip_extension_signing: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedVoteResponse {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignProposalRequest {
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    #[prost(string, tag = "2")]
    pub chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedProposalResponse {
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingRequest {}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingResponse {}

/// v1: sign arbitrary bytes (FilePV signs them as they are).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignBytesRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignBytesResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub signature: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

pub use crate::consensus::proto::{SignedMsgType, Timestamp};

/// `tendermint.types.Vote`; `extension` and `extension_signature` exist from v0.38 on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Vote {
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub r#type: i32,
    #[prost(int64, tag = "2")]
    pub height: i64,
    #[prost(int32, tag = "3")]
    pub round: i32,
    #[prost(message, optional, tag = "4")]
    pub block_id: Option<WireBlockId>,
    #[prost(message, optional, tag = "5")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "6")]
    pub validator_address: Vec<u8>,
    #[prost(int32, tag = "7")]
    pub validator_index: i32,
    #[prost(bytes = "vec", tag = "8")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "9")]
    pub extension: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    pub extension_signature: Vec<u8>,
}

/// `tendermint.types.Proposal`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proposal {
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub r#type: i32,
    #[prost(int64, tag = "2")]
    pub height: i64,
    #[prost(int32, tag = "3")]
    pub round: i32,
    #[prost(int32, tag = "4")]
    pub pol_round: i32,
    #[prost(message, optional, tag = "5")]
    pub block_id: Option<WireBlockId>,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(bytes = "vec", tag = "7")]
    pub signature: Vec<u8>,
}

/// `tendermint.types.BlockID`. A Go node sends a nil block ID as an empty hash with an
/// empty (but present) part-set header.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WireBlockId {
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub part_set_header: Option<WirePartSetHeader>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WirePartSetHeader {
    #[prost(uint32, tag = "1")]
    pub total: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

/// The kinds of request a node sends; each has exactly one matching response type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    PubKey,
    SignVote,
    SignProposal,
    Ping,
    SignBytes,
}

impl RequestKind {
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::PubKey => "PubKeyRequest",
            RequestKind::SignVote => "SignVoteRequest",
            RequestKind::SignProposal => "SignProposalRequest",
            RequestKind::Ping => "PingRequest",
            RequestKind::SignBytes => "SignBytesRequest",
        }
    }
}

impl std::fmt::Display for RequestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A request from the node, taken out of its [`Message`].
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    PubKey(PubKeyRequest),
    SignVote(SignVoteRequest),
    SignProposal(SignProposalRequest),
    Ping,
    SignBytes(SignBytesRequest),
}

/// Why a [`Message`] from the node is not a request we can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("message carries no request (empty oneof)")]
    Empty,
    #[error("node sent a response message ({0}); only the node asks")]
    NotARequest(&'static str),
}

impl Request {
    /// Takes the request out of a message received from the node.
    pub fn from_message(msg: Message) -> Result<Request, RequestError> {
        use message::Sum;
        match msg.sum {
            None => Err(RequestError::Empty),
            Some(Sum::PubKeyRequest(r)) => Ok(Request::PubKey(r)),
            Some(Sum::SignVoteRequest(r)) => Ok(Request::SignVote(r)),
            Some(Sum::SignProposalRequest(r)) => Ok(Request::SignProposal(r)),
            Some(Sum::PingRequest(_)) => Ok(Request::Ping),
            Some(Sum::SignBytesRequest(r)) => Ok(Request::SignBytes(r)),
            Some(Sum::PubKeyResponse(_)) => Err(RequestError::NotARequest("PubKeyResponse")),
            Some(Sum::SignedVoteResponse(_)) => {
                Err(RequestError::NotARequest("SignedVoteResponse"))
            }
            Some(Sum::SignedProposalResponse(_)) => {
                Err(RequestError::NotARequest("SignedProposalResponse"))
            }
            Some(Sum::PingResponse(_)) => Err(RequestError::NotARequest("PingResponse")),
            Some(Sum::SignBytesResponse(_)) => Err(RequestError::NotARequest("SignBytesResponse")),
        }
    }

    pub fn kind(&self) -> RequestKind {
        match self {
            Request::PubKey(_) => RequestKind::PubKey,
            Request::SignVote(_) => RequestKind::SignVote,
            Request::SignProposal(_) => RequestKind::SignProposal,
            Request::Ping => RequestKind::Ping,
            Request::SignBytes(_) => RequestKind::SignBytes,
        }
    }

    /// The chain ID the request names, for the requests that name one.
    pub fn chain_id(&self) -> Option<&str> {
        match self {
            Request::PubKey(r) => Some(&r.chain_id),
            Request::SignVote(r) => Some(&r.chain_id),
            Request::SignProposal(r) => Some(&r.chain_id),
            Request::Ping | Request::SignBytes(_) => None,
        }
    }
}

fn wrap(sum: message::Sum) -> Message {
    Message { sum: Some(sum) }
}

/// The `pub_key_type` a v1 node expects for an Ed25519 key.
pub const ED25519_KEY_TYPE: &str = "ed25519";

/// The answer to a PubKeyRequest for an Ed25519 key, in the layout `version` decodes:
/// v0.34–v0.38 read field 1 (`PublicKey.ed25519`), v1 reads fields 3/4 and ignores field 1.
pub fn pubkey_response(version: ProtocolVersion, key: &[u8; 32]) -> Message {
    let response = match version {
        ProtocolVersion::V0_34 | ProtocolVersion::V0_37 | ProtocolVersion::V0_38 => {
            PubKeyResponse {
                pub_key: Some(PublicKey {
                    sum: Some(public_key::Sum::Ed25519(key.to_vec())),
                }),
                ..Default::default()
            }
        }
        ProtocolVersion::V1 => PubKeyResponse {
            pub_key_bytes: key.to_vec(),
            pub_key_type: ED25519_KEY_TYPE.to_owned(),
            ..Default::default()
        },
    };
    wrap(message::Sum::PubKeyResponse(response))
}

/// The signed vote (signature, and extension signature where one is due, filled in).
pub fn signed_vote_response(vote: Vote) -> Message {
    wrap(message::Sum::SignedVoteResponse(SignedVoteResponse {
        vote: Some(vote),
        error: None,
    }))
}

pub fn signed_proposal_response(proposal: Proposal) -> Message {
    wrap(message::Sum::SignedProposalResponse(
        SignedProposalResponse {
            proposal: Some(proposal),
            error: None,
        },
    ))
}

pub fn sign_bytes_response(signature: Vec<u8>) -> Message {
    wrap(message::Sum::SignBytesResponse(SignBytesResponse {
        signature,
        error: None,
    }))
}

pub fn ping_response() -> Message {
    wrap(message::Sum::PingResponse(PingResponse {}))
}

/// The refusal of a request of `kind`: its matching response type carrying `error` (the
/// node treats it as final). A ping cannot be refused, so there is none for it.
pub fn error_response(kind: RequestKind, error: RemoteSignerError) -> Option<Message> {
    let error = Some(error);
    let sum = match kind {
        RequestKind::PubKey => message::Sum::PubKeyResponse(PubKeyResponse {
            error,
            ..Default::default()
        }),
        RequestKind::SignVote => {
            message::Sum::SignedVoteResponse(SignedVoteResponse { vote: None, error })
        }
        RequestKind::SignProposal => message::Sum::SignedProposalResponse(SignedProposalResponse {
            proposal: None,
            error,
        }),
        RequestKind::SignBytes => message::Sum::SignBytesResponse(SignBytesResponse {
            signature: Vec::new(),
            error,
        }),
        RequestKind::Ping => return None,
    };
    Some(wrap(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn pubkey_response_layout_per_version() {
        let key = [7u8; 32];
        for v in [
            ProtocolVersion::V0_34,
            ProtocolVersion::V0_37,
            ProtocolVersion::V0_38,
        ] {
            let bytes = pubkey_response(v, &key).encode_to_vec();
            // Message.sum=2 { pub_key=1 { ed25519=1 <32> } }
            let mut want = vec![0x12, 0x24, 0x0A, 0x22, 0x0A, 0x20];
            want.extend_from_slice(&key);
            assert_eq!(bytes, want, "{v:?}");
        }
        let bytes = pubkey_response(ProtocolVersion::V1, &key).encode_to_vec();
        // Message.sum=2 { pub_key_bytes=3 <32>, pub_key_type=4 "ed25519" }
        let mut want = vec![0x12, 0x2B, 0x1A, 0x20];
        want.extend_from_slice(&key);
        want.extend_from_slice(&[0x22, 0x07]);
        want.extend_from_slice(b"ed25519");
        assert_eq!(bytes, want);
    }

    #[test]
    fn error_responses_match_request_kind() {
        let err = RemoteSignerError::new(2, "double signing requested at height: 5");
        let cases = [
            (RequestKind::PubKey, 2u8),
            (RequestKind::SignVote, 4),
            (RequestKind::SignProposal, 6),
            (RequestKind::SignBytes, 10),
        ];
        for (kind, tag) in cases {
            let msg = error_response(kind, err.clone()).unwrap();
            let bytes = msg.encode_to_vec();
            // The oneof field number identifies the response type.
            assert_eq!(bytes[0], tag << 3 | 2, "{kind}");
            let back = Message::decode(bytes.as_slice()).unwrap();
            let got = match back.sum.unwrap() {
                message::Sum::PubKeyResponse(r) => r.error,
                message::Sum::SignedVoteResponse(r) => {
                    assert!(r.vote.is_none());
                    r.error
                }
                message::Sum::SignedProposalResponse(r) => {
                    assert!(r.proposal.is_none());
                    r.error
                }
                message::Sum::SignBytesResponse(r) => {
                    assert!(r.signature.is_empty());
                    r.error
                }
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(got.as_ref(), Some(&err));
        }
        assert!(error_response(RequestKind::Ping, err).is_none());
    }

    #[test]
    fn requests_are_classified() {
        let ping = Message {
            sum: Some(message::Sum::PingRequest(PingRequest {})),
        };
        assert_eq!(Request::from_message(ping).unwrap(), Request::Ping);
        assert_eq!(
            Request::from_message(Message::default()),
            Err(RequestError::Empty)
        );
        assert_eq!(
            Request::from_message(ping_response()),
            Err(RequestError::NotARequest("PingResponse"))
        );
        let req = Message {
            sum: Some(message::Sum::SignVoteRequest(SignVoteRequest {
                vote: None,
                chain_id: "c".into(),
                skip_extension_signing: true,
            })),
        };
        let req = Request::from_message(req).unwrap();
        assert_eq!(req.kind(), RequestKind::SignVote);
        assert_eq!(req.chain_id(), Some("c"));
    }

    #[test]
    fn go_nil_vote_block_id_round_trips() {
        // A Go node encodes a nil vote's block ID as present-but-empty; echoing the vote
        // back must keep those bytes.
        let bytes = [0x08, 0x01, 0x10, 0x05, 0x22, 0x02, 0x12, 0x00];
        let vote = Vote::decode(&bytes[..]).unwrap();
        assert_eq!(vote.encode_to_vec(), bytes);
    }
}
