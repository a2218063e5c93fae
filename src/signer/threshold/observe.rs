//! The threshold signer as `cosigner status` and the metrics see it (see
//! [`crate::signer::observe`]).

use super::ThresholdSigner;
use crate::signer::observe::{PeerState, SignerState};

impl ThresholdSigner {
    pub(crate) fn observe(&self) -> SignerState {
        let inner = &self.inner;
        let peers = inner
            .members
            .iter()
            .copied()
            .filter(|&id| id != inner.id)
            .map(|id| {
                let status = inner.cluster.peer_status(id);
                PeerState {
                    id,
                    connected: status.as_ref().is_some_and(|s| s.connected),
                    rtt: status.and_then(|s| s.rtt_smoothed),
                    commitments: inner.available(id),
                }
            })
            .collect();
        let mut watermarks: Vec<_> = inner
            .watermarks
            .0
            .iter()
            .map(|(chain, state)| (chain.clone(), state.snapshot()))
            .collect();
        watermarks.sort_by(|a, b| a.0.cmp(&b.0));
        SignerState {
            threshold: Some(inner.threshold),
            quorum: self.has_quorum(),
            storage_error: inner.storage_failure.get().cloned(),
            peers,
            watermarks,
        }
    }
}
