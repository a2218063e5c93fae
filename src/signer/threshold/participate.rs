//! This cosigner as a participant: serving its peers' requests (and its own coordinator's)
//! through the pure [`Participant`](crate::threshold::participant::Participant), whose watermark is this cosigner's own durable sign
//! state. The watermark write (an fsync) and the share computation run at the same time; the
//! share leaves only with the proof that the write is on disk.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand_core::OsRng;
use tracing::{debug, info, warn};

use super::super::fault::{test_crash, CrashPoint};
use super::coordinate::Precompute;
use super::Inner;
use crate::threshold::messages::{
    ClusterRequest, ClusterResponse, DecodedRequest, PeerId, Refusal, RefusalKind, SignRequest,
    SignResponse,
};
use crate::threshold::participant::record;

impl Inner {
    /// Serves a peer's request as participant.
    pub(super) async fn serve_peer(
        self: Arc<Self>,
        peer: PeerId,
        req: ClusterRequest,
    ) -> ClusterResponse {
        // Two live processes with one identity could each form a quorum with other peers
        // around their own copy of one watermark: neither gets shares or commitments.
        if matches!(
            req,
            ClusterRequest::Commitments { .. } | ClusterRequest::Sign(_)
        ) {
            if let Some(refusal) = self.refuse_duplicate(peer) {
                return ClusterResponse::Refused(refusal);
            }
        }
        let result = match req {
            ClusterRequest::Commitments { count } => {
                // Up to 64 nonces of ~60 us each: not on an async worker.
                let inner = self.clone();
                let result = tokio::task::spawn_blocking(move || {
                    inner
                        .participant
                        .handle_commitments(peer, count, &mut OsRng)
                        .map(ClusterResponse::Commitments)
                })
                .await
                .unwrap_or_else(|e| Err(task_failed(e)));
                self.replenish_spare_nonces();
                result
            }
            ClusterRequest::Sign(_) if !self.caught_up() => Err(Refusal::new(
                RefusalKind::CatchingUp,
                "just started: learning from peers what the validator signed meanwhile",
            )),
            ClusterRequest::Sign(request) => {
                self.participate(peer, Incoming::FromPeer(request)).await
            }
            ClusterRequest::Signed(report) => {
                self.receive_signed(peer, report);
                Ok(ClusterResponse::Noted)
            }
            ClusterRequest::HighestSigned => {
                Ok(ClusterResponse::HighestSigned(self.highest_signed()))
            }
            // A host settling an interrupted refresh asks which share this one signs with.
            ClusterRequest::Ceremony(r) if r.ask == crate::ceremony::Ask::Status => Ok(
                ClusterResponse::Ceremony(crate::ceremony::CeremonyResponse::Status(
                    crate::ceremony::messages::RefreshStatus {
                        current: self.participant.epoch(),
                        staged: None,
                        pending: None,
                    },
                )),
            ),
            ClusterRequest::Ceremony(_) => Err(crate::ceremony::run::refuse_while_signing()),
        };
        result.unwrap_or_else(ClusterResponse::Refused)
    }

    /// A refusal for `peer` if the transport sees two live instances of it.
    fn refuse_duplicate(&self, peer: PeerId) -> Option<Refusal> {
        let twins = self.cluster.duplicate(peer)?;
        debug!(
            peer,
            "refusing a request of duplicated cosigner {peer}: {twins}"
        );
        Some(Refusal::new(
            RefusalKind::Duplicate,
            format!(
                "cosigner {} sees two live instances of cosigner {peer}: {twins}; it gives \
                 neither shares nor commitments until one of them is gone",
                self.id
            ),
        ))
    }

    /// Takes part in a signing coordinated by `coordinator` (possibly this cosigner).
    pub(super) async fn participate(
        self: Arc<Self>,
        coordinator: PeerId,
        mut incoming: Incoming,
    ) -> Result<ClusterResponse, Refusal> {
        let upcoming = match &mut incoming {
            Incoming::FromPeer(request) => std::mem::take(&mut request.upcoming),
            Incoming::Own(..) => BTreeMap::new(),
        };
        let inner = self.clone();
        let result =
            tokio::task::spawn_blocking(move || inner.participate_blocking(coordinator, incoming))
                .await
                .unwrap_or_else(|e| Err(task_failed(e)));
        self.replenish_spare_nonces();
        if !upcoming.is_empty() {
            let inner = self.clone();
            self.background
                .run("validate upcoming commitments", move || {
                    inner.participant.learn_upcoming(coordinator, &upcoming)
                });
        }
        match result {
            Ok(response) => {
                self.metrics.share_released();
                Ok(ClusterResponse::Signed(response))
            }
            Err(refusal) => {
                self.metrics.refused(refusal.kind);
                warn!(coordinator, kind = ?refusal.kind, "refused to sign: {}", refusal.reason);
                Err(refusal)
            }
        }
    }

    /// The participant's work, on a blocking thread. The watermark write (an fsync, on a
    /// second blocking thread) and the share computation run at the same time; the share
    /// leaves only with the proof that the write is on disk.
    fn participate_blocking(
        self: Arc<Self>,
        coordinator: PeerId,
        incoming: Incoming,
    ) -> Result<SignResponse, Refusal> {
        test_crash(CrashPoint::ParticipantBeforePersist);
        let participant = &self.participant;
        let (decoded, precomputed) = match incoming {
            Incoming::Own(decoded, precomputed) => (decoded, Some(precomputed)),
            Incoming::FromPeer(request) => {
                (participant.decode_request(coordinator, &request)?, None)
            }
        };
        let own = precomputed.is_some();
        let prepared = participant.prepare(coordinator, &decoded)?;
        let doc = prepared.doc().clone();
        // What the share is for, to log it: only a peer's coordinator's (ours logs `signed`).
        let logged = (coordinator != self.id).then(|| (doc.chain_id.clone(), doc.hrs));
        let (recorded_tx, recorded_rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.clone();
        let record_and_tell = move || {
            let recorded = record(&inner.watermarks, &doc);
            // Here, not where the answer is awaited: a coordinator that finished with its
            // peers' shares drops its own signing, and a failed write must still stop it.
            if let Err(refusal) = &recorded {
                if refusal.kind == RefusalKind::Storage {
                    inner.storage_failed(&refusal.reason);
                }
            }
            // The receiver is gone only if this signing was abandoned: nothing to tell.
            let _ = recorded_tx.send(recorded);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(record_and_tell)),
            Err(_) => record_and_tell(),
        }
        // Our coordinator needs the group commitments too: computed once, here, while the
        // watermark is written, and handed to it.
        let precomputed = precomputed.and_then(|job| job.run(&self.public_key_package));
        let unreleased = participant.sign_with(prepared, precomputed.as_ref());
        let recorded = recorded_rx.recv().unwrap_or_else(|_| {
            Err(Refusal::new(
                RefusalKind::Internal,
                "the watermark task ended without an answer",
            ))
        });
        let (share, extension_share) = unreleased?.release(recorded?)?;
        test_crash(CrashPoint::ParticipantAfterPersist);
        let commitments = if own {
            // Straight into our coordinator's inventory, decoded: sent as wire bytes it would
            // validate points we just made (~70 us a commitment).
            self.add_own_commitments(1 + usize::from(extension_share.is_some()));
            Vec::new()
        } else {
            participant.refill(coordinator, extension_share.is_some(), &mut OsRng)?
        };
        // At info, as the coordinator logs each signature: without it a participant's log
        // cannot tell a healthy peer from an idle one.
        if let Some((chain, hrs)) = logged {
            info!(
                %chain,
                height = hrs.height,
                round = hrs.round,
                step = %hrs.step,
                coordinator,
                "gave share"
            );
        }
        Ok(SignResponse {
            share,
            extension_share,
            commitments,
        })
    }

    /// Tops up the participant's spare nonces in the background, off every signing's path.
    pub(super) fn replenish_spare_nonces(self: &Arc<Self>) {
        let inner = self.clone();
        self.background
            .run_unless_pending("make spare nonces", move || {
                inner.participant.replenish_spare(&mut OsRng)
            });
    }
}

/// A sign request as it reaches this cosigner's participant.
pub(super) enum Incoming {
    /// From a peer's coordinator: every commitment but our own still to be decoded.
    FromPeer(SignRequest),
    /// From this cosigner's coordinator, whose inventory validated every commitment, with
    /// the computation of the group commitments that its aggregation and our share both
    /// need.
    Own(DecodedRequest, Precompute),
}

fn task_failed(e: tokio::task::JoinError) -> Refusal {
    Refusal::new(RefusalKind::Internal, format!("signing task failed: {e}"))
}
