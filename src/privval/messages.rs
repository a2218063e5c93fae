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
    /// The one request or response this message carries (field 1-10, a proto oneof).
    #[prost(oneof = "message::Sum", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub sum: Option<message::Sum>,
}

/// The `sum` oneof of [`Message`].
pub mod message {
    /// Which request or response a [`Message`](super::Message) carries, by its oneof field.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Sum {
        /// The node asks for the validator's public key (field 1).
        #[prost(message, tag = "1")]
        PubKeyRequest(super::PubKeyRequest),
        /// The signer's public key, or why it has none (field 2).
        #[prost(message, tag = "2")]
        PubKeyResponse(super::PubKeyResponse),
        /// The node asks for a vote to be signed (field 3).
        #[prost(message, tag = "3")]
        SignVoteRequest(super::SignVoteRequest),
        /// The vote with its signature filled in, or a refusal (field 4).
        #[prost(message, tag = "4")]
        SignedVoteResponse(super::SignedVoteResponse),
        /// The node asks for a proposal to be signed (field 5).
        #[prost(message, tag = "5")]
        SignProposalRequest(super::SignProposalRequest),
        /// The proposal with its signature filled in, or a refusal (field 6).
        #[prost(message, tag = "6")]
        SignedProposalResponse(super::SignedProposalResponse),
        /// The node checks that the signer is still there (field 7).
        #[prost(message, tag = "7")]
        PingRequest(super::PingRequest),
        /// The signer's answer to a ping (field 8).
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
    /// An error code; CometBFT neither defines codes nor reads them.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why the signer refused, as the node logs it.
    #[prost(string, tag = "2")]
    pub description: String,
}

impl RemoteSignerError {
    /// A refusal with `code` and a human-readable `description` for the node's log.
    pub fn new(code: i32, description: impl Into<String>) -> Self {
        RemoteSignerError {
            code,
            description: description.into(),
        }
    }
}

/// `PubKeyRequest`: the node asks which key signs for it on `chain_id`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PubKeyRequest {
    /// The chain the node runs (field 1); a signer for another chain refuses.
    #[prost(string, tag = "1")]
    pub chain_id: String,
}

/// `tendermint.crypto.PublicKey`, as used by v0.34–v0.38 `PubKeyResponse.pub_key`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PublicKey {
    /// The key, by algorithm (a proto oneof); v0.34–v0.38 read the key from here.
    #[prost(oneof = "public_key::Sum", tags = "1, 2")]
    pub sum: Option<public_key::Sum>,
}

/// The `sum` oneof of [`PublicKey`].
pub mod public_key {
    /// The key algorithm of a [`PublicKey`](super::PublicKey) and its bytes.
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum Sum {
        /// A 32-byte Ed25519 public key (field 1), the only kind this signer holds.
        #[prost(bytes, tag = "1")]
        Ed25519(Vec<u8>),
        /// A 33-byte compressed secp256k1 public key (field 2); this signer never sends one.
        #[prost(bytes, tag = "2")]
        Secp256k1(Vec<u8>),
    }
}

/// The union of `PubKeyResponse` across versions: v0.34–v0.38 use `pub_key`, v1 uses
/// `pub_key_bytes` and `pub_key_type` (and reserves field 1).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PubKeyResponse {
    /// The key for v0.34–v0.38 nodes (field 1); v1 reserves the number and leaves it unset.
    #[prost(message, optional, tag = "1")]
    pub pub_key: Option<PublicKey>,
    /// Set instead of a key when the signer refuses (field 2).
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
    /// The raw public key for v1 nodes (field 3).
    #[prost(bytes = "vec", tag = "3")]
    pub pub_key_bytes: Vec<u8>,
    /// The key's algorithm name for v1 nodes (field 4), [`ED25519_KEY_TYPE`] here.
    #[prost(string, tag = "4")]
    pub pub_key_type: String,
}

/// `SignVoteRequest`: the node asks for a signature on one vote.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignVoteRequest {
    /// The vote to sign, its `signature` field empty (field 1).
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    /// The chain the vote is for (field 2); it is part of the sign bytes.
    #[prost(string, tag = "2")]
    pub chain_id: String,
    /// v1 only; always false from older nodes.
    #[prost(bool, tag = "3")]
    pub skip_extension_signing: bool,
}

/// `SignedVoteResponse`: the answer to a [`SignVoteRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedVoteResponse {
    /// The vote as asked for, with `signature` (and `extension_signature`) filled in (field 1).
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    /// Set instead of a vote when the signer refuses (field 2).
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

/// `SignProposalRequest`: the node asks for a signature on one block proposal.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignProposalRequest {
    /// The proposal to sign, its `signature` field empty (field 1).
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    /// The chain the proposal is for (field 2); it is part of the sign bytes.
    #[prost(string, tag = "2")]
    pub chain_id: String,
}

/// `SignedProposalResponse`: the answer to a [`SignProposalRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct SignedProposalResponse {
    /// The proposal as asked for, with `signature` filled in (field 1).
    #[prost(message, optional, tag = "1")]
    pub proposal: Option<Proposal>,
    /// Set instead of a proposal when the signer refuses (field 2).
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

/// `PingRequest`: the node checks that the connection is alive; it carries nothing.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingRequest {}

/// `PingResponse`: the answer to a [`PingRequest`]; it carries nothing.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PingResponse {}

/// v1: sign arbitrary bytes (FilePV signs them as they are).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignBytesRequest {
    /// The bytes to sign, exactly as given (field 1).
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

/// `SignBytesResponse` (v1): the answer to a [`SignBytesRequest`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignBytesResponse {
    /// The Ed25519 signature over the request's `value` (field 1).
    #[prost(bytes = "vec", tag = "1")]
    pub signature: Vec<u8>,
    /// Set instead of a signature when the signer refuses (field 2).
    #[prost(message, optional, tag = "2")]
    pub error: Option<RemoteSignerError>,
}

pub use crate::consensus::proto::{SignedMsgType, Timestamp};

/// `tendermint.types.Vote`; `extension` and `extension_signature` exist from v0.38 on.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Vote {
    /// Prevote or precommit, as a [`SignedMsgType`] number (field 1).
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub r#type: i32,
    /// The block height voted at (field 2).
    #[prost(int64, tag = "2")]
    pub height: i64,
    /// The consensus round within the height (field 3).
    #[prost(int32, tag = "3")]
    pub round: i32,
    /// The block voted for; empty for a vote for nil (field 4).
    #[prost(message, optional, tag = "4")]
    pub block_id: Option<WireBlockId>,
    /// The validator's local time when it voted (field 5); part of the sign bytes.
    #[prost(message, optional, tag = "5")]
    pub timestamp: Option<Timestamp>,
    /// The validator's address, the first 20 bytes of SHA-256 of its public key (field 6).
    #[prost(bytes = "vec", tag = "6")]
    pub validator_address: Vec<u8>,
    /// The validator's index in the height's validator set (field 7).
    #[prost(int32, tag = "7")]
    pub validator_index: i32,
    /// The Ed25519 signature over the vote's canonical sign bytes (field 8).
    #[prost(bytes = "vec", tag = "8")]
    pub signature: Vec<u8>,
    /// Application data a precommit carries (field 9, v0.38+), signed separately.
    #[prost(bytes = "vec", tag = "9")]
    pub extension: Vec<u8>,
    /// The signature over the canonical vote extension (field 10, v0.38+).
    #[prost(bytes = "vec", tag = "10")]
    pub extension_signature: Vec<u8>,
}

/// `tendermint.types.Proposal`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Proposal {
    /// Always `Proposal` as a [`SignedMsgType`] number (field 1).
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub r#type: i32,
    /// The block height proposed at (field 2).
    #[prost(int64, tag = "2")]
    pub height: i64,
    /// The consensus round within the height (field 3).
    #[prost(int32, tag = "3")]
    pub round: i32,
    /// The round of the proof of lock the proposer relies on, -1 for none (field 4).
    #[prost(int32, tag = "4")]
    pub pol_round: i32,
    /// The proposed block (field 5).
    #[prost(message, optional, tag = "5")]
    pub block_id: Option<WireBlockId>,
    /// The proposer's local time (field 6); part of the sign bytes.
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    /// The Ed25519 signature over the proposal's canonical sign bytes (field 7).
    #[prost(bytes = "vec", tag = "7")]
    pub signature: Vec<u8>,
}

/// `tendermint.types.BlockID`. A Go node sends a nil block ID as an empty hash with an
/// empty (but present) part-set header.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WireBlockId {
    /// The block's header hash (field 1); empty for nil.
    #[prost(bytes = "vec", tag = "1")]
    pub hash: Vec<u8>,
    /// How the block was split into gossip parts (field 2).
    #[prost(message, optional, tag = "2")]
    pub part_set_header: Option<WirePartSetHeader>,
}

/// `tendermint.types.PartSetHeader`: the parts a block was split into for gossip.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WirePartSetHeader {
    /// How many parts (field 1).
    #[prost(uint32, tag = "1")]
    pub total: u32,
    /// The Merkle root of the parts (field 2).
    #[prost(bytes = "vec", tag = "2")]
    pub hash: Vec<u8>,
}

/// The kinds of request a node sends; each has exactly one matching response type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `PubKeyRequest`.
    PubKey,
    /// `SignVoteRequest`.
    SignVote,
    /// `SignProposalRequest`.
    SignProposal,
    /// `PingRequest`.
    Ping,
    /// `SignBytesRequest` (v1 only).
    SignBytes,
}

impl RequestKind {
    /// The proto message name, as logs and errors show it.
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
    /// Which key signs for the chain.
    PubKey(PubKeyRequest),
    /// Sign one vote.
    SignVote(SignVoteRequest),
    /// Sign one proposal.
    SignProposal(SignProposalRequest),
    /// Is the signer still there.
    Ping,
    /// Sign arbitrary bytes (v1 only).
    SignBytes(SignBytesRequest),
}

/// Why a [`Message`] from the node is not a request we can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The oneof is unset.
    #[error("message carries no request (empty oneof)")]
    Empty,
    /// A response arrived where a request belongs; carries the response's name.
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

    /// Which kind of request this is, for logs and for the matching response type.
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

/// The signed proposal (its signature filled in).
pub fn signed_proposal_response(proposal: Proposal) -> Message {
    wrap(message::Sum::SignedProposalResponse(
        SignedProposalResponse {
            proposal: Some(proposal),
            error: None,
        },
    ))
}

/// The signature over a [`SignBytesRequest`]'s bytes.
pub fn sign_bytes_response(signature: Vec<u8>) -> Message {
    wrap(message::Sum::SignBytesResponse(SignBytesResponse {
        signature,
        error: None,
    }))
}

/// The answer to a ping.
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
