//! Serving: the streams a peer opens on a connection, one request and response each, and the
//! frame reading both sides share.

use quinn::{Connection, ReadError, ReadExactError, RecvStream, SendStream, VarInt};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::peer::Peer;
use super::{
    code, ClusterError, ErasedHandler, HandlerResult, Inner, ResetReason, MAX_HANDLER_TIME,
    REQUEST_READ_TIMEOUT, RESPONSE_WRITE_TIMEOUT,
};
use crate::cluster::wire::{self, WireError, HEADER_LEN};
use crate::cluster::PeerId;

pub(super) enum FrameError {
    Wire(WireError),
    Read(ReadExactError),
    Other(ClusterError),
}

/// Reads one frame body; the length is checked before the body is allocated.
pub(super) async fn read_frame(recv: &mut RecvStream) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header)
        .await
        .map_err(FrameError::Read)?;
    let len = wire::decode_header(header).map_err(FrameError::Wire)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(FrameError::Read)?;
    Ok(body)
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

/// Serves the streams a peer opens on `conn` until it closes.
pub(super) async fn run_connection(inner: &Inner, peer: &Peer, conn: Connection, direction: &str) {
    let addr = conn.remote_address();
    info!(peer = peer.id, %addr, direction, "cluster peer connected");
    let reason = loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(inner.handler.subscribe(), peer.id, send, recv));
            }
            Err(e) => break e,
        }
    };
    peer.remove(&conn);
    info!(peer = peer.id, %addr, direction, reason = %reason, "cluster peer disconnected");
}

async fn serve_stream(
    mut handler: watch::Receiver<Option<ErasedHandler>>,
    peer: PeerId,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let reset = |send: &mut SendStream, recv: &mut RecvStream, c: u32| {
        let _ = recv.stop(VarInt::from_u32(c));
        let _ = send.reset(VarInt::from_u32(c));
    };
    let body = match timeout(REQUEST_READ_TIMEOUT, read_frame(&mut recv)).await {
        Ok(Ok(body)) => body,
        Ok(Err(FrameError::Wire(e))) => {
            warn!(peer, error = %e, "refusing cluster request frame");
            return reset(&mut send, &mut recv, code::BAD_FRAME);
        }
        Ok(Err(e)) => {
            if let FrameError::Read(e) = e {
                debug!(peer, error = %e, "cluster request stream failed");
            }
            return reset(&mut send, &mut recv, code::CANCELLED);
        }
        Err(_) => {
            debug!(peer, "cluster request not received in time");
            return reset(&mut send, &mut recv, code::CANCELLED);
        }
    };
    let run = async {
        let handler = {
            let ready = handler.wait_for(|h| h.is_some()).await;
            match ready {
                Ok(h) => h.clone(),
                Err(_) => None,
            }
        };
        match handler {
            Some(h) => Some(h(peer, body).await),
            None => None,
        }
    };
    let result = tokio::select! {
        r = run => r,
        // The requester gave up (or the connection is gone): stop working for it.
        _ = send.stopped() => return,
        _ = sleep(MAX_HANDLER_TIME) => None,
    };
    let frame = match result {
        Some(HandlerResult::Response(frame)) => frame,
        Some(HandlerResult::BadRequest(e)) => {
            warn!(peer, error = %e, "refusing cluster request");
            return reset(&mut send, &mut recv, code::BAD_FRAME);
        }
        Some(HandlerResult::BadResponse(e)) => {
            warn!(peer, error = %e, "cannot encode cluster response");
            return reset(&mut send, &mut recv, code::BAD_RESPONSE);
        }
        None => {
            warn!(peer, "cluster request handler gave up");
            return reset(&mut send, &mut recv, code::HANDLER_GAVE_UP);
        }
    };
    match timeout(RESPONSE_WRITE_TIMEOUT, send.write_all(&frame)).await {
        Ok(Ok(())) => {
            let _ = send.finish();
        }
        Ok(Err(e)) => debug!(peer, error = %e, "cannot write cluster response"),
        Err(_) => reset(&mut send, &mut recv, code::CANCELLED),
    }
}
