//! The OpenAPI document: the shapes the handlers answer with, written as types so the
//! document can name them. Handlers still build their JSON with `json!`; the schemathesis
//! test (`tests/schemathesis.rs`) checks every answer against these types.

// The types below are only ever described, never built or read.
#![allow(dead_code)]

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

pub use super::envelope::ErrorEnvelope;
// For the routes not yet beside their types; these live with the routes that read them.
pub use super::extract::{PageQuery, PairQuery};
pub use super::groups::dto::GroupPath;
use super::health::EngineName;
use super::schema::*;

pub mod tags {
    pub const HEALTH: &str = "health";
    pub const SESSIONS: &str = "sessions";
    pub const LINKING: &str = "linking";
    pub const CONTACTS: &str = "contacts";
    pub const SIM: &str = "sim";
    pub const MESSAGING: &str = "messaging";
    pub const WEBHOOKS: &str = "webhooks";
    /// For the API-key routes, once they are served.
    pub const ADMIN: &str = "admin";
}

/// The names `security(...)` below uses; the derive takes only literals.
pub const API_KEY_SCHEME: &str = "api_key";
pub const BEARER_SCHEME: &str = "bearer";

/// Routes that need no API key.
pub const PUBLIC_PATHS: [&str; 1] = ["/api/health"];

/// The document's frame; the paths come from the routes themselves (`http::api`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "WhatsApp Manager",
        description = "Links many WhatsApp numbers at once (one per user and place) and turns \
            their contacts into contact groups.\n\n\
            Every answer is one of two JSON envelopes: `{success: true, data, message, \
            timestamp}` or `{success: false, message, status_code, timestamp}`; the QR image \
            is the one exception. Every route but `/api/health` takes an API key, in the \
            `X-Api-Key` header or as `Authorization: Bearer <key>`.",
        license(name = "MIT"),
    ),
    security(("api_key" = []), ("bearer" = [])),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = tags::HEALTH, description = "Liveness of the service and its database"),
        (name = tags::SESSIONS, description = "One WhatsApp session per (user_id, place_id): its lifecycle and the on-demand contact fetch"),
        (name = tags::LINKING, description = "Linking a phone: QR code or phone-number pairing code"),
        (name = tags::CONTACTS, description = "Contact groups and their members"),
        (name = tags::MESSAGING, description = "Messages go through a durable outbox, sent at each number's pace (anti-ban) while its session is ready"),
        (name = tags::WEBHOOKS, description = "Events of every session: signed webhooks with a durable delivery queue, and a server-sent-events stream"),
        (name = tags::SIM, description = "Controls of the simulated phone network. These routes exist only when the server runs with `--engine sim`; otherwise they answer 404."),
    ),
)]
pub struct ApiDoc;

/// The document as served: the frame, the routes' paths, then what every operation shares.
pub fn document(paths: Document) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    Shared.modify(&mut doc);
    Flows.modify(&mut doc);
    doc
}

/// The document as JSON, as served. utoipa 5 writes a link's `operationId`, `operationRef` and
/// `requestBody` in snake case (utoipa 6 fixed it); without the fix no tool follows a link.
pub fn to_json(doc: &Document) -> serde_json::Value {
    let mut json = serde_json::to_value(doc).unwrap_or_default();
    let responses = json["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(snake) {
                    link.insert(camel.to_string(), v);
                }
            }
        }
    }
    json
}

/// What a client does next with the same pair, by operation id. Links for readers of the
/// document, and the paths schemathesis' stateful phase walks with generated data (a fuzzed
/// phone book gets linked, scanned and fetched).
const NEXT: &[(&str, &[&str])] = &[
    ("sim_set_phonebook", &["init"]),
    (
        "init",
        &[
            "status",
            "qr",
            "pair_code",
            "sim_scan",
            "sim_fault",
            "restart",
            "logout",
        ],
    ),
    ("sim_scan", &["start_contact_fetch", "info", "list_groups"]),
    (
        "start_contact_fetch",
        &["contact_fetch_progress", "list_groups", "sim_fault"],
    ),
    ("sim_fault", &["start_contact_fetch", "status", "restart"]),
    ("restart", &["status", "sim_scan"]),
    ("logout", &["init", "status"]),
    ("list_groups", &["group_contacts"]),
];

struct Flows;

impl Modify for Flows {
    fn modify(&self, doc: &mut Document) {
        // Operation id → whether it takes the pair in its body (else in the query).
        let mut in_body = std::collections::HashMap::new();
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                if let Some(id) = &op.operation_id {
                    in_body.insert(id.clone(), op.request_body.is_some());
                }
            }
        }
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let Some(id) = op.operation_id.clone() else {
                    continue;
                };
                let Some((_, targets)) = NEXT.iter().find(|(from, _)| *from == id) else {
                    continue;
                };
                let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") else {
                    continue;
                };
                let from = |field: &str| match in_body.get(&id) {
                    Some(true) => format!("$request.body#/{field}"),
                    _ => format!("$request.query.{field}"),
                };
                for target in targets.iter() {
                    let mut link = LinkBuilder::new().operation_id(*target);
                    if in_body.get(*target).copied().unwrap_or(false) {
                        link = link.request_body(Some(serde_json::json!({
                            "user_id": from("user_id"),
                            "place_id": from("place_id"),
                        })));
                    } else {
                        link = link
                            .parameter("user_id", from("user_id"))
                            .parameter("place_id", from("place_id"));
                    }
                    if *target == "group_contacts" {
                        link = link.parameter("group_id", "$response.body#/data/groups/0/id");
                    }
                    ok.links.insert((*target).to_string(), link.build().into());
                }
            }
        }
    }
}

/// What every operation has in common, added in one place so no handler can forget it.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "The API key.",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The same API key, as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for op in operations(item) {
                if public {
                    // Explicitly empty: no key, whatever the document-wide default says.
                    op.security = Some(Vec::new());
                } else {
                    add_error(op, 401, "The API key is missing or unknown.");
                    add_error(
                        op,
                        403,
                        "The API key belongs to a tenant and the request names another \
                         user_id; or, on a server without an admin key, the request came from \
                         a web page of another origin or named a host that is not this machine.",
                    );
                    add_error(
                        op,
                        429,
                        "Too many failed key checks from this address within a minute, or the \
                         key's rate limit (`--rate-limit`, or the key's own) is reached. The \
                         `Retry-After` header says in how many seconds to try again.",
                    );
                }
                if op.request_body.is_some() {
                    add_error(
                        op,
                        413,
                        "The request body is larger than the route accepts.",
                    );
                }
                add_error(
                    op,
                    408,
                    "The request took longer than 60 seconds and was stopped.",
                );
                add_error(
                    op,
                    500,
                    "An unexpected failure; the details are in the server's log, never here.",
                );
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn add_error(op: &mut Operation, status: u16, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build(),
                )
                .build()
                .into()
        });
}

// ----- Success envelopes of the routes not yet beside their handlers -----

/// Described only, until its route returns it (see [`success!`]).
macro_rules! described {
    ($(#[$meta:meta])* $name:ident, $data:ty) => {
        $(#[$meta])*
        #[derive(ToSchema)]
        pub struct $name {
            #[schema(schema_with = always_true)]
            success: bool,
            data: $data,
            /// A sentence for a person.
            message: String,
            #[schema(format = DateTime)]
            timestamp: String,
        }
    };
}

described!(
    /// `data` is the session, or `status: not_initialized` when the pair never had one.
    StatusResponse,
    StatusData
);
described!(SessionResponse, SessionState);
described!(SessionStartedResponse, SessionStarted);
described!(InfoResponse, SessionInfo);
described!(ProgressResponse, FetchProgress);
described!(FetchStartedResponse, FetchStarted);
described!(StatsResponse, ServiceStats);
described!(PairCodeResponse, PairCode);

// ----- Requests -----

/// The pair a request acts on.
#[derive(ToSchema)]
pub struct PairRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
}

#[derive(ToSchema)]
pub struct PairCodeRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    #[schema(schema_with = typed_phone_number)]
    phone_number: String,
}

// ----- Query and path parameters -----

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `png` (the default): the QR code as an image. `raw`: the text the QR code encodes,
    /// for a client that draws it itself. Empty means `png`.
    #[param(schema_with = qr_format)]
    format: Option<String>,
}

// ----- Data of the success envelopes -----

#[derive(ToSchema)]
#[serde(untagged)]
pub enum StatusData {
    Session(Box<SessionState>),
    NoSession(NoSession),
}

/// A session of the pair: the latest one, live or as it was last saved.
#[derive(ToSchema)]
pub struct SessionState {
    /// `session_<user_id>_<place_id>_<unix_ms>`.
    #[schema(examples("session_1_1_1700000000000"))]
    session_id: String,
    user_id: i64,
    place_id: i64,
    #[schema(schema_with = session_status)]
    status: String,
    /// Linked, connected, and its client alive.
    client_ready: bool,
    /// A PNG data URL while the status is `qr_ready`.
    #[schema(required = true)]
    qr_code: Option<String>,
    /// The linked account's number, E.164.
    #[schema(required = true)]
    phone_number: Option<String>,
    /// The linked account's WhatsApp name.
    #[schema(required = true)]
    name: Option<String>,
    #[schema(required = true, format = DateTime)]
    connected_at: Option<String>,
    #[schema(schema_with = always_true)]
    session_exists: bool,
    /// Active contacts of the pair.
    total_contacts: i64,
    /// Contact groups of the pair.
    total_groups: i64,
    #[schema(required = true, format = DateTime)]
    last_contacts_sync: Option<String>,
    /// Percentage of the running or last contact fetch.
    #[schema(minimum = 0, maximum = 100)]
    contacts_fetch_progress: i64,
    contacts_fetch_completed: bool,
    /// Why the last contact fetch failed.
    #[schema(required = true)]
    contacts_fetch_error: Option<String>,
    is_fetching: bool,
    /// Why the session is disconnected or in error.
    #[schema(required = true)]
    error_message: Option<String>,
    #[schema(required = true, format = DateTime)]
    last_activity: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The session that init or restart started (or found live), with the earlier service's
/// `success` and `message` beside its fields.
#[derive(ToSchema)]
pub struct SessionStarted {
    #[serde(flatten)]
    session: SessionState,
    #[schema(schema_with = always_true)]
    success: bool,
    /// What happened, the same sentence as the envelope's message.
    #[schema(examples("Client initialization started"))]
    message: String,
}

/// The pair never had a session.
#[derive(ToSchema)]
pub struct NoSession {
    #[schema(schema_with = null)]
    session_id: (),
    user_id: i64,
    place_id: i64,
    #[schema(schema_with = not_initialized)]
    status: String,
    #[schema(schema_with = always_false)]
    client_ready: bool,
    #[schema(schema_with = null)]
    qr_code: (),
    #[schema(schema_with = always_false)]
    session_exists: bool,
    #[schema(minimum = 0, maximum = 0)]
    total_contacts: i64,
    #[schema(minimum = 0, maximum = 0)]
    total_groups: i64,
    #[schema(minimum = 0, maximum = 0)]
    contacts_fetch_progress: i64,
    #[schema(schema_with = always_false)]
    contacts_fetch_completed: bool,
    #[schema(schema_with = null)]
    contacts_fetch_error: (),
    /// The earlier service's sentence, kept for its clients.
    #[schema(schema_with = no_session_found)]
    message: String,
}

fn no_session_found() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["No session found"]))
        .build()
}

/// The session, its contacts in numbers, a health score and what to do about it.
#[derive(ToSchema)]
pub struct SessionInfo {
    #[serde(flatten)]
    session: SessionState,
    contact_statistics: ContactStatistics,
    health: SessionHealth,
    /// Plain sentences telling the user what to do.
    recommendations: Vec<String>,
    #[schema(required = true)]
    fetch_summary: Option<FetchSummary>,
}

#[derive(ToSchema)]
pub struct ContactStatistics {
    total_contacts: i64,
    with_saved_name: i64,
    with_push_name: i64,
    without_any_name: i64,
    business: i64,
    active_last_90_days: i64,
    with_known_activity: i64,
}

#[derive(ToSchema)]
pub struct SessionHealth {
    #[schema(minimum = 0, maximum = 100)]
    score: i64,
    issues: Vec<String>,
}

/// What the last fetch read and what it kept.
#[derive(ToSchema)]
pub struct FetchSummary {
    received: u64,
    imported: u64,
    skipped_groups: u64,
    skipped_broadcasts: u64,
    skipped_newsletters: u64,
    skipped_self: u64,
    skipped_unresolved_lids: u64,
    skipped_invalid: u64,
    merged_duplicates: u64,
}

#[derive(ToSchema)]
pub struct FetchProgress {
    session_id: String,
    #[schema(schema_with = session_status)]
    status: String,
    #[schema(minimum = 0, maximum = 100)]
    contacts_fetch_progress: i64,
    /// Contacts read so far by the running or last fetch.
    processed: i64,
    /// Contacts the running or last fetch has to read.
    total: i64,
    contacts_fetch_completed: bool,
    #[schema(required = true)]
    contacts_fetch_error: Option<String>,
    total_contacts: i64,
    total_groups: i64,
    #[schema(required = true, format = DateTime)]
    last_contacts_sync: Option<String>,
    is_fetching: bool,
    #[schema(required = true)]
    fetch_summary: Option<FetchSummary>,
}

#[derive(ToSchema)]
pub struct FetchStarted {
    #[schema(schema_with = always_true)]
    success: bool,
    #[schema(examples("Background contact fetch started"))]
    message: String,
    session_id: String,
    /// The status the session had when the fetch was accepted.
    #[schema(schema_with = session_status)]
    current_status: String,
}

#[derive(ToSchema)]
pub struct ServiceStats {
    /// Sessions with a live client in this process.
    live_clients: u64,
    /// Pairs with a session.
    total_sessions: u64,
    #[schema(schema_with = sessions_by_status)]
    sessions_by_status: std::collections::BTreeMap<String, u64>,
    memory: MemoryUsage,
    uptime_seconds: u64,
    engine: EngineName,
}

/// Resident memory of the process; `null` where the system does not tell.
#[derive(ToSchema)]
pub struct MemoryUsage {
    #[schema(required = true)]
    rss_bytes: Option<u64>,
    #[schema(required = true)]
    rss_mb: Option<f64>,
}

#[derive(ToSchema)]
pub struct PairCode {
    session_id: String,
    #[schema(schema_with = session_status)]
    status: String,
    /// The number the code is for, E.164.
    #[schema(examples("+966501234567"))]
    phone_number: String,
    /// Eight characters to type on the phone.
    #[schema(examples("ABCD1234"))]
    code: String,
    /// The same code, under the name the earlier service used.
    pairing_code: String,
}

// ----- API keys -----

// ----- Non-JSON bodies -----

#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PngImage(Vec<u8>);

/// The text the QR code encodes.
#[derive(ToSchema)]
pub struct QrText(String);

// ----- Shared by messaging and webhooks -----

/// An http(s) URL as the server fetches it: no spaces, a host right after `://`.
pub fn http_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[hH][tT][tT][pP][sS]?://[^\s/?#\\][^\s]*$"))
        .max_length(Some(crate::messaging::image::MAX_URL_CHARS))
        .examples([serde_json::json!("https://example.com/offer.jpg")])
        .build()
}

// ----- Webhooks -----

// ----- Sim messaging -----
