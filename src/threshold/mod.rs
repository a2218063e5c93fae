//! FROST threshold signing: key shares, nonce pools, and the participant and coordinator
//! logic, kept free of I/O.

pub mod coordinator;
pub mod messages;
pub mod nonces;
pub mod participant;
