//! A simulated CometBFT node for testing remote signers, built only on tendermint-rs.
//!
//! It listens like a node with `priv_validator_laddr`, accepts one signer at a time over a
//! SecretConnection (tendermint-p2p), drives consensus requests for one or more chains in the
//! privval dialect of CometBFT v0.34, v0.37, v0.38 or v1, and verifies every answer
//! independently (tendermint sign bytes, ed25519-dalek `verify_strict`, vote-extension rules,
//! double-sign accounting). It shares no code with the `cosigner` crate on purpose: a
//! misunderstanding shared by our client and our server must not pass.
//!
//! Modules:
//! - [`wire`]: privval messages per version and the length-delimited framing; [`v1`] adds the
//!   CometBFT v1 types tendermint-proto lacks.
//! - [`node`]: listener, handshake, deadlines, retry and fail-over semantics.
//! - [`consensus`]: the schedule of what to sign next.
//! - [`verify`]: checks of each answer; [`doublesign`]: the signature ledger.
//! - [`report`]: latency percentiles, counts, text and JSON output.
//!
//! In-process use: [`bind`] a listener (its port is known at once), hand the port to the
//! signer, then [`run`] (blocking) with a [`SimConfig`].
#![forbid(unsafe_code)]

pub mod consensus;
pub mod doublesign;
mod driver;
pub mod node;
pub mod report;
pub mod v1;
pub mod verify;
pub mod wire;

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use consensus::ChainOrder;
pub use driver::run;
pub use node::NodeConfig;
pub use report::Report;
pub use wire::Protocol;

/// Errors that prevent a run from starting.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub protocol: Protocol,
    /// Chains to drive (at least one).
    pub chain_ids: Vec<String>,
    pub chain_order: ChainOrder,
    pub start_height: i64,
    /// Heights per chain; `None` = until `duration` or `stop`.
    pub heights: Option<u64>,
    /// Stop the consensus loop after this long (the end-of-run probes still run).
    pub duration: Option<Duration>,
    /// A proposal every K heights (0 = never).
    pub proposal_every: u64,
    /// Every K heights round 0 fails with nil votes and the height ends in round 1 (0 = never).
    pub nil_round_every: u64,
    /// A ping after every K heights (0 = only when idle).
    pub ping_every: u64,
    /// Pause after each commit, pinging when idle like a node.
    pub block_time: Duration,
    /// Conflicting same-HRS requests per chain at the end (must all be refused).
    pub conflicts: usize,
    /// Resend each chain's last request identically at the end (must be signed).
    pub replay: bool,
    /// Resend each chain's last request with a new timestamp at the end (must be signed).
    pub timestamp_replay: bool,
    /// The validator key to expect; otherwise the first PubKeyResponse's.
    pub expect_pubkey: Option<[u8; 32]>,
    pub validator_index: i32,
    /// Bound on signatures remembered by the double-sign ledger.
    pub ledger_max_keys: usize,
    /// Identity, deadlines, retries (its `stop` is replaced by [`SimConfig::stop`] in [`run`]).
    pub node: NodeConfig,
    /// Set to end the run early (chaos tests).
    pub stop: Arc<AtomicBool>,
    /// Print `height H committed CHAIN` on stdout after each height, for scripts and tests
    /// that act at a given height.
    pub progress: bool,
    /// Mixed into every block ID the node votes for, so that two simulators with different
    /// variants ask for conflicting signatures at the same heights (a split between sentries).
    pub block_variant: String,
    /// Append every verified signature to this file as a JSON line (chain, height, round,
    /// step and the timestamp-normalised digest), so that tests can look for double signs
    /// across several simulators.
    pub signatures_out: Option<std::path::PathBuf>,
}

impl SimConfig {
    /// CometBFT-like defaults: heights from 1, a proposal every height, no nil rounds.
    pub fn new(protocol: Protocol, chain_ids: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        Self {
            protocol,
            chain_ids,
            chain_order: ChainOrder::Interleaved,
            start_height: 1,
            heights: Some(10),
            duration: None,
            proposal_every: 1,
            nil_round_every: 0,
            ping_every: 0,
            block_time: Duration::ZERO,
            conflicts: 0,
            replay: false,
            timestamp_replay: false,
            expect_pubkey: None,
            validator_index: 0,
            ledger_max_keys: 1 << 20,
            node: NodeConfig::new(stop.clone()),
            stop,
            progress: false,
            block_variant: String::new(),
            signatures_out: None,
        }
    }

    /// Checks what cannot be checked by types.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.chain_ids.is_empty() {
            return Err(SimError::Config("at least one chain ID is needed".into()));
        }
        for c in &self.chain_ids {
            tendermint::chain::Id::try_from(c.clone())
                .map_err(|e| SimError::Config(format!("chain ID {c:?}: {e}")))?;
        }
        if self.start_height < 1 {
            return Err(SimError::Config("start height must be at least 1".into()));
        }
        Ok(())
    }
}

/// The node's privval listener, as CometBFT's `priv_validator_laddr` has it: TCP (a
/// SecretConnection inside) or a Unix socket (the privval messages as they are).
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

impl Listener {
    /// `tcp://HOST:PORT` (or `HOST:PORT`) with the bound port, or `unix://PATH`.
    pub fn describe(&self) -> io::Result<String> {
        match self {
            Listener::Tcp(l) => Ok(format!("tcp://{}", l.local_addr()?)),
            Listener::Unix(l) => Ok(format!(
                "unix://{}",
                l.local_addr()?
                    .as_pathname()
                    .map_or_else(|| "?".into(), |p| p.display().to_string())
            )),
        }
    }
}

/// Binds the node's privval listener: `host:port`, optionally `tcp://`-prefixed (port 0
/// picks a free one, read it with `local_addr()` before calling [`run`]), or
/// `unix:///PATH` (which, as for CometBFT, must not exist yet).
pub fn bind(addr: &str) -> io::Result<Listener> {
    match addr.strip_prefix("unix://") {
        Some(path) => UnixListener::bind(path).map(Listener::Unix),
        None => TcpListener::bind(addr.strip_prefix("tcp://").unwrap_or(addr)).map(Listener::Tcp),
    }
}
