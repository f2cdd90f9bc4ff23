//! HTTP: routes, envelopes, and the safety net that keeps every answer in the envelope.

mod contacts;
mod dashboard;
pub mod envelope;
pub mod error;
pub mod extract;
pub(crate) mod form;
pub mod forward;
mod groups;
mod guard;
mod health;
mod inbox;
mod keys;
mod linking;
mod messaging;
mod nodes;
pub mod observe;
pub mod openapi;
mod params;
mod schema;
pub mod scrape;
pub mod serve;
mod sessions;
mod sim;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::ApiKeys;
use crate::clock::SharedClock;
use crate::engine::sim::SimNetwork;
use crate::session::SessionManager;
use crate::store::prelude::*;

/// Every route but the sim phone book: the largest body of the API (a list of recipients or
/// contact ids) is a few kilobytes.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub manager: SessionManager,
    pub store: Arc<dyn Database>,
    pub clock: SharedClock,
    /// Present only with `--engine sim`.
    pub sim: Option<SimNetwork>,
    pub engine: &'static str,
    pub started: Instant,
    pub request_timeout: Duration,
    pub keys: ApiKeys,
    pub outbox: crate::messaging::Outbox,
    pub events: crate::events::EventBus,
    /// Where caller-supplied URLs (webhooks, images) may point.
    pub outbound: crate::outbound::OutboundPolicy,
    /// This node's id and address (a single node has them too).
    pub identity: crate::cluster::NodeIdentity,
    /// Present on PostgreSQL, where several nodes may share the database.
    pub cluster: Option<crate::cluster::Cluster>,
}

pub const OPENAPI_PATH: &str = "/api/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The API's routes. Each is registered with `routes!`, which reads the method and path from
/// the handler's `#[utoipa::path]`: the router and the OpenAPI document come from the same
/// place, so neither can have a route the other lacks. Never add one with `.route`.
/// Two parts: what anyone may call (health), and what needs a key (everything else; the
/// check itself is in [`guard`]).
fn api_parts(with_sim: bool) -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let whatsapp = OpenApiRouter::new()
        .routes(routes!(sessions::list::list))
        .routes(routes!(sessions::init))
        .routes(routes!(sessions::status))
        .routes(routes!(linking::qr))
        .routes(routes!(linking::pair_code))
        .routes(routes!(sessions::info))
        .routes(routes!(sessions::restart))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::stats))
        .routes(routes!(sessions::start_contact_fetch))
        .routes(routes!(sessions::progress))
        .routes(routes!(groups::list, groups::create))
        .routes(routes!(groups::contacts, groups::replace_members))
        .routes(routes!(groups::delete))
        .routes(routes!(contacts::contact, contacts::update_contact))
        .routes(routes!(contacts::search))
        .routes(routes!(contacts::export::export_all))
        .routes(routes!(groups::export))
        .routes(routes!(messaging::send_message))
        .routes(routes!(messaging::send_group))
        .routes(routes!(messaging::send_bulk))
        .routes(routes!(messaging::list))
        .routes(routes!(messaging::stats))
        .routes(routes!(messaging::job))
        .routes(routes!(messaging::retry))
        .routes(routes!(messaging::validate))
        .routes(routes!(messaging::test_image_url))
        .routes(routes!(messaging::list_templates))
        .routes(routes!(messaging::check_numbers))
        .routes(routes!(inbox::conversations))
        .routes(routes!(inbox::contact_messages))
        .routes(routes!(inbox::media))
        .routes(routes!(inbox::read))
        .routes(routes!(inbox::read_messages))
        .routes(routes!(inbox::read_conversation_route))
        // Files up to WhatsApp's largest cap; the handler checks each kind's.
        .routes(
            routes!(messaging::upload_media)
                .layer(DefaultBodyLimit::max(messaging::UPLOAD_BODY_LIMIT)),
        )
        .routes(routes!(webhooks::set, webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::stream));

    let admin = OpenApiRouter::new()
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(nodes::list));

    let public = OpenApiRouter::new().routes(routes!(health::health));
    let mut app = OpenApiRouter::new()
        .nest("/api/whatsapp", whatsapp)
        .nest("/api/admin", admin);
    if with_sim {
        let sim = OpenApiRouter::new()
            // The handler reads its body under `--sim-max-phonebook-bytes` itself.
            .routes(routes!(sim::set_phonebook).layer(DefaultBodyLimit::disable()))
            .routes(routes!(sim::scan))
            .routes(routes!(sim::fault))
            .routes(routes!(sim::outbox))
            .routes(routes!(sim::connections))
            // A file sent in the body, base64: up to 1 MiB of it.
            .routes(routes!(sim::incoming).layer(DefaultBodyLimit::max(sim::INCOMING_BODY_LIMIT)))
            .routes(routes!(sim::read_receipts))
            .routes(routes!(sim::receipt::receipt))
            .routes(routes!(sim::set_network, sim::get_network));
        app = app.nest("/api/sim", sim);
    }
    (public, app)
}

fn api(with_sim: bool) -> OpenApiRouter<AppState> {
    let (public, secured) = api_parts(with_sim);
    public.merge(secured)
}

/// The OpenAPI document, with the sim routes whatever the engine: it describes the product.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::document(api(true).into_openapi())
}

/// The document as `GET /api/openapi.json` serves it.
pub fn openapi_json() -> serde_json::Value {
    openapi::to_json(&openapi())
}

/// Every (METHOD, path) the router serves besides the documentation itself, as registered.
pub fn routes(with_sim: bool) -> Vec<(String, String)> {
    let doc = api(with_sim).into_openapi();
    let mut out = Vec::new();
    for (path, item) in doc.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("PATCH", item.patch.is_some()),
        ];
        for (method, present) in methods {
            if present {
                out.push((method.to_string(), path.clone()));
            }
        }
    }
    out
}

pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let (public, secured) = api_parts(state.sim.is_some());
    let (public, _) = public.split_for_parts();
    let (secured, _) = secured.split_for_parts();
    // The description sits with the API it describes, behind the same key.
    // The metrics are text, not JSON, and not part of the API's contract: outside the
    // document, behind the same key.
    let secured = secured
        .merge(SwaggerUi::new(DOCS_PATH).external_url_unchecked(OPENAPI_PATH, openapi_json()))
        .route(scrape::METRICS_PATH, axum::routing::get(scrape::with_key));
    // The dashboard's page and files: plain routes, outside the document (they are not API).
    let app = public.merge(secured).merge(dashboard::router());
    let known = params::KnownParams::from_doc(&openapi());
    let metrics = state.events.metrics().clone();
    // Innermost: after the key check (a bad key is refused here, never sent on) and the
    // check of the query's names.
    let app = match &state.cluster {
        Some(cluster) => {
            // Start-up: a client that cannot be built is a broken TLS setup.
            let forwarder = forward::Forwarder::new(cluster.clone(), BODY_LIMIT)
                .expect("build the HTTP client nodes forward commands with");
            app.layer(middleware::from_fn_with_state(forwarder, forward::forward))
        }
        None => app,
    };
    // Outermost last: the envelope middleware must see what the timeout produces. The key
    // check is a layer of the whole router, fallback included, so it runs before a route is
    // known: without a key an unknown route answers 401 like a real one.
    app.fallback(not_found)
        .layer(middleware::from_fn_with_state(
            known,
            params::refuse_unknown,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
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
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(observe::span_for)
                .on_request(())
                .on_response(observe::log_response)
                .on_failure(()),
        )
        // Around everything, so a panic's, a timeout's and a refusal's answers carry the
        // request id and are counted too.
        .layer(middleware::from_fn_with_state(metrics, observe::observe))
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
