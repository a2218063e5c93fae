//! Dialing: keeping one outgoing connection to every peer that has no live one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, VarInt};
use tokio::time::{sleep, timeout_at, Instant};
use tracing::{debug, warn};

use super::peer::{live, Direction, Peer};
use super::serve::{open_link, run_connection};
use super::{close, until_shutdown, Inner, DIAL_TIMEOUT, MAX_BACKOFF, MIN_BACKOFF, STABLE_AFTER};
use crate::cluster::identity::server_name;
use crate::cluster::tls::{is_other_cluster, negotiated_alpn, peer_fingerprint};

/// Keeps one dialed connection to `peer` whenever there is no live one.
pub(super) async fn dial_loop(inner: Arc<Inner>, peer: Arc<Peer>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut conns = peer.subscribe();
    let mut backoff = MIN_BACKOFF;
    let mut failures = 0u32;
    let mut connected_at = Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let current = live(&conns.borrow_and_update());
        if let Some(link) = current {
            tokio::select! {
                _ = link.conn.closed() => {
                    // A connection that the peer closes right away (e.g. it does not pin
                    // our certificate) must not turn the dialer into a busy loop.
                    if connected_at.elapsed() < STABLE_AFTER {
                        sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    } else {
                        backoff = MIN_BACKOFF;
                    }
                }
                _ = conns.changed() => {}
                _ = until_shutdown(&mut shutdown) => return,
            }
            continue;
        }
        let started = Instant::now();
        let linked = match dial(&inner, &peer).await {
            Ok(conn) => open_link(&inner, &peer, conn, Direction::Outgoing)
                .await
                .ok_or(DialError::Hello),
            Err(e) => Err(e),
        };
        match linked {
            Ok(link) => {
                failures = 0;
                connected_at = Instant::now();
                let (inner, peer) = (inner.clone(), peer.clone());
                tokio::spawn(async move { run_connection(&inner, &peer, link).await });
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    match &e {
                        DialError::Connection(c) if is_other_cluster(c) => warn!(
                            peer = peer.id,
                            addr = %peer.address,
                            "the cosigner at {} is of another cluster, not peer {}: its \
                             certificate is not one this config pins (a directory of another \
                             split-key run, or another key's cluster on that port); check that \
                             host's directory and this config's address of peer {}; retrying",
                            peer.address,
                            peer.id,
                            peer.id
                        ),
                        _ => {
                            warn!(peer = peer.id, addr = %peer.address, error = %e, "cannot reach cluster peer; retrying")
                        }
                    }
                } else {
                    debug!(peer = peer.id, addr = %peer.address, error = %e, "cluster dial failed");
                }
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = peer.dial_now.notified() => {
                        tokio::time::sleep_until(started + MIN_BACKOFF).await;
                    }
                    _ = conns.changed() => {}
                    _ = until_shutdown(&mut shutdown) => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot resolve `{0}`")]
    Resolve(String),
    #[error("timed out")]
    Timeout,
    #[error(transparent)]
    Connect(#[from] quinn::ConnectError),
    #[error(transparent)]
    Connection(#[from] quinn::ConnectionError),
    #[error("the peer's certificate is not the one pinned for it")]
    WrongPeer,
    #[error("the peer did not complete the hello")]
    Hello,
}

async fn dial(inner: &Inner, peer: &Peer) -> Result<Connection, DialError> {
    let deadline = Instant::now() + DIAL_TIMEOUT;
    let addrs: Vec<SocketAddr> = timeout_at(deadline, tokio::net::lookup_host(&peer.address))
        .await
        .map_err(|_| DialError::Timeout)?
        .map_err(|_| DialError::Resolve(peer.address.clone()))?
        .collect();
    inner.sources.record(peer.id, &addrs);
    // A socket bound to one address family cannot send to the other.
    let v4 = inner.endpoint.local_addr().map_or(true, |a| a.is_ipv4());
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4() == v4)
        .or(addrs.first())
        .copied()
        .ok_or_else(|| DialError::Resolve(peer.address.clone()))?;
    // rustls checks the chain to the cluster CA and the name `cosigner-<id>`.
    let connecting =
        inner
            .endpoint
            .connect_with(inner.client_config.clone(), addr, &server_name(peer.id))?;
    let conn = timeout_at(deadline, connecting)
        .await
        .map_err(|_| DialError::Timeout)??;
    timeout_at(deadline, confirmed(&conn))
        .await
        .map_err(|_| DialError::Timeout)??;
    if peer_fingerprint(&conn).as_deref() != Some(peer.fingerprint.as_str())
        || !negotiated_alpn(&conn)
    {
        conn.close(VarInt::from_u32(close::WRONG_PEER), b"wrong peer");
        return Err(DialError::WrongPeer);
    }
    Ok(conn)
}

/// Waits until the server has confirmed the handshake (its HANDSHAKE_DONE frame). A QUIC
/// client finishes its side before the server has checked the client certificate, so
/// without this a peer that refuses us would look connected for a moment, and the dialer
/// would spin through connect/refuse cycles without backing off. There is no event for it,
/// so poll the frame counter; it arrives one round trip after our Finished.
async fn confirmed(conn: &Connection) -> Result<(), quinn::ConnectionError> {
    loop {
        if conn.stats().frame_rx.handshake_done > 0 {
            return Ok(());
        }
        tokio::select! {
            e = conn.closed() => return Err(e),
            _ = sleep(Duration::from_millis(2)) => {}
        }
    }
}
