//! A connection to a node as a session reads and writes it, over either transport CometBFT's
//! `priv_validator_laddr` offers: over TCP a SecretConnection (CometBFT's TCP listener
//! requires one), over a Unix socket the length-delimited privval messages as they are
//! (CometBFT's Unix listener wraps the accepted socket in nothing but timeouts, and tmkms
//! speaks plain frames there too; the socket file's mode is what keeps others out).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::secret_connection::{SecretConnection, SecretConnectionError};
use super::session::{ReadExact, SessionError};

/// One node connection.
pub enum NodeConnection {
    Secret(Box<SecretConnection<TcpStream>>),
    Unix(UnixStream),
}

impl NodeConnection {
    /// The node's authenticated node ID; a Unix socket has none.
    pub fn remote_node_id(&self) -> Option<String> {
        match self {
            NodeConnection::Secret(conn) => Some(conn.remote_node_id()),
            NodeConnection::Unix(_) => None,
        }
    }

    /// Writes all of `data` (sealed into frames over TCP). Not cancel-safe over TCP: a
    /// write dropped before completion poisons the SecretConnection.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), SessionError> {
        match self {
            NodeConnection::Secret(conn) => Ok(conn.write_all(data).await?),
            NodeConnection::Unix(socket) => socket.write_all(data).await.map_err(socket_error),
        }
    }
}

impl ReadExact for NodeConnection {
    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SessionError> {
        match self {
            NodeConnection::Secret(conn) => Ok(conn.read_exact(buf).await?),
            NodeConnection::Unix(socket) => {
                socket.read_exact(buf).await.map(drop).map_err(socket_error)
            }
        }
    }
}

fn socket_error(e: std::io::Error) -> SessionError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => SecretConnectionError::Closed.into(),
        _ => SessionError::Socket(e),
    }
}
