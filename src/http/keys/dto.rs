//! The key routes' requests and answers: the types the handlers read and return, and so the
//! ones the OpenAPI document describes. The limits are declared here, beside the type that
//! enforces them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_ms;
use crate::domain::text::caller_name;
use crate::domain::{Invalid, UserId, parse_positive_str};
use crate::http::envelope::success;
use crate::http::error::{AppError, AppResult};
use crate::http::extract::Pagination;
use crate::http::schema::{always_true, positive_id_in_body};
use crate::store::{ApiKeyRecord, KeyQuotas};

pub const KEY_NAME_MAX_CHARS: usize = 100;
/// Bounds of the per-key quotas, beyond any real need, so a typo is refused.
const MAX_SESSIONS_MAX: u64 = 1_000_000;
const RATE_LIMIT_MAX: f64 = 1_000_000.0;
const RATE_LIMIT_BURST_MAX: u64 = 1_000_000;

// Fields stay raw JSON until read, so each wrong value is refused with a sentence naming its
// field. Numbers may come as their digits: form bodies carry only text.
#[derive(Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    // The tenant the key acts for.
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = key_name)]
    pub name: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = max_sessions)]
    pub max_sessions: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = rate_limit)]
    pub rate_limit: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = rate_limit_burst)]
    pub rate_limit_burst: Option<Value>,
}

impl CreateKeyRequest {
    pub fn user(&self) -> Result<UserId, Invalid> {
        UserId::from_json(self.user_id.as_ref())
    }

    /// Trimmed, NFC, without control characters; `None` when left out.
    pub fn name(&self) -> AppResult<Option<String>> {
        let invalid = || {
            AppError::BadRequest(format!(
                "name must be a string of 1 to {KEY_NAME_MAX_CHARS} characters"
            ))
        };
        match &self.name {
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

    /// Absent or `null`: the server's own setting.
    pub fn quotas(&self) -> Result<KeyQuotas, Invalid> {
        let whole = |field: &str, raw: &Option<Value>, min: u64, max: u64| match raw {
            None | Some(Value::Null) => Ok(None),
            Some(v) => whole_number(v)
                .filter(|n| (min..=max).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    Invalid(format!(
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
                        Invalid(format!(
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

/// Digits with at most one point: what [`decimal_number`] reads from text.
const DECIMAL_PATTERN: &str = r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*$";

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

fn key_name() -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .min_length(Some(1))
        .max_length(Some(KEY_NAME_MAX_CHARS))
        .description(Some("A label for people, e.g. which system holds the key."))
        .build()
}

/// A whole number within `min..=max`, as a JSON number or its digits; `null` for the
/// server's setting.
fn whole_in_body(min: u64, max: u64, description: &str) -> Schema {
    OneOfBuilder::new()
        .description(Some(description))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(min as f64))
                .maximum(Some(max as f64)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*[0-9]+\s*$"))
                .description(Some("The same number written in digits.")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

fn max_sessions() -> Schema {
    whole_in_body(
        0,
        MAX_SESSIONS_MAX,
        "Sessions the key's user may hold when the key asks (0: no limit); in place of \
         `--max-sessions-per-user`. Left out or `null`: the server's.",
    )
}

fn rate_limit_burst() -> Schema {
    whole_in_body(
        1,
        RATE_LIMIT_BURST_MAX,
        "Requests at once before the rate applies, in place of `--rate-limit-burst` \
         (default: twice the key's `rate_limit`, else the server's burst).",
    )
}

fn rate_limit() -> Schema {
    OneOfBuilder::new()
        .description(Some(
            "Requests per second with this key, in place of `--rate-limit`.",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0))
                .maximum(Some(RATE_LIMIT_MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(DECIMAL_PATTERN))
                .description(Some("The same number written as a decimal, like `2.5`.")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Only the keys of this user.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub user_id: Option<String>,
}

impl KeyListQuery {
    pub fn user(&self) -> Result<Option<UserId>, Invalid> {
        match self.user_id.as_deref() {
            None => Ok(None),
            some => UserId::from_text(some).map(Some),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's `id`.
    #[param(value_type = i64, minimum = 1)]
    pub key_id: String,
}

impl KeyPath {
    pub fn id(&self) -> Result<i64, Invalid> {
        parse_positive_str("key_id", &self.key_id)
    }
}

/// A new key. `key` is shown this once; only its prefix is kept readable.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    id: i64,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(required = true)]
    name: Option<String>,
    key: String,
    /// The first characters of the key, to recognise it later.
    prefix: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    last_used_at: Option<String>,
    /// The key's own session quota; `null`: the server's.
    #[schema(required = true)]
    max_sessions: Option<u32>,
    /// The key's own rate, requests per second; `null`: the server's.
    #[schema(required = true)]
    rate_limit: Option<f64>,
    /// The key's own burst; `null`: the server's (or twice the key's rate).
    #[schema(required = true)]
    rate_limit_burst: Option<u32>,
}

impl CreatedKey {
    pub fn new(created: crate::auth::CreatedKey) -> Self {
        let KeyInfo {
            id,
            user_id,
            name,
            prefix,
            created_at,
            last_used_at,
            max_sessions,
            rate_limit,
            rate_limit_burst,
        } = KeyInfo::from(&created.record);
        Self {
            id,
            user_id,
            name,
            key: created.key,
            prefix,
            created_at,
            last_used_at,
            max_sessions,
            rate_limit,
            rate_limit_burst,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    id: i64,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(required = true)]
    name: Option<String>,
    prefix: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    last_used_at: Option<String>,
    /// The key's own session quota; `null`: the server's.
    #[schema(required = true)]
    max_sessions: Option<u32>,
    /// The key's own rate, requests per second; `null`: the server's.
    #[schema(required = true)]
    rate_limit: Option<f64>,
    /// The key's own burst; `null`: the server's (or twice the key's rate).
    #[schema(required = true)]
    rate_limit_burst: Option<u32>,
}

impl From<&ApiKeyRecord> for KeyInfo {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            user_id: k.user_id,
            name: k.name.clone(),
            prefix: format!("wam_{}", k.public_id),
            created_at: rfc3339_ms(k.created_at),
            last_used_at: k.last_used_at.and_then(rfc3339_ms),
            max_sessions: k.quotas.max_sessions,
            rate_limit: k.quotas.rate_limit,
            rate_limit_burst: k.quotas.rate_limit_burst,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct RevokedKey {
    pub id: i64,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(schema_with = always_true)]
    pub revoked: bool,
}

success!(CreatedKeyResponse, CreatedKey);
success!(KeyListResponse, KeyList);
success!(RevokedKeyResponse, RevokedKey);
