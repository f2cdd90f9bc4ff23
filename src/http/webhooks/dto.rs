//! The webhook routes' requests and answers: the types the handlers read and return, and so
//! the ones the OpenAPI document describes. The limits are declared here, beside the type
//! that enforces them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_ms;
use crate::domain::{Invalid, PlaceId, SessionId, UserId};
use crate::events::EventKind;
use crate::events::webhook::{SIGNATURE_HEADER, SIGNATURE_V2_HEADER, TIMESTAMP_HEADER};
use crate::http::envelope::success;
use crate::http::extract::Pagination;
use crate::http::schema::{always_true, positive_id_in_body};
use crate::store::{DeliveryRecord, DeliveryStatus, WebhookRecord};

pub const SECRET_MIN_CHARS: usize = 16;
pub const SECRET_MAX_CHARS: usize = 200;
pub const URL_MAX_CHARS: usize = 2_048;

// Fields stay raw JSON until the handler reads them, so each wrong value is refused with a
// sentence naming its field rather than a deserializer's message.
#[derive(Deserialize, ToSchema)]
pub struct WebhookRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    /// Where events are POSTed.
    #[serde(default)]
    #[schema(schema_with = webhook_url, required = true)]
    pub url: Option<Value>,
    /// 16 to 200 printable ASCII characters, no spaces; made for you when left out.
    #[serde(default)]
    #[schema(schema_with = webhook_secret)]
    pub secret: Option<Value>,
    /// Which events; all when left out.
    #[serde(default)]
    #[schema(schema_with = event_list)]
    pub events: Option<Value>,
}

/// An http(s) URL as the server posts to it: no spaces, a host right after `://`.
fn webhook_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[hH][tT][tT][pP][sS]?://[^\s/?#\\][^\s]*$"))
        .max_length(Some(URL_MAX_CHARS))
        .examples([serde_json::json!("https://example.com/offer.jpg")])
        .build()
}

fn webhook_secret() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!(
            "^[!-~]{{{SECRET_MIN_CHARS},{SECRET_MAX_CHARS}}}$"
        )))
        .examples([serde_json::json!("a-long-random-secret-1234")])
        .build()
}

fn event_list() -> Schema {
    let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .into()
}

/// The tenant a user-wide route acts on.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The tenant.
    #[param(value_type = i64, minimum = 1, example = 1, required = true)]
    pub user_id: Option<String>,
}

impl UserQuery {
    pub fn user(&self) -> Result<UserId, Invalid> {
        UserId::from_text(self.user_id.as_deref())
    }
}

/// The tenant whose events a stream carries: optional for the admin key (every tenant's
/// events), a tenant key's own user when it names none.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamUserQuery {
    /// The tenant; the admin key may leave it out to hear every tenant.
    #[param(value_type = Option<i64>, minimum = 1, example = 1)]
    pub user_id: Option<String>,
}

impl StreamUserQuery {
    pub fn user(&self) -> Result<Option<UserId>, Invalid> {
        match self.user_id.as_deref() {
            None => Ok(None),
            some => UserId::from_text(some).map(Some),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilterQuery {
    #[param(schema_with = delivery_status)]
    pub status: Option<String>,
}

impl DeliveryFilterQuery {
    pub fn status(&self) -> Result<Option<DeliveryStatus>, Invalid> {
        self.status
            .as_deref()
            .map(|s| {
                DeliveryStatus::parse(s).ok_or_else(|| {
                    Invalid("status must be one of: pending, delivered, failed".into())
                })
            })
            .transpose()
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventStreamQuery {
    /// Only this place's events.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub place_id: Option<String>,
    /// Replay the events after this one first (like the `Last-Event-ID` header).
    #[param(value_type = Option<i64>, minimum = 0)]
    pub last_event_id: Option<String>,
}

impl EventStreamQuery {
    pub fn place(&self) -> Result<Option<PlaceId>, Invalid> {
        match self.place_id.as_deref() {
            None => Ok(None),
            some => PlaceId::from_text(some).map(Some),
        }
    }

    /// From the query, else from the `Last-Event-ID` header a reconnecting listener sends.
    pub fn last_event_id(&self, header: Option<&str>) -> Result<Option<i64>, Invalid> {
        self.last_event_id
            .as_deref()
            .or(header)
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| Invalid("last_event_id must be an event id (an integer)".into()))
            })
            .transpose()
    }
}

fn delivery_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["pending", "delivered", "failed"]))
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct Webhook {
    #[schema(value_type = i64)]
    user_id: UserId,
    url: String,
    events: Vec<String>,
    /// Only in the answer that set it.
    #[schema(required = true)]
    secret: Option<String>,
    /// The secret's last characters, to tell secrets apart.
    secret_hint: String,
    /// The header that carries `sha256=<hex HMAC-SHA256 of the body>`.
    signature_header: String,
    /// The header that carries `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
    signature_v2_header: String,
    /// The header that carries the signed time alone (unix seconds).
    timestamp_header: String,
    /// Whether the server made the secret (only in the answer that set it).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_generated: Option<bool>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Option<String>,
}

impl Webhook {
    /// As stored; the secret in full only when `generated` says it was just set.
    pub fn new(h: WebhookRecord, just_set: Option<bool>) -> Self {
        Self {
            user_id: h.user_id,
            secret_hint: secret_hint(&h.secret),
            // Shown when set; afterwards only its end, to tell secrets apart.
            secret: just_set.is_some().then_some(h.secret),
            url: h.url,
            events: h.events,
            signature_header: SIGNATURE_HEADER.into(),
            signature_v2_header: SIGNATURE_V2_HEADER.into(),
            timestamp_header: TIMESTAMP_HEADER.into(),
            secret_generated: just_set,
            created_at: rfc3339_ms(h.created_at),
            updated_at: rfc3339_ms(h.updated_at),
        }
    }
}

/// The secret's last four characters.
fn secret_hint(secret: &str) -> String {
    let start = secret.char_indices().rev().nth(3).map_or(0, |(i, _)| i);
    format!("…{}", &secret[start..])
}

#[derive(Serialize, ToSchema)]
pub struct DeletedWebhook {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(schema_with = always_true)]
    pub deleted: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub pagination: Pagination,
}

/// One event's delivery to the webhook.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    id: i64,
    event_id: i64,
    /// The event type.
    event: String,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(value_type = i64)]
    place_id: PlaceId,
    #[schema(value_type = Option<String>, required = true)]
    session_id: Option<SessionId>,
    #[schema(schema_with = delivery_status)]
    status: &'static str,
    attempts: i64,
    /// When a pending delivery is tried next.
    #[schema(required = true, format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(required = true)]
    last_status_code: Option<i64>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    delivered_at: Option<String>,
    /// The body as delivered and signed.
    #[schema(value_type = Object)]
    payload: Value,
}

impl From<&DeliveryRecord> for Delivery {
    fn from(d: &DeliveryRecord) -> Self {
        Self {
            id: d.id,
            event_id: d.event.id,
            event: d.event.kind.clone(),
            user_id: d.user_id,
            place_id: d.event.pair.place_id,
            session_id: d.event.session_id.clone(),
            status: d.status.as_str(),
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| rfc3339_ms(d.next_attempt_at))
                .flatten(),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            created_at: rfc3339_ms(d.created_at),
            delivered_at: d.delivered_at.and_then(rfc3339_ms),
            payload: serde_json::from_str(&d.event.payload).unwrap_or(Value::Null),
        }
    }
}

/// What a listener that fell behind is told, so it can reconnect with `Last-Event-ID`.
#[derive(Serialize)]
pub struct Lagged {
    pub missed: u64,
    pub last_event_id: i64,
}

success!(WebhookResponse, Webhook);
success!(DeletedWebhookResponse, DeletedWebhook);
success!(DeliveryListResponse, DeliveryList);
