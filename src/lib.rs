//! A threshold remote signer for CometBFT validators.
//!
//! The validator's Ed25519 key is dealt into FROST shares, one per cosigner host. Each
//! cosigner dials the validator's nodes and speaks the privval protocol over a
//! SecretConnection; for every vote or proposal it gathers `t` partial signatures from its
//! peers over QUIC. Every cosigner checks and durably records its own height/round/step
//! watermark before releasing a partial signature, so no coordinator can make the cluster
//! double-sign.
//!
//! The parts, one module each:
//! - [`config`]: the `cosigner.toml` schema and its validation.
//! - [`validator_key`]: reading CometBFT and tmkms key files; [`key_forms`]: printing a
//!   validator public key in every form.
//! - [`layout`]: the files of a cosigner directory.
//! - [`consensus`]: what a signature is for: canonical sign bytes and height/round/step.
//! - [`sign_state`]: double-sign rules and the durable watermark.
//! - [`privval`]: the validator-facing side: SecretConnection, privval messages, sessions.
//! - [`threshold`]: FROST key shares, nonces, participant and coordinator logic.
//! - [`cluster`]: the cosigner-to-cosigner transport (QUIC with mutual TLS).
//! - [`signer`]: the signers a privval session can be served by (single key, threshold).
//! - [`ceremony`]: key ceremonies among the cosigners (DKG, Horcrux import, share refresh),
//!   over the cluster.
//! - [`metrics`]: the Prometheus series and their HTTP endpoint; [`status`]: what a running
//!   cosigner says about itself on its admin socket (`cosigner status`).
//! - [`staged_dir`]: writing directories of secrets atomically.
//! - [`secret_file`]: reading secret files: private modes only, wiped buffers.
//! - [`log_throttle`]: one log line per cause per interval, with a count.
//! - `testkit` (cargo feature `testkit` only): the property checks of the fuzz targets.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(missing_docs)]
// Module docs are maps of their rooms for maintainers, and name the private files in them;
// `cargo doc --document-private-items` renders those links.
#![allow(rustdoc::private_intra_doc_links)]
// Input decides whether these would panic; outside tests every failure is a typed error.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod ceremony;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod host_port;
pub mod key_forms;
pub mod layout;
pub(crate) mod log_throttle;
pub mod metrics;
pub mod privval;
pub mod secret_file;
pub mod shell;
pub mod sign_state;
pub mod signer;
pub mod staged_dir;
pub mod status;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod threshold;
pub mod validator_key;
