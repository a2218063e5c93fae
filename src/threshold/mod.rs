//! FROST threshold signing, kept free of network I/O:
//! - [`deal`]: the trusted dealer: the validator's seed into checked FROST shares.
//! - [`key_share`]: the share file a cosigner loads, and its checks.
//! - [`epoch`]: which generation of shares a cosigner holds (a refresh makes a new one).
//! - [`seed_escrow`]: the seed encrypted to the validator key, for leaving the cluster.
//! - [`nonces`]: this cosigner's secret nonces, in memory only, each used at most once.
//! - [`participant`]: deciding on a peer's sign request and producing a share.
//! - [`coordinator`]: choosing participants, building requests, aggregating shares.
//! - [`messages`]: what cosigners say to each other.
//! - [`quorum`]: how many must sign (t > n/2), once.
//! - [`signing`]: whom a coordinator asks and when, as a pure state machine.
//! - [`health`]: round-trip estimates and suspicion of silent peers.

pub mod coordinator;
pub mod deal;
pub mod epoch;
pub(crate) mod health;
pub mod key_share;
pub mod messages;
pub(crate) mod nonces;
pub mod participant;
pub(crate) mod quorum;
pub mod seed_escrow;
pub(crate) mod signing;
