//! Dials one node's `priv_validator_laddr` and keeps a privval session with it, forever.
//!
//! The node listens and serves one signer at a time; the others wait in its accept queue
//! with a handshake that stalls until the current signer's connection drops. That is the
//! fail-over path, so a stalled handshake is normal: it times out, the dialer redials at
//! once, and the cosigner stays queued. The first dial happens immediately, because a
//! starting node exits if no signer arrives within about three seconds.
//!
//! A threshold cosigner that cannot reach a quorum of its peers does not dial at all (and
//! abandons a queued dial when the quorum goes), so that it never holds a node it cannot
//! sign for; it dials again as soon as the quorum is back. One whose own sign state could
//! not be written stops dialing the same way, until it is restarted.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::address::NodeAddress;
use super::secret_connection::{SecretConnection, SecretConnectionError};
use super::session::{self, SessionContext, SessionError};
use crate::signer::Signer;

/// The deadlines of a node connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeTimeouts {
    /// TCP connect plus SecretConnection handshake.
    pub handshake: Duration,
    /// A node that sends nothing for this long is dropped (it pings every ~3.3 s).
    pub idle: Duration,
    /// Writing one reply.
    pub write: Duration,
    /// Delay before redialling after a failure.
    pub redial: Duration,
}

/// TCP keep-alive on node connections: a vanished node host is noticed within about 8 s.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("could not connect within {0:?}")]
    ConnectTimeout(Duration),
    #[error("SecretConnection handshake failed: {0}")]
    Handshake(#[from] SecretConnectionError),
    #[error("node ID mismatch: expected {expected}, the node authenticated as {actual}")]
    NodeIdMismatch { expected: String, actual: String },
}

/// Connects to the node (within the handshake timeout) and completes the handshake, however
/// long the node takes to accept: until it does, this connection waits in its accept queue,
/// which is where the next signer must be when the current one's connection dies. Abandoning
/// it would leave a dead connection in that queue for the node to trip over.
pub async fn connect(
    node: &NodeAddress,
    identity: &SigningKey,
    timeouts: &NodeTimeouts,
) -> Result<SecretConnection<TcpStream>, DialError> {
    let tcp = tokio::time::timeout(timeouts.handshake, TcpStream::connect(node.host_port()))
        .await
        .map_err(|_| DialError::ConnectTimeout(timeouts.handshake))?
        .map_err(DialError::Connect)?;
    // Requests and replies are small and latency-bound.
    let _ = tcp.set_nodelay(true);
    // While queued nothing else would notice a node host that vanished.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(e) = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive) {
        debug!(node = %node, "no TCP keep-alive: {e}");
    }
    let handshake = SecretConnection::handshake(tcp, identity);
    tokio::pin!(handshake);
    let conn = tokio::select! {
        done = &mut handshake => done?,
        _ = tokio::time::sleep(timeouts.handshake) => {
            info!(
                node = %node,
                "queued at the node: it has not accepted this cosigner yet, which is normal while \
                 another signer serves it (if none does, check that this is the node's \
                 priv_validator_laddr)"
            );
            handshake.await?
        }
    };
    if let Some(expected) = &node.node_id {
        let actual = conn.remote_node_id();
        if &actual != expected {
            return Err(DialError::NodeIdMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(conn)
}

/// Dials `node` and serves it until the process ends.
pub async fn run(
    node: NodeAddress,
    ctx: SessionContext,
    identity: Arc<SigningKey>,
    signer: Arc<Signer>,
) {
    let label = node.host_port();
    let mut last_error: Option<String> = None;
    let mut quorum = signer.availability();
    loop {
        if let Some(rx) = quorum.as_mut() {
            if !*rx.borrow_and_update() {
                info!(node = %label, "not dialing: waiting until a quorum of cosigners is reachable");
                if rx.wait_for(|q| *q).await.is_err() {
                    return;
                }
                info!(node = %label, "quorum reachable: dialing");
            }
        }
        let dialed = tokio::select! {
            dialed = connect(&node, &identity, &ctx.timeouts) => dialed,
            _ = session::quorum_lost(&mut quorum) => continue,
        };
        match dialed {
            Ok(mut conn) => {
                info!(node = %label, node_id = %conn.remote_node_id(), "connected to node");
                last_error = None;
                ctx.metrics.node_connected(&ctx.label, true);
                let served = session::serve(&mut conn, &ctx, &signer).await;
                ctx.metrics.node_connected(&ctx.label, false);
                match served {
                    Ok(()) => info!(node = %label, "node closed the connection"),
                    Err(SessionError::NoQuorum) => warn!(
                        node = %label,
                        "node connection ended: giving way to a cosigner that can reach a quorum"
                    ),
                    Err(e) => warn!(node = %label, error = %e, "node connection ended"),
                }
            }
            Err(e) => {
                let text = e.to_string();
                match &e {
                    DialError::NodeIdMismatch { .. } => {
                        warn!(node = %label, "refusing node: {text}")
                    }
                    _ if last_error.as_deref() != Some(text.as_str()) => {
                        warn!(node = %label, "{text}; redialling")
                    }
                    _ => debug!(node = %label, "{text}"),
                }
                last_error = Some(text);
            }
        }
        tokio::time::sleep(ctx.timeouts.redial).await;
    }
}
