//! The OpenAPI document: the shapes the handlers answer with, written as types so the
//! document can name them. Handlers still build their JSON with `json!`; the schemathesis
//! test (`tests/schemathesis.rs`) checks every answer against these types.

// The types below are only ever described, never built or read.
#![allow(dead_code)]

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

pub use super::envelope::ErrorEnvelope;
use super::extract::Pagination;
/// The pair of a query string and of a body; routes not yet converted name them from here.
pub use super::extract::{PairQuery, PairRequest};
use super::messaging::dto::{message_status, message_type};
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

described!(GroupListResponse, GroupList);
described!(GroupContactsResponse, GroupContacts);
described!(ContactSearchResponse, ContactSearch);
described!(MessageResponse, Message);
described!(QueuedMessageResponse, QueuedMessage);
described!(GroupJobResponse, GroupJob);
described!(JobResponse, Job);
described!(BulkJobResponse, BulkJob);
described!(MessageListResponse, MessageList);
described!(MessageStatsResponse, MessageStats);
described!(ValidationResponse, Validation);
described!(ImageProbeResponse, ImageProbe);
described!(TemplateListResponse, TemplateList);
described!(WebhookResponse, Webhook);
described!(DeletedWebhookResponse, DeletedWebhook);
described!(DeliveryListResponse, DeliveryList);
described!(SimOutboxResponse, SimOutbox);
described!(SimIncomingResponse, SimIncomingDelivered);
described!(GroupResponse, Group);
described!(DeletedGroupResponse, DeletedGroup);
described!(ContactResponse, ContactDetail);
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

// ----- Query and path parameters -----

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page number, from 1.
    #[param(minimum = 1, default = 1)]
    page: Option<i64>,
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 50)]
    limit: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactSearchQuery {
    /// Text to look for in names and/or numbers; at most 200 characters once surrounding
    /// whitespace is removed. Empty means no filter.
    #[param(pattern = r"^\s*([^\s][\s\S]{0,198}[^\s]|[^\s])?\s*$")]
    search: Option<String>,
    /// The earlier service's name for `search`; give one of the two (or both the same).
    #[param(pattern = r"^\s*([^\s][\s\S]{0,198}[^\s]|[^\s])?\s*$")]
    q: Option<String>,
    /// Where `search` looks: `name` (saved and push names), `phone`, or `all` (the
    /// default; also when empty).
    #[param(schema_with = search_type)]
    search_type: Option<String>,
}

/// Filters of contact search and export; each one given narrows the result.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactFilterQuery {
    /// Only business accounts (`true`) or only the others (`false`).
    #[param(schema_with = true_or_false)]
    is_business: Option<String>,
    /// Only contacts whose last chat activity is within this many days.
    #[param(minimum = 1, maximum = 3650)]
    last_interaction_days: Option<i64>,
    /// Only contacts with no chat activity for at least this many days (or never).
    #[param(minimum = 1, maximum = 3650)]
    inactive_days: Option<i64>,
    /// Comma-separated tags (at most 50, each at most 50 characters); a contact must carry
    /// every one. Surrounding spaces are ignored.
    #[param(pattern = r"^[^,]{0,50}(,[^,]{0,50}){0,49}$", example = "vip,riyadh")]
    tags: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContactPath {
    /// The contact's id.
    #[param(minimum = 1, example = 1)]
    contact_id: i64,
}

#[derive(ToSchema)]
pub struct CreateGroupRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// Unique among the pair's groups; surrounding spaces are dropped.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"\S",
        examples("VIP customers")
    )]
    name: String,
    #[schema(max_length = 500)]
    description: Option<String>,
    /// Ids of the pair's contacts; duplicates count once.
    #[schema(schema_with = contact_id_list)]
    contact_ids: Vec<i64>,
}

#[derive(ToSchema)]
pub struct ReplaceMembersRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// The group's members from now on: ids of the pair's contacts.
    #[schema(schema_with = contact_id_list)]
    contact_ids: Vec<i64>,
}

#[derive(ToSchema)]
pub struct DeletedGroup {
    id: i64,
    #[schema(schema_with = always_true)]
    deleted: bool,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The group's id.
    #[param(minimum = 1, example = 1)]
    group_id: i64,
}

// ----- Data of the success envelopes -----

#[derive(ToSchema)]
pub struct GroupList {
    groups: Vec<Group>,
    pagination: Pagination,
}

#[derive(ToSchema)]
pub struct ContactSearch {
    contacts: Vec<Contact>,
    pagination: Pagination,
}

#[derive(ToSchema)]
pub struct GroupContacts {
    group: Group,
    contacts: Vec<Contact>,
    pagination: Pagination,
}

/// A contact group of the pair. The two automatic ones ("جميع الارقام", every number, and
/// "اخر الارقام (90 يوم)", numbers active in the last 90 days) are created when the
/// session first becomes ready.
#[derive(ToSchema)]
pub struct Group {
    id: i64,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    #[serde(rename = "type")]
    kind: GroupKind,
    contact_count: i64,
    /// The rule of an automatic group; `null` for a manual one.
    #[schema(required = true)]
    filter_applied: Option<GroupFilter>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GroupKind {
    Auto,
    Manual,
}

/// `{"rule": "all"}` or `{"rule": "last_interaction_within_days", "days": 90}`.
#[derive(ToSchema)]
pub struct GroupFilter {
    rule: GroupRule,
    /// Only with `last_interaction_within_days`.
    #[serde(default)]
    days: i64,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GroupRule {
    All,
    LastInteractionWithinDays,
}

#[derive(ToSchema)]
pub struct Contact {
    id: i64,
    /// E.164.
    #[schema(examples("+966512345678"))]
    phone_number: String,
    /// The name saved on the phone.
    #[schema(required = true)]
    name: Option<String>,
    /// The name the contact gave itself.
    #[schema(required = true)]
    push_name: Option<String>,
    is_business: bool,
    /// The last message in the chat with this contact.
    #[schema(required = true, format = DateTime)]
    last_interaction: Option<String>,
    tags: Vec<String>,
}

/// A contact shown alone: the list fields and its custom fields.
#[derive(ToSchema)]
pub struct ContactDetail {
    id: i64,
    /// E.164.
    #[schema(examples("+966512345678"))]
    phone_number: String,
    #[schema(required = true)]
    name: Option<String>,
    #[schema(required = true)]
    push_name: Option<String>,
    is_business: bool,
    #[schema(required = true, format = DateTime)]
    last_interaction: Option<String>,
    tags: Vec<String>,
    /// Set with `PATCH`; never touched by a fetch.
    #[schema(value_type = Object)]
    custom_fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(ToSchema)]
pub struct ContactPatchRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// Replaces the contact's tags; trimmed, duplicates dropped.
    #[schema(schema_with = tag_list)]
    tags: Option<Vec<String>>,
    /// Merged into the contact's fields; `null` removes a field.
    #[schema(schema_with = custom_field_map)]
    custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

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

// ----- Non-JSON bodies -----

// ----- Messaging -----

/// An http(s) URL as the server fetches it: no spaces, a host right after `://`.
fn http_url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[hH][tT][tT][pP][sS]?://[^\s/?#\\][^\s]*$"))
        .max_length(Some(crate::messaging::image::MAX_URL_CHARS))
        .examples([serde_json::json!("https://example.com/offer.jpg")])
        .build()
}

fn message_text() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .min_length(Some(1))
        .max_length(Some(crate::messaging::MAX_TEXT_CHARS))
        .pattern(Some(r"\S"))
        .examples([serde_json::json!("Hello {name}, our new offer is here!")])
        .build()
}

fn template_id() -> Object {
    let ids: Vec<&str> = crate::messaging::templates::TEMPLATES
        .iter()
        .map(|t| t.id)
        .collect();
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(ids.into_iter().map(Some).chain([None])))
        .build()
}

/// Variable names to strings, numbers or booleans.
fn variable_map() -> Schema {
    let value = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(crate::http::messaging::VARIABLE_VALUE_MAX_CHARS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean));
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9_]{1,50}$")),
        ))
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
            RefOr::T(Schema::OneOf(value.build())),
        )))
        .max_properties(Some(crate::http::messaging::MAX_VARIABLES))
        .examples([serde_json::json!({"offer": "20% off everything"})])
        .into()
}

fn optional_phone() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .pattern(Some(r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$"))
        .examples([serde_json::json!("+966501234567")])
        .build()
}

fn optional_http_url() -> Object {
    let mut o = http_url();
    o.schema_type = utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]);
    o
}

/// To one contact or number. Give `contact_id` or `phone_number`, and `text` (or
/// `template_id`) and/or `image_url`.
#[derive(ToSchema)]
pub struct SendMessageRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// A contact of the pair; its name and custom fields fill the variables.
    #[schema(schema_with = optional_positive_id)]
    contact_id: Option<i64>,
    /// A number with its country code.
    #[schema(schema_with = optional_phone)]
    phone_number: Option<String>,
    /// At most 4,096 characters; `{name}`-style variables are filled per recipient.
    #[schema(schema_with = message_text)]
    text: Option<String>,
    /// The earlier service's name for `text`.
    #[schema(schema_with = message_text)]
    message: Option<String>,
    /// An image to send, with `text` as its caption: http/https, `image/*`, at most 10 MB.
    #[schema(schema_with = optional_http_url)]
    image_url: Option<String>,
    /// A template's text instead of `text` (`GET /templates`).
    #[schema(schema_with = template_id)]
    template_id: Option<String>,
    /// Values of variables the recipient does not fill itself.
    #[schema(schema_with = variable_map)]
    variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What to send to every member; variables are filled per member.
#[derive(ToSchema)]
pub struct GroupSendRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    #[schema(schema_with = message_text)]
    text: Option<String>,
    /// The earlier service's name for `text`.
    #[schema(schema_with = message_text)]
    message: Option<String>,
    #[schema(schema_with = optional_http_url)]
    image_url: Option<String>,
    #[schema(schema_with = template_id)]
    template_id: Option<String>,
    #[schema(schema_with = variable_map)]
    variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One message to each recipient.
#[derive(ToSchema)]
pub struct BulkSendRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    /// 1 to 100: numbers (`"+966501234567"`), contact ids, or objects
    /// `{phone_number | contact_id, name?, variables?}`.
    #[schema(schema_with = bulk_recipients)]
    recipients: Vec<serde_json::Value>,
    /// The earlier service's name for `recipients`.
    #[schema(schema_with = bulk_recipients)]
    contacts: Option<Vec<serde_json::Value>>,
    #[schema(schema_with = message_text)]
    text: Option<String>,
    /// The earlier service's name for `text`.
    #[schema(schema_with = message_text)]
    message: Option<String>,
    #[schema(schema_with = optional_http_url)]
    image_url: Option<String>,
    #[schema(schema_with = template_id)]
    template_id: Option<String>,
    #[schema(schema_with = variable_map)]
    variables: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds between this job's messages, when slower than the number's pace.
    #[schema(schema_with = delay_seconds)]
    delay_seconds: Option<f64>,
    /// The earlier service's delay: milliseconds between this job's messages.
    #[schema(schema_with = delay_ms)]
    delay: Option<f64>,
}

/// A positive id as a JSON integer or a string of digits, or `null`.
fn optional_positive_id() -> Schema {
    OneOfBuilder::new()
        .item(positive_id_in_body())
        .item(null())
        .into()
}

/// A number from 0 to `max`, as JSON or in digits (`"1.5"`), or `null`.
fn decimal_up_to(max: f64) -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(max)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*[0-9]+(\.[0-9]+)?\s*$"))
                .description(Some("The same number written in digits.")),
        )
        .item(null())
        .into()
}

fn delay_seconds() -> Schema {
    decimal_up_to(crate::http::messaging::MAX_BULK_DELAY_SECONDS)
}

fn delay_ms() -> Schema {
    decimal_up_to(crate::http::messaging::MAX_BULK_DELAY_SECONDS * 1000.0)
}

fn bulk_recipients() -> Schema {
    let item = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(int64())
                .minimum(Some(1)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Object));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(crate::http::messaging::MAX_BULK_RECIPIENTS))
        .examples([
            serde_json::json!(["+966501234567", {"phone_number": "+966501234568", "name": "Sara"}]),
        ])
        .into()
}

/// Any JSON value: a dry run reports a bad field in `errors` instead of refusing it.
fn checked_in_errors() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
}

/// A dry run: the same fields as a send, the recipient optional. Every field but the pair
/// is checked and reported in `errors` (with `valid: false`), not refused.
#[derive(ToSchema)]
pub struct ValidateMessageRequest {
    #[schema(schema_with = positive_id_in_body)]
    user_id: i64,
    #[schema(schema_with = positive_id_in_body)]
    place_id: i64,
    #[schema(schema_with = checked_in_errors)]
    contact_id: Option<serde_json::Value>,
    #[schema(schema_with = checked_in_errors)]
    phone_number: Option<serde_json::Value>,
    #[schema(schema_with = checked_in_errors)]
    text: Option<serde_json::Value>,
    /// The earlier service's name for `text`.
    #[schema(schema_with = checked_in_errors)]
    message: Option<serde_json::Value>,
    #[schema(schema_with = checked_in_errors)]
    image_url: Option<serde_json::Value>,
    #[schema(schema_with = checked_in_errors)]
    template_id: Option<serde_json::Value>,
    #[schema(schema_with = checked_in_errors)]
    variables: Option<serde_json::Value>,
}

#[derive(ToSchema)]
pub struct TestImageRequest {
    #[schema(schema_with = http_url)]
    image_url: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's id, as a group or bulk send answered it.
    #[param(minimum = 1, example = 1)]
    job_id: i64,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// The message's id.
    #[param(minimum = 1, example = 1)]
    message_id: i64,
}

/// A message in the outbox and what became of it.
#[derive(ToSchema)]
pub struct Message {
    id: i64,
    /// The group or bulk send it belongs to.
    #[schema(required = true)]
    job_id: Option<i64>,
    #[schema(required = true)]
    contact_id: Option<i64>,
    /// E.164.
    recipient: String,
    #[schema(required = true)]
    recipient_name: Option<String>,
    #[schema(schema_with = message_type)]
    r#type: String,
    /// As sent: variables filled.
    #[schema(required = true)]
    text: Option<String>,
    #[schema(required = true)]
    image_url: Option<String>,
    #[schema(required = true)]
    template_id: Option<String>,
    #[schema(schema_with = message_status)]
    status: String,
    /// WhatsApp's id, once sent.
    #[schema(required = true)]
    whatsapp_message_id: Option<String>,
    /// Why it failed.
    #[schema(required = true)]
    error: Option<String>,
    attempts: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    failed_at: Option<String>,
}

/// A message just queued: the log's entry, and its WhatsApp id under the earlier service's
/// name.
#[derive(ToSchema)]
pub struct QueuedMessage {
    id: i64,
    /// The group or bulk send it belongs to.
    #[schema(required = true)]
    job_id: Option<i64>,
    #[schema(required = true)]
    contact_id: Option<i64>,
    /// E.164.
    recipient: String,
    #[schema(required = true)]
    recipient_name: Option<String>,
    #[schema(schema_with = message_type)]
    r#type: String,
    /// As sent: variables filled.
    #[schema(required = true)]
    text: Option<String>,
    #[schema(required = true)]
    image_url: Option<String>,
    #[schema(required = true)]
    template_id: Option<String>,
    #[schema(schema_with = message_status)]
    status: String,
    /// WhatsApp's id, once sent.
    #[schema(required = true)]
    whatsapp_message_id: Option<String>,
    /// Why it failed.
    #[schema(required = true)]
    error: Option<String>,
    attempts: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    failed_at: Option<String>,
    /// The WhatsApp id the message is sent under, chosen when it is queued.
    message_id: String,
}

/// A group or bulk send's progress.
#[derive(ToSchema)]
pub struct Job {
    job_id: i64,
    /// `group` or `bulk`.
    r#type: String,
    #[schema(required = true)]
    group_id: Option<i64>,
    total: i64,
    queued: i64,
    sending: i64,
    sent: i64,
    failed: i64,
    /// Percent of the messages sent or failed.
    #[schema(minimum = 0, maximum = 100)]
    progress: i64,
    completed: bool,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A group send just queued.
#[derive(ToSchema)]
pub struct GroupJob {
    job_id: i64,
    r#type: String,
    #[schema(required = true)]
    group_id: Option<i64>,
    total: i64,
    queued: i64,
    sending: i64,
    sent: i64,
    failed: i64,
    #[schema(minimum = 0, maximum = 100)]
    progress: i64,
    completed: bool,
    #[schema(format = DateTime)]
    created_at: String,
    /// The WhatsApp ids of the queued messages, in the members' order.
    message_ids: Vec<String>,
}

#[derive(ToSchema)]
pub struct BulkJob {
    job_id: i64,
    r#type: String,
    #[schema(required = true)]
    group_id: Option<i64>,
    total: i64,
    queued: i64,
    sending: i64,
    sent: i64,
    failed: i64,
    #[schema(minimum = 0, maximum = 100)]
    progress: i64,
    completed: bool,
    #[schema(format = DateTime)]
    created_at: String,
    /// The WhatsApp ids of the queued messages, in the recipients' order.
    message_ids: Vec<String>,
    /// Recipients dropped because their number came earlier in the list.
    duplicates_skipped: i64,
}

#[derive(ToSchema)]
pub struct MessageList {
    messages: Vec<Message>,
    pagination: Pagination,
}

#[derive(ToSchema)]
pub struct MessageStats {
    total: i64,
    queued: i64,
    sending: i64,
    sent: i64,
    failed: i64,
    #[schema(value_type = Object)]
    by_type: serde_json::Value,
    /// Sends in the last 24 hours against the daily cap.
    #[schema(value_type = Object)]
    last_24_hours: serde_json::Value,
    /// The number's pace: interval, jitter, daily cap.
    #[schema(value_type = Object)]
    pacing: serde_json::Value,
}

#[derive(ToSchema)]
pub struct Validation {
    valid: bool,
    errors: Vec<String>,
    warnings: Vec<String>,
    /// The text as the recipient would get it.
    #[schema(required = true)]
    preview: Option<String>,
    #[schema(required = true)]
    length: Option<i64>,
    max_length: i64,
    #[schema(required = true)]
    r#type: Option<String>,
    /// The placeholders the text uses.
    variables: Vec<String>,
    #[schema(required = true)]
    recipient: Option<String>,
    /// The image's type and size, when an `image_url` was checked.
    #[schema(value_type = Option<Object>, required = true)]
    image: Option<serde_json::Value>,
}

#[derive(ToSchema)]
pub struct ImageProbe {
    valid: bool,
    url: String,
    #[schema(required = true)]
    final_url: Option<String>,
    #[schema(required = true)]
    content_type: Option<String>,
    #[schema(required = true)]
    size_bytes: Option<i64>,
    elapsed_ms: i64,
    /// Why the URL cannot be used.
    #[schema(required = true)]
    error: Option<String>,
}

#[derive(ToSchema)]
pub struct TemplateList {
    templates: Vec<Template>,
    /// Variables every recipient fills itself.
    recipient_variables: Vec<String>,
}

#[derive(ToSchema)]
pub struct Template {
    id: String,
    name: String,
    language: String,
    text: String,
    /// The earlier service's name for `text`.
    content: String,
    #[schema(schema_with = template_category)]
    category: String,
    variables: Vec<String>,
    description: String,
}

fn template_category() -> Object {
    let names: Vec<&str> = crate::messaging::templates::Category::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
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
