//! The cosigner-to-cosigner transport: QUIC with mutual TLS, versioned bincode messages.
//!
//! - [`identity`]: issuing the cluster CA and per-cosigner certificates.
//! - [`tls`]: loading an identity, quinn/rustls configs, mapping a certificate to a peer ID.
//! - [`wire`]: the request/response frame format.
//! - [`transport`]: the endpoint that keeps connections to all peers and carries requests.

pub mod identity;
pub mod tls;
pub mod transport;
pub mod wire;

/// A cosigner's ID in the cluster (its FROST identifier, `1..=n`).
pub type PeerId = u16;

pub use tls::TlsPaths;
pub use transport::{
    Cluster, ClusterConfig, ClusterError, Duplicate, Instance, IpNet, PeerAddr, PeerStatus,
    ResetReason, TransportStats,
};
