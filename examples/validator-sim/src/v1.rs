//! Hand-defined `cometbft.privval.v1` messages (CometBFT v1.0), which tendermint-proto 0.41
//! does not ship.
//!
//! Only the messages whose layout changed in v1 are new here; the rest are wire-identical to
//! v0.38 (the package name is not on the wire, only field numbers are), so the v0.38 prost
//! types from tendermint-proto are embedded as they are.

use tendermint_proto::v0_38::privval as pv38;
use tendermint_proto::v0_38::types::Vote;

/// `cometbft.privval.v1.Message`: the same `oneof sum` as v0.38 plus SignBytes (9/10).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Message {
    #[prost(oneof = "Sum", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub sum: Option<Sum>,
}

/// The `oneof sum` of [`Message`].
#[derive(Clone, PartialEq, ::prost::Oneof)]
pub enum Sum {
    #[prost(message, tag = "1")]
    PubKeyRequest(pv38::PubKeyRequest),
    #[prost(message, tag = "2")]
    PubKeyResponse(PubKeyResponse),
    #[prost(message, tag = "3")]
    SignVoteRequest(SignVoteRequest),
    #[prost(message, tag = "4")]
    SignedVoteResponse(pv38::SignedVoteResponse),
    #[prost(message, tag = "5")]
    SignProposalRequest(pv38::SignProposalRequest),
    #[prost(message, tag = "6")]
    SignedProposalResponse(pv38::SignedProposalResponse),
    #[prost(message, tag = "7")]
    PingRequest(pv38::PingRequest),
    #[prost(message, tag = "8")]
    PingResponse(pv38::PingResponse),
    #[prost(message, tag = "9")]
    SignBytesRequest(SignBytesRequest),
    #[prost(message, tag = "10")]
    SignBytesResponse(SignBytesResponse),
}

/// v1 `PubKeyResponse`: field 1 is reserved; the key moved to raw bytes plus a type name.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PubKeyResponse {
    #[prost(message, optional, tag = "2")]
    pub error: Option<pv38::RemoteSignerError>,
    #[prost(bytes = "vec", tag = "3")]
    pub pub_key_bytes: Vec<u8>,
    #[prost(string, tag = "4")]
    pub pub_key_type: String,
}

/// v1 `SignVoteRequest`: the node says whether it wants the extension signed.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SignVoteRequest {
    #[prost(message, optional, tag = "1")]
    pub vote: Option<Vote>,
    #[prost(string, tag = "2")]
    pub chain_id: String,
    #[prost(bool, tag = "3")]
    pub skip_extension_signing: bool,
}

/// v1 `SignBytesRequest`: sign arbitrary bytes (FilePV signs them raw).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SignBytesRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub value: Vec<u8>,
}

/// v1 `SignBytesResponse`.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SignBytesResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub signature: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub error: Option<pv38::RemoteSignerError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn pub_key_response_uses_fields_3_and_4() {
        let msg = Message {
            sum: Some(Sum::PubKeyResponse(PubKeyResponse {
                error: None,
                pub_key_bytes: vec![0xAB; 32],
                pub_key_type: "ed25519".into(),
            })),
        };
        let bytes = msg.encode_to_vec();
        let mut want = vec![0x12, 2 + 32 + 2 + 7, 0x1A, 0x20];
        want.extend([0xAB; 32]);
        want.extend([0x22, 7]);
        want.extend(b"ed25519");
        assert_eq!(bytes, want);
        assert_eq!(Message::decode(bytes.as_slice()).unwrap(), msg);
    }

    #[test]
    fn a_v038_pub_key_response_has_no_key_for_a_v1_node() {
        // A v0.38-only signer puts the key in field 1, which v1 reserves.
        let old = pv38::Message {
            sum: Some(pv38::message::Sum::PubKeyResponse(pv38::PubKeyResponse {
                pub_key: Some(tendermint_proto::v0_38::crypto::PublicKey {
                    sum: Some(tendermint_proto::v0_38::crypto::public_key::Sum::Ed25519(
                        vec![1; 32],
                    )),
                }),
                error: None,
            })),
        };
        let decoded = Message::decode(old.encode_to_vec().as_slice()).unwrap();
        match decoded.sum {
            Some(Sum::PubKeyResponse(r)) => assert!(r.pub_key_bytes.is_empty()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sign_vote_request_skip_flag_is_field_3() {
        let req = SignVoteRequest {
            vote: None,
            chain_id: "c".into(),
            skip_extension_signing: true,
        };
        assert_eq!(req.encode_to_vec(), vec![0x12, 1, b'c', 0x18, 1]);
        let not_skipped = SignVoteRequest {
            skip_extension_signing: false,
            ..req
        };
        // proto3 omits false.
        assert_eq!(not_skipped.encode_to_vec(), vec![0x12, 1, b'c']);
    }

    #[test]
    fn sign_bytes_messages_are_9_and_10() {
        let req = Message {
            sum: Some(Sum::SignBytesRequest(SignBytesRequest { value: vec![7] })),
        };
        assert_eq!(req.encode_to_vec(), vec![0x4A, 3, 0x0A, 1, 7]);
        let resp = Message {
            sum: Some(Sum::SignBytesResponse(SignBytesResponse {
                signature: vec![9],
                error: None,
            })),
        };
        assert_eq!(resp.encode_to_vec(), vec![0x52, 3, 0x0A, 1, 9]);
    }
}
