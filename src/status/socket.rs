//! The admin socket: `<state_dir>/cosigner.sock` ([`crate::layout::ADMIN_SOCKET`]), a Unix
//! socket of mode 0600 in the state directory (itself 0700), so only the service user
//! reaches it. It is read-only by construction: the cosigner reads nothing from a client,
//! it writes its [`Status`] as one JSON document and closes. `cosigner status` is its
//! client ([`query`]).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::Status;

/// What the socket answers, built per connection.
pub type Render = Arc<dyn Fn() -> Status + Send + Sync>;

/// A status is a few hundred bytes per peer and chain; anything larger is not one.
const MAX_STATUS_BYTES: u64 = 1 << 20;
const MAX_CONNECTIONS: usize = 8;
const WRITE_LIMIT: Duration = Duration::from_secs(2);
const QUERY_LIMIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
/// Why the admin socket cannot be served or asked.
pub enum AdminError {
    #[error("{}: cannot open the admin socket: {error}", path.display())]
    /// The socket cannot be bound.
    Bind {
        /// The socket path.
        path: PathBuf,
        /// What the bind failed with.
        error: io::Error,
    },
    #[error(
        "{}: exists and is not a socket; not replacing it (move it away to get `cosigner status`)",
        path.display()
    )]
    /// Something other than a socket is at the path.
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    #[error(
        "no cosigner is running for this config: nothing answers at {} ({error})",
        path.display()
    )]
    /// Nothing listens at the path.
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// What the connect failed with.
        error: io::Error,
    },
    #[error("{}: {problem}", path.display())]
    /// What the socket sent is not a status.
    BadAnswer {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with the answer.
        problem: String,
    },
}

/// Removes the socket when the cosigner stops.
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Opens the socket at `path`. A socket already there is what a killed cosigner left: the
/// caller holds every state file's lock, so no other cosigner of this directory is running.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), AdminError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(path).map_err(|error| AdminError::Bind {
                path: path.to_path_buf(),
                error,
            })?
        }
        Ok(_) => {
            return Err(AdminError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    let bind_err = |error| AdminError::Bind {
        path: path.to_path_buf(),
        error,
    };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    let guard = SocketFile(path.to_path_buf());
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok((listener, guard))
}

/// Answers every connection with the status until the process ends.
pub async fn serve(listener: UnixListener, render: Render) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("admin socket: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            // As for a scrape: reading the watermarks may wait out a state write.
            let status = tokio::task::spawn_blocking(move || render()).await;
            let mut json = status
                .ok()
                .and_then(|s| serde_json::to_vec(&s).ok())
                .unwrap_or_default();
            json.push(b'\n');
            let written = tokio::time::timeout(WRITE_LIMIT, async {
                stream.write_all(&json).await?;
                stream.shutdown().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                debug!("admin socket: a client did not take the status");
            }
            drop(slot);
        });
    }
}

/// Asks the cosigner whose admin socket is `path` for its status.
pub fn query(path: &Path) -> Result<Status, AdminError> {
    let bad = |problem: String| AdminError::BadAnswer {
        path: path.to_path_buf(),
        problem,
    };
    let stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|error| AdminError::NotRunning {
            path: path.to_path_buf(),
            error,
        })?;
    stream
        .set_read_timeout(Some(QUERY_LIMIT))
        .map_err(|e| bad(e.to_string()))?;
    let mut text = Vec::new();
    stream
        .take(MAX_STATUS_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(format!("no status within {QUERY_LIMIT:?}: {e}")))?;
    if text.len() as u64 > MAX_STATUS_BYTES {
        return Err(bad(format!("answer larger than {MAX_STATUS_BYTES} bytes")));
    }
    serde_json::from_slice(&text).map_err(|e| {
        bad(format!(
            "not a status this version understands ({e}); is the running cosigner another version?"
        ))
    })
}
