//! Health, readiness, metrics and the OpenAPI document: the routes that are about chatd itself.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiResult, AppState};
use crate::openapi::{Unauthorized, Unavailable};

/// Health checks, served on both listeners and exempt from the request limits.
pub fn router(state: AppState) -> Router {
    Router::new().route("/health", get(health)).route("/ready", get(ready)).with_state(state)
}

/// The answer of the health and readiness checks.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Status {
    /// `ok` (health) or `ready` (readiness).
    #[schema(value_type = String)]
    status: &'static str,
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Alive", body = Status)))]
pub(super) async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: storage takes writes and answers reads.
#[utoipa::path(
    get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = Status), (status = 503, response = Unavailable))
)]
pub(super) async fn ready(State(s): State<AppState>) -> ApiResult<Json<Status>> {
    s.ingest.ready().await?;
    s.catalog.ready().await?;
    Ok(Json(Status { status: "ready" }))
}

/// The OpenAPI document of this API.
pub(super) async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::json()).into_response()
}

/// Metrics in the Prometheus text format.
///
/// Requests by route template, method and status, and their latency; the writer's commits
/// and queue; open live streams; by mode, the search index's lag or the PostgreSQL pool.
/// Served on the full API listener only; needs the admin key when the operator configured one.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The metrics", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, response = Unauthorized),
    )
)]
pub(super) async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    super::applications::check_admin(&s, &headers)?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], s.metrics.render()).into_response())
}
