//! Accepting: admitting incoming handshakes and mapping each to a configured peer.

use std::sync::Arc;

use quinn::VarInt;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::serve::run_connection;
use super::{close, until_shutdown, Inner, HANDSHAKE_TIMEOUT};
use crate::cluster::tls::{negotiated_alpn, peer_fingerprint};

pub(super) async fn accept_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let incoming = tokio::select! {
            incoming = inner.endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            _ = until_shutdown(&mut shutdown) => break,
        };
        let Ok(permit) = inner.handshakes.clone().try_acquire_owned() else {
            debug!(addr = %incoming.remote_address(), "too many cluster handshakes; refusing");
            incoming.refuse();
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    warn!(%addr, error = %e, "cluster handshake failed");
                    return;
                }
                Err(_) => {
                    warn!(%addr, "cluster handshake timed out");
                    return;
                }
            };
            drop(permit);
            let fingerprint = peer_fingerprint(&conn);
            let peer = fingerprint
                .as_deref()
                .filter(|_| negotiated_alpn(&conn))
                .and_then(|fp| inner.pins.identify(fp))
                .and_then(|id| inner.peers.get(&id).cloned());
            let Some(peer) = peer else {
                warn!(
                    %addr,
                    fingerprint = fingerprint.as_deref().unwrap_or("none"),
                    "refused cluster connection: certificate is not a configured peer"
                );
                conn.close(
                    VarInt::from_u32(close::UNKNOWN_CERTIFICATE),
                    b"unknown certificate",
                );
                return;
            };
            peer.install(conn.clone());
            run_connection(&inner, &peer, conn, "incoming").await;
        });
    }
}
