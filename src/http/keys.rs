//! The admin's key management, and how a request presents its key (checked in
//! [`super::guard`]).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Body, Query, pagination_json};
use super::openapi::{
    CreateKeyRequest, CreatedKeyResponse, ErrorEnvelope, KeyListQuery, KeyListResponse, KeyPath,
    PageQuery, RevokedKeyResponse, tags,
};
use super::{AppState, envelope};
use crate::auth::{Caller, KEY_NAME_MAX_CHARS};
use crate::clock::rfc3339_ms;
use crate::domain::text::caller_name;
use crate::domain::{UserId, parse_positive_str};
use crate::http::error::{AppError, AppResult};
use crate::store::{ApiKeyRecord, KeyQuotas};

/// Bounds of the per-key quotas, beyond any real need, so a typo is refused.
const MAX_SESSIONS_MAX: u64 = 1_000_000;
const RATE_LIMIT_MAX: f64 = 1_000_000.0;
const RATE_LIMIT_BURST_MAX: u64 = 1_000_000;

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

fn key_json(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "user_id": k.user_id,
        "name": k.name,
        "prefix": format!("wam_{}", k.public_id),
        "created_at": rfc3339_ms(k.created_at),
        "last_used_at": k.last_used_at.and_then(rfc3339_ms),
        "max_sessions": k.quotas.max_sessions,
        "rate_limit": k.quotas.rate_limit,
        "rate_limit_burst": k.quotas.rate_limit_burst,
    })
}

#[derive(Deserialize)]
pub struct CreateKeyBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    max_sessions: Option<Value>,
    #[serde(default)]
    rate_limit: Option<Value>,
    #[serde(default)]
    rate_limit_burst: Option<Value>,
}

impl CreateKeyBody {
    /// Absent or `null`: the server's own setting. A number may come as its digits (form
    /// bodies carry only strings), within the same bounds.
    fn quotas(&self) -> AppResult<KeyQuotas> {
        let whole = |field: &str, raw: &Option<Value>, min: u64, max: u64| match raw {
            None | Some(Value::Null) => Ok(None),
            Some(v) => whole_number(v)
                .filter(|n| (min..=max).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "{field} must be a whole number from {min} to {max}"
                    ))
                }),
        };
        let rate_limit = match &self.rate_limit {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                decimal_number(v)
                    .filter(|r| r.is_finite() && *r > 0.0 && *r <= RATE_LIMIT_MAX)
                    .ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "rate_limit must be a number of requests per second above 0 and \
                             at most {RATE_LIMIT_MAX}"
                        ))
                    })?,
            ),
        };
        Ok(KeyQuotas {
            max_sessions: whole("max_sessions", &self.max_sessions, 0, MAX_SESSIONS_MAX)?,
            rate_limit,
            rate_limit_burst: whole(
                "rate_limit_burst",
                &self.rate_limit_burst,
                1,
                RATE_LIMIT_BURST_MAX,
            )?,
        })
    }
}

/// A JSON whole number, or the same written in digits.
fn whole_number(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        }
        v => v.as_u64(),
    }
}

/// A JSON number, or the same written as a decimal (`2.5`).
fn decimal_number(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            // Only digits and one point: no "inf", "NaN" or exponents from a text field.
            let plain = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && s.bytes().filter(|b| *b == b'.').count() <= 1
                && s.bytes().any(|b| b.is_ascii_digit());
            plain.then(|| s.parse().ok()).flatten()
        }
        v => v.as_f64(),
    }
}

fn key_name(raw: &Option<Value>) -> AppResult<Option<String>> {
    let invalid = || {
        AppError::BadRequest(format!(
            "name must be a string of 1 to {KEY_NAME_MAX_CHARS} characters"
        ))
    };
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() || s.chars().count() > KEY_NAME_MAX_CHARS {
                return Err(invalid());
            }
            Ok(Some(caller_name("name", s)?))
        }
        Some(_) => Err(invalid()),
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
    Body(b): Body<CreateKeyBody>,
) -> AppResult<Response> {
    caller.require_admin("manage API keys")?;
    let user_id = UserId::from_json(b.user_id.as_ref())?;
    let name = key_name(&b.name)?;
    let quotas = b.quotas()?;
    let created = st.keys.create(user_id, name.as_deref(), quotas).await?;
    let mut data = key_json(&created.record);
    data["key"] = Value::String(created.key);
    Ok(envelope::with_status(
        StatusCode::CREATED,
        data,
        "API key created. Store it now: it is not shown again.",
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
pub async fn list(State(st): State<AppState>, caller: Caller, q: Query) -> AppResult<Response> {
    caller.require_admin("manage API keys")?;
    let user = q.user_filter()?;
    let (page, limit) = q.pagination()?;
    let (keys, total) = st.keys.list(user, page, limit).await?;
    Ok(envelope::ok(
        json!({
            "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
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
    Path(key_id): Path<String>,
) -> AppResult<Response> {
    caller.require_admin("manage API keys")?;
    let id = parse_positive_str("key_id", &key_id)?;
    let k = st.keys.revoke(id).await?;
    Ok(envelope::ok(
        json!({ "id": k.id, "user_id": k.user_id, "revoked": true }),
        "API key revoked",
    ))
}
