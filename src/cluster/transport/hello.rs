//! The hello that opens every cluster connection: each side names the process it is.
//!
//! A cosigner draws a random [`InstanceId`] at start. Right after the TLS handshake the dialer
//! opens the connection's first bidirectional stream and sends a [`Hello`] frame; the acceptor
//! answers with its own and both close the stream. Only then is the connection used for
//! requests, so the request handler never sees a hello. The certificate says *which*
//! cosigner a peer is; the instance id says *which running copy* of it: a restarted process
//! and a second copy of one directory have the same certificate but another instance id.

use std::fmt;
use std::time::Duration;

use quinn::Connection;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use tokio::time::timeout;

use crate::cluster::wire::{self, WireError};

/// How long a new connection may take to complete the hello (one round trip) before it is
/// closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// A hello stream is one small frame; anything longer is refused before it is buffered.
const MAX_HELLO_STREAM: usize = 256;

/// One running cosigner process, drawn at random when it starts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId(pub [u8; 16]);

impl InstanceId {
    /// A fresh instance identifier from the OS random generator.
    pub fn random() -> InstanceId {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        InstanceId(bytes)
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({self})")
    }
}

/// The first frame on a connection, in each direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's process; a peer with two live instances is a twin.
    pub instance: InstanceId,
}

/// Why a connection's hello did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The peer sent no hello within [`HELLO_TIMEOUT`].
    #[error("no hello within {HELLO_TIMEOUT:?}")]
    Timeout,
    /// The connection ended during the hello.
    #[error("connection lost during the hello: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The hello stream failed or ran past its bound; says how.
    #[error("hello stream failed: {0}")]
    Stream(String),
    /// The hello frame is not valid.
    #[error("bad hello: {0}")]
    Wire(#[from] WireError),
}

/// The dialer's side: sends our hello on the first stream, returns the peer's instance.
pub(super) async fn as_dialer(
    conn: &Connection,
    ours: InstanceId,
) -> Result<InstanceId, HelloError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let frame = wire::encode(&Hello { instance: ours })?;
        send.write_all(&frame)
            .await
            .map_err(|e| HelloError::Stream(e.to_string()))?;
        let _ = send.finish();
        read_hello(&mut recv).await
    };
    timeout(HELLO_TIMEOUT, exchange)
        .await
        .map_err(|_| HelloError::Timeout)?
}

/// The acceptor's side: reads the dialer's hello from the first stream and answers it.
pub(super) async fn as_acceptor(
    conn: &Connection,
    ours: InstanceId,
) -> Result<InstanceId, HelloError> {
    let exchange = async {
        let (mut send, mut recv) = conn.accept_bi().await?;
        let theirs = read_hello(&mut recv).await?;
        let frame = wire::encode(&Hello { instance: ours })?;
        send.write_all(&frame)
            .await
            .map_err(|e| HelloError::Stream(e.to_string()))?;
        let _ = send.finish();
        Ok(theirs)
    };
    timeout(HELLO_TIMEOUT, exchange)
        .await
        .map_err(|_| HelloError::Timeout)?
}

/// Reads the one frame a hello stream carries, to the stream's end. Reading to the end (not
/// just the frame) matters: a stream left unread is not freed at once, and would hold one of
/// the connection's stream credits.
async fn read_hello(recv: &mut quinn::RecvStream) -> Result<InstanceId, HelloError> {
    let bytes = recv
        .read_to_end(MAX_HELLO_STREAM)
        .await
        .map_err(|e| HelloError::Stream(e.to_string()))?;
    let (header, body) = bytes
        .split_at_checked(wire::HEADER_LEN)
        .ok_or_else(|| HelloError::Stream("hello stream ended early".into()))?;
    let header: [u8; wire::HEADER_LEN] = header
        .try_into()
        .map_err(|_| HelloError::Stream("hello stream ended early".into()))?;
    if wire::decode_header(header)? != body.len() {
        return Err(HelloError::Stream(
            "hello stream does not hold exactly one frame".into(),
        ));
    }
    let hello: Hello = wire::decode_body(body)?;
    Ok(hello.instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_random_and_print_in_full() {
        let (a, b) = (InstanceId::random(), InstanceId::random());
        assert_ne!(a, b);
        assert_eq!(a.to_string().len(), 32);
        assert!(format!("{a:?}").contains(&a.to_string()));
    }

    #[test]
    fn a_hello_is_one_small_frame() {
        let hello = Hello {
            instance: InstanceId([7; 16]),
        };
        let frame = wire::encode(&hello).unwrap();
        assert_eq!(frame.len(), wire::HEADER_LEN + 16);
        let (header, body) = frame.split_at(wire::HEADER_LEN);
        assert_eq!(wire::decode_header(header.try_into().unwrap()).unwrap(), 16);
        assert_eq!(wire::decode_body::<Hello>(body).unwrap(), hello);
        assert!(wire::decode_body::<Hello>(&body[..15]).is_err());
    }
}
