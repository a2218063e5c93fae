//! The protobuf shapes of what CometBFT signs: the canonical messages that sign bytes encode,
//! and the types they share with the privval wire messages (a timestamp, the message type).

use serde::{Deserialize, Serialize};

/// `SignedMsgType`: what a vote or proposal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SignedMsgType {
    /// No type; never signed.
    Unknown = 0,
    /// A prevote.
    Prevote = 1,
    /// A precommit.
    Precommit = 2,
    /// A block proposal.
    Proposal = 32,
}

/// A `google.protobuf.Timestamp`, as votes and proposals carry it and sign bytes encode it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (field 1).
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// The fraction of a second, in nanoseconds, 0..=999,999,999 (field 2).
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CanonicalPartSetHeader {
    #[prost(uint32, tag = "1")]
    pub(crate) total: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) hash: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CanonicalBlockId {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) hash: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub(crate) part_set_header: Option<CanonicalPartSetHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CanonicalVote {
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub(crate) r#type: i32,
    #[prost(sfixed64, tag = "2")]
    pub(crate) height: i64,
    #[prost(sfixed64, tag = "3")]
    pub(crate) round: i64,
    #[prost(message, optional, tag = "4")]
    pub(crate) block_id: Option<CanonicalBlockId>,
    #[prost(message, optional, tag = "5")]
    pub(crate) timestamp: Option<Timestamp>,
    #[prost(string, tag = "6")]
    pub(crate) chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CanonicalProposal {
    #[prost(enumeration = "SignedMsgType", tag = "1")]
    pub(crate) r#type: i32,
    #[prost(sfixed64, tag = "2")]
    pub(crate) height: i64,
    #[prost(sfixed64, tag = "3")]
    pub(crate) round: i64,
    #[prost(int64, tag = "4")]
    pub(crate) pol_round: i64,
    #[prost(message, optional, tag = "5")]
    pub(crate) block_id: Option<CanonicalBlockId>,
    #[prost(message, optional, tag = "6")]
    pub(crate) timestamp: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub(crate) chain_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CanonicalVoteExtension {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) extension: Vec<u8>,
    #[prost(sfixed64, tag = "2")]
    pub(crate) height: i64,
    #[prost(sfixed64, tag = "3")]
    pub(crate) round: i64,
    #[prost(string, tag = "4")]
    pub(crate) chain_id: String,
}
