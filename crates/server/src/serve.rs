//! The accept loop: one hyper HTTP/1.1 connection per socket, with the connection-level
//! limits that `axum::serve` does not offer (SPEC §6):
//!
//! - **open connections**: past the limit, a new connection gets one `503 overloaded`
//!   answer with `Retry-After` and is closed, rather than waiting unseen in the backlog;
//! - **header time**: a client that has not sent a whole request head within the limit
//!   (half a request line, then silence) is cut off. The clock starts when hyper waits for
//!   a head, so it also closes keep-alive connections left idle that long;
//! - **write stall**: a client that takes nothing of an answer for the request timeout
//!   (its receive window stays full) is cut off, so that a stream whose client stopped
//!   reading gives back its connection and its slot.
//!
//! Each request carries the peer address as axum's `ConnectInfo`, which the per-IP rate
//! limit keys on. Shutdown stops accepting, then lets open connections finish the request
//! they are on (hyper's graceful shutdown) and close.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::connect_info::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;
use tower::{Service, ServiceExt};

use crate::error::ApiError;

/// How long a connection may wait on its client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a whole request head.
    pub header: Duration,
    /// For any progress writing an answer.
    pub write_stall: Duration,
}

/// The shared count of open connections, so that both listeners draw on one limit.
#[derive(Debug, Clone)]
pub struct OpenConnections(Arc<Semaphore>);

impl OpenConnections {
    pub fn new(max: usize) -> Self {
        OpenConnections(Arc::new(Semaphore::new(max)))
    }
}

/// Serves `service` on `listener` until `stop` turns true, then drains open connections.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    open: OpenConnections,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(timeouts.header).keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Ok(permit) = open.0.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        // Answers are small and written whole: do not hold them back for Nagle.
        let _ = stream.set_nodelay(true);
        let service = service.clone().map_request(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(timeouts.write_stall));
        let io = TokioIo::new(Box::pin(stream));
        let connection = graceful.watch(http.serve_connection(io, TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// An accept error: per-connection ones (the peer left already) are skipped; running out
/// of file descriptors waits a moment for connections to close rather than spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; is the open-file limit below --max-connections?");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the limit with `503 overloaded` and closes it. The request is
/// read (briefly, and thrown away) after the answer so that closing does not reset the
/// connection under a client still sending, which would lose the answer.
async fn refuse(mut stream: TcpStream) {
    let answer = ApiError::TooManyConnections.raw_http1();
    let linger = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), linger).await;
}
