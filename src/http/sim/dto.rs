//! The sim routes' requests and answers: the types the handlers read and return, and so the
//! ones the OpenAPI document describes. The limits are declared here, beside the type that
//! enforces them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};

use crate::clock::rfc3339_ms;
use crate::domain::{Pair, PlaceId, SessionId, UserId, parse_flag};
use crate::engine::sim::SimSent;
use crate::http::envelope::success;
use crate::http::schema::positive_id_in_body;
use crate::store::traits::SimConnection;

/// The longest text someone may write to a simulated number, as WhatsApp's own limit.
pub const TEXT_MAX_CHARS: usize = 4096;
pub const PUSH_NAME_MAX_CHARS: usize = 100;

/// The phone book the simulated phone of a pair holds; replaces any earlier one.
#[derive(Deserialize, ToSchema)]
pub struct PhonebookRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// The account's own jid, like `966512345678@s.whatsapp.net`.
    #[serde(default)]
    #[schema(examples("966500000001@s.whatsapp.net"))]
    pub me: Option<String>,
    /// The account's own WhatsApp name.
    #[serde(default)]
    pub push_name: Option<String>,
    #[serde(default)]
    #[schema(required = true, value_type = Vec<SimEntry>)]
    pub entries: Option<Vec<SimEntry>>,
}

/// One chat or contact of the simulated phone, as WhatsApp would send it.
#[derive(Deserialize, ToSchema)]
pub struct SimEntry {
    /// `<digits>@s.whatsapp.net`, `<id>@lid`, `<id>@g.us`, `status@broadcast`, ...
    #[schema(examples("966512345678@s.whatsapp.net"))]
    jid: String,
    /// For a `@lid` chat: the phone-number jid it stands for.
    #[serde(default)]
    pn_jid: Option<String>,
    /// The name saved on the phone.
    #[serde(default)]
    name: Option<String>,
    /// The name the contact gave itself.
    #[serde(default)]
    push_name: Option<String>,
    // `null` means `false`. A form body writes it as text, read like every yes/no of the API.
    #[serde(default, deserialize_with = "flag_or_false")]
    #[schema(schema_with = business_flag)]
    is_business: bool,
    // Unix seconds of the chat's last message; in a form body, its digits.
    #[serde(default, deserialize_with = "unix_seconds")]
    #[schema(schema_with = last_message_at)]
    last_message_at: Option<i64>,
}

impl From<SimEntry> for crate::engine::sim::SimEntry {
    fn from(e: SimEntry) -> Self {
        Self {
            jid: e.jid,
            pn_jid: e.pn_jid,
            name: e.name,
            push_name: e.push_name,
            is_business: e.is_business,
            last_message_at: e.last_message_at,
        }
    }
}

fn flag_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let raw = Option::<Value>::deserialize(d)?;
    parse_flag("is_business", raw.as_ref())
        .map(|b| b.unwrap_or(false))
        .map_err(serde::de::Error::custom)
}

fn unix_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let invalid = || serde::de::Error::custom("last_message_at must be an integer (unix seconds)");
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(invalid),
        Some(Value::String(s)) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            s.parse().map(Some).map_err(|_| invalid())
        }
        Some(_) => Err(invalid()),
    }
}

fn business_flag() -> Schema {
    OneOfBuilder::new()
        .description(Some(
            "Whether it is a business account; `null` means `false`.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["true", "false", "1", "0"])),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

fn last_message_at() -> Schema {
    OneOfBuilder::new()
        .description(Some("Unix seconds of the chat's last message."))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(crate::http::schema::int64()),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*-?[0-9]+\s*$"))
                .description(Some("The same number written in digits.")),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

#[derive(Deserialize, ToSchema)]
pub struct FaultRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = fault_kind, required = true)]
    pub kind: Option<Value>,
}

/// What goes wrong: the client vanishes, the connection drops, the phone unlinks the
/// device, the next fetch fails, or the next fetch is slow (3 s). (`fail_send` is taken too
/// but left out here: the fuzzer would make every later send of the pair fail.)
fn fault_kind() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([
            "drop_client",
            "disconnect",
            "logout",
            "fail_fetch",
            "slow_fetch",
        ]))
        .description(Some(
            "What goes wrong: the client vanishes, the connection drops, the phone unlinks the \
             device, the next fetch fails, or the next fetch is slow (3 s).",
        ))
        .build()
}

#[derive(Deserialize, ToSchema)]
pub struct SimIncomingRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = sender, required = true)]
    pub from: Option<Value>,
    /// The text; with `media`, its caption (optional then).
    #[serde(default)]
    #[schema(schema_with = incoming_text)]
    pub text: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = push_name)]
    pub push_name: Option<Value>,
    /// A file sent with it.
    #[serde(default)]
    #[schema(value_type = Option<super::inbox::SimIncomingMedia>)]
    pub media: Option<Value>,
}

fn sender() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$"))
        .examples([serde_json::json!("+966501234567")])
        .description(Some("The sender's number, with its country code."))
        .build()
}

fn incoming_text() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(TEXT_MAX_CHARS))
        .pattern(Some(r"\S"))
        .build()
}

fn push_name() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(PUSH_NAME_MAX_CHARS))
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct PhonebookSet {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
    /// Entries stored.
    pub entries: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Scanned {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
}

#[derive(Serialize, ToSchema)]
pub struct FaultInjected {
    #[schema(value_type = String)]
    pub session_id: SessionId,
    /// `kind` exactly as the request gave it.
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct SimOutbox {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
    pub total: i64,
    pub messages: Vec<SimSentMessage>,
}

impl SimOutbox {
    pub fn new(pair: Pair, sent: &[SimSent]) -> Self {
        Self {
            user_id: pair.user_id,
            place_id: pair.place_id,
            total: sent.len() as i64,
            messages: sent.iter().map(SimSentMessage::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SimSentMessage {
    /// The WhatsApp message id.
    id: String,
    /// E.164.
    to: String,
    #[schema(required = true)]
    text: Option<String>,
    #[schema(required = true)]
    image_mime: Option<String>,
    #[schema(required = true, value_type = Option<i64>)]
    image_bytes: Option<usize>,
    /// `image`, `document`, `video` or `audio`; null for a text.
    #[schema(required = true)]
    media_type: Option<String>,
    #[schema(required = true)]
    media_mime: Option<String>,
    #[schema(required = true, value_type = Option<i64>)]
    media_bytes: Option<usize>,
    /// A document's name as the recipient sees it.
    #[schema(required = true)]
    file_name: Option<String>,
    /// An audio sent as a voice note.
    voice_note: bool,
    /// An image's width and height, as the message carried them.
    #[schema(required = true)]
    width: Option<u32>,
    #[schema(required = true)]
    height: Option<u32>,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
}

impl From<&SimSent> for SimSentMessage {
    fn from(m: &SimSent) -> Self {
        Self {
            id: m.id.clone(),
            to: m.to.clone(),
            text: m.text.clone(),
            image_mime: m.image_mime.clone(),
            image_bytes: m.image_bytes,
            media_type: m.media_type.clone(),
            media_mime: m.media_mime.clone(),
            media_bytes: m.media_bytes,
            file_name: m.file_name.clone(),
            voice_note: m.voice_note,
            width: m.width,
            height: m.height,
            sent_at: rfc3339_ms(m.at_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SimIncomingDelivered {
    pub id: String,
    #[schema(value_type = String)]
    pub from: crate::domain::PhoneNumber,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
}

/// Every connection the pair's linked devices opened to the simulated WhatsApp.
#[derive(Serialize, ToSchema)]
pub struct SimConnections {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
    /// Oldest first.
    pub connections: Vec<SimConnectionView>,
}

impl SimConnections {
    pub fn new(pair: Pair, all: &[SimConnection]) -> Self {
        Self {
            user_id: pair.user_id,
            place_id: pair.place_id,
            connections: all.iter().map(SimConnectionView::from).collect(),
        }
    }
}

/// One connection of a linked device: one device has at most one open at a time.
#[derive(Serialize, ToSchema)]
pub struct SimConnectionView {
    id: i64,
    #[schema(examples("session_1_1_1700000000000"))]
    session_id: String,
    /// The node whose client opened it (`--node-id`).
    node_id: String,
    #[schema(format = DateTime)]
    opened_at: Option<String>,
    /// `null` while open.
    #[schema(required = true, format = DateTime)]
    closed_at: Option<String>,
    /// Why it closed, `null` while open: `closed` (the client stopped), `replaced` (another
    /// connection of the device took its place), `connection_lost` (dropped: a fault, a
    /// client or a node that died), `logged_out` (the device was unlinked).
    #[schema(required = true, examples("replaced"))]
    reason: Option<String>,
}

impl From<&SimConnection> for SimConnectionView {
    fn from(c: &SimConnection) -> Self {
        Self {
            id: c.id,
            session_id: c.session_id.clone(),
            node_id: c.node_id.clone(),
            opened_at: rfc3339_ms(c.opened_at),
            closed_at: c.closed_at.and_then(rfc3339_ms),
            reason: c.reason.clone(),
        }
    }
}

success!(PhonebookResponse, PhonebookSet);
success!(SimConnectionsResponse, SimConnections);
success!(ScanResponse, Scanned);
success!(FaultResponse, FaultInjected);
success!(SimOutboxResponse, SimOutbox);
success!(SimIncomingResponse, SimIncomingDelivered);
