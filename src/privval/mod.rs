//! The validator-facing side: a connection to each node (a SecretConnection over TCP, plain
//! over a Unix socket), the privval messages spoken inside it, and the session that answers
//! them.
//!
//! - [`secret_connection`]: CometBFT's authenticated encryption over TCP.
//! - [`connection`]: a node connection, a SecretConnection over TCP or plain over a Unix
//!   socket.
//! - [`messages`]: the privval protobuf messages of every supported CometBFT version.
//! - [`sign_doc`]: from a vote or proposal request to the sign bytes and what they mean.
//! - [`session`]: answering one node's requests.
//! - [`dialer`]: dialling each node and redialling forever.
//! - [`address`], [`version`]: where a node listens and which protocol it speaks.

pub mod address;
pub(crate) mod connection;
pub mod dialer;
pub mod messages;
pub mod secret_connection;
pub mod session;
pub mod sign_doc;
pub(crate) mod version;

pub use address::NodeAddress;
pub use version::ProtocolVersion;
