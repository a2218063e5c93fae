//! Serving: the streams a peer opens on a connection, one request and response each, and the
//! frame reading both sides share.

use std::sync::Arc;

use quinn::{Connection, ReadExactError, RecvStream, SendStream, VarInt};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tracing::{debug, info, warn};

use super::health::{self, Health};
use super::hello;
use super::notices::Notice;
use super::peer::{Direction, Link, Peer};
use super::{
    close, code, ClusterError, ErasedHandler, HandlerResult, Inner, MAX_HANDLER_TIME,
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

/// Completes the hello on a new authenticated connection, starts its heartbeat and admits it
/// to `peer`'s connections; `None` (the connection closed) if the hello failed.
pub(super) async fn open_link(
    inner: &Inner,
    peer: &Peer,
    conn: Connection,
    direction: Direction,
) -> Option<Arc<Link>> {
    let hello = match direction {
        Direction::Outgoing => hello::as_dialer(&conn, inner.instance).await,
        Direction::Incoming => hello::as_acceptor(&conn, inner.instance).await,
    };
    let instance = match hello {
        Ok(instance) => instance,
        Err(e) => {
            conn.close(VarInt::from_u32(close::HELLO_FAILED), b"no hello");
            let addr = conn.remote_address();
            inner.notices.note(Notice::HelloFailed, || {
                format!(
                    "cosigner {} at {addr} ({}): {e}",
                    peer.id,
                    direction.as_str()
                )
            });
            return None;
        }
    };
    let health = Arc::new(Health::new());
    tokio::spawn(health::run(conn.clone(), health.clone()));
    let link = Arc::new(Link {
        conn,
        instance,
        direction,
        health,
    });
    peer.admit(link.clone()).await;
    Some(link)
}

/// Serves the streams a peer opens on `link` until it closes. At most
/// [`super::peer::MAX_IN_FLIGHT_PER_PEER`] requests of one peer run at once, over all its
/// connections; a stream beyond that is reset as busy at once.
pub(super) async fn run_connection(inner: &Inner, peer: &Peer, link: Arc<Link>) {
    let conn = &link.conn;
    let addr = conn.remote_address();
    let direction = link.direction.as_str();
    info!(peer = peer.id, %addr, direction, instance = %link.instance, "cluster peer connected");
    let reason = loop {
        match conn.accept_bi().await {
            Ok((mut send, mut recv)) => match peer.in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (handler, id) = (inner.handler.subscribe(), peer.id);
                    tokio::spawn(async move {
                        serve_stream(handler, id, send, recv).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    let _ = recv.stop(VarInt::from_u32(code::BUSY));
                    let _ = send.reset(VarInt::from_u32(code::BUSY));
                    inner.notices.note(Notice::PeerBusy(peer.id), || {
                        format!("{} requests in flight", super::peer::MAX_IN_FLIGHT_PER_PEER)
                    });
                }
            },
            Err(e) => break e,
        }
    };
    peer.remove(conn);
    info!(peer = peer.id, %addr, direction, instance = %link.instance, reason = %reason, "cluster peer disconnected");
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
