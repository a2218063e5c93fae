//! Mutual TLS for the cluster: loading a cosigner's identity, building the quinn server and
//! client configurations, and mapping an authenticated connection to a cosigner ID.
//!
//! TLS proves that a peer holds a certificate issued by the cluster CA; the SHA-256 pin from
//! the config then says *which* cosigner it is. Both checks are needed: the CA alone would
//! accept any identity `split-key` ever issued for this cluster (including ones removed from
//! the config), and the pin alone would not bind the key to the handshake.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::RootCertStore;

use super::identity::cert_fingerprint;
use super::wire::MAX_FRAME_LEN;
use super::PeerId;

/// The ALPN protocol of the cluster transport; a peer speaking anything else is refused by
/// the TLS handshake itself ("no application protocol"). Version 2: every connection opens
/// with a hello and carries heartbeat datagrams. Version 3: signing requests carry the key
/// epoch, and key ceremonies (DKG, Horcrux import, refresh) run over the same transport.
pub const ALPN: &[u8] = b"cosigner/3";

/// Keep-alives make a silent peer visible within the idle timeout, so a dead connection is
/// replaced quickly instead of swallowing requests until their deadlines, and a coordinator
/// that lost its quorum learns it (and gives way) within about two seconds. Four keep-alives
/// fit in the timeout, so a lost datagram or two does not end a healthy connection.
pub const KEEP_ALIVE: Duration = Duration::from_millis(500);
/// A connection silent this long is closed; see [`KEEP_ALIVE`] for why it is short.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Concurrent requests a peer may have open on one connection. A coordinator has one request
/// per signing in flight with each participant, plus a commitment refill; a few concurrent
/// signings (two sentries, several chains) need a handful. More wait for stream credit
/// within their own deadline.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// Handshakes in progress at once; bounds what unauthenticated senders can make us hold.
pub const MAX_INCOMING: usize = 64;
/// How long the token of a QUIC Retry proves a client's address. quinn stores the issue
/// time in whole seconds, so a token lives between this less one second and this: two
/// seconds at least, enough for the client's answer and a few retransmissions of it, and
/// little for anyone replaying a captured validated Initial.
pub const RETRY_TOKEN_LIFETIME: Duration = Duration::from_secs(3);

/// Where a cosigner's TLS material lives (paths already resolved against the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// This cosigner's certificate, PEM.
    pub cert: PathBuf,
    /// The private key of `cert`, PEM.
    pub key: PathBuf,
    /// The cluster CA certificate, PEM; every peer's certificate must chain to it.
    pub ca: PathBuf,
}

/// Why the cluster TLS material cannot be loaded or turned into a QUIC configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the read failed with.
        error: std::io::Error,
    },
    /// A file was read but does not hold what it should.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        problem: String,
    },
    /// rustls or quinn refused the configuration; carries their reason.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// A loaded identity: our certificate chain and key, and the cluster CA.
pub struct TlsIdentity {
    /// Our certificate, leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf certificate.
    pub key: PrivateKeyDer<'static>,
    /// The cluster CA certificate peers must chain to.
    pub ca: CertificateDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field(
                "cert_sha256",
                &self.cert_chain.first().map(|c| cert_fingerprint(c)),
            )
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TlsIdentity {
    /// Reads the three PEM files; every error names the file.
    pub fn load(paths: &TlsPaths) -> Result<TlsIdentity, TlsError> {
        let cert_chain = read_certs(&paths.cert)?;
        let mut cas = read_certs(&paths.ca)?;
        if cas.len() != 1 {
            return Err(TlsError::Invalid {
                path: paths.ca.clone(),
                problem: format!("expected exactly one CA certificate, found {}", cas.len()),
            });
        }
        let ca = cas.remove(0);
        let key = {
            // Private to its owner, and read into a buffer wiped on drop.
            let pem = crate::secret_file::read_private(&paths.key, MAX_KEY_FILE_BYTES)
                .map_err(|problem| key_file_error(&paths.key, problem))?;
            rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|error| TlsError::Read {
                    path: paths.key.clone(),
                    error,
                })?
                .ok_or_else(|| TlsError::Invalid {
                    path: paths.key.clone(),
                    problem: "no PEM private key found".into(),
                })?
        };
        Ok(TlsIdentity {
            cert_chain,
            key,
            ca,
        })
    }

    /// Lowercase hex SHA-256 of our leaf certificate.
    pub fn fingerprint(&self) -> Option<String> {
        self.cert_chain.first().map(|c| cert_fingerprint(c))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| TlsError::Config(format!("cluster CA: {e}")))?;
        Ok(Arc::new(roots))
    }

    /// TLS 1.3 only, a client certificate chaining to the cluster CA required, no session
    /// resumption (every connection presents and verifies the full certificate).
    pub fn server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(format!("our certificate and key: {e}")))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.session_storage = Arc::new(NoServerSessionStorage {});
        tls.send_tls13_tickets = 0;
        tls.max_early_data_size = 0;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        config.transport_config(transport_config()?);
        config.max_incoming(MAX_INCOMING);
        config.retry_token_lifetime(RETRY_TOKEN_LIFETIME);
        // Only Retry tokens validate an address: NEW_TOKEN tokens live for weeks and bind
        // only the IP, so a captured Initial carrying one could be replayed.
        let mut tokens = quinn::ValidationTokenConfig::default();
        tokens.sent(0).log(Arc::new(quinn::NoneTokenLog));
        config.validation_token_config(tokens);
        // Incoming data buffered before a handshake completes; a few Initial packets suffice.
        config.incoming_buffer_size(64 * 1024);
        config.incoming_buffer_size_total(MAX_INCOMING as u64 * 16 * 1024);
        Ok(config)
    }

    /// Trusts the cluster CA only and presents our certificate.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(format!("our certificate and key: {e}")))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        tls.enable_early_data = false;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport_config()?);
        config.token_store(Arc::new(quinn::NoneTokenStore));
        Ok(config)
    }
}

fn transport_config() -> Result<Arc<TransportConfig>, TlsError> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| TlsError::Config(e.to_string()))?,
    ));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // Heartbeats are datagrams; nothing else is.
    t.datagram_receive_buffer_size(Some(super::transport::health::DATAGRAM_BUFFER));
    t.datagram_send_buffer_size(super::transport::health::DATAGRAM_BUFFER);
    // One frame plus its header per stream; the connection window caps the sum.
    t.stream_receive_window(VarInt::from_u32(MAX_FRAME_LEN + 64));
    t.receive_window(VarInt::from_u32(4 * 1024 * 1024));
    t.send_window(4 * 1024 * 1024);
    // Peers are usually within a continent; a smaller first guess makes a lost Initial
    // (e.g. sent while the peer was restarting) get retransmitted sooner.
    t.initial_rtt(Duration::from_millis(100));
    Ok(Arc::new(t))
}

/// A PEM private key is a few hundred bytes (a few KiB for RSA); anything much larger is not one.
const MAX_KEY_FILE_BYTES: usize = 64 * 1024;

fn key_file_error(path: &Path, problem: crate::secret_file::SecretFileProblem) -> TlsError {
    match problem {
        crate::secret_file::SecretFileProblem::Read(error) => TlsError::Read {
            path: path.to_path_buf(),
            error,
        },
        other => TlsError::Invalid {
            path: path.to_path_buf(),
            problem: other.to_string(),
        },
    }
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|error| TlsError::Read {
            path: path.to_path_buf(),
            error,
        })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = open(path)?;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.to_path_buf(),
            problem: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

/// TLS alert `unknown_ca` (RFC 8446 §6.2), which rustls sends for a certificate whose
/// chain does not end at the trusted CA.
const ALERT_UNKNOWN_CA: u8 = 48;

/// Whether a handshake failed because one side's certificate is not from the other's
/// cluster CA, sent or received: what a cosigner of another cluster (another split's
/// directory, or another key's cluster on a port this one expects a peer on) looks like.
pub fn is_other_cluster(e: &quinn::ConnectionError) -> bool {
    let code = match e {
        quinn::ConnectionError::TransportError(t) => t.code,
        quinn::ConnectionError::ConnectionClosed(c) => c.error_code,
        _ => return false,
    };
    code == quinn::TransportErrorCode::crypto(ALERT_UNKNOWN_CA)
}

/// The fingerprint of the leaf certificate the peer authenticated with, if any.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().map(|c| cert_fingerprint(c))
}

/// Whether the handshake settled on our ALPN protocol.
pub fn negotiated_alpn(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}

/// Maps pinned certificate fingerprints to cosigner IDs.
#[derive(Clone, Debug)]
pub struct PeerPins {
    pins: Vec<(PeerId, String)>,
}

impl PeerPins {
    /// Pins from `(cosigner, SHA-256 fingerprint in hex)` pairs; the hex may be in either case.
    pub fn new(pins: impl IntoIterator<Item = (PeerId, String)>) -> PeerPins {
        PeerPins {
            pins: pins
                .into_iter()
                .map(|(id, fp)| (id, fp.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// The cosigner a fingerprint belongs to; `None` for anything not in the config.
    pub fn identify(&self, fingerprint: &str) -> Option<PeerId> {
        self.pins
            .iter()
            .find(|(_, fp)| fp == fingerprint)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::identity::issue_cluster;

    fn write_identity(dir: &Path, i: usize) -> TlsPaths {
        let cluster = issue_cluster(2, "t").unwrap();
        let paths = TlsPaths {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&paths.cert, &cluster.identities[i].cert_pem).unwrap();
        std::fs::write(&paths.key, &cluster.identities[i].key_pem).unwrap();
        // A cosigner refuses a TLS key others can read.
        std::fs::set_permissions(
            &paths.key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(&paths.ca, &cluster.ca_cert_pem).unwrap();
        paths
    }

    #[test]
    fn loads_an_issued_identity_and_builds_both_configs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_identity(dir.path(), 1);
        let id = TlsIdentity::load(&paths).unwrap();
        assert_eq!(id.cert_chain.len(), 1);
        id.server_config().unwrap();
        id.client_config().unwrap();
        assert!(!format!("{id:?}").contains("BEGIN"));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = write_identity(dir.path(), 0);
        std::fs::write(&paths.key, "not a key").unwrap();
        let msg = TlsIdentity::load(&paths).unwrap_err().to_string();
        assert!(
            msg.contains("key.pem") && msg.contains("no PEM private key"),
            "{msg}"
        );
        paths.ca = dir.path().join("missing-ca.pem");
        let msg = TlsIdentity::load(&paths).unwrap_err().to_string();
        assert!(msg.contains("missing-ca.pem"), "{msg}");
    }

    #[test]
    fn pins_identify_only_configured_fingerprints() {
        let pins = PeerPins::new([(2, "AB".repeat(32)), (3, "cd".repeat(32))]);
        assert_eq!(pins.identify(&"ab".repeat(32)), Some(2));
        assert_eq!(pins.identify(&"cd".repeat(32)), Some(3));
        assert_eq!(pins.identify(&"ef".repeat(32)), None);
    }
}
