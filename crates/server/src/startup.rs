//! Building and running the server: [`Application::build`] opens storage and binds the
//! listeners (so callers learn the real ports, and tests bind port 0), then
//! [`Application::run_until`] serves until the shutdown future completes, drains open
//! requests, and lets the writer commit everything it accepted.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::backend::{Backend, Ports};
use crate::config::{Config, Console, Listen};
use crate::cors::CrossOrigin;
use crate::limits::Limiters;
use crate::metrics::Metrics;
use crate::routes::{self, AppState};
use crate::serve::{self, OpenConnections, Timeouts};

/// A built server: storage open, listeners bound, not yet serving.
#[derive(Debug)]
pub struct Application {
    backend: Backend,
    api: (TcpListener, Router),
    creation: Option<(TcpListener, Router)>,
    open_connections: OpenConnections,
    max_request_bytes: usize,
    cross_origin: CrossOrigin,
    timeouts: Timeouts,
    shutdown_timeout: Duration,
    /// Tells the routes (open streams) that shutdown began.
    stop: watch::Sender<bool>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::process::prepare(config.max_connections);
        let backend = Backend::open(&config).await?;
        if config.admin_key.is_none() {
            tracing::warn!(
                "no admin key is set: anyone who reaches the API can list every application and read the metrics"
            );
        }
        let Ports { ingest, catalog, search, feed } = backend.ports();
        let (stop, stopping) = watch::channel(false);
        let metrics = Metrics::new(&backend);
        let state = AppState {
            ingest,
            catalog,
            search,
            feed,
            streams: Arc::new(Semaphore::new(config.max_streams())),
            stopping,
            admin_key: config.admin_key.as_deref().map(Arc::from),
            max_message_bytes: config.max_message_bytes,
            metrics: metrics.clone(),
        };
        let limiters = Limiters::new(config.request_limits());
        let finish = |router: Router| {
            routes::finish(limiters.apply(router).merge(routes::operations(state.clone())), &metrics)
        };
        let mut api_router = routes::api_router(state.clone());
        if config.console == Console::On {
            api_router = api_router.merge(crate::console::router());
        }
        let api = (TcpListener::bind(config.listen).await?, finish(api_router));
        let creation = match config.creation_listen {
            Listen::Off => None,
            Listen::On(addr) => {
                Some((TcpListener::bind(addr).await?, finish(routes::creation_router(state.clone()))))
            }
        };
        Ok(Application {
            backend,
            api,
            creation,
            open_connections: OpenConnections::new(config.max_connections as usize),
            max_request_bytes: config.max_request_bytes,
            cross_origin: CrossOrigin::new(config.cors_origins.as_ref()),
            timeouts: Timeouts {
                header: Duration::from_secs(config.header_timeout),
                write_stall: Duration::from_secs(config.request_timeout),
            },
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
            stop,
        })
    }

    /// Where the full API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.0.local_addr().expect("a bound listener has an address")
    }

    /// Where the creation routes listen, if they do.
    pub fn creation_addr(&self) -> Option<SocketAddr> {
        self.creation.as_ref().map(|(l, _)| l.local_addr().expect("a bound listener has an address"))
    }

    /// The storage it runs on, for statistics and for tests of one mode.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Serves until `shutdown` completes; then stops accepting, waits (at most the shutdown
    /// timeout) for open requests, and closes the storage so that every accepted write is
    /// committed before this returns.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let stop_rx = self.stop.subscribe();
        let stop_tx = self.stop;
        let mut servers = tokio::task::JoinSet::new();
        for (listener, router) in std::iter::once(self.api).chain(self.creation) {
            servers.spawn(serve::serve(
                listener,
                wrap(router, self.max_request_bytes, self.cross_origin.clone()),
                self.open_connections.clone(),
                self.timeouts,
                stop_rx.clone(),
            ));
        }
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let sweeper = tokio::spawn(crate::backend::sweep_idempotency_keys(self.backend.ports().ingest));
        let mut stop = stop_rx.clone();
        let drained = async {
            while let Some(result) = servers.join_next().await {
                result??;
            }
            anyhow::Ok(())
        };
        let deadline = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(self.shutdown_timeout).await;
        };
        let served = tokio::select! {
            result = drained => result,
            () = deadline => {
                tracing::warn!("open requests did not finish in time; closing anyway");
                Ok(())
            }
        };
        sweeper.abort();
        // Even when a listener failed: commit what the writer accepted.
        let stats = self.backend.writer_stats();
        self.backend.close(self.shutdown_timeout).await;
        tracing::info!(
            commits = stats.commits,
            writes = stats.jobs,
            largest_batch = stats.largest_batch,
            "stopped"
        );
        served
    }
}

/// What wraps each listener's router whole: CORS outermost, so that preflights are answered
/// before routing and rate limiting and every answer (errors too) carries its headers; a
/// handler that panics answers 500 `internal` (the panic hook has logged it) instead of
/// dropping the connection; trailing slashes are trimmed before routing, so `/applications/`
/// works too; and the body limit (see `routes::finish` for why these wrap the router rather
/// than each route).
pub(crate) fn wrap(
    router: Router,
    max_request_bytes: usize,
    cross_origin: CrossOrigin,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
{
    ServiceBuilder::new()
        .layer(cross_origin)
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(CatchPanicLayer::custom(|_| crate::error::panicked()))
        .layer(NormalizePathLayer::trim_trailing_slash())
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .service(router)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn answer(
        service: impl Service<Request, Response = Response, Error = Infallible>,
        path: &str,
    ) -> (u16, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let Ok(response) = service.oneshot(request).await;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_internal_and_the_service_carries_on() {
        let router = Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" }));
        let service = wrap(router, 1024, CrossOrigin::default());

        let (status, body) = answer(service.clone(), "/boom").await;
        assert_eq!(status, 500);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "internal", "{body}");
        assert!(
            !body.to_string().contains("a bug in a handler"),
            "the panic's message stays in the log: {body}"
        );

        // The same service answers the next request, through the other layers (the trailing
        // slash is trimmed before routing).
        assert_eq!(answer(service, "/fine/").await, (200, "fine".to_owned()));
    }
}
