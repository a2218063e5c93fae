//! Requesting: one request and its response on a fresh stream of the peer's newest live
//! connection, everything within the caller's deadline.

use std::time::Duration;

use quinn::{Connection, ReadError, ReadExactError, VarInt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::{timeout_at, Instant};

use super::peer::{live, Peer};
use super::serve::{read_frame, FrameError};
use super::{code, until_shutdown, Cluster, ClusterError, Inner, ResetReason};
use crate::cluster::wire;
use crate::cluster::PeerId;

impl Cluster {
    /// Sends `req` to `peer` and waits for its response, all within `timeout`: waiting for
    /// a connection (dialing if there is none), opening a stream, writing and reading.
    pub async fn request<Req, Resp>(
        &self,
        peer: PeerId,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let frame = wire::encode(req).map_err(|source| ClusterError::Wire { peer, source })?;
        self.request_frame(peer, &frame, timeout).await
    }

    pub(super) async fn request_frame<Resp: DeserializeOwned>(
        &self,
        peer_id: PeerId,
        frame: &[u8],
        limit: Duration,
    ) -> Result<Resp, ClusterError> {
        let deadline = Instant::now() + limit;
        let timed_out = || ClusterError::Timeout {
            peer: peer_id,
            timeout: limit,
        };
        let peer = self
            .inner
            .peers
            .get(&peer_id)
            .ok_or(ClusterError::UnknownPeer(peer_id))?;
        let conn = timeout_at(deadline, Self::connection(&self.inner, peer))
            .await
            .map_err(|_| timed_out())??;
        let (mut send, mut recv) = timeout_at(deadline, conn.open_bi())
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| ClusterError::ConnectionLost {
                peer: peer_id,
                source,
            })?;
        let exchange = async {
            send.write_all(frame)
                .await
                .map_err(|e| write_error(peer_id, e))?;
            // Only fails if the stream is already gone, which the read below reports.
            let _ = send.finish();
            read_frame(&mut recv).await
        };
        match timeout_at(deadline, exchange).await {
            Ok(Ok(body)) => wire::decode_body(&body).map_err(|source| ClusterError::Wire {
                peer: peer_id,
                source,
            }),
            Ok(Err(FrameError::Wire(source))) => {
                let _ = recv.stop(VarInt::from_u32(code::BAD_FRAME));
                Err(ClusterError::Wire {
                    peer: peer_id,
                    source,
                })
            }
            Ok(Err(FrameError::Read(e))) => Err(read_error(peer_id, e)),
            Ok(Err(FrameError::Other(e))) => Err(e),
            Err(_) => {
                // Tell the peer to stop working on it rather than leave it to its own limit.
                let _ = send.reset(VarInt::from_u32(code::CANCELLED));
                let _ = recv.stop(VarInt::from_u32(code::CANCELLED));
                Err(timed_out())
            }
        }
    }

    /// The newest live connection to `peer`, waiting for the dialer (or the peer dialing us)
    /// if there is none. The caller bounds the wait.
    async fn connection(inner: &Inner, peer: &Peer) -> Result<Connection, ClusterError> {
        let mut links = peer.subscribe();
        if let Some(l) = live(&links.borrow_and_update()) {
            return Ok(l.conn.clone());
        }
        peer.dial_now.notify_one();
        let mut shutdown = inner.shutdown.subscribe();
        loop {
            tokio::select! {
                changed = links.changed() => {
                    changed.map_err(|_| ClusterError::Shutdown)?;
                    if let Some(l) = live(&links.borrow_and_update()) {
                        return Ok(l.conn.clone());
                    }
                }
                _ = until_shutdown(&mut shutdown) => return Err(ClusterError::Shutdown),
            }
        }
    }
}

pub(super) fn read_error(peer: PeerId, e: ReadExactError) -> ClusterError {
    match e {
        ReadExactError::ReadError(ReadError::Reset(c)) => ClusterError::Rejected {
            peer,
            reason: ResetReason::from_code(c),
        },
        ReadExactError::ReadError(ReadError::ConnectionLost(source)) => {
            ClusterError::ConnectionLost { peer, source }
        }
        other => ClusterError::Stream {
            peer,
            detail: other.to_string(),
        },
    }
}

pub(super) fn write_error(peer: PeerId, e: quinn::WriteError) -> FrameError {
    FrameError::Other(match e {
        quinn::WriteError::Stopped(c) => ClusterError::Rejected {
            peer,
            reason: ResetReason::from_code(c),
        },
        quinn::WriteError::ConnectionLost(source) => ClusterError::ConnectionLost { peer, source },
        other => ClusterError::Stream {
            peer,
            detail: other.to_string(),
        },
    })
}
