//! The OpenAPI document's frame and what every operation shares. The paths, their parameters,
//! bodies and answers come from the routes themselves: each handler's `#[utoipa::path]` names
//! the request and answer types it reads and returns, which live beside it. This module
//! imports nothing from the routes.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::envelope::ErrorEnvelope;

pub mod tags {
    pub const HEALTH: &str = "health";
    pub const SESSIONS: &str = "sessions";
    pub const LINKING: &str = "linking";
    pub const CONTACTS: &str = "contacts";
    pub const SIM: &str = "sim";
    pub const MESSAGING: &str = "messaging";
    pub const WEBHOOKS: &str = "webhooks";
    /// The API-key routes.
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

// ----- Requests -----

// ----- Query and path parameters -----

// ----- Data of the success envelopes -----

// ----- API keys -----

// ----- Non-JSON bodies -----

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
