//! `/applications` and `/applications/{token}`: registering, listing, reading and renaming
//! client applications.

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatd_core::AppName;
use subtle::ConstantTimeEq;

use super::{ApiResult, AppState, list_response};
use crate::error::ApiError;
use crate::extract::{AppPath, ListQuery, Params, RetryKey};
use crate::openapi::params::{NameBody, NameQuery, PageQuery, TokenCursor};
use crate::openapi::{BadRequest, InvalidOrKeyReused, InvalidParameter, NoApplication, Unauthorized};
use crate::views::ApplicationView;

/// `name` from the request's parameters.
fn app_name(params: &mut Params) -> ApiResult<AppName> {
    AppName::parse(params.string("name")?.unwrap_or_default()).map_err(|e| ApiError::invalid("name", e))
}

/// Passes when no admin key is configured or the request presents it as a Bearer token
/// (compared in constant time).
pub(super) fn check_admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(key) = &state.admin_key else { return Ok(()) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(key.as_bytes())) { Ok(()) } else { Err(ApiError::Unauthorized) }
}

/// List every application.
///
/// Needs the admin key when the operator configured one.
#[utoipa::path(
    get, path = "/applications", tag = "applications",
    params(PageQuery, TokenCursor),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The applications, one page", body = Vec<ApplicationView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = InvalidParameter),
    )
)]
pub(super) async fn list_applications(
    State(s): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    query: ListQuery,
) -> ApiResult<Response> {
    check_admin(&s, &headers)?;
    let listed = s.catalog.applications(query.by_token()?).await?;
    Ok(list_response(&uri, &query, &listed, |a| a.token.as_str().to_owned(), ApplicationView::from))
}

/// Register an application; the answer carries its access token.
#[utoipa::path(
    post, path = "/applications", tag = "applications",
    params(NameQuery, RetryKey),
    request_body = NameBody,
    responses(
        (status = 201, description = "The new application", body = ApplicationView, links(
            ("GetApplication" = (operation_id = "get_application", parameters(("token" = "$response.body#/access_token")))),
            ("UpdateApplication" = (operation_id = "update_application", parameters(("token" = "$response.body#/access_token")))),
            ("PatchApplication" = (operation_id = "update_application_patch", parameters(("token" = "$response.body#/access_token")))),
            ("ListChats" = (operation_id = "list_chats", parameters(("token" = "$response.body#/access_token")))),
            ("CreateChat" = (operation_id = "create_chat", parameters(("token" = "$response.body#/access_token")))),
        )),
        (status = 400, response = BadRequest),
        (status = 422, response = InvalidOrKeyReused),
    )
)]
pub(super) async fn create_application(
    State(s): State<AppState>,
    key: RetryKey,
    mut params: Params,
) -> ApiResult<Response> {
    let name = app_name(&mut params)?;
    let app = s.ingest.create_application(name, key.key).await?;
    Ok((StatusCode::CREATED, Json(ApplicationView::from(&app))).into_response())
}

/// An application.
#[utoipa::path(
    get, path = "/applications/{token}", tag = "applications",
    params(AppPath),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
    )
)]
pub(super) async fn get_application(State(s): State<AppState>, path: AppPath) -> ApiResult<Response> {
    let app = s.catalog.application(path.token).await?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}

/// Rename an application.
#[utoipa::path(
    method(put, patch), path = "/applications/{token}", tag = "applications",
    params(AppPath, NameQuery),
    request_body = NameBody,
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, response = BadRequest),
        (status = 404, response = NoApplication),
        (status = 422, response = InvalidParameter),
    )
)]
pub(super) async fn update_application(
    State(s): State<AppState>,
    path: AppPath,
    mut params: Params,
) -> ApiResult<Response> {
    let app = s.ingest.rename_application(path.token, app_name(&mut params)?).await?;
    Ok(Json(ApplicationView::from(&app)).into_response())
}
