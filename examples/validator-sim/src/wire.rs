//! The privval messages as the simulated node sees them, their encoding for each protocol
//! version, and the varint-length-delimited framing inside the SecretConnection stream.
//!
//! Internally a vote or proposal is always the tendermint-proto v0.38 prost type (a superset
//! of v0.34/v0.37: only the extension fields are added). On the wire each version uses its
//! own tendermint-proto module (v0.34, v0.37, v0.38) or the hand-defined [`crate::v1`] types,
//! so what leaves the sim is exactly what that node version would send.

use std::io::{self, Read, Write};

use prost::Message as _;
use serde::Serialize;
use tendermint_proto::v0_38::types::{Proposal, Vote};

use crate::v1;

/// The node reads at most 10 KiB per privval message (`maxRemoteSignerMsgSize`, v0.34–v1.0).
pub const MAX_MSG_LEN: usize = 10 * 1024;

/// Largest plaintext chunk of one SecretConnection frame.
const FRAME_DATA_MAX: usize = 1024;

/// The CometBFT privval protocol generation the node speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[serde(rename = "v0.34")]
    V0_34,
    #[serde(rename = "v0.37")]
    V0_37,
    #[serde(rename = "v0.38")]
    V0_38,
    #[serde(rename = "v1")]
    V1,
}

impl Protocol {
    /// Does this node version carry vote extensions (and require their signatures)?
    pub fn has_extensions(self) -> bool {
        matches!(self, Self::V0_38 | Self::V1)
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::V0_34 => "v0.34",
            Self::V0_37 => "v0.37",
            Self::V0_38 => "v0.38",
            Self::V1 => "v1",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v0.34" | "0.34" => Ok(Self::V0_34),
            "v0.37" | "0.37" => Ok(Self::V0_37),
            "v0.38" | "0.38" => Ok(Self::V0_38),
            "v1" | "v1.0" | "1" | "1.0" => Ok(Self::V1),
            other => Err(format!(
                "unknown protocol {other:?} (expected v0.34, v0.37, v0.38 or v1)"
            )),
        }
    }
}

/// A `RemoteSignerError`: the signer's final refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RemoteError {
    pub code: i32,
    pub description: String,
}

/// A public key as a PubKeyResponse carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubKey {
    /// `"ed25519"`, `"secp256k1"`, ...
    pub key_type: String,
    pub bytes: Vec<u8>,
}

/// What the node asks.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    PubKey {
        chain_id: String,
    },
    SignVote {
        chain_id: String,
        vote: Vote,
        /// v1 only; ignored (not encodable) for older versions.
        skip_extension_signing: bool,
    },
    SignProposal {
        chain_id: String,
        proposal: Proposal,
    },
    Ping,
    /// v1 only.
    SignBytes {
        value: Vec<u8>,
    },
}

/// What the signer answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    PubKey {
        key: Option<PubKey>,
        error: Option<RemoteError>,
    },
    SignedVote {
        vote: Option<Vote>,
        error: Option<RemoteError>,
    },
    SignedProposal {
        proposal: Option<Proposal>,
        error: Option<RemoteError>,
    },
    Ping,
    SignBytes {
        signature: Vec<u8>,
        error: Option<RemoteError>,
    },
    /// A message a signer never sends (a request, or an empty `sum`).
    Unexpected(&'static str),
}

/// The request/response pairing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    PubKey,
    Vote,
    Proposal,
    Ping,
    SignBytes,
}

impl Request {
    pub fn kind(&self) -> Kind {
        match self {
            Self::PubKey { .. } => Kind::PubKey,
            Self::SignVote { .. } => Kind::Vote,
            Self::SignProposal { .. } => Kind::Proposal,
            Self::Ping => Kind::Ping,
            Self::SignBytes { .. } => Kind::SignBytes,
        }
    }
}

impl Response {
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Self::PubKey { .. } => Some(Kind::PubKey),
            Self::SignedVote { .. } => Some(Kind::Vote),
            Self::SignedProposal { .. } => Some(Kind::Proposal),
            Self::Ping => Some(Kind::Ping),
            Self::SignBytes { .. } => Some(Kind::SignBytes),
            Self::Unexpected(_) => None,
        }
    }

    /// The RemoteSignerError carried, if any.
    pub fn error(&self) -> Option<&RemoteError> {
        match self {
            Self::PubKey { error, .. }
            | Self::SignedVote { error, .. }
            | Self::SignedProposal { error, .. }
            | Self::SignBytes { error, .. } => error.as_ref(),
            Self::Ping | Self::Unexpected(_) => None,
        }
    }
}

/// Errors of encoding, decoding and framing.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed")]
    Eof,
    #[error("message of {0} bytes exceeds the node's {MAX_MSG_LEN}-byte limit")]
    TooLarge(u64),
    #[error("malformed length prefix")]
    BadLength,
    #[error("protobuf decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0} cannot be sent with protocol {1}")]
    NotInProtocol(&'static str, &'static str),
}

/// Encodes a request as the `privval.Message` of `protocol` (without the length prefix).
pub fn encode_request(protocol: Protocol, req: &Request) -> Result<Vec<u8>, WireError> {
    match protocol {
        Protocol::V0_34 => v0_34::encode(req),
        Protocol::V0_37 => v0_37::encode(req),
        Protocol::V0_38 => v0_38::encode(req),
        Protocol::V1 => Ok(encode_v1(req)),
    }
}

/// Decodes a `privval.Message` of `protocol` sent by the signer.
pub fn decode_response(protocol: Protocol, bytes: &[u8]) -> Result<Response, WireError> {
    match protocol {
        Protocol::V0_34 => v0_34::decode(bytes),
        Protocol::V0_37 => v0_37::decode(bytes),
        Protocol::V0_38 => v0_38::decode(bytes),
        Protocol::V1 => decode_v1(bytes),
    }
}

fn remote_error(
    e: Option<tendermint_proto::v0_38::privval::RemoteSignerError>,
) -> Option<RemoteError> {
    e.map(|e| RemoteError {
        code: e.code,
        description: e.description,
    })
}

fn encode_v1(req: &Request) -> Vec<u8> {
    use tendermint_proto::v0_38::privval as pv;
    let sum = match req.clone() {
        Request::PubKey { chain_id } => v1::Sum::PubKeyRequest(pv::PubKeyRequest { chain_id }),
        Request::SignVote {
            chain_id,
            vote,
            skip_extension_signing,
        } => v1::Sum::SignVoteRequest(v1::SignVoteRequest {
            vote: Some(vote),
            chain_id,
            skip_extension_signing,
        }),
        Request::SignProposal { chain_id, proposal } => {
            v1::Sum::SignProposalRequest(pv::SignProposalRequest {
                proposal: Some(proposal),
                chain_id,
            })
        }
        Request::Ping => v1::Sum::PingRequest(pv::PingRequest {}),
        Request::SignBytes { value } => v1::Sum::SignBytesRequest(v1::SignBytesRequest { value }),
    };
    v1::Message { sum: Some(sum) }.encode_to_vec()
}

fn decode_v1(bytes: &[u8]) -> Result<Response, WireError> {
    let msg = v1::Message::decode(bytes)?;
    Ok(match msg.sum {
        Some(v1::Sum::PubKeyResponse(r)) => Response::PubKey {
            key: (!r.pub_key_bytes.is_empty() || !r.pub_key_type.is_empty()).then_some(PubKey {
                key_type: r.pub_key_type,
                bytes: r.pub_key_bytes,
            }),
            error: remote_error(r.error),
        },
        Some(v1::Sum::SignedVoteResponse(r)) => Response::SignedVote {
            vote: r.vote,
            error: remote_error(r.error),
        },
        Some(v1::Sum::SignedProposalResponse(r)) => Response::SignedProposal {
            proposal: r.proposal,
            error: remote_error(r.error),
        },
        Some(v1::Sum::PingResponse(_)) => Response::Ping,
        Some(v1::Sum::SignBytesResponse(r)) => Response::SignBytes {
            signature: r.signature,
            error: remote_error(r.error),
        },
        Some(v1::Sum::PubKeyRequest(_)) => Response::Unexpected("PubKeyRequest"),
        Some(v1::Sum::SignVoteRequest(_)) => Response::Unexpected("SignVoteRequest"),
        Some(v1::Sum::SignProposalRequest(_)) => Response::Unexpected("SignProposalRequest"),
        Some(v1::Sum::PingRequest(_)) => Response::Unexpected("PingRequest"),
        Some(v1::Sum::SignBytesRequest(_)) => Response::Unexpected("SignBytesRequest"),
        None => Response::Unexpected("empty message"),
    })
}

/// Generates `encode`/`decode` for one tendermint-proto version module. The module must
/// define `vote_to`, `vote_from`, `proposal_to`, `proposal_from` (conversions to and from
/// the internal v0.38 types) and import the version as `pb`.
macro_rules! legacy_codec {
    ($name:literal) => {
        pub(super) fn encode(req: &Request) -> Result<Vec<u8>, WireError> {
            use pb::privval as pv;
            let sum = match req {
                Request::PubKey { chain_id } => {
                    pv::message::Sum::PubKeyRequest(pv::PubKeyRequest {
                        chain_id: chain_id.clone(),
                    })
                }
                Request::SignVote { chain_id, vote, .. } => {
                    pv::message::Sum::SignVoteRequest(pv::SignVoteRequest {
                        vote: Some(vote_to(vote)),
                        chain_id: chain_id.clone(),
                    })
                }
                Request::SignProposal { chain_id, proposal } => {
                    pv::message::Sum::SignProposalRequest(pv::SignProposalRequest {
                        proposal: Some(proposal_to(proposal)),
                        chain_id: chain_id.clone(),
                    })
                }
                Request::Ping => pv::message::Sum::PingRequest(pv::PingRequest {}),
                Request::SignBytes { .. } => {
                    return Err(WireError::NotInProtocol("SignBytesRequest", $name))
                }
            };
            Ok(pv::Message { sum: Some(sum) }.encode_to_vec())
        }

        pub(super) fn decode(bytes: &[u8]) -> Result<Response, WireError> {
            use pb::privval as pv;
            let err = |e: Option<pv::RemoteSignerError>| {
                e.map(|e| RemoteError {
                    code: e.code,
                    description: e.description,
                })
            };
            let msg = pv::Message::decode(bytes)?;
            Ok(match msg.sum {
                Some(pv::message::Sum::PubKeyResponse(r)) => Response::PubKey {
                    key: r.pub_key.and_then(|k| k.sum).map(|k| match k {
                        pb::crypto::public_key::Sum::Ed25519(b) => PubKey {
                            key_type: "ed25519".into(),
                            bytes: b,
                        },
                        pb::crypto::public_key::Sum::Secp256k1(b) => PubKey {
                            key_type: "secp256k1".into(),
                            bytes: b,
                        },
                    }),
                    error: err(r.error),
                },
                Some(pv::message::Sum::SignedVoteResponse(r)) => Response::SignedVote {
                    vote: r.vote.map(vote_from),
                    error: err(r.error),
                },
                Some(pv::message::Sum::SignedProposalResponse(r)) => Response::SignedProposal {
                    proposal: r.proposal.map(proposal_from),
                    error: err(r.error),
                },
                Some(pv::message::Sum::PingResponse(_)) => Response::Ping,
                Some(pv::message::Sum::PubKeyRequest(_)) => Response::Unexpected("PubKeyRequest"),
                Some(pv::message::Sum::SignVoteRequest(_)) => {
                    Response::Unexpected("SignVoteRequest")
                }
                Some(pv::message::Sum::SignProposalRequest(_)) => {
                    Response::Unexpected("SignProposalRequest")
                }
                Some(pv::message::Sum::PingRequest(_)) => Response::Unexpected("PingRequest"),
                None => Response::Unexpected("empty message"),
            })
        }
    };
}

/// Field-by-field conversions between the internal v0.38 types and a pre-extension
/// version's types (distinct Rust types with the same fields 1–8).
macro_rules! pre_extension_conversions {
    () => {
        use tendermint_proto::v0_38::types as t38;

        fn block_id_to(b: &t38::BlockId) -> pb::types::BlockId {
            pb::types::BlockId {
                hash: b.hash.clone(),
                part_set_header: b
                    .part_set_header
                    .as_ref()
                    .map(|p| pb::types::PartSetHeader {
                        total: p.total,
                        hash: p.hash.clone(),
                    }),
            }
        }

        fn block_id_from(b: pb::types::BlockId) -> t38::BlockId {
            t38::BlockId {
                hash: b.hash,
                part_set_header: b.part_set_header.map(|p| t38::PartSetHeader {
                    total: p.total,
                    hash: p.hash,
                }),
            }
        }

        fn vote_to(v: &Vote) -> pb::types::Vote {
            pb::types::Vote {
                r#type: v.r#type,
                height: v.height,
                round: v.round,
                block_id: v.block_id.as_ref().map(block_id_to),
                timestamp: v.timestamp.clone(),
                validator_address: v.validator_address.clone(),
                validator_index: v.validator_index,
                signature: v.signature.clone(),
            }
        }

        fn vote_from(v: pb::types::Vote) -> Vote {
            Vote {
                r#type: v.r#type,
                height: v.height,
                round: v.round,
                block_id: v.block_id.map(block_id_from),
                timestamp: v.timestamp,
                validator_address: v.validator_address,
                validator_index: v.validator_index,
                signature: v.signature,
                extension: Vec::new(),
                extension_signature: Vec::new(),
            }
        }

        fn proposal_to(p: &Proposal) -> pb::types::Proposal {
            pb::types::Proposal {
                r#type: p.r#type,
                height: p.height,
                round: p.round,
                pol_round: p.pol_round,
                block_id: p.block_id.as_ref().map(block_id_to),
                timestamp: p.timestamp.clone(),
                signature: p.signature.clone(),
            }
        }

        fn proposal_from(p: pb::types::Proposal) -> Proposal {
            Proposal {
                r#type: p.r#type,
                height: p.height,
                round: p.round,
                pol_round: p.pol_round,
                block_id: p.block_id.map(block_id_from),
                timestamp: p.timestamp,
                signature: p.signature,
            }
        }
    };
}

mod v0_34 {
    use super::*;
    use tendermint_proto::v0_34 as pb;
    pre_extension_conversions!();
    legacy_codec!("v0.34");
}

mod v0_37 {
    use super::*;
    use tendermint_proto::v0_37 as pb;
    pre_extension_conversions!();
    legacy_codec!("v0.37");
}

mod v0_38 {
    use super::*;
    use tendermint_proto::v0_38 as pb;

    fn vote_to(v: &Vote) -> Vote {
        v.clone()
    }
    fn vote_from(v: Vote) -> Vote {
        v
    }
    fn proposal_to(p: &Proposal) -> Proposal {
        p.clone()
    }
    fn proposal_from(p: Proposal) -> Proposal {
        p
    }
    legacy_codec!("v0.38");
}

/// Writes one length-delimited message.
pub fn write_msg<W: Write>(w: &mut W, body: &[u8]) -> Result<(), WireError> {
    let mut buf = Vec::with_capacity(body.len() + 10);
    prost::encoding::encode_varint(body.len() as u64, &mut buf);
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Parses a protobuf varint prefix: `Ok(None)` if more bytes are needed.
pub fn parse_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    let mut value = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 10 {
        Err(WireError::BadLength)
    } else {
        Ok(None)
    }
}

/// Reassembles length-delimited messages from a SecretConnection byte stream.
#[derive(Default)]
pub struct MsgReader {
    buf: Vec<u8>,
}

impl MsgReader {
    /// Reads the next message body (bounded by [`MAX_MSG_LEN`]).
    pub fn read_msg<R: Read>(&mut self, r: &mut R) -> Result<Vec<u8>, WireError> {
        loop {
            if let Some((len, hdr)) = parse_varint(&self.buf)? {
                if len > MAX_MSG_LEN as u64 {
                    return Err(WireError::TooLarge(len));
                }
                let end = hdr + len as usize;
                if self.buf.len() >= end {
                    let body = self.buf[hdr..end].to_vec();
                    self.buf.drain(..end);
                    return Ok(body);
                }
            }
            // tendermint-p2p's reader panics unless the buffer can take a whole frame.
            let mut chunk = [0u8; FRAME_DATA_MAX];
            let n = r.read(&mut chunk)?;
            if n == 0 {
                return Err(WireError::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tendermint_proto::v0_38::types::{BlockId, PartSetHeader};

    fn vote() -> Vote {
        Vote {
            r#type: 2,
            height: 5,
            round: 1,
            block_id: Some(BlockId {
                hash: vec![1; 32],
                part_set_header: Some(PartSetHeader {
                    total: 1,
                    hash: vec![2; 32],
                }),
            }),
            timestamp: Some(tendermint_proto::google::protobuf::Timestamp {
                seconds: 1,
                nanos: 2,
            }),
            validator_address: vec![3; 20],
            validator_index: 0,
            signature: vec![],
            extension: b"ext".to_vec(),
            extension_signature: vec![],
        }
    }

    #[test]
    fn pre_extension_versions_drop_only_the_extension() {
        let req = Request::SignVote {
            chain_id: "c".into(),
            vote: vote(),
            skip_extension_signing: false,
        };
        let old = encode_request(Protocol::V0_34, &req).unwrap();
        let new = encode_request(Protocol::V0_38, &req).unwrap();
        assert!(old.len() < new.len());
        let mut stripped = vote();
        stripped.extension.clear();
        let req_stripped = Request::SignVote {
            chain_id: "c".into(),
            vote: stripped,
            skip_extension_signing: false,
        };
        assert_eq!(old, encode_request(Protocol::V0_38, &req_stripped).unwrap());
        assert_eq!(old, encode_request(Protocol::V0_37, &req).unwrap());
    }

    #[test]
    fn v1_vote_request_carries_skip_flag_others_cannot() {
        let req = Request::SignVote {
            chain_id: "c".into(),
            vote: vote(),
            skip_extension_signing: true,
        };
        let v1 = encode_request(Protocol::V1, &req).unwrap();
        let v38 = encode_request(Protocol::V0_38, &req).unwrap();
        // Same body plus `18 01` inside the SignVoteRequest (and a longer outer length).
        assert_eq!(v1.len(), v38.len() + 2);
        assert!(matches!(
            encode_request(Protocol::V0_38, &Request::SignBytes { value: vec![] }),
            Err(WireError::NotInProtocol(..))
        ));
    }

    #[test]
    fn framing_round_trip_across_frames() {
        let body = vec![0x5A; 3000];
        let mut stream = Vec::new();
        write_msg(&mut stream, &body).unwrap();
        write_msg(&mut stream, b"x").unwrap();
        let mut cursor = io::Cursor::new(stream);
        let mut r = MsgReader::default();
        assert_eq!(r.read_msg(&mut cursor).unwrap(), body);
        assert_eq!(r.read_msg(&mut cursor).unwrap(), b"x");
        assert!(matches!(r.read_msg(&mut cursor), Err(WireError::Eof)));
    }

    #[test]
    fn oversized_message_is_refused_before_reading_it() {
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(MAX_MSG_LEN as u64 + 1, &mut prefix);
        let mut r = MsgReader::default();
        assert!(matches!(
            r.read_msg(&mut io::Cursor::new(prefix)),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn varint_parsing() {
        assert_eq!(parse_varint(&[]).unwrap(), None);
        assert_eq!(parse_varint(&[0x80]).unwrap(), None);
        assert_eq!(parse_varint(&[0xAC, 0x02]).unwrap(), Some((300, 2)));
        assert!(parse_varint(&[0xFF; 10]).is_err());
    }
}
