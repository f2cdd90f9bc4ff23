//! The OpenAPI document: the shapes the handlers answer with, written as types so the
//! document can name them. Handlers still build their JSON with `json!`; the schemathesis
//! test (`tests/schemathesis.rs`) checks every answer against these types.

// The types below are only ever described, never built or read.
#![allow(dead_code)]

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

pub use super::envelope::ErrorEnvelope;
// For the routes not yet beside their types; these live with the routes that read them.
pub use super::extract::PageQuery;
use super::extract::Pagination;
/// The pair of a query string and of a body; routes not yet converted name them from here.
pub use super::extract::{PairQuery, PairRequest};
pub use super::groups::dto::GroupPath;
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
    components(schemas(
        ErrorEnvelope,
        CreateKeyRequest,
        CreatedKey,
        CreatedKeyResponse,
        KeyInfo,
        KeyList,
        KeyListResponse,
        RevokedKey,
        RevokedKeyResponse,
    )),
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

described!(WebhookResponse, Webhook);
described!(DeletedWebhookResponse, DeletedWebhook);
described!(DeliveryListResponse, DeliveryList);
described!(SimOutboxResponse, SimOutbox);
described!(SimIncomingResponse, SimIncomingDelivered);
described!(PhonebookResponse, PhonebookSet);
described!(ScanResponse, Scanned);
described!(FaultResponse, FaultInjected);
described!(CreatedKeyResponse, CreatedKey);
described!(KeyListResponse, KeyList);
described!(RevokedKeyResponse, RevokedKey);

// ----- Requests -----

/// The phone book the simulated phone of a pair holds; replaces any earlier one.
#[derive(ToSchema)]
pub struct PhonebookRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// The account's own jid, like `966512345678@s.whatsapp.net`.
    #[schema(examples("966500000001@s.whatsapp.net"))]
    me: Option<String>,
    /// The account's own WhatsApp name.
    push_name: Option<String>,
    entries: Vec<SimEntry>,
}

/// One chat or contact of the simulated phone, as WhatsApp would send it.
#[derive(ToSchema)]
pub struct SimEntry {
    /// `<digits>@s.whatsapp.net`, `<id>@lid`, `<id>@g.us`, `status@broadcast`, ...
    #[schema(examples("966512345678@s.whatsapp.net"))]
    jid: String,
    /// For a `@lid` chat: the phone-number jid it stands for.
    pn_jid: Option<String>,
    /// The name saved on the phone.
    name: Option<String>,
    /// The name the contact gave itself.
    push_name: Option<String>,
    /// `null` means `false`.
    is_business: Option<bool>,
    /// Unix seconds of the chat's last message.
    last_message_at: Option<i64>,
}

#[derive(ToSchema)]
pub struct FaultRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    kind: FaultKind,
}

/// What goes wrong: the client vanishes, the connection drops, the phone unlinks the
/// device, the next fetch fails, or the next fetch is slow (3 s).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum FaultKind {
    DropClient,
    Disconnect,
    Logout,
    FailFetch,
    SlowFetch,
}

// ----- Data of the success envelopes -----

#[derive(ToSchema)]
pub struct PhonebookSet {
    user_id: i64,
    place_id: i64,
    /// Entries stored.
    entries: u64,
}

#[derive(ToSchema)]
pub struct Scanned {
    session_id: String,
    user_id: i64,
    place_id: i64,
}

#[derive(ToSchema)]
pub struct FaultInjected {
    session_id: String,
    /// `kind` exactly as the request gave it.
    kind: String,
}

// ----- API keys -----

#[derive(ToSchema)]
pub struct CreateKeyRequest {
    /// The tenant the key acts for.
    #[schema(minimum = 1)]
    user_id: i64,
    /// A label for people, e.g. which system holds the key.
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Sessions the key's user may hold when the key asks (0: no limit); in place of
    /// `--max-sessions-per-user`. Left out or `null`: the server's.
    #[schema(minimum = 0, maximum = 1_000_000)]
    max_sessions: Option<u32>,
    /// Requests per second with this key, in place of `--rate-limit`.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000)]
    rate_limit: Option<f64>,
    /// Requests at once before the rate applies, in place of `--rate-limit-burst` (default:
    /// twice the key's `rate_limit`, else the server's burst).
    #[schema(minimum = 1, maximum = 1_000_000)]
    rate_limit_burst: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Only the keys of this user.
    #[param(minimum = 1)]
    user_id: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The key's `id`.
    #[param(minimum = 1)]
    key_id: i64,
}

/// A new key. `key` is shown this once; only its prefix is kept readable.
#[derive(ToSchema)]
pub struct CreatedKey {
    id: i64,
    user_id: i64,
    #[schema(required = true)]
    name: Option<String>,
    key: String,
    /// The first characters of the key, to recognise it later.
    prefix: String,
    #[schema(format = DateTime)]
    created_at: String,
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

#[derive(ToSchema)]
pub struct KeyInfo {
    id: i64,
    user_id: i64,
    #[schema(required = true)]
    name: Option<String>,
    prefix: String,
    #[schema(format = DateTime)]
    created_at: String,
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

#[derive(ToSchema)]
pub struct KeyList {
    keys: Vec<KeyInfo>,
    pagination: Pagination,
}

#[derive(ToSchema)]
pub struct RevokedKey {
    id: i64,
    user_id: i64,
    #[schema(schema_with = always_true)]
    revoked: bool,
}

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

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The tenant.
    #[param(minimum = 1, example = 1)]
    user_id: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilterQuery {
    #[param(schema_with = delivery_status)]
    status: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventStreamQuery {
    /// Only this place's events.
    #[param(minimum = 1)]
    place_id: Option<i64>,
    /// Replay the events after this one first (like the `Last-Event-ID` header).
    #[param(minimum = 0)]
    last_event_id: Option<i64>,
}

fn delivery_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["pending", "delivered", "failed"]))
        .build()
}

fn event_list() -> Schema {
    let names: Vec<&str> = crate::events::EventKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .into()
}

fn webhook_secret() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .pattern(Some("^[!-~]{16,200}$"))
        .examples([serde_json::json!("a-long-random-secret-1234")])
        .build()
}

#[derive(ToSchema)]
pub struct WebhookRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    /// Where events are POSTed.
    #[schema(schema_with = http_url)]
    url: String,
    /// 16 to 200 printable ASCII characters, no spaces; made for you when left out.
    #[schema(schema_with = webhook_secret)]
    secret: Option<String>,
    /// Which events; all when left out.
    #[schema(schema_with = event_list)]
    events: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct Webhook {
    user_id: i64,
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
    secret_generated: Option<bool>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(ToSchema)]
pub struct DeletedWebhook {
    user_id: i64,
    #[schema(schema_with = always_true)]
    deleted: bool,
}

#[derive(ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<Delivery>,
    pagination: Pagination,
}

/// One event's delivery to the webhook.
#[derive(ToSchema)]
pub struct Delivery {
    id: i64,
    event_id: i64,
    /// The event type.
    event: String,
    user_id: i64,
    place_id: i64,
    #[schema(required = true)]
    session_id: Option<String>,
    #[schema(schema_with = delivery_status)]
    status: String,
    attempts: i64,
    /// When a pending delivery is tried next.
    #[schema(required = true, format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(required = true)]
    last_status_code: Option<i64>,
    #[schema(required = true)]
    last_error: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(required = true, format = DateTime)]
    delivered_at: Option<String>,
    /// The body as delivered and signed.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

// ----- Sim messaging -----

#[derive(ToSchema)]
pub struct SimOutbox {
    user_id: i64,
    place_id: i64,
    total: i64,
    messages: Vec<SimSentMessage>,
}

#[derive(ToSchema)]
pub struct SimSentMessage {
    /// The WhatsApp message id.
    id: String,
    /// E.164.
    to: String,
    #[schema(required = true)]
    text: Option<String>,
    #[schema(required = true)]
    image_mime: Option<String>,
    #[schema(required = true)]
    image_bytes: Option<i64>,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
}

#[derive(ToSchema)]
pub struct SimIncomingRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// The sender's number, with its country code.
    #[schema(
        pattern = r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$",
        examples("+966501234567")
    )]
    from: String,
    #[schema(min_length = 1, max_length = 4096, pattern = r"\S")]
    text: String,
    #[schema(max_length = 100)]
    push_name: Option<String>,
}

#[derive(ToSchema)]
pub struct SimIncomingDelivered {
    id: String,
    from: String,
    user_id: i64,
    place_id: i64,
}
