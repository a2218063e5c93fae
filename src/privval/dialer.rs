//! Dials one node's `priv_validator_laddr` and keeps a privval session with it, forever.
//!
//! The node listens and serves one signer at a time; the others wait in its accept queue
//! with a handshake that stalls until the current signer's connection drops. That is the
//! fail-over path, so a stalled handshake is normal, but it is also what a wrong address
//! looks like (something that accepts TCP and never speaks), so it is a warning that says
//! both. Dial failures repeat every `redial_ms`; each cause is logged once per
//! [`LOG_INTERVAL`] with a count. Over a Unix socket there is no handshake: the connection
//! is plain, as CometBFT's Unix listener has it. The first dial happens immediately, because a
//! starting node exits if no signer arrives within about three seconds.
//!
//! A threshold cosigner that cannot reach a quorum of its peers does not dial at all (and
//! abandons a queued dial when the quorum goes), so that it never holds a node it cannot
//! sign for; it dials again as soon as the quorum is back. One whose own sign state could
//! not be written stops dialing the same way, until it is restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use tokio::net::{TcpStream, UnixStream};
use tracing::{debug, info, warn};

use super::address::{NodeAddress, NodeEndpoint};
use super::connection::NodeConnection;
use super::secret_connection::{SecretConnection, SecretConnectionError};
use super::session::{self, SessionContext, SessionError};
use crate::log_throttle::{Throttle, LOG_INTERVAL};
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

/// Why a connection to a node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The TCP connect failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TCP connect took longer than the dial timeout.
    #[error("could not connect within {0:?}")]
    ConnectTimeout(Duration),
    /// The SecretConnection handshake failed.
    #[error("SecretConnection handshake failed: {0}")]
    Handshake(SecretConnectionError),
    /// The node authenticated with another identity than the node ID pinned in its address.
    #[error(
        "the node authenticated as node ID {actual}, not the configured {expected}: this \
         address is another node's, or the node's key changed; correct the `[[node]] address` \
         (or drop its NODE_ID@ to accept any node there)"
    )]
    NodeIdMismatch {
        /// The node ID in the config.
        expected: String,
        /// The node ID the node's identity key gives.
        actual: String,
    },
}

/// How long a connected node may take to begin the SecretConnection handshake before this
/// is logged: while another signer serves the node, this one waits in its accept queue.
const STALL_NOTICE: Duration = Duration::from_secs(2);

/// Connects to the node (within the handshake timeout) and, over TCP, completes the
/// handshake, however long the node takes to accept: until it does, this connection waits in
/// its accept queue, which is where the next signer must be when the current one's
/// connection dies. Abandoning it would leave a dead connection in that queue for the node
/// to trip over. `stalled` is called once if the handshake has not begun after
/// [`STALL_NOTICE`].
pub async fn connect(
    node: &NodeAddress,
    identity: &SigningKey,
    timeouts: &NodeTimeouts,
    stalled: impl FnOnce(),
) -> Result<NodeConnection, DialError> {
    let (host, port) = match &node.endpoint {
        NodeEndpoint::Unix(path) => {
            let socket = tokio::time::timeout(timeouts.handshake, UnixStream::connect(path))
                .await
                .map_err(|_| DialError::ConnectTimeout(timeouts.handshake))?
                .map_err(DialError::Connect)?;
            return Ok(NodeConnection::Unix(socket));
        }
        NodeEndpoint::Tcp { host, port } => (host, *port),
    };
    let tcp = tokio::time::timeout(
        timeouts.handshake,
        TcpStream::connect((host.as_str(), port)),
    )
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
        done = &mut handshake => done,
        _ = tokio::time::sleep(STALL_NOTICE) => {
            stalled();
            handshake.await
        }
    }
    .map_err(DialError::Handshake)?;
    if let Some(expected) = &node.node_id {
        let actual = conn.remote_node_id();
        if &actual != expected {
            return Err(DialError::NodeIdMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(NodeConnection::Secret(Box::new(conn)))
}

/// Why a dial did not give a session, as one cause of the rate-limited log.
fn cause(e: &DialError) -> String {
    match e {
        // One cause however the two IDs read.
        DialError::NodeIdMismatch { .. } => "node id".into(),
        other => other.to_string(),
    }
}

fn log_dial(label: &str, count: u64, latest: &str) {
    match count {
        1 => warn!(node = %label, "{latest}"),
        _ => warn!(node = %label, count, "{latest} ({count} times in {LOG_INTERVAL:?})"),
    }
}

/// Dials `node` and serves it until the process ends.
pub async fn run(
    node: NodeAddress,
    ctx: SessionContext,
    identity: Arc<SigningKey>,
    signer: Arc<Signer>,
) {
    let label = node.label();
    // Every dial failure and stall, one line per cause per interval.
    let mut throttle: Throttle<String> = Throttle::new(LOG_INTERVAL);
    let mut quorum = signer.availability();
    loop {
        for (_, count, latest) in throttle.due(Instant::now()) {
            log_dial(&label, count, &latest);
        }
        if let Some(rx) = quorum.as_mut() {
            if !*rx.borrow_and_update() {
                info!(node = %label, "not dialing: waiting until a quorum of cosigners is reachable");
                if rx.wait_for(|q| *q).await.is_err() {
                    return;
                }
                info!(node = %label, "quorum reachable: dialing");
            }
        }
        let stall = || {
            let text = format!(
                "the node accepted the TCP connection but has not begun the SecretConnection \
                 handshake within {STALL_NOTICE:?}: normal while another signer serves it \
                 (this cosigner waits in its accept queue to take over); if no signer serves \
                 it, check that this is the node's priv_validator_laddr"
            );
            if let Some((count, latest)) = throttle.note("stall".into(), Instant::now(), text, true)
            {
                log_dial(&label, count, &latest);
            }
        };
        let dialed = tokio::select! {
            dialed = connect(&node, &identity, &ctx.timeouts, stall) => dialed,
            _ = session::quorum_lost(&mut quorum) => continue,
        };
        match dialed {
            Ok(mut conn) => {
                match conn.remote_node_id() {
                    Some(id) => info!(node = %label, node_id = %id, "connected to node"),
                    // The socket connects at once, also while the node serves another
                    // signer: this one is then queued until the node accepts it.
                    None => info!(
                        node = %label,
                        "connected to node (Unix socket: no handshake, so it may still be \
                         queued behind another signer until its first request)"
                    ),
                }
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
                let text = format!("{e}; redialling every {:?}", ctx.timeouts.redial);
                if let Some((count, latest)) = throttle.note(cause(&e), Instant::now(), text, true)
                {
                    log_dial(&label, count, &latest);
                }
            }
        }
        tokio::time::sleep(ctx.timeouts.redial).await;
    }
}
