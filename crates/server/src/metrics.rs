//! What `GET /metrics` shows, in the Prometheus text format: requests and their latency,
//! counted as they are answered by [`RecordLayer`]; the open live streams, counted by
//! [`Metrics::stream_opened`]; and what storage is doing (the writer's commits and queue, the
//! embedded search index's lag, the PostgreSQL pool), read from the backend at each scrape.
//!
//! Each [`crate::Application`] owns its own registry, not a process-wide recorder: tests run
//! many servers in one process, and each must count only its own requests.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, Response};
use chatd_core::progress::Progress;
use chatd_core::stats::Histogram as Counts;
use chatd_store_postgres::PgStore;
use chatd_store_sqlite::SqliteStore;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

use crate::backend::Backend;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `route` label of a request that matched no route: its path may hold anything,
/// tokens included, so it never becomes a label.
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds, in seconds, of the request-latency buckets.
const LATENCY_BOUNDS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One server's metrics and the registry that shows them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    streams_open: Gauge,
}

/// Labels of the request counter: the route's template (never the path), method, status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    status: u16,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Route,
}

/// The route a request matched, as a label: its template, or [`UNMATCHED`]. Holds the
/// router's own shared template, so counting a request copies no string.
#[derive(Debug, Clone)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED, MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl Metrics {
    /// A registry with every metric of a server on `backend`.
    pub fn new(backend: &Backend) -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "chatd_http_requests",
            "Requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(LATENCY_BOUNDS));
        registry.register(
            "chatd_http_request_duration_seconds",
            "Time from routing a request to its answer's head, by route template and method",
            latency.clone(),
        );
        let streams_open = Gauge::default();
        registry.register("chatd_streams_open", "Live message streams open now", streams_open.clone());
        registry.register_collector(Box::new(Storage::of(backend)));
        Arc::new(Metrics { registry, requests, latency, streams_open })
    }

    /// Every metric, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }

    /// Counts one more open stream until the returned guard is dropped: a stream route
    /// holds it for as long as its stream is open.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams_open.inc();
        OpenStream(self.streams_open.clone())
    }

    /// The layer that counts every request of a router (`routes::finish`).
    pub fn layer(self: &Arc<Self>) -> RecordLayer {
        RecordLayer(self.clone())
    }

    fn record(&self, method: &'static str, route: Route, status: u16, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.latency.get_or_create(&RouteLabels { method, route: route.clone() }).observe(seconds);
        self.requests.get_or_create(&RequestLabels { method, route, status }).inc();
    }
}

/// One open stream in `chatd_streams_open`, for as long as it lives.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A method as a label: the standard ones by name, any other as `other`, so that requests
/// cannot add labels without bound.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("other", |(_, name)| name)
}

/// Counts each request a router answers, and how long it took, by the route it matched
/// ([`MatchedPath`], set by the router before this runs; [`UNMATCHED`] for the fallback).
#[derive(Debug, Clone)]
pub struct RecordLayer(Arc<Metrics>);

impl<S> Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record { inner, metrics: self.0.clone() }
    }
}

/// The service of [`RecordLayer`].
#[derive(Debug, Clone)]
pub struct Record<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request> for Record<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Recording<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let route = Route(request.extensions().get::<MatchedPath>().cloned());
        let method = method_label(request.method());
        Recording {
            inner: self.inner.call(request),
            started: Instant::now(),
            labels: Some((method, route)),
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request on its way through [`Record`]: counted when its answer is ready.
    pub struct Recording<F> {
        #[pin]
        inner: F,
        started: Instant,
        labels: Option<(&'static str, Route)>,
        metrics: Arc<Metrics>,
    }
}

impl<F, B, E> Future for Recording<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(response), Some((method, route))) = (&result, this.labels.take()) {
            this.metrics.record(method, route, response.status().as_u16(), *this.started);
        }
        Poll::Ready(result)
    }
}

/// What storage is doing, read at each scrape.
#[derive(Debug)]
enum Storage {
    Embedded {
        store: Arc<SqliteStore>,
        committed: Arc<Progress>,
        indexed: Arc<Progress>,
        index_failures: Arc<AtomicU64>,
    },
    Postgres(Arc<PgStore>),
}

impl Storage {
    fn of(backend: &Backend) -> Self {
        match backend {
            Backend::Embedded(e) => Storage::Embedded {
                store: e.store.clone(),
                committed: e.store.committed(),
                indexed: e.indexed.clone(),
                index_failures: e.index_failures(),
            },
            Backend::Postgres(pg) => Storage::Postgres(pg.clone()),
        }
    }
}

impl Collector for Storage {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let (stats, queued) = match self {
            Storage::Embedded { store, .. } => (store.writer_stats(), store.queued()),
            Storage::Postgres(pg) => (pg.writer_stats(), pg.queued()),
        };
        let e = &mut encoder;
        counter(e, "chatd_writer_commits", "Write transactions committed.", stats.commits)?;
        counter(e, "chatd_writer_writes", "Creates and edits committed.", stats.jobs)?;
        histogram(
            e,
            "chatd_writer_batch_writes",
            "Creates and edits per committed transaction.",
            &stats.batch_writes,
            1.0,
        )?;
        histogram(
            e,
            "chatd_writer_commit_duration_seconds",
            "Time to apply and commit one batch of writes.",
            &stats.commit_micros,
            1e6,
        )?;
        gauge(e, "chatd_writer_queue_depth", "Writes waiting for the writer now.", queued)?;
        match self {
            Storage::Embedded { committed, indexed, index_failures, .. } => {
                let lag = (committed.get() - indexed.get()).max(0);
                gauge(
                    e,
                    "chatd_search_index_lag",
                    "Changes committed but not yet in a search-index commit.",
                    lag,
                )?;
                let failures = index_failures.load(Ordering::Relaxed);
                counter(
                    e,
                    "chatd_search_index_failures",
                    "Search-index commits that failed and were retried.",
                    failures,
                )
            }
            Storage::Postgres(pg) => {
                let pool = pg.pool_usage();
                gauge(e, "chatd_pool_connections_open", "PostgreSQL read-pool connections open.", pool.open)?;
                gauge(e, "chatd_pool_connections_idle", "Open read-pool connections idle.", pool.idle)?;
                gauge(e, "chatd_pool_connections_max", "The most connections the read pool opens.", pool.max)
            }
        }
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl TryInto<i64>,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value.try_into().unwrap_or(i64::MAX));
    metric.encode(e.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A writer histogram, its values divided by `per_unit` (10⁶: microseconds to seconds).
fn histogram<const N: usize>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    counts: &Counts<N>,
    per_unit: f64,
) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> =
        counts.bounds.iter().zip(counts.within).map(|(&bound, n)| (bound as f64 / per_unit, n)).collect();
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(counts.sum as f64 / per_unit, counts.count(), &buckets, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn streams_open(metrics: &Metrics) -> String {
        let text = metrics.render();
        text.lines().find(|l| l.starts_with("chatd_streams_open ")).expect("the gauge is shown").to_owned()
    }

    #[tokio::test]
    async fn an_open_stream_counts_until_its_guard_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(&Config::ephemeral(dir.path())).await.unwrap();
        let metrics = Metrics::new(&backend);
        assert_eq!(streams_open(&metrics), "chatd_streams_open 0");

        let (first, second) = (metrics.stream_opened(), metrics.stream_opened());
        assert_eq!(streams_open(&metrics), "chatd_streams_open 2");
        drop(first);
        assert_eq!(streams_open(&metrics), "chatd_streams_open 1");
        drop(second);
        assert_eq!(streams_open(&metrics), "chatd_streams_open 0");
        backend.close(std::time::Duration::from_secs(10)).await;
    }

    #[test]
    fn a_method_outside_the_standard_ones_is_other() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
