//! The cluster endpoint: one QUIC endpoint per cosigner that both accepts and dials, keeps a
//! live connection to every peer, and carries one request/response per bidirectional stream.
//!
//! Connections are symmetric: whichever side dialed, incoming streams on any authenticated
//! connection are served, and outgoing requests use the newest live connection to the peer.
//! So when both sides dial at once, or a restarted peer dials us before we notice that the
//! old connection is dead, requests flow over whatever works without any negotiation.
//! A peer's identity is always the one its certificate pin maps to, never a message field.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, VarInt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use tracing::info;

use super::tls::{PeerPins, TlsError, TlsIdentity, TlsPaths};
use super::wire::{self, WireError};
use super::PeerId;
use crate::config::ThresholdConfig;

mod accept;
mod dial;
mod peer;
mod serve;

use accept::accept_loop;
use dial::dial_loop;
use peer::{live, Peer};
use serve::{read_error, read_frame, write_error, FrameError};

/// Resolving a peer's address and completing a handshake with it.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// An incoming handshake that has not completed by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Redial backoff after a failed dial; short so a restarted peer is found again quickly.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A connection that lasted this long resets the redial backoff.
const STABLE_AFTER: Duration = Duration::from_secs(2);
/// Reading a request off a stream once it is open.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A handler still running after this long is abandoned; requesters give up much sooner.
const MAX_HANDLER_TIME: Duration = Duration::from_secs(60);
/// Writing a response.
const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections kept per peer (simultaneous dials and restarts make more than one).
const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// How long `shutdown` waits for peers to acknowledge the close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Stream reset codes, carried in RESET_STREAM / STOP_SENDING.
mod code {
    pub const CANCELLED: u32 = 0;
    pub const BAD_FRAME: u32 = 1;
    pub const HANDLER_GAVE_UP: u32 = 2;
    pub const BAD_RESPONSE: u32 = 3;
}

/// Connection close codes.
mod close {
    pub const SHUTDOWN: u32 = 0;
    pub const UNKNOWN_CERTIFICATE: u32 = 1;
    pub const WRONG_PEER: u32 = 2;
    pub const SUPERSEDED: u32 = 3;
}

/// One peer as the transport needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    pub id: PeerId,
    /// `HOST:PORT`, resolved anew on every dial.
    pub address: String,
    /// Lowercase hex SHA-256 of the peer's DER certificate.
    pub cert_sha256: String,
}

/// Everything [`Cluster::bind`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub id: PeerId,
    pub listen: SocketAddr,
    pub peers: Vec<PeerAddr>,
    pub tls: TlsPaths,
}

impl ClusterConfig {
    /// From the `[threshold]` section, with the TLS paths already resolved against the
    /// directory of the config file.
    pub fn from_threshold(th: &ThresholdConfig, tls: TlsPaths) -> ClusterConfig {
        ClusterConfig {
            id: th.id,
            listen: th.listen,
            peers: th
                .peers
                .iter()
                .map(|p| PeerAddr {
                    id: p.id,
                    address: p.address.clone(),
                    cert_sha256: p.cert_sha256.clone(),
                })
                .collect(),
            tls,
        }
    }
}

/// Why a peer reset a request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The peer could not parse our request frame (version, size or body).
    BadFrame,
    /// The peer's handler did not finish in time.
    HandlerGaveUp,
    /// The peer's response could not be encoded (e.g. too large).
    BadResponse,
    Cancelled,
    Other(u64),
}

impl ResetReason {
    fn from_code(c: VarInt) -> ResetReason {
        match u32::try_from(c.into_inner()) {
            Ok(code::BAD_FRAME) => ResetReason::BadFrame,
            Ok(code::HANDLER_GAVE_UP) => ResetReason::HandlerGaveUp,
            Ok(code::BAD_RESPONSE) => ResetReason::BadResponse,
            Ok(code::CANCELLED) => ResetReason::Cancelled,
            _ => ResetReason::Other(c.into_inner()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cluster config: {0}")]
    Config(String),
    #[error("cannot listen for cluster peers on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cosigner {0} is not a configured peer")]
    UnknownPeer(PeerId),
    #[error("request to cosigner {peer} timed out after {timeout:?}")]
    Timeout { peer: PeerId, timeout: Duration },
    #[error("request to cosigner {peer}: {source}")]
    Wire { peer: PeerId, source: WireError },
    #[error("cosigner {peer} reset the request: {reason:?}")]
    Rejected { peer: PeerId, reason: ResetReason },
    #[error("connection to cosigner {peer} lost: {source}")]
    ConnectionLost {
        peer: PeerId,
        source: quinn::ConnectionError,
    },
    #[error("stream to cosigner {peer} failed: {detail}")]
    Stream { peer: PeerId, detail: String },
    #[error("the cluster transport is shut down")]
    Shutdown,
}

/// The request handler with its types erased: request body in, response frame out.
pub(super) type ErasedHandler = Arc<
    dyn Fn(PeerId, Vec<u8>) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> + Send + Sync,
>;

pub(super) enum HandlerResult {
    Response(Vec<u8>),
    BadRequest(WireError),
    BadResponse(WireError),
}

pub(super) struct Inner {
    id: PeerId,
    endpoint: Endpoint,
    client_config: quinn::ClientConfig,
    pins: PeerPins,
    peers: BTreeMap<PeerId, Arc<Peer>>,
    handler: watch::Sender<Option<ErasedHandler>>,
    shutdown: watch::Sender<bool>,
    handshakes: Arc<Semaphore>,
}

impl Inner {
    fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
    }
}

/// A cosigner's cluster endpoint. Dropping it closes every connection.
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.inner.begin_shutdown();
    }
}

impl Cluster {
    /// Loads the TLS identity, binds `listen`, and starts accepting and dialing every peer.
    /// Incoming requests wait (briefly) until [`Cluster::serve`] installs a handler.
    pub async fn bind(cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        let identity = TlsIdentity::load(&cfg.tls)?;
        let own_fingerprint = identity.fingerprint();
        let mut peers = BTreeMap::new();
        for p in &cfg.peers {
            let fingerprint = p.cert_sha256.to_ascii_lowercase();
            if p.id == cfg.id {
                return Err(ClusterError::Config(format!(
                    "peer {} has our own ID",
                    p.id
                )));
            }
            if own_fingerprint.as_deref() == Some(fingerprint.as_str())
                || peers
                    .values()
                    .any(|q: &Arc<Peer>| q.fingerprint == fingerprint)
            {
                return Err(ClusterError::Config(format!(
                    "peer {}'s certificate fingerprint is not unique",
                    p.id
                )));
            }
            let peer = Arc::new(Peer {
                id: p.id,
                address: p.address.clone(),
                fingerprint,
                conns: watch::Sender::new(Vec::new()),
                dial_now: Notify::new(),
            });
            if peers.insert(p.id, peer).is_some() {
                return Err(ClusterError::Config(format!(
                    "peer {} is listed twice",
                    p.id
                )));
            }
        }
        let pins = PeerPins::new(peers.values().map(|p| (p.id, p.fingerprint.clone())));
        let endpoint =
            Endpoint::server(identity.server_config()?, cfg.listen).map_err(|source| {
                ClusterError::Bind {
                    addr: cfg.listen,
                    source,
                }
            })?;
        let inner = Arc::new(Inner {
            id: cfg.id,
            endpoint,
            client_config: identity.client_config()?,
            pins,
            peers,
            handler: watch::Sender::new(None),
            shutdown: watch::Sender::new(false),
            handshakes: Arc::new(Semaphore::new(super::tls::MAX_INCOMING)),
        });
        info!(
            id = inner.id,
            listen = %inner.endpoint.local_addr().map_or(cfg.listen, |a| a),
            "cluster transport listening"
        );
        tokio::spawn(accept_loop(inner.clone()));
        for peer in inner.peers.values() {
            tokio::spawn(dial_loop(inner.clone(), peer.clone()));
        }
        Ok(Cluster { inner })
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Serves incoming requests with `handler`, each stream concurrently; replaces any
    /// handler installed before. `handler` gets the peer's authenticated ID.
    pub fn serve<Req, Resp, H, F>(&self, handler: H)
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        H: Fn(PeerId, Req) -> F + Send + Sync + 'static,
        F: Future<Output = Resp> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |peer, body| {
            let handler = handler.clone();
            Box::pin(async move {
                let req: Req = match wire::decode_body(&body) {
                    Ok(req) => req,
                    Err(e) => return HandlerResult::BadRequest(e),
                };
                let resp = handler(peer, req).await;
                match wire::encode(&resp) {
                    Ok(frame) => HandlerResult::Response(frame),
                    Err(e) => HandlerResult::BadResponse(e),
                }
            })
        });
        self.inner.handler.send_replace(Some(erased));
    }

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

    async fn request_frame<Resp: DeserializeOwned>(
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
        let conn = timeout_at(deadline, self.connection(peer))
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
    async fn connection(&self, peer: &Peer) -> Result<Connection, ClusterError> {
        let mut conns = peer.conns.subscribe();
        if let Some(c) = live(&conns.borrow_and_update()) {
            return Ok(c);
        }
        peer.dial_now.notify_one();
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            tokio::select! {
                changed = conns.changed() => {
                    changed.map_err(|_| ClusterError::Shutdown)?;
                    if let Some(c) = live(&conns.borrow_and_update()) {
                        return Ok(c);
                    }
                }
                _ = until_shutdown(&mut shutdown) => return Err(ClusterError::Shutdown),
            }
        }
    }

    /// The round-trip time quinn measures on the live connection to `peer`.
    pub fn rtt(&self, peer: PeerId) -> Option<Duration> {
        self.inner.peers.get(&peer)?.live().map(|c| c.rtt())
    }

    /// Peers with a live connection right now.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.inner
            .peers
            .values()
            .filter(|p| p.live().is_some())
            .map(|p| p.id)
            .collect()
    }

    /// Closes every connection and waits briefly for peers to acknowledge.
    pub async fn shutdown(&self) {
        self.inner.begin_shutdown();
        let _ = timeout(SHUTDOWN_GRACE, self.inner.endpoint.wait_idle()).await;
    }
}

/// Resolves once shutdown has begun (the guard `wait_for` returns must not be held).
pub(super) async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::identity::issue_cluster;

    async fn pair(
        dir: &std::path::Path,
    ) -> (Cluster, Cluster, Arc<std::sync::atomic::AtomicUsize>) {
        let issued = issue_cluster(2, "test").unwrap();
        let addrs: Vec<SocketAddr> = (0..2)
            .map(|_| {
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
            })
            .collect();
        let mut clusters = Vec::new();
        for (me, other) in [(0usize, 1usize), (1, 0)] {
            let d = dir.join(me.to_string());
            std::fs::create_dir_all(&d).unwrap();
            let tls = TlsPaths {
                cert: d.join("cert.pem"),
                key: d.join("key.pem"),
                ca: d.join("ca.pem"),
            };
            std::fs::write(&tls.cert, &issued.identities[me].cert_pem).unwrap();
            std::fs::write(&tls.key, &issued.identities[me].key_pem).unwrap();
            std::fs::write(&tls.ca, &issued.ca_cert_pem).unwrap();
            let cfg = ClusterConfig {
                id: me as PeerId + 1,
                listen: addrs[me],
                peers: vec![PeerAddr {
                    id: other as PeerId + 1,
                    address: addrs[other].to_string(),
                    cert_sha256: issued.identities[other].cert_sha256.clone(),
                }],
                tls,
            };
            clusters.push(Cluster::bind(cfg).await.unwrap());
        }
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        clusters[1].serve(move |_peer, req: u64| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { req + 1 }
        });
        let b = clusters.pop().unwrap();
        let a = clusters.pop().unwrap();
        (a, b, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_resets_bad_frames_with_a_typed_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _b, seen) = pair(dir.path()).await;
        let t = Duration::from_secs(5);
        assert_eq!(a.request::<u64, u64>(2, &41, t).await.unwrap(), 42);

        let good = wire::encode(&7u64).unwrap();
        let mut wrong_version = good.clone();
        wrong_version[0] = wire::PROTOCOL_VERSION + 1;
        let mut oversized = good.clone();
        oversized[1..5].copy_from_slice(&(wire::MAX_FRAME_LEN + 1).to_be_bytes());
        // A body that is not a u64 (trailing bytes).
        let mut bad_body = vec![wire::PROTOCOL_VERSION, 0, 0, 0, 9];
        bad_body.extend_from_slice(&[0; 9]);
        for frame in [wrong_version, oversized, bad_body] {
            let r = a.request_frame::<u64>(2, &frame, t).await;
            assert!(
                matches!(
                    r,
                    Err(ClusterError::Rejected {
                        peer: 2,
                        reason: ResetReason::BadFrame
                    })
                ),
                "{r:?}"
            );
        }
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Bad streams do not hurt the connection.
        assert_eq!(a.request_frame::<u64>(2, &good, t).await.unwrap(), 8);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_response_of_the_wrong_type_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _b, _) = pair(dir.path()).await;
        // The server answers one u64; reading it as two fails to decode.
        let r = a
            .request::<u64, (u64, u64)>(2, &1, Duration::from_secs(5))
            .await;
        assert!(
            matches!(
                r,
                Err(ClusterError::Wire {
                    peer: 2,
                    source: WireError::Decode(_)
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn reset_codes_map_to_reasons() {
        for (c, r) in [
            (code::BAD_FRAME, ResetReason::BadFrame),
            (code::HANDLER_GAVE_UP, ResetReason::HandlerGaveUp),
            (code::BAD_RESPONSE, ResetReason::BadResponse),
            (code::CANCELLED, ResetReason::Cancelled),
        ] {
            assert_eq!(ResetReason::from_code(VarInt::from_u32(c)), r);
        }
        assert_eq!(
            ResetReason::from_code(VarInt::from_u32(77)),
            ResetReason::Other(77)
        );
    }
}
