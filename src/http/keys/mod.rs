//! The admin's key management, and how a request presents its key (checked in
//! [`super::guard`]).

mod dto;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};

use super::AppState;
use super::envelope::ErrorEnvelope;
use super::extract::PageQuery;
use super::extract::{Body, Pagination, Params};
use super::openapi::tags;
use crate::auth::Caller;
use crate::http::error::{AppError, AppResult};
pub use dto::*;

/// The key of a request: `X-Api-Key`, else `Authorization: Bearer`.
pub(super) fn presented_key(headers: &HeaderMap) -> AppResult<Option<&str>> {
    if let Some(v) = headers.get("x-api-key") {
        let key = v
            .to_str()
            .map_err(|_| AppError::Unauthorized("The API key is not valid or was revoked".into()))?
            .trim();
        return Ok(Some(key).filter(|k| !k.is_empty()));
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or("").trim();
    match v.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => {
            Ok(Some(key.trim()))
        }
        _ => Err(AppError::Unauthorized(
            "The Authorization header must be \"Bearer <API key>\"".into(),
        )),
    }
}

/// # `POST /api/admin/keys`
#[utoipa::path(
    post,
    path = "/keys",
    operation_id = "create_api_key",
    tag = tags::ADMIN,
    summary = "Create a tenant key for one user_id (admin key only)",
    description = "The key is in the answer this once; the server keeps only its hash. \
        `max_sessions`, `rate_limit` and `rate_limit_burst` replace the server's \
        `--max-sessions-per-user`, `--rate-limit` and `--rate-limit-burst` for requests made \
        with this key; left out or `null`, the server's apply.",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "The new key, shown once", body = CreatedKeyResponse),
        (status = 400, description = "Bad `user_id`, `name`, `max_sessions`, `rate_limit` or `rate_limit_burst`", body = ErrorEnvelope),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<CreateKeyRequest>,
) -> AppResult<(StatusCode, CreatedKeyResponse)> {
    caller.require_admin("manage API keys")?;
    let user_id = b.user()?;
    let name = b.name()?;
    let quotas = b.quotas()?;
    let created = st.keys.create(user_id, name.as_deref(), quotas).await?;
    Ok((
        StatusCode::CREATED,
        CreatedKeyResponse::new(
            CreatedKey::new(created),
            "API key created. Store it now: it is not shown again.",
        ),
    ))
}

/// # `GET /api/admin/keys`
#[utoipa::path(
    get,
    path = "/keys",
    operation_id = "list_api_keys",
    tag = tags::ADMIN,
    summary = "The tenant keys not revoked, oldest first, without their secrets (admin key only)",
    params(KeyListQuery, PageQuery),
    responses(
        (status = 200, description = "One page of keys", body = KeyListResponse),
        (status = 400, description = "Bad `user_id`, `page` or `limit`", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<KeyListQuery>,
    Params(page): Params<PageQuery>,
) -> AppResult<KeyListResponse> {
    caller.require_admin("manage API keys")?;
    let user = q.user()?;
    let (page, limit) = page.page_and_limit()?;
    let (keys, total) = st.keys.list(user, page, limit).await?;
    Ok(KeyListResponse::new(
        KeyList {
            keys: keys.iter().map(KeyInfo::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "API keys retrieved",
    ))
}

/// # `DELETE /api/admin/keys/{key_id}`
#[utoipa::path(
    delete,
    path = "/keys/{key_id}",
    operation_id = "revoke_api_key",
    tag = tags::ADMIN,
    summary = "Revoke a tenant key at once (admin key only)",
    description = "Requests with the key are refused from now on, and its open event streams \
        (`GET /api/whatsapp/events`) end.",
    params(KeyPath),
    responses(
        (status = 200, description = "The key is revoked", body = RevokedKeyResponse),
        (status = 400, description = "`key_id` is not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "No such key, or already revoked", body = ErrorEnvelope),
    )
)]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path(path): Path<KeyPath>,
) -> AppResult<RevokedKeyResponse> {
    caller.require_admin("manage API keys")?;
    let id = path.id()?;
    let k = st.keys.revoke(id).await?;
    Ok(RevokedKeyResponse::new(
        RevokedKey {
            id: k.id,
            user_id: k.user_id,
            revoked: true,
        },
        "API key revoked",
    ))
}
