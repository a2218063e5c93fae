//! Mutual TLS for the cluster: loading a cosigner's identity, building the quinn server and
//! client configurations, and mapping an authenticated connection to a cosigner ID.
//!
//! A peer is accepted by its pinned certificate alone: the handshake succeeds exactly when
//! the peer's end-entity certificate (no chain) has one of the configured SHA-256 pins and
//! the peer signs the TLS 1.3 handshake with that certificate's key (checked with the crypto
//! provider's own signature verification), whatever server name was asked for. The pin then
//! says *which* cosigner it is. Anything else is refused with the `unknown_ca` alert, which
//! is what [`is_other_cluster`] recognises.
//!
//! Why no CA chain: a pin names one exact certificate, so once every peer is pinned the
//! cluster CA adds nothing (it would only accept more certificates, e.g. ones `split-key`
//! issued to cosigners since removed, which the pin refuses anyway). And it would stand in the
//! way of a membership change: the CA's key is destroyed by `split-key`, so a cosigner being
//! added cannot get a certificate from it; it makes its own, and every operator pins it. The
//! CA certificate a directory may still name (`cluster_ca`) is read and checked at load, so
//! old directories keep working unchanged, but trusts nothing.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
    /// The cluster CA certificate, PEM, if the directory has one (`split-key` writes it; a
    /// cosigner that enrolled later has none). Checked at load; peers are trusted by pin.
    pub ca: Option<PathBuf>,
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

/// A loaded identity: our certificate and key, and the cluster CA if configured.
pub struct TlsIdentity {
    /// Our certificate: exactly one, since peers pin it and accept no chain.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The private key of the certificate.
    pub key: PrivateKeyDer<'static>,
    /// The cluster CA certificate, if the directory names one; it trusts nothing.
    pub ca: Option<CertificateDer<'static>>,
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
        if cert_chain.len() != 1 {
            return Err(TlsError::Invalid {
                path: paths.cert.clone(),
                problem: format!(
                    "expected exactly one certificate, found {}: peers pin this certificate \
                     and accept no chain",
                    cert_chain.len()
                ),
            });
        }
        let ca = match &paths.ca {
            None => None,
            Some(path) => {
                let mut cas = read_certs(path)?;
                if cas.len() != 1 {
                    return Err(TlsError::Invalid {
                        path: path.clone(),
                        problem: format!(
                            "expected exactly one CA certificate, found {}",
                            cas.len()
                        ),
                    });
                }
                Some(cas.remove(0))
            }
        };
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

    /// The rustls half of [`TlsIdentity::server_config`]: TLS 1.3 only, a client
    /// certificate with one of `pins` required, no session resumption (every connection
    /// presents and verifies the full certificate).
    pub fn server_tls(&self, pins: &PeerPins) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedVerifier::new(pins, &provider));
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
        Ok(tls)
    }

    /// The rustls half of [`TlsIdentity::client_config`]: trusts a server certificate with
    /// one of `pins` only, and presents our certificate.
    pub fn client_tls(&self, pins: &PeerPins) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PinnedVerifier::new(pins, &provider));
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(format!("our certificate and key: {e}")))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        tls.enable_early_data = false;
        Ok(tls)
    }

    /// The QUIC server configuration: [`TlsIdentity::server_tls`] and the transport limits.
    pub fn server_config(&self, pins: &PeerPins) -> Result<quinn::ServerConfig, TlsError> {
        let tls = self.server_tls(pins)?;
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

    /// The QUIC client configuration: [`TlsIdentity::client_tls`] and the transport limits.
    pub fn client_config(&self, pins: &PeerPins) -> Result<quinn::ClientConfig, TlsError> {
        let tls = self.client_tls(pins)?;
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

/// TLS alert `unknown_ca` (RFC 8446 §6.2), which rustls sends for the
/// [`CertificateError::UnknownIssuer`] a [`PinnedVerifier`] refuses with.
const ALERT_UNKNOWN_CA: u8 = 48;

/// Whether a handshake failed because one side's certificate is not pinned by the other,
/// sent or received: what a cosigner of another cluster (another split's
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

/// Maps pinned certificate fingerprints to cosigner IDs: the certificates the handshake
/// accepts, and who each one is.
#[derive(Clone, Debug, Default)]
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

/// Accepts a peer's certificate exactly when it is one of the pinned certificates, alone
/// (no intermediates), and the handshake is signed with its key; used on both sides.
#[derive(Debug)]
struct PinnedVerifier {
    /// Lowercase hex SHA-256 of every accepted DER certificate.
    pins: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pins: &PeerPins, provider: &rustls::crypto::CryptoProvider) -> PinnedVerifier {
        PinnedVerifier {
            pins: pins.pins.iter().map(|(_, fp)| fp.clone()).collect(),
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// `unknown_ca` for anything but one pinned certificate: to the other side, a
    /// certificate we do not pin is one of another cluster.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if intermediates.is_empty() && self.pins.contains(&cert_fingerprint(end_entity)) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// The cluster speaks TLS 1.3 only; the configs offer nothing else, and this is the refusal
/// if a handshake ever got here.
fn no_tls12() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is refused: the cluster speaks TLS 1.3 only".into())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // The pin is the identity; the name asked for adds nothing to it.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
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
            ca: Some(dir.join("ca.pem")),
        };
        std::fs::write(&paths.cert, &cluster.identities[i].cert_pem).unwrap();
        std::fs::write(&paths.key, &cluster.identities[i].key_pem).unwrap();
        // A cosigner refuses a TLS key others can read.
        std::fs::set_permissions(
            &paths.key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(paths.ca.as_ref().unwrap(), &cluster.ca_cert_pem).unwrap();
        paths
    }

    #[test]
    fn loads_an_issued_identity_and_builds_both_configs() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_identity(dir.path(), 1);
        let id = TlsIdentity::load(&paths).unwrap();
        assert_eq!(id.cert_chain.len(), 1);
        let pins = PeerPins::default();
        id.server_config(&pins).unwrap();
        id.client_config(&pins).unwrap();
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
        paths.ca = Some(dir.path().join("missing-ca.pem"));
        let msg = TlsIdentity::load(&paths).unwrap_err().to_string();
        assert!(msg.contains("missing-ca.pem"), "{msg}");
    }

    /// A self-signed identity, as a cosigner that enrolled makes its own (no cluster CA).
    fn self_signed() -> TlsIdentity {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["cosigner-4".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        TlsIdentity {
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            ca: None,
        }
    }

    fn pins_of(ids: &[&TlsIdentity]) -> PeerPins {
        PeerPins::new(
            ids.iter()
                .zip(1..)
                .map(|(id, n)| (n, id.fingerprint().unwrap())),
        )
    }

    /// Runs a handshake in memory; each side's first error, if any.
    fn handshake(
        client: rustls::ClientConfig,
        server: rustls::ServerConfig,
    ) -> (Option<rustls::Error>, Option<rustls::Error>) {
        // Not a server name any certificate here holds: the pin alone decides.
        let name = ServerName::try_from("not-the-name").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let (mut ce, mut se) = (None, None);
        // Rounds enough for the handshake and an alert after it (a client certificate is
        // refused after the client has finished).
        for _ in 0..8 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() && se.is_none() && s.read_tls(&mut &buf[..]).is_ok() {
                if let Err(e) = s.process_new_packets() {
                    se = Some(e);
                }
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() && ce.is_none() && c.read_tls(&mut &buf[..]).is_ok() {
                if let Err(e) = c.process_new_packets() {
                    ce = Some(e);
                }
            }
        }
        if ce.is_none() && se.is_none() {
            assert!(!c.is_handshaking() && !s.is_handshaking());
        }
        (ce, se)
    }

    fn unknown_ca() -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    }

    fn alert_unknown_ca() -> rustls::Error {
        rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
    }

    #[test]
    fn pinned_self_signed_certificates_handshake_both_ways() {
        let (a, b) = (self_signed(), self_signed());
        let pins = pins_of(&[&a, &b]);
        for (client, server) in [(&a, &b), (&b, &a)] {
            let (ce, se) = handshake(
                client.client_tls(&pins).unwrap(),
                server.server_tls(&pins).unwrap(),
            );
            assert!(ce.is_none() && se.is_none(), "{ce:?} {se:?}");
        }
    }

    #[test]
    fn an_unpinned_certificate_is_refused_with_unknown_ca_even_from_the_cluster_ca() {
        let dir = tempfile::tempdir().unwrap();
        let cluster_member = TlsIdentity::load(&write_identity(dir.path(), 0)).unwrap();
        assert!(cluster_member.ca.is_some());
        let server = self_signed();
        // The server pins only itself: the client's certificate is the cluster CA's, unpinned.
        let (ce, se) = handshake(
            cluster_member
                .client_tls(&pins_of(&[&server, &cluster_member]))
                .unwrap(),
            server.server_tls(&pins_of(&[&server])).unwrap(),
        );
        assert_eq!(se, Some(unknown_ca()));
        assert_eq!(ce, Some(alert_unknown_ca()));
        // The other way: the client does not pin the server.
        let (ce, se) = handshake(
            cluster_member
                .client_tls(&pins_of(&[&cluster_member]))
                .unwrap(),
            server
                .server_tls(&pins_of(&[&server, &cluster_member]))
                .unwrap(),
        );
        assert_eq!(ce, Some(unknown_ca()));
        assert_eq!(se, Some(alert_unknown_ca()));
    }

    #[test]
    fn a_pinned_certificate_with_the_wrong_key_is_refused() {
        let (pinned, other, server) = (self_signed(), self_signed(), self_signed());
        let pins = pins_of(&[&pinned, &server]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let wrong_key = provider
            .key_provider
            .load_private_key(other.key.clone_key())
            .unwrap();
        let certified = rustls::sign::CertifiedKey::new(pinned.cert_chain.clone(), wrong_key);
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(&pins, &provider)))
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        let (ce, se) = handshake(client, server.server_tls(&pins).unwrap());
        assert!(
            matches!(
                se,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                ))
            ),
            "{se:?}"
        );
        assert!(ce.is_some());
    }

    #[test]
    fn a_certificate_with_a_chain_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_identity(dir.path(), 0);
        let mut pem = std::fs::read_to_string(&paths.cert).unwrap();
        pem.push_str(&std::fs::read_to_string(paths.ca.as_ref().unwrap()).unwrap());
        std::fs::write(&paths.cert, pem).unwrap();
        let msg = TlsIdentity::load(&paths).unwrap_err().to_string();
        assert!(msg.contains("exactly one certificate"), "{msg}");
    }

    #[test]
    fn pins_identify_only_configured_fingerprints() {
        let pins = PeerPins::new([(2, "AB".repeat(32)), (3, "cd".repeat(32))]);
        assert_eq!(pins.identify(&"ab".repeat(32)), Some(2));
        assert_eq!(pins.identify(&"cd".repeat(32)), Some(3));
        assert_eq!(pins.identify(&"ef".repeat(32)), None);
    }
}
