//! What a signer can tell about itself while it runs, for `cosigner status` and the metrics'
//! state series: whether it can sign, its peers, its watermarks. Reading it takes the same
//! short locks the health loop takes every 50 ms, never one held across an await.

use std::time::Duration;

use super::Signer;
use crate::sign_state::SignState;

/// One peer of a threshold signer.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerState {
    /// Its cosigner id.
    pub id: u16,
    /// Whether a QUIC connection to it is up.
    pub connected: bool,
    /// The smoothed heartbeat round trip on its connection.
    pub rtt: Option<Duration>,
    /// Its nonce commitments this cosigner holds for coordinating.
    pub commitments: usize,
}

/// A signer as it is now.
#[derive(Clone, Debug)]
pub struct SignerState {
    /// `t`, for a threshold signer.
    pub threshold: Option<u16>,
    /// Whether it can sign now (a single key always can, unless its state failed).
    pub quorum: bool,
    /// Why its sign state is not writable, once a write failed.
    pub storage_error: Option<String>,
    /// Its peers, a single key has none.
    pub peers: Vec<PeerState>,
    /// Each chain's own watermark, by chain ID.
    pub watermarks: Vec<(String, SignState)>,
}

impl Signer {
    /// Reads the signer's state now, under the health loop's short locks.
    pub fn observe(&self) -> SignerState {
        match self {
            Signer::Single(s) => SignerState {
                threshold: None,
                quorum: true,
                storage_error: None,
                peers: Vec::new(),
                watermarks: s.watermarks(),
            },
            Signer::Threshold(t) => t.observe(),
        }
    }
}
