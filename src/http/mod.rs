//! HTTP: routes, envelopes, and the safety net that keeps every answer in the envelope.

pub mod envelope;
pub mod extract;
mod groups;
mod health;
mod linking;
pub mod openapi;
mod sessions;
mod sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::clock::SharedClock;
use crate::engine::sim::SimNetwork;
use crate::session::SessionManager;
use crate::store::Store;

/// Every route but the sim phone book.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// 100k-entry phone books, with room to spare.
pub const PHONEBOOK_BODY_LIMIT: usize = 256 * 1024 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppState {
    pub manager: SessionManager,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// Present only with `--engine sim`.
    pub sim: Option<SimNetwork>,
    pub engine: &'static str,
    pub started: Instant,
    pub request_timeout: Duration,
}

pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let whatsapp = Router::new()
        .route("/init", post(sessions::init))
        .route("/status", get(sessions::status))
        .route("/qr", get(linking::qr))
        .route("/pair-code", post(linking::pair_code))
        .route("/info", get(sessions::info))
        .route("/restart", post(sessions::restart))
        .route("/logout", post(sessions::logout))
        .route("/stats", get(sessions::stats))
        .route("/start-contact-fetch", post(sessions::start_contact_fetch))
        .route("/contacts/progress", get(sessions::progress))
        .route("/groups", get(groups::list))
        .route("/groups/{group_id}/contacts", get(groups::contacts));

    let mut app = Router::new()
        .route("/api/health", get(health::health))
        .nest("/api/whatsapp", whatsapp);
    if state.sim.is_some() {
        let sim = Router::new()
            .route(
                "/phonebook",
                put(sim::set_phonebook).layer(DefaultBodyLimit::max(PHONEBOOK_BODY_LIMIT)),
            )
            .route("/scan", post(sim::scan))
            .route("/fault", post(sim::fault));
        app = app.nest("/api/sim", sim);
    }
    // Outermost last: the envelope middleware must see what the timeout produces.
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(middleware::from_fn(envelope_every_error))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("❌ A request handler panicked");
                envelope::error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            },
        ))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> Response {
    envelope::error(
        StatusCode::NOT_FOUND,
        &format!("Route not found: {method} {}", uri.path()),
    )
}

/// Errors produced outside our handlers (wrong method, body limits, timeouts) come back
/// without a body; give them the contract's envelope.
async fn envelope_every_error(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("Method {method} is not allowed for {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body is too large".to_string(),
        StatusCode::REQUEST_TIMEOUT => "The request took too long and was stopped".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported content type".to_string(),
        s => s.canonical_reason().unwrap_or("Request failed").to_string(),
    };
    let mut out = envelope::error(status, &message);
    if let Some(allow) = res.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out.into_response()
}
