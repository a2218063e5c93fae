//! The cluster endpoint: one QUIC endpoint per cosigner that both accepts and dials, keeps a
//! live connection to every peer, and carries one request/response per bidirectional stream.
//!
//! Connections are symmetric: whichever side dialed, incoming streams on any authenticated
//! connection are served, and outgoing requests use the newest live connection to the peer.
//! So when both sides dial at once, or a restarted peer dials us before we notice that the
//! old connection is dead, requests flow over whatever works without any negotiation.
//! A peer's identity is always the one its certificate pin maps to, never a message field.
//!
//! Every connection opens with a hello naming the sender's process ([`hello`]), carries
//! heartbeats ([`health`]), and is admitted only after a restart has been told from a twin
//! ([`peer`]). Incoming handshakes are filtered by source and address-validated first
//! ([`accept`], [`sources`]); what is refused is counted and logged at a bounded rate
//! ([`notices`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;
use tracing::info;

use super::tls::{PeerPins, TlsError, TlsIdentity, TlsPaths};
use super::wire::{self, WireError};
use super::PeerId;

mod accept;
mod dial;
pub(crate) mod health;
pub mod hello;
mod notices;
mod peer;
mod request;
mod serve;
mod sources;

use accept::{accept_loop, SourceSlots};
use dial::dial_loop;
use hello::InstanceId;
use peer::Peer;
use sources::AllowedSources;

pub use accept::MAX_HANDSHAKES_PER_SOURCE;
pub use health::HealthSnapshot;
pub use notices::TransportStats;
pub use peer::{Duplicate, Instance};
pub use sources::IpNet;

/// Resolving a peer's address and completing a handshake with it.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// An incoming handshake that has not completed by then is dropped: the dialer gives up at
/// its [`DIAL_TIMEOUT`], so holding the slot longer serves nobody.
const HANDSHAKE_TIMEOUT: Duration = DIAL_TIMEOUT;
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
/// How long `shutdown` waits for peers to acknowledge the close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Stream reset codes, carried in RESET_STREAM / STOP_SENDING.
mod code {
    pub(super) const CANCELLED: u32 = 0;
    pub(super) const BAD_FRAME: u32 = 1;
    pub(super) const HANDLER_GAVE_UP: u32 = 2;
    pub(super) const BAD_RESPONSE: u32 = 3;
    pub(super) const BUSY: u32 = 4;
}

/// Connection close codes.
mod close {
    pub(super) const SHUTDOWN: u32 = 0;
    pub(super) const UNKNOWN_CERTIFICATE: u32 = 1;
    pub(super) const WRONG_PEER: u32 = 2;
    pub(super) const SUPERSEDED: u32 = 3;
    pub(super) const HELLO_FAILED: u32 = 4;
    /// The peer's process restarted: the connection to its previous instance is dead.
    pub(super) const RESTARTED: u32 = 5;
}

/// One peer as the transport needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's cosigner identifier, its FROST identifier too.
    pub id: PeerId,
    /// `HOST:PORT`, resolved anew on every dial.
    pub address: String,
    /// Lowercase hex SHA-256 of the peer's DER certificate.
    pub cert_sha256: String,
}

/// Everything [`Cluster::bind`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This cosigner's identifier.
    pub id: PeerId,
    /// Where this cosigner accepts QUIC connections from its peers.
    pub listen: SocketAddr,
    /// Every other cosigner of the cluster.
    pub peers: Vec<PeerAddr>,
    /// Cosigners being added, not members yet: their certificates pass the handshake (so
    /// they are told apart from strangers), but their connections are closed at once,
    /// never served, and never dialed. A ceremony that includes them lists them in `peers`.
    pub joining: Vec<PeerAddr>,
    /// This cosigner's certificate and key, and the cluster CA if configured.
    pub tls: TlsPaths,
    /// Source networks handshakes are accepted from besides the peers' resolved addresses.
    pub allowed_sources: Vec<IpNet>,
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
    /// We had too many requests in flight with the peer; it did not queue this one.
    Busy,
    /// The stream was given up (code 0): the requester's deadline passed, or it was dropped.
    Cancelled,
    /// A code this version does not know (a newer peer's).
    Other(u64),
}

impl ResetReason {
    fn from_code(c: VarInt) -> ResetReason {
        match u32::try_from(c.into_inner()) {
            Ok(code::BAD_FRAME) => ResetReason::BadFrame,
            Ok(code::HANDLER_GAVE_UP) => ResetReason::HandlerGaveUp,
            Ok(code::BAD_RESPONSE) => ResetReason::BadResponse,
            Ok(code::BUSY) => ResetReason::Busy,
            Ok(code::CANCELLED) => ResetReason::Cancelled,
            _ => ResetReason::Other(c.into_inner()),
        }
    }
}

/// Why a request to a peer, or the transport itself, failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The TLS material cannot be loaded or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The cluster settings cannot make a transport; says which and why.
    #[error("cluster config: {0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen for cluster peers on {addr}: {error}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// What the bind failed with.
        error: std::io::Error,
    },
    /// A request named a cosigner that is not a configured peer.
    #[error("cosigner {0} is not a configured peer")]
    UnknownPeer(PeerId),
    /// The peer did not answer within the request's deadline.
    #[error("request to cosigner {peer} timed out after {timeout:?}")]
    Timeout {
        /// The peer asked.
        peer: PeerId,
        /// The deadline it missed.
        timeout: Duration,
    },
    /// The peer's answer was not a valid frame.
    #[error("request to cosigner {peer}: {source}")]
    Wire {
        /// The peer that answered.
        peer: PeerId,
        /// What is wrong with the frame.
        source: WireError,
    },
    /// The peer reset the request stream instead of answering.
    #[error("cosigner {peer} reset the request: {reason:?}")]
    Rejected {
        /// The peer that reset it.
        peer: PeerId,
        /// The reset code, as the peer gave it.
        reason: ResetReason,
    },
    /// The connection the request went over ended.
    #[error("connection to cosigner {peer} lost: {source}")]
    ConnectionLost {
        /// The peer it was to.
        peer: PeerId,
        /// Why quinn says it ended.
        source: quinn::ConnectionError,
    },
    /// The request stream failed before an answer was read.
    #[error("stream to cosigner {peer} failed: {detail}")]
    Stream {
        /// The peer it was to.
        peer: PeerId,
        /// What went wrong with the stream.
        detail: String,
    },
    /// The transport was shut down while the request was open.
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
    /// This process, as our hellos announce it.
    instance: InstanceId,
    endpoint: Endpoint,
    client_config: quinn::ClientConfig,
    pins: PeerPins,
    peers: BTreeMap<PeerId, Arc<Peer>>,
    handler: watch::Sender<Option<ErasedHandler>>,
    shutdown: watch::Sender<bool>,
    /// Incoming handshakes in progress, all sources together.
    handshakes: Arc<Semaphore>,
    source_slots: Arc<SourceSlots>,
    sources: AllowedSources,
    notices: notices::Notices,
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
            let peer = Arc::new(Peer::new(p.id, p.address.clone(), fingerprint));
            if peers.insert(p.id, peer).is_some() {
                return Err(ClusterError::Config(format!(
                    "peer {} is listed twice",
                    p.id
                )));
            }
        }
        for j in &cfg.joining {
            let fingerprint = j.cert_sha256.to_ascii_lowercase();
            if j.id == cfg.id
                || peers.contains_key(&j.id)
                || own_fingerprint.as_deref() == Some(fingerprint.as_str())
                || peers.values().any(|q| q.fingerprint == fingerprint)
            {
                return Err(ClusterError::Config(format!(
                    "joining cosigner {} has the ID or certificate of a member",
                    j.id
                )));
            }
        }
        let pins = PeerPins::new(
            peers
                .values()
                .map(|p| (p.id, p.fingerprint.clone()))
                .chain(cfg.joining.iter().map(|j| (j.id, j.cert_sha256.clone()))),
        );
        let endpoint =
            Endpoint::server(identity.server_config(&pins)?, cfg.listen).map_err(|error| {
                ClusterError::Bind {
                    addr: cfg.listen,
                    error,
                }
            })?;
        let inner = Arc::new(Inner {
            id: cfg.id,
            instance: InstanceId::random(),
            endpoint,
            client_config: identity.client_config(&pins)?,
            pins,
            peers,
            handler: watch::Sender::new(None),
            shutdown: watch::Sender::new(false),
            handshakes: Arc::new(Semaphore::new(super::tls::MAX_INCOMING)),
            source_slots: Arc::new(SourceSlots::default()),
            sources: AllowedSources::new(cfg.allowed_sources.clone()),
            notices: notices::Notices::new(),
        });
        info!(
            id = inner.id,
            instance = %inner.instance,
            listen = %inner.endpoint.local_addr().map_or(cfg.listen, |a| a),
            "cluster transport listening"
        );
        // Literal addresses are known now; names resolve in the refresh loop's first round.
        for peer in inner.peers.values() {
            if let Ok(addr) = peer.address.parse::<SocketAddr>() {
                inner.sources.record(peer.id, &[addr]);
            }
        }
        tokio::spawn(sources::refresh_loop(inner.clone()));
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

    /// The round-trip time quinn measures on the live connection to `peer`.
    pub fn rtt(&self, peer: PeerId) -> Option<Duration> {
        self.inner.peers.get(&peer)?.live().map(|l| l.conn.rtt())
    }

    /// This process's instance id, as its hellos announce it.
    pub fn instance_id(&self) -> InstanceId {
        self.inner.instance
    }

    /// What the transport knows about `peer` now; `None` if it is not a configured peer.
    pub fn peer_status(&self, peer: PeerId) -> Option<PeerStatus> {
        let peer = self.inner.peers.get(&peer)?;
        let links = peer.live_links();
        let current = links
            .last()
            .map(|l| l.health.snapshot())
            .unwrap_or_default();
        Some(PeerStatus {
            connected: !links.is_empty(),
            connections: links.len(),
            instance: links.last().map(|l| l.instance),
            last_heard: links
                .iter()
                .filter_map(|l| l.health.snapshot().last_heard)
                .max(),
            rtt_latest: current.rtt_latest,
            rtt_smoothed: current.rtt_smoothed,
            rtt_samples: current.rtt_samples,
            duplicate: peer.duplicate(),
        })
    }

    /// Whether two or more live processes hold `peer`'s identity, and where they are. While
    /// they do, nothing should be signed with or for it.
    pub fn duplicate(&self, peer: PeerId) -> Option<Duplicate> {
        self.inner.peers.get(&peer)?.duplicate()
    }

    /// Logs (at a bounded rate) that `peer` refused us as one of two live processes with our
    /// identity: `reason` is its refusal, naming both addresses.
    pub fn report_twin(&self, peer: PeerId, reason: &str) {
        self.inner
            .notices
            .note(notices::Notice::Twin(peer), || reason.to_string());
    }

    /// What happened to incoming handshakes and requests since start.
    pub fn stats(&self) -> TransportStats {
        self.inner.notices.stats()
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

/// One peer as the transport sees it: [`Cluster::peer_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Whether a live connection to the peer carries our requests now.
    pub connected: bool,
    /// Live connections (at most one each way, plus a newcomer being told apart).
    pub connections: usize,
    /// The instance behind the connection that carries our requests.
    pub instance: Option<InstanceId>,
    /// When anything last arrived from the peer on any connection (heartbeats included).
    pub last_heard: Option<std::time::Instant>,
    /// Heartbeat round trips on the connection that carries our requests.
    pub rtt_latest: Option<Duration>,
    /// The smoothed heartbeat round trip on that connection, as QUIC estimates it.
    pub rtt_smoothed: Option<Duration>,
    /// Samples so far on that connection: a poller tells a new one by the count.
    pub rtt_samples: u64,
    /// Two or more live instances of the peer, if so.
    pub duplicate: Option<Duplicate>,
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
                ca: Some(d.join("ca.pem")),
            };
            std::fs::write(&tls.cert, &issued.identities[me].cert_pem).unwrap();
            std::fs::write(&tls.key, &issued.identities[me].key_pem).unwrap();
            // A cosigner refuses a TLS key others can read.
            std::fs::set_permissions(
                &tls.key,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            std::fs::write(tls.ca.as_ref().unwrap(), &issued.ca_cert_pem).unwrap();
            let cfg = ClusterConfig {
                id: me as PeerId + 1,
                listen: addrs[me],
                peers: vec![PeerAddr {
                    id: other as PeerId + 1,
                    address: addrs[other].to_string(),
                    cert_sha256: issued.identities[other].cert_sha256.clone(),
                }],
                joining: Vec::new(),
                tls,
                allowed_sources: Vec::new(),
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
