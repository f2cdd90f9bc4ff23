//! A tenant's webhook (URL, secret, events), its deliveries, and the server-sent-events
//! stream of the same events.

mod dto;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::envelope::ErrorEnvelope;
use super::extract::PageQuery;
use super::extract::{Body, Pagination, Params};
use super::openapi::tags;
use crate::auth::Caller;
use crate::domain::UserId;
use crate::events::EventKind;
use crate::http::error::{AppError, AppResult};
use crate::outbound::Refusal;
use crate::store::WebhookRecord;
pub use dto::*;

/// Missed events a reconnecting stream listener gets at most.
const REPLAY_LIMIT: i64 = 1_000;

/// An http(s) URL the server may post to: no credentials in it, and a host that is not (and
/// does not resolve to) a private or local address. Refused before any connection is tried.
async fn webhook_url(st: &AppState, raw: Option<&Value>) -> AppResult<String> {
    let invalid = || {
        AppError::BadRequest(format!(
            "url must be an http or https URL of at most {URL_MAX_CHARS} characters"
        ))
    };
    let raw = match raw {
        None | Some(Value::Null) => return Err(AppError::BadRequest("url is required".into())),
        Some(Value::String(u)) if u.chars().count() <= URL_MAX_CHARS => u,
        Some(_) => return Err(invalid()),
    };
    let url = reqwest::Url::parse(raw.trim()).map_err(|_| invalid())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid());
    }
    st.outbound.check(&url).await.map_err(|r| match r {
        Refusal::Scheme => invalid(),
        r => AppError::BadRequest(format!("url {r}")),
    })?;
    Ok(url.to_string())
}

/// Printable ASCII without spaces: what every receiver's framework can hold in a
/// configuration value and compare byte for byte.
fn secret_is_valid(s: &str) -> bool {
    (SECRET_MIN_CHARS..=SECRET_MAX_CHARS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_graphic())
}

fn random_secret() -> AppResult<String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness for a secret: {e}")))?;
    Ok(format!(
        "whsec_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// The given secret, or a new one (`true`: made here).
fn secret_of(raw: Option<&Value>) -> AppResult<(String, bool)> {
    match raw {
        None | Some(Value::Null) => Ok((random_secret()?, true)),
        Some(Value::String(s)) if secret_is_valid(s) => Ok((s.clone(), false)),
        Some(_) => Err(AppError::BadRequest(format!(
            "secret must be {SECRET_MIN_CHARS} to {SECRET_MAX_CHARS} printable ASCII \
             characters, without spaces or control characters"
        ))),
    }
}

/// The events asked for, each once, in the order given; all of them when left out.
fn events_of(raw: Option<&Value>) -> AppResult<Vec<String>> {
    let all = || EventKind::ALL.iter().map(|k| k.as_str().to_owned());
    let invalid = || {
        AppError::BadRequest(format!(
            "events must be a list of: {}",
            all().collect::<Vec<_>>().join(", ")
        ))
    };
    let items = match raw {
        None | Some(Value::Null) => return Ok(all().collect()),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => return Err(invalid()),
    };
    let mut out: Vec<String> = Vec::new();
    for item in items {
        let name = item
            .as_str()
            .filter(|s| EventKind::parse(s).is_some())
            .ok_or_else(invalid)?;
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// # `PUT /api/whatsapp/webhook`
#[utoipa::path(
    put,
    path = "/webhook",
    operation_id = "set_webhook",
    tag = tags::WEBHOOKS,
    summary = "Set the tenant's webhook: where events are POSTed, signed with the secret",
    description = "Every body is signed: the `X-Webhook-Signature` header is `sha256=` and the \
        hex HMAC-SHA256 of the raw body, keyed by the secret; `X-Webhook-Signature-V2` is \
        `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` (also sent alone as \
        `X-Webhook-Timestamp`), so a receiver can refuse old or replayed deliveries. Without \
        a `secret` one is made and shown in this answer; a given one is 16 to 200 printable \
        ASCII characters without spaces. `events` defaults to all of them. The URL must reach \
        a public address (no loopback, private, link-local or similar address, whatever its \
        spelling, and no user name or password in it) unless the server's `--outbound-allow` \
        lists its network. Deliveries go in event order and are retried with exponential \
        backoff while the receiver fails.",
    request_body = WebhookRequest,
    responses(
        (status = 200, description = "Set", body = WebhookResponse),
        (status = 400, description = "Bad `user_id`, `url` (not http(s), or not a public address), `secret` or `events`", body = ErrorEnvelope),
    )
)]
pub async fn set(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<WebhookRequest>,
) -> AppResult<WebhookResponse> {
    let user = caller.scope_user(UserId::from_json(b.user_id.as_ref())?)?;
    let url = webhook_url(&st, b.url.as_ref()).await?;
    let (secret, generated) = secret_of(b.secret.as_ref())?;
    let events = events_of(b.events.as_ref())?;
    let now = st.clock.now_ms();
    let hook = st
        .events
        .store()
        .set_webhook(&WebhookRecord {
            user_id: user,
            url,
            secret,
            events,
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok(WebhookResponse::new(
        Webhook::new(hook, Some(generated)),
        "Webhook set",
    ))
}

/// # `GET /api/whatsapp/webhook`
#[utoipa::path(
    get,
    path = "/webhook",
    operation_id = "get_webhook",
    tag = tags::WEBHOOKS,
    summary = "The tenant's webhook (the secret is not shown again)",
    params(UserQuery),
    responses(
        (status = 200, description = "The webhook", body = WebhookResponse),
        (status = 400, description = "Bad `user_id`", body = ErrorEnvelope),
        (status = 404, description = "No webhook is set", body = ErrorEnvelope),
    )
)]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<UserQuery>,
) -> AppResult<WebhookResponse> {
    let user = caller.scope_user(q.user()?)?;
    let hook = st
        .events
        .store()
        .webhook(user)
        .await?
        .ok_or_else(|| AppError::NotFound("No webhook is set for this user".into()))?;
    Ok(WebhookResponse::new(
        Webhook::new(hook, None),
        "Webhook retrieved",
    ))
}

/// # `DELETE /api/whatsapp/webhook`
#[utoipa::path(
    delete,
    path = "/webhook",
    operation_id = "delete_webhook",
    tag = tags::WEBHOOKS,
    summary = "Remove the tenant's webhook; deliveries still pending fail",
    params(UserQuery),
    responses(
        (status = 200, description = "Removed", body = DeletedWebhookResponse),
        (status = 400, description = "Bad `user_id`", body = ErrorEnvelope),
        (status = 404, description = "No webhook is set", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<UserQuery>,
) -> AppResult<DeletedWebhookResponse> {
    let user = caller.scope_user(q.user()?)?;
    if !st
        .events
        .store()
        .delete_webhook(user, st.clock.now_ms())
        .await?
    {
        return Err(AppError::NotFound("No webhook is set for this user".into()));
    }
    Ok(DeletedWebhookResponse::new(
        DeletedWebhook {
            user_id: user,
            deleted: true,
        },
        "Webhook removed",
    ))
}

/// # `GET /api/whatsapp/webhook/deliveries`
#[utoipa::path(
    get,
    path = "/webhook/deliveries",
    operation_id = "webhook_deliveries",
    tag = tags::WEBHOOKS,
    summary = "The tenant's webhook deliveries, newest first",
    params(UserQuery, PageQuery, DeliveryFilterQuery),
    responses(
        (status = 200, description = "One page of deliveries", body = DeliveryListResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn deliveries(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<UserQuery>,
    Params(page): Params<PageQuery>,
    Params(filter): Params<DeliveryFilterQuery>,
) -> AppResult<DeliveryListResponse> {
    let user = caller.scope_user(q.user()?)?;
    let (page, limit) = page.page_and_limit()?;
    let status = filter.status()?;
    let (list, total) = st
        .events
        .store()
        .deliveries(user, status, page, limit)
        .await?;
    Ok(DeliveryListResponse::new(
        DeliveryList {
            deliveries: list.iter().map(Delivery::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "Webhook deliveries retrieved",
    ))
}

/// # `GET /api/whatsapp/events`
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "event_stream",
    tag = tags::WEBHOOKS,
    summary = "Server-sent events: the tenant's events as they happen",
    description = "Each event's `id` is its event id and its `event` the type; `data` is the \
        same JSON a webhook gets. A listener that reconnects with `Last-Event-ID` (or \
        `last_event_id`) first gets what it missed. The stream ends when the tenant key it \
        was opened with is revoked. The admin key may leave `user_id` out to hear every \
        tenant's events; a tenant key hears its own user's.",
    params(StreamUserQuery, EventStreamQuery),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad `user_id`, `place_id` or `last_event_id`, or `place_id` without `user_id`", body = ErrorEnvelope),
    )
)]
pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<StreamUserQuery>,
    Params(filter): Params<EventStreamQuery>,
) -> AppResult<Response> {
    let user = caller.scope_listing(q.user()?)?;
    let place = filter.place()?;
    if place.is_some() && user.is_none() {
        return Err(AppError::BadRequest(
            "place_id needs user_id: a place is only known within its user".into(),
        ));
    }
    let last = filter.last_event_id(headers.get("last-event-id").and_then(|v| v.to_str().ok()))?;
    // Watched from before the replay, so a revocation while it is read is not missed.
    let revoked = match caller {
        Caller::Tenant { key_id, .. } => Some(st.keys.revocation(key_id)),
        Caller::Admin => None,
    };
    // Subscribed before the replay is read, so nothing falls between the two.
    let mut live = st.events.subscribe();
    let replay = match (last, user) {
        (Some(after), Some(user)) => {
            st.events
                .store()
                .events_after(user, place, after, REPLAY_LIMIT)
                .await?
        }
        (Some(after), None) => st.events.store().events_since(after, REPLAY_LIMIT).await?,
        (None, _) => Vec::new(),
    };
    let mut seen = replay.last().map_or(last.unwrap_or(0), |e| e.id);
    let to_sse = |id: i64, kind: &str, payload: &str| {
        Event::default()
            .id(id.to_string())
            .event(kind)
            .data(payload)
    };
    let replayed: Vec<Result<Event, Infallible>> = replay
        .iter()
        .map(|e| Ok(to_sse(e.id, &e.kind, &e.payload)))
        .collect();
    let live = async_stream_of(move |tx| async move {
        let revoked = async move {
            match revoked {
                Some(watch) => watch.revoked().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(revoked);
        loop {
            let received = tokio::select! {
                // First: once revoked, not one event more.
                biased;
                () = &mut revoked => {
                    tracing::info!("ℹ️ An event stream closed: its API key was revoked");
                    return;
                }
                r = live.recv() => r,
            };
            match received {
                Ok(e) => {
                    if user.is_some_and(|u| e.pair.user_id != u)
                        || place.is_some_and(|p| p != e.pair.place_id)
                        || e.id <= seen
                    {
                        continue;
                    }
                    seen = e.id;
                    if tx
                        .send(Ok(to_sse(e.id, &e.kind, &e.payload)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Told, so the listener can reconnect with Last-Event-ID and catch up.
                    let lagged = Lagged {
                        missed: n,
                        last_event_id: seen,
                    };
                    let Ok(note) = Event::default().event("lagged").json_data(lagged) else {
                        return;
                    };
                    if tx.send(Ok(note)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::iter(replayed), live);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// A stream fed by a task; the task ends when the listener goes.
fn async_stream_of<F, Fut>(f: F) -> impl futures::Stream<Item = Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}
