//! SecretConnection (CometBFT `p2p/conn`, protocol v0.33+) on tokio: the authenticated
//! handshake and the encrypted, framed byte stream the privval protocol runs inside.
//!
//! The cryptographic pieces are pure and live in submodules (`handshake`: messages and key
//! schedule, `frame`: sealing, `nonce`: counters); this module only moves bytes. Any error
//! on a connection, including a cancelled read or write, leaves it unusable
//! ([`SecretConnectionError::Poisoned`]): after a partial frame or a failed tag the two
//! sides' nonce counters can no longer be trusted to agree.

mod frame;
mod handshake;
mod nonce;

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use x25519_dalek::{EphemeralSecret, PublicKey as X25519Public};

pub use frame::{DATA_MAX_LEN, PLAINTEXT_FRAME_LEN, SEALED_FRAME_LEN};

use frame::{FrameOpener, FrameSealer, SealedFrame};
use handshake::{SessionSecrets, EPH_MSG_LEN};

/// Frames sealed into one buffer before it is written: enough for the largest privval
/// message a node accepts (10 KiB) in a single write, while bounding the send buffer.
const MAX_FRAMES_PER_WRITE: usize = 16;

/// Longest AuthSigMessage we read: a one-byte varint length. Every key type CometBFT has
/// (Ed25519 103 bytes, secp256k1 104) fits; we only accept Ed25519 anyway.
const MAX_AUTH_SIG_BODY_LEN: usize = 0x7f;

/// Why a SecretConnection handshake or transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretConnectionError {
    /// Reading or writing the socket failed.
    #[error("SecretConnection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The node closed the connection.
    #[error("peer closed the connection")]
    Closed,
    /// The node's ephemeral key is of low order, so the shared secret would be predictable.
    #[error("peer sent a low-order ephemeral key (or the shared secret is zero)")]
    LowOrderKey,
    /// A handshake message does not decode; says which.
    #[error("malformed handshake: {0}")]
    MalformedHandshake(&'static str),
    /// The node's identity key is not Ed25519.
    #[error("peer identity key is not Ed25519")]
    UnsupportedKeyType,
    /// The node's signature over the challenge does not verify: it does not hold the key it claims.
    #[error("peer's signature over the handshake challenge does not verify")]
    BadSignature,
    /// A frame's Poly1305 tag does not verify: it was altered or the keys disagree.
    #[error("frame failed authentication")]
    TagMismatch,
    /// A frame declares more data than a frame holds.
    #[error("frame declares {0} data bytes, more than 1024")]
    FrameTooLong(usize),
    /// The frame nonce counter ran out; the connection must be replaced.
    #[error("frame nonce counter exhausted")]
    NonceExhausted,
    /// ChaCha20-Poly1305 refused to seal a frame.
    #[error("AEAD sealing failed")]
    Seal,
    /// An earlier error or a cancelled read or write left the connection unusable.
    #[error("connection unusable after an earlier error or cancelled operation")]
    Poisoned,
}

/// The CometBFT node ID of `pubkey`: lowercase hex of the first 20 bytes of its SHA-256.
pub fn node_id(pubkey: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(pubkey.as_bytes())[..20])
}

/// An authenticated, encrypted connection to one peer.
pub struct SecretConnection<S> {
    channel: Channel<S>,
    remote_pubkey: VerifyingKey,
}

impl<S> fmt::Debug for SecretConnection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretConnection")
            .field("remote_node_id", &node_id(&self.remote_pubkey))
            .field("poisoned", &self.channel.poisoned)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> SecretConnection<S> {
    /// Runs the handshake over `io` (caller wraps it in a timeout).
    ///
    /// Dialer and listener run the same steps. Any authenticated Ed25519 peer is accepted;
    /// pinning a node ID is up to the caller via [`Self::remote_node_id`].
    pub async fn handshake(
        mut io: S,
        identity: &SigningKey,
    ) -> Result<Self, SecretConnectionError> {
        let local_secret = EphemeralSecret::random_from_rng(OsRng);
        let local_eph = X25519Public::from(&local_secret).to_bytes();

        // Go sends and receives concurrently; sending first is equivalent because both our
        // messages (35 bytes, then one 1044-byte frame) fit any socket buffer, so neither side
        // blocks on a write before reading.
        io.write_all(&handshake::encode_ephemeral(&local_eph))
            .await?;
        io.flush().await?;
        let mut msg = [0u8; EPH_MSG_LEN];
        io.read_exact(&mut msg[..1]).await.map_err(read_error)?;
        if !handshake::ephemeral_len_byte_ok(msg[0]) {
            return Err(SecretConnectionError::MalformedHandshake(
                "first message is not a 34-byte ephemeral key message",
            ));
        }
        io.read_exact(&mut msg[1..]).await.map_err(read_error)?;
        let remote_eph = handshake::parse_ephemeral(&msg)?;
        let secrets = handshake::agree(local_secret, &local_eph, &remote_eph)?;

        let mut channel = Channel::new(io, &secrets);
        let signature = identity.sign(&secrets.challenge);
        channel
            .write_all(&handshake::encode_auth_sig(
                &identity.verifying_key(),
                &signature,
            ))
            .await?;

        let mut auth = [0u8; 1 + MAX_AUTH_SIG_BODY_LEN];
        channel.read_exact(&mut auth[..1]).await?;
        let body_len = usize::from(auth[0]);
        if body_len > MAX_AUTH_SIG_BODY_LEN {
            return Err(SecretConnectionError::MalformedHandshake(
                "AuthSigMessage longer than any supported key type",
            ));
        }
        channel.read_exact(&mut auth[1..=body_len]).await?;
        let auth = &auth[..=body_len];
        let (remote_pubkey, remote_sig) = handshake::parse_auth_sig(auth)?;
        handshake::verify_peer(&remote_pubkey, &remote_sig, &secrets.challenge)?;

        Ok(Self {
            channel,
            remote_pubkey,
        })
    }

    /// The peer's authenticated Ed25519 identity key.
    pub fn remote_pubkey(&self) -> &VerifyingKey {
        &self.remote_pubkey
    }

    /// Lowercase hex of the first 20 bytes of SHA-256(remote pubkey) (the CometBFT node ID).
    pub fn remote_node_id(&self) -> String {
        node_id(&self.remote_pubkey)
    }

    /// Reads exactly `buf.len()` plaintext bytes (buffering the rest of a frame).
    ///
    /// Not cancel-safe: a read dropped before completion poisons the connection.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SecretConnectionError> {
        self.channel.read_exact(buf).await
    }

    /// Seals `data` into as many frames as needed and writes them with one write where
    /// possible. Writing nothing sends nothing (there are no empty frames).
    ///
    /// Not cancel-safe: a write dropped before completion poisons the connection.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), SecretConnectionError> {
        self.channel.write_all(data).await
    }
}

/// The encrypted frame stream under a SecretConnection, before and after authentication.
struct Channel<S> {
    io: S,
    sealer: FrameSealer,
    opener: FrameOpener,
    /// The last frame read; after opening, its plaintext data lies at `recv_pos..recv_end`.
    recv_frame: Box<SealedFrame>,
    recv_pos: usize,
    recv_end: usize,
    /// Reused across writes; never more than `MAX_FRAMES_PER_WRITE` frames.
    send_buf: Vec<SealedFrame>,
    /// Set while an operation is in flight and left set if it fails or is dropped.
    poisoned: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Channel<S> {
    fn new(io: S, secrets: &SessionSecrets) -> Self {
        Self::from_keys(io, &secrets.send_key, &secrets.recv_key)
    }

    fn from_keys(io: S, send_key: &[u8; 32], recv_key: &[u8; 32]) -> Self {
        Self {
            io,
            sealer: FrameSealer::new(send_key),
            opener: FrameOpener::new(recv_key),
            recv_frame: Box::new([0u8; SEALED_FRAME_LEN]),
            recv_pos: 0,
            recv_end: 0,
            send_buf: Vec::new(),
            poisoned: false,
        }
    }

    fn begin(&mut self) -> Result<(), SecretConnectionError> {
        if self.poisoned {
            return Err(SecretConnectionError::Poisoned);
        }
        self.poisoned = true;
        Ok(())
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SecretConnectionError> {
        self.begin()?;
        let mut filled = 0;
        while filled < buf.len() {
            if self.recv_pos == self.recv_end {
                self.io
                    .read_exact(self.recv_frame.as_mut_slice())
                    .await
                    .map_err(read_error)?;
                let data = self.opener.open(&mut self.recv_frame)?;
                self.recv_pos = data.start;
                self.recv_end = data.end;
                continue;
            }
            let n = (buf.len() - filled).min(self.recv_end - self.recv_pos);
            buf[filled..filled + n]
                .copy_from_slice(&self.recv_frame[self.recv_pos..self.recv_pos + n]);
            filled += n;
            self.recv_pos += n;
        }
        self.poisoned = false;
        Ok(())
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), SecretConnectionError> {
        self.begin()?;
        for batch in data.chunks(DATA_MAX_LEN * MAX_FRAMES_PER_WRITE) {
            let frames = batch.len().div_ceil(DATA_MAX_LEN);
            self.send_buf.resize(frames, [0u8; SEALED_FRAME_LEN]);
            for (chunk, out) in batch.chunks(DATA_MAX_LEN).zip(self.send_buf.iter_mut()) {
                self.sealer.seal(chunk, out)?;
            }
            self.io
                .write_all(self.send_buf[..frames].as_flattened())
                .await?;
        }
        self.io.flush().await?;
        self.poisoned = false;
        Ok(())
    }
}

/// A clean EOF mid-message means the peer hung up; report it as such.
fn read_error(err: std::io::Error) -> SecretConnectionError {
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        SecretConnectionError::Closed
    } else {
        SecretConnectionError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{duplex, DuplexStream};
    use tokio::time::timeout;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    async fn connected_pair() -> (
        SecretConnection<DuplexStream>,
        SecretConnection<DuplexStream>,
        SigningKey,
        SigningKey,
    ) {
        let (a_io, b_io) = duplex(64 * 1024);
        let a_key = SigningKey::generate(&mut OsRng);
        let b_key = SigningKey::generate(&mut OsRng);
        let (a, b) = timeout(LIMIT, async {
            tokio::join!(
                SecretConnection::handshake(a_io, &a_key),
                SecretConnection::handshake(b_io, &b_key)
            )
        })
        .await
        .unwrap();
        (a.unwrap(), b.unwrap(), a_key, b_key)
    }

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ salt)
            .collect()
    }

    /// Sessions are spawned onto the runtime, so every future here must be `Send`.
    #[allow(dead_code)]
    fn futures_are_send(io: tokio::net::TcpStream, key: &SigningKey) {
        fn assert_send<T: Send>(_: &T) {}
        let handshake = SecretConnection::handshake(io, key);
        assert_send(&handshake);
        async fn use_conn(mut c: SecretConnection<tokio::net::TcpStream>) {
            let mut buf = [0u8; 4];
            let _ = c.read_exact(&mut buf).await;
            let _ = c.write_all(&buf).await;
        }
        fn check(c: SecretConnection<tokio::net::TcpStream>) {
            assert_send(&use_conn(c));
        }
        let _ = check;
    }

    #[test]
    fn node_id_is_truncated_sha256_hex() {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let id = node_id(&key);
        assert_eq!(id.len(), 40);
        assert_eq!(id, hex::encode(&Sha256::digest(key.as_bytes())[..20]));
        assert_eq!(id, id.to_lowercase());
    }

    #[tokio::test]
    async fn two_of_ours_authenticate_each_other_and_exchange_data() {
        let (mut a, mut b, a_key, b_key) = connected_pair().await;
        assert_eq!(a.remote_pubkey(), &b_key.verifying_key());
        assert_eq!(b.remote_pubkey(), &a_key.verifying_key());
        assert_eq!(a.remote_node_id(), node_id(&b_key.verifying_key()));

        for len in [0, 1, 1023, 1024, 1025, 5000, 40_000] {
            let msg = pattern(len, 0xa5);
            let mut got = vec![0u8; len];
            timeout(LIMIT, async {
                let (w, r) = tokio::join!(a.write_all(&msg), b.read_exact(&mut got));
                w.unwrap();
                r.unwrap();
            })
            .await
            .unwrap();
            assert_eq!(got, msg, "a -> b, {len} bytes");

            let msg = pattern(len, 0x3c);
            let mut got = vec![0u8; len];
            timeout(LIMIT, async {
                let (w, r) = tokio::join!(b.write_all(&msg), a.read_exact(&mut got));
                w.unwrap();
                r.unwrap();
            })
            .await
            .unwrap();
            assert_eq!(got, msg, "b -> a, {len} bytes");
        }
    }

    #[tokio::test]
    async fn reads_may_split_and_join_frames() {
        let (mut a, mut b, _, _) = connected_pair().await;
        // Two writes, read back in pieces that straddle both frame and write boundaries.
        let first = pattern(700, 1);
        let second = pattern(900, 2);
        a.write_all(&first).await.unwrap();
        a.write_all(&second).await.unwrap();
        let mut whole = Vec::new();
        for piece in [1usize, 500, 400, 699] {
            let mut buf = vec![0u8; piece];
            timeout(LIMIT, b.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            whole.extend_from_slice(&buf);
        }
        assert_eq!(whole, [first, second].concat());
    }

    #[tokio::test]
    async fn writes_are_whole_1044_byte_frames() {
        let (a_io, mut raw) = duplex(64 * 1024);
        let mut ch = Channel::from_keys(a_io, &[1; 32], &[2; 32]);
        ch.write_all(&pattern(2049, 0)).await.unwrap();
        drop(ch);
        let mut wire = Vec::new();
        raw.read_to_end(&mut wire).await.unwrap();
        assert_eq!(wire.len(), 3 * SEALED_FRAME_LEN);
        // Opening them with the peer's view of the keys yields 1024 + 1024 + 1 bytes.
        let mut opener = FrameOpener::new(&[1; 32]);
        let mut lens = Vec::new();
        for frame in wire.chunks_exact(SEALED_FRAME_LEN) {
            let mut frame: SealedFrame = frame.try_into().unwrap();
            lens.push(opener.open(&mut frame).unwrap().len());
        }
        assert_eq!(lens, [1024, 1024, 1]);
    }

    /// A channel reading from a raw peer that seals frames with the matching key.
    fn channel_with_raw_peer() -> (Channel<DuplexStream>, DuplexStream, FrameSealer) {
        let (ours, theirs) = duplex(64 * 1024);
        let ch = Channel::from_keys(ours, &[1; 32], &[2; 32]);
        (ch, theirs, FrameSealer::new(&[2; 32]))
    }

    #[tokio::test]
    async fn flipped_tag_byte_is_refused_and_poisons_the_connection() {
        let (ch, mut raw, mut sealer) = channel_with_raw_peer();
        let mut conn = SecretConnection {
            channel: ch,
            remote_pubkey: SigningKey::from_bytes(&[3; 32]).verifying_key(),
        };
        let mut frame = [0u8; SEALED_FRAME_LEN];
        sealer.seal(b"hello", &mut frame).unwrap();
        frame[SEALED_FRAME_LEN - 1] ^= 0x01;
        raw.write_all(&frame).await.unwrap();
        let mut buf = [0u8; 5];
        let err = timeout(LIMIT, conn.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, SecretConnectionError::TagMismatch), "{err}");

        // A valid frame arriving afterwards is not read: the connection stays dead.
        sealer.seal(b"world", &mut frame).unwrap();
        raw.write_all(&frame).await.unwrap();
        assert!(matches!(
            conn.read_exact(&mut buf).await,
            Err(SecretConnectionError::Poisoned)
        ));
        assert!(matches!(
            conn.write_all(b"x").await,
            Err(SecretConnectionError::Poisoned)
        ));
    }

    #[tokio::test]
    async fn frame_declaring_1025_bytes_is_refused() {
        use chacha20poly1305::aead::Aead;
        use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit};

        let (mut ch, mut raw, _) = channel_with_raw_peer();
        let mut plaintext = [0u8; PLAINTEXT_FRAME_LEN];
        plaintext[..4].copy_from_slice(&1025u32.to_le_bytes());
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&[2; 32]));
        let sealed = cipher
            .encrypt(&nonce::nonce_bytes(0).into(), plaintext.as_slice())
            .unwrap();
        raw.write_all(&sealed).await.unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(
            timeout(LIMIT, ch.read_exact(&mut buf)).await.unwrap(),
            Err(SecretConnectionError::FrameTooLong(1025))
        ));
        assert!(matches!(
            ch.read_exact(&mut buf).await,
            Err(SecretConnectionError::Poisoned)
        ));
    }

    #[tokio::test]
    async fn cancelled_read_poisons_the_connection() {
        let (mut ch, mut raw, mut sealer) = channel_with_raw_peer();
        // Half a frame arrives, then the caller's timeout fires.
        let mut frame = [0u8; SEALED_FRAME_LEN];
        sealer.seal(b"hello", &mut frame).unwrap();
        raw.write_all(&frame[..500]).await.unwrap();
        let mut buf = [0u8; 5];
        assert!(timeout(Duration::from_millis(50), ch.read_exact(&mut buf))
            .await
            .is_err());
        raw.write_all(&frame[500..]).await.unwrap();
        assert!(matches!(
            ch.read_exact(&mut buf).await,
            Err(SecretConnectionError::Poisoned)
        ));
    }

    #[tokio::test]
    async fn peer_hanging_up_is_closed() {
        let (mut ch, raw, _) = channel_with_raw_peer();
        drop(raw);
        let mut buf = [0u8; 1];
        assert!(matches!(
            ch.read_exact(&mut buf).await,
            Err(SecretConnectionError::Closed)
        ));

        let (io, raw) = duplex(1024);
        drop(raw);
        let key = SigningKey::generate(&mut OsRng);
        let err = timeout(LIMIT, SecretConnection::handshake(io, &key))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                err,
                SecretConnectionError::Closed | SecretConnectionError::Io(_)
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn impostor_signature_is_refused() {
        // A man in the middle who relays ephemeral keys but cannot sign the real challenge:
        // simulated by a peer that signs a different challenge with a valid key.
        let (ours, mut theirs) = duplex(64 * 1024);
        let our_key = SigningKey::generate(&mut OsRng);
        let peer = async move {
            let secret = EphemeralSecret::random_from_rng(OsRng);
            let eph = X25519Public::from(&secret).to_bytes();
            theirs
                .write_all(&handshake::encode_ephemeral(&eph))
                .await
                .unwrap();
            let mut msg = [0u8; EPH_MSG_LEN];
            theirs.read_exact(&mut msg).await.unwrap();
            let remote = handshake::parse_ephemeral(&msg).unwrap();
            let secrets = handshake::agree(secret, &eph, &remote).unwrap();
            let mut ch = Channel::new(theirs, &secrets);
            let impostor = SigningKey::generate(&mut OsRng);
            let mut wrong = secrets.challenge;
            wrong[0] ^= 1;
            ch.write_all(&handshake::encode_auth_sig(
                &impostor.verifying_key(),
                &impostor.sign(&wrong),
            ))
            .await
            .unwrap();
            ch
        };
        let (ours, _peer) = timeout(LIMIT, async {
            tokio::join!(SecretConnection::handshake(ours, &our_key), peer)
        })
        .await
        .unwrap();
        assert!(matches!(ours, Err(SecretConnectionError::BadSignature)));
    }
}
