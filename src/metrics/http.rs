//! The `[metrics] listen` endpoint: `GET /metrics` over HTTP/1 (hyper), the registry in the
//! OpenMetrics text format. Nothing else is served and nothing is read from a request but
//! its method and path. A scrape costs the signing path nothing: the state series are read
//! from the signers here, on a blocking thread of the scrape's own.
//!
//! Bounded like every other listener: at most [`MAX_CONNECTIONS`] at once (more are closed
//! at accept), request headers within [`HEADER_TIMEOUT`], a connection at most
//! [`CONNECTION_LIMIT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// What `GET /metrics` answers, rendered per scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

const MAX_CONNECTIONS: usize = 16;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("[metrics] listen = \"{listen}\": cannot listen there: {error} (choose another port, or remove [metrics] to serve no metrics)")]
pub struct BindError {
    listen: SocketAddr,
    error: std::io::Error,
}

/// Opens the endpoint's socket; done at start, so that a taken port stops the start.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(listen)
        .await
        .map_err(|error| BindError { listen, error })
}

/// Serves scrapes on `listener` until the process ends.
pub async fn serve(listener: TcpListener, render: Render) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, typically: wait rather than spin.
                warn!("metrics endpoint: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!("metrics endpoint: {MAX_CONNECTIONS} connections open; closing a new one");
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(respond(&request, render).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIMIT, connection).await {
                debug!("metrics endpoint: connection ended: {e}");
            }
            drop(slot);
        });
    }
}

async fn respond(request: &Request<Incoming>, render: Render) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let known = matches!(path, "/metrics" | "/");
    let mut response = match (request.method(), path) {
        (&Method::GET, "/metrics") => {
            // Reading the watermarks may wait out a state write (an fsync): not on a worker
            // the signing path shares.
            let text = tokio::task::spawn_blocking(move || render())
                .await
                .unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
            return response;
        }
        (&Method::GET, "/") => Response::new(Full::new(Bytes::from_static(
            b"cosigner: Prometheus metrics at /metrics\n",
        ))),
        _ if known => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"only GET is served\n")));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            response
        }
        _ => {
            let mut response =
                Response::new(Full::new(Bytes::from_static(b"not found; see /metrics\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    };
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
