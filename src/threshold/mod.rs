//! FROST threshold signing: key shares, nonce pools, and the participant and coordinator
//! logic, kept free of I/O.
pub mod key_share;
