//! The cosigner-to-cosigner transport: QUIC with mutual TLS, versioned bincode messages.

pub mod identity;
