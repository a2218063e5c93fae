//! The node's connection side: a listener that accepts one signer at a time, runs the
//! SecretConnection handshake over TCP as a CometBFT node does (random or seeded identity,
//! any signer accepted unless one is pinned) or, over a Unix socket, none (CometBFT's
//! `UnixListener` speaks the privval messages as they are), and sends requests with
//! CometBFT's deadlines and `RetrySignerClient` semantics (transport failures retried,
//! possibly on a new connection; a RemoteSignerError is an answer, hence final).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use tendermint_p2p::secret_connection::{SecretConnection, Version};

use crate::report::ConnStats;
use crate::wire::{self, Kind, MsgReader, Protocol, Request, Response, WireError};
use crate::Listener;

/// How often a non-blocking accept is re-polled while waiting for a signer.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// Most distinct signer IDs remembered for the report.
const MAX_SIGNER_IDS: usize = 16;

/// The node's timing and identity parameters (CometBFT defaults in [`NodeConfig::new`]).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Ed25519 seed of the node's privval identity; random per start if `None`.
    pub node_key_seed: Option<[u8; 32]>,
    /// Only this signer node ID (lowercase hex) is accepted, if set.
    pub expect_signer_id: Option<String>,
    /// Accept + handshake deadline (`defaultTimeoutAcceptSeconds` = 3 s).
    pub accept_timeout: Duration,
    /// Per read/write deadline (`defaultTimeoutReadWriteSeconds` = 5 s).
    pub read_write_timeout: Duration,
    /// `RetrySignerClient` attempts (50) and pause between them (100 ms).
    pub retries: u32,
    pub retry_delay: Duration,
    pub stop: Arc<AtomicBool>,
}

impl NodeConfig {
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Self {
            node_key_seed: None,
            expect_signer_id: None,
            accept_timeout: Duration::from_secs(3),
            read_write_timeout: Duration::from_secs(5),
            retries: 50,
            retry_delay: Duration::from_millis(100),
            stop,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("no signer connected within {0:?}")]
    NoSigner(Duration),
    #[error("stopped")]
    Stopped,
    #[error("listener: {0}")]
    Listener(io::Error),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("unexpected response {0}")]
    WrongType(String),
}

impl NodeError {
    /// Would `RetrySignerClient` try again?
    fn retryable(&self) -> bool {
        match self {
            Self::NoSigner(_) | Self::WrongType(_) | Self::Listener(_) => true,
            Self::Wire(WireError::NotInProtocol(..)) | Self::Stopped => false,
            Self::Wire(_) => true,
        }
    }

    /// A stable short name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoSigner(_) => "no_signer",
            Self::Stopped => "stopped",
            Self::Listener(_) => "listener",
            Self::Wire(_) => "transport",
            Self::WrongType(_) => "wrong_response_type",
        }
    }
}

/// An answered request.
#[derive(Debug)]
pub struct Answer {
    pub response: Response,
    /// Round trip of the attempt that got the answer.
    pub rtt: Duration,
    /// From the first attempt to the answer, including retries and reconnects.
    pub total: Duration,
    pub attempts: u32,
    /// Attempts answered with the wrong message type (a signer bug even if a retry worked).
    pub wrong_types: u32,
}

/// A request that got no usable answer.
#[derive(Debug)]
pub struct Failed {
    /// The last attempt's error.
    pub error: NodeError,
    pub total: Duration,
    pub attempts: u32,
    pub wrong_types: u32,
}

/// What a signer's messages travel in.
enum Stream {
    Secret(Box<SecretConnection<TcpStream>>),
    Plain(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Secret(sc) => sc.read(buf),
            Stream::Plain(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Secret(sc) => sc.write(buf),
            Stream::Plain(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Secret(sc) => sc.flush(),
            Stream::Plain(s) => s.flush(),
        }
    }
}

/// A handle on the connection's socket, to shut it down.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Socket {
    fn shutdown(&self) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(Shutdown::Both),
            Socket::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

struct Conn {
    sc: Stream,
    socket: Socket,
    reader: MsgReader,
}

/// The simulated node's privval endpoint.
pub struct Node {
    listener: Listener,
    cfg: NodeConfig,
    key_seed: [u8; 32],
    conn: Option<Conn>,
    stats: ConnStats,
    signer_ids: Vec<String>,
}

fn describe(resp: &Response) -> String {
    match resp {
        Response::Unexpected(what) => (*what).to_owned(),
        other => format!("{:?}", other.kind()),
    }
}

impl Node {
    pub fn new(listener: Listener, cfg: NodeConfig) -> io::Result<Self> {
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true)?,
            Listener::Unix(l) => l.set_nonblocking(true)?,
        }
        let key_seed = cfg.node_key_seed.unwrap_or_else(|| {
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            seed
        });
        Ok(Self {
            listener,
            cfg,
            key_seed,
            conn: None,
            stats: ConnStats::default(),
            signer_ids: Vec::new(),
        })
    }

    /// The node's privval identity (node ID, lowercase hex).
    pub fn node_id(&self) -> String {
        let key = ed25519_consensus::SigningKey::from(self.key_seed);
        tendermint_p2p::secret_connection::PublicKey::from(&key)
            .peer_id()
            .to_string()
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    pub fn signer_ids(&self) -> &[String] {
        &self.signer_ids
    }

    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    fn stopped(&self) -> bool {
        self.cfg.stop.load(Ordering::Relaxed)
    }

    /// Closes the current connection; the next request accepts a new one.
    pub fn drop_connection(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.socket.shutdown();
            self.stats.drops += 1;
        }
    }

    fn handshake(&mut self, stream: TcpStream, deadline: Instant) -> Result<Conn, String> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err("accept deadline passed".into());
        }
        let setup = |s: &TcpStream| -> io::Result<()> {
            s.set_nonblocking(false)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(remaining))?;
            s.set_write_timeout(Some(remaining))
        };
        setup(&stream).map_err(|e| e.to_string())?;
        let io_half = stream.try_clone().map_err(|e| e.to_string())?;
        let guard = stream.try_clone().map_err(|e| e.to_string())?;

        // Per-call socket timeouts bound each read, not the whole handshake; the watchdog
        // enforces the overall accept deadline by shutting the socket.
        let (done, wait) = mpsc::channel::<()>();
        let watchdog = thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(remaining) {
                let _ = guard.shutdown(Shutdown::Both);
            }
        });
        let key = ed25519_consensus::SigningKey::from(self.key_seed);
        let result = SecretConnection::new(io_half, key, Version::V0_34);
        let _ = done.send(());
        let _ = watchdog.join();
        let sc = result.map_err(|e| format!("handshake: {e}"))?;

        let peer = sc.remote_pubkey().peer_id().to_string();
        if let Some(want) = &self.cfg.expect_signer_id {
            if !want.eq_ignore_ascii_case(&peer) {
                let _ = stream.shutdown(Shutdown::Both);
                self.stats.rejected_signers += 1;
                return Err(format!("signer {peer} is not the expected {want}"));
            }
        }
        if !self.signer_ids.contains(&peer) && self.signer_ids.len() < MAX_SIGNER_IDS {
            self.signer_ids.push(peer);
        }
        let rw = Some(self.cfg.read_write_timeout);
        stream
            .set_read_timeout(rw)
            .and_then(|()| stream.set_write_timeout(rw))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            sc: Stream::Secret(Box::new(sc)),
            socket: Socket::Tcp(stream),
            reader: MsgReader::default(),
        })
    }

    /// A signer on the Unix socket: no handshake, so no signer ID to check or remember.
    fn plain(&mut self, stream: UnixStream) -> Result<Conn, String> {
        if self.cfg.expect_signer_id.is_some() {
            let _ = stream.shutdown(Shutdown::Both);
            self.stats.rejected_signers += 1;
            return Err("a signer on a Unix socket has no ID to check".into());
        }
        let rw = Some(self.cfg.read_write_timeout);
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(rw))
            .and_then(|()| stream.set_write_timeout(rw))
            .map_err(|e| e.to_string())?;
        let socket = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn {
            sc: Stream::Plain(stream),
            socket: Socket::Unix(socket),
            reader: MsgReader::default(),
        })
    }

    /// Makes sure a signer is connected, accepting within the accept deadline.
    fn connect(&mut self) -> Result<(), NodeError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.accept_timeout;
        loop {
            if self.stopped() {
                return Err(NodeError::Stopped);
            }
            let accepted = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Socket::Tcp(s)),
                Listener::Unix(l) => l.accept().map(|(s, _)| Socket::Unix(s)),
            };
            match accepted {
                Ok(socket) => {
                    let conn = match socket {
                        Socket::Tcp(tcp) => self.handshake(tcp, deadline),
                        Socket::Unix(unix) => self.plain(unix),
                    };
                    match conn {
                        Ok(conn) => {
                            self.conn = Some(conn);
                            self.stats.accepted += 1;
                            return Ok(());
                        }
                        Err(_) => self.stats.handshake_failures += 1,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(NodeError::Listener(e)),
            }
            if Instant::now() >= deadline {
                return Err(NodeError::NoSigner(self.cfg.accept_timeout));
            }
            thread::sleep(ACCEPT_POLL);
        }
    }

    /// One attempt: connect if needed, send, await the matching answer.
    fn attempt(
        &mut self,
        protocol: Protocol,
        body: &[u8],
        kind: Kind,
    ) -> Result<(Response, Duration), NodeError> {
        self.connect()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(NodeError::NoSigner(self.cfg.accept_timeout));
        };
        let start = Instant::now();
        let result = wire::write_msg(&mut conn.sc, body)
            .and_then(|()| conn.reader.read_msg(&mut conn.sc))
            .and_then(|bytes| wire::decode_response(protocol, &bytes));
        let rtt = start.elapsed();
        match result {
            Ok(resp) if resp.kind() == Some(kind) => Ok((resp, rtt)),
            Ok(resp) => Err(NodeError::WrongType(describe(&resp))),
            Err(e) => {
                // A half-read message or a timed-out socket cannot be resynchronised.
                self.drop_connection();
                Err(e.into())
            }
        }
    }

    /// Sends a sign or public-key request with `RetrySignerClient` semantics.
    pub fn request(&mut self, protocol: Protocol, req: &Request) -> Result<Answer, Failed> {
        let first = Instant::now();
        let body = wire::encode_request(protocol, req).map_err(|e| Failed {
            error: e.into(),
            total: Duration::ZERO,
            attempts: 0,
            wrong_types: 0,
        })?;
        let retries = self.cfg.retries.max(1);
        let mut wrong_types = 0;
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            match self.attempt(protocol, &body, req.kind()) {
                Ok((response, rtt)) => {
                    self.stats.retries += u64::from(attempts - 1);
                    return Ok(Answer {
                        response,
                        rtt,
                        total: first.elapsed(),
                        attempts,
                        wrong_types,
                    });
                }
                Err(e) => {
                    if matches!(e, NodeError::WrongType(_)) {
                        wrong_types += 1;
                    }
                    if self.stopped() {
                        break NodeError::Stopped;
                    }
                    if !e.retryable() || attempts >= retries {
                        break e;
                    }
                    thread::sleep(self.cfg.retry_delay);
                }
            }
        };
        self.stats.retries += u64::from(attempts - 1);
        Err(Failed {
            error,
            total: first.elapsed(),
            attempts,
            wrong_types,
        })
    }

    /// Pings the connected signer (never retried; a failed ping drops the connection).
    /// `None` when no signer is connected: the node only pings a held connection.
    pub fn ping(&mut self, protocol: Protocol) -> Option<Result<Answer, Failed>> {
        self.conn.as_ref()?;
        let first = Instant::now();
        let body = match wire::encode_request(protocol, &Request::Ping) {
            Ok(b) => b,
            Err(e) => {
                return Some(Err(Failed {
                    error: e.into(),
                    total: Duration::ZERO,
                    attempts: 0,
                    wrong_types: 0,
                }))
            }
        };
        Some(match self.attempt(protocol, &body, Kind::Ping) {
            Ok((response, rtt)) => Ok(Answer {
                response,
                rtt,
                total: first.elapsed(),
                attempts: 1,
                wrong_types: 0,
            }),
            Err(error) => {
                self.drop_connection();
                let wrong_types = u32::from(matches!(error, NodeError::WrongType(_)));
                if wrong_types == 0 {
                    self.stats.ping_failures += 1;
                }
                Err(Failed {
                    error,
                    total: first.elapsed(),
                    attempts: 1,
                    wrong_types,
                })
            }
        })
    }
}
