//! The messaging routes' requests, queries and paths: the types the handlers read, and so
//! the ones the OpenAPI document describes. A dry run reports a bad field instead of refusing
//! it, so bodies keep each field as the JSON value given; the handlers' parsing names it.

use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType,
    Type,
};
use utoipa::{IntoParams, ToSchema};

use super::answers::message_type;
use crate::http::openapi::http_url;
use crate::http::schema::{int64, null, positive_id_in_body};
use crate::messaging::content::{MAX_VARIABLES, VARIABLE_NAME_MAX_CHARS, VARIABLE_VALUE_MAX_CHARS};

/// Recipients of one bulk send, at most.
pub const MAX_BULK_RECIPIENTS: usize = 100;
/// A bulk send's own delay between messages may slow the pace down to this, not past it.
pub const MAX_BULK_DELAY_SECONDS: f64 = 3_600.0;

/// Filters of the message log; each one given narrows it. The earlier service's names are
/// taken too; a filter given under both names with different values is refused.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct MessageFilterQuery {
    /// The status a message has now: `queued`, `sending`, `sent`, `delivered`, `read`,
    /// `played` or `failed`; `pending` is the earlier service's name for `queued`.
    #[param(schema_with = message_status_filter)]
    pub status: Option<String>,
    /// `text`, `image`, `document`, `video`, `audio` (or, incoming, `sticker`, `other`).
    #[param(schema_with = message_type)]
    pub r#type: Option<String>,
    /// The earlier service's name for `type`.
    #[param(schema_with = message_type)]
    pub message_type: Option<String>,
    /// Created at or after: a day (`2026-11-25`) or an RFC 3339 time.
    pub date_from: Option<String>,
    /// The earlier service's name for `date_from`.
    pub from_date: Option<String>,
    /// Created before the end of this day, or before this RFC 3339 time.
    pub date_to: Option<String>,
    /// The earlier service's name for `date_to`.
    pub to_date: Option<String>,
    /// Digits of the recipient's number (a part is enough).
    pub recipient: Option<String>,
    /// The earlier service's name for `recipient`.
    pub recipient_number: Option<String>,
    /// One group or bulk send's messages.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub job_id: Option<String>,
    /// The messages of the group sends to this group (`POST /groups/{group_id}/send-message`).
    /// A group of another pair matches nothing.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub group_id: Option<String>,
    /// `out`: what we sent; `in`: what people wrote to the number.
    #[param(schema_with = message_direction)]
    pub direction: Option<String>,
}

fn message_direction() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["in", "out"]))
        .build()
}

/// A status to filter by: ours, or the earlier service's `pending` (= `queued`).
fn message_status_filter() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([
            "queued",
            "sending",
            "sent",
            "delivered",
            "read",
            "played",
            "failed",
            "pending",
        ]))
        .build()
}

/// To one contact or number. Give `contact_id` or `phone_number`, and `text` (or
/// `template_id`) and/or `image_url`.
#[derive(Deserialize, ToSchema)]
pub struct SendMessageRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// A contact of the pair; its name and custom fields fill the variables.
    #[serde(default)]
    #[schema(schema_with = optional_positive_id)]
    pub contact_id: Option<Value>,
    /// A number with its country code.
    #[serde(default)]
    #[schema(schema_with = optional_phone)]
    pub phone_number: Option<Value>,
    /// Another name for `phone_number`.
    #[serde(default)]
    #[schema(ignore)]
    pub to: Option<Value>,
    /// At most 4,096 characters; `{name}`-style variables are filled per recipient.
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub text: Option<Value>,
    /// The earlier service's name for `text`.
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub message: Option<Value>,
    /// An image to send, with `text` as its caption: http/https, `image/*`, at most 10 MB.
    #[serde(default)]
    #[schema(schema_with = optional_http_url)]
    pub image_url: Option<Value>,
    /// A file of any kind instead of (or with the caption of) a text: `{type: image |
    /// document | video | audio, url | media_id, caption?, file_name?, voice_note?}`.
    #[serde(default)]
    #[schema(schema_with = media_object)]
    pub media: Option<Value>,
    /// A template's text instead of `text` (`GET /templates`).
    #[serde(default)]
    #[schema(schema_with = template_id)]
    pub template_id: Option<Value>,
    /// Values of variables the recipient does not fill itself.
    #[serde(default)]
    #[schema(schema_with = variable_map)]
    pub variables: Option<Value>,
}

/// What to send to every member; variables are filled per member.
#[derive(Deserialize, ToSchema)]
pub struct GroupSendRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub text: Option<Value>,
    /// The earlier service's name for `text`.
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub message: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = optional_http_url)]
    pub image_url: Option<Value>,
    /// A file of any kind instead of (or with the caption of) a text: `{type: image |
    /// document | video | audio, url | media_id, caption?, file_name?, voice_note?}`.
    #[serde(default)]
    #[schema(schema_with = media_object)]
    pub media: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = template_id)]
    pub template_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = variable_map)]
    pub variables: Option<Value>,
    /// Check the recipients first and leave out the numbers without a WhatsApp account
    /// (counted in `not_on_whatsapp_skipped`). Needs a `ready` session.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub skip_not_on_whatsapp: Option<Value>,
}

/// One message to each recipient.
#[derive(Deserialize, ToSchema)]
pub struct BulkSendRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// 1 to 100: numbers (`"+966501234567"`), contact ids, or objects
    /// `{phone_number | contact_id, name?, variables?}`.
    #[serde(default)]
    #[schema(schema_with = bulk_recipients, required = true)]
    pub recipients: Option<Value>,
    /// The earlier service's name for `recipients`.
    #[serde(default)]
    #[schema(schema_with = bulk_recipients)]
    pub contacts: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub text: Option<Value>,
    /// The earlier service's name for `text`.
    #[serde(default)]
    #[schema(schema_with = message_text)]
    pub message: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = optional_http_url)]
    pub image_url: Option<Value>,
    /// A file of any kind instead of (or with the caption of) a text: `{type: image |
    /// document | video | audio, url | media_id, caption?, file_name?, voice_note?}`.
    #[serde(default)]
    #[schema(schema_with = media_object)]
    pub media: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = template_id)]
    pub template_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = variable_map)]
    pub variables: Option<Value>,
    /// Seconds between this job's messages, when slower than the number's pace.
    #[serde(default)]
    #[schema(schema_with = delay_seconds)]
    pub delay_seconds: Option<Value>,
    /// The earlier service's delay: milliseconds between this job's messages.
    #[serde(default)]
    #[schema(schema_with = delay_ms)]
    pub delay: Option<Value>,
    /// Check the recipients first and leave out the numbers without a WhatsApp account
    /// (counted in `not_on_whatsapp_skipped`). Needs a `ready` session.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub skip_not_on_whatsapp: Option<Value>,
}

/// A dry run: the same fields as a send, the recipient optional. Every field but the pair
/// is checked and reported in `errors` (with `valid: false`), not refused.
#[derive(Deserialize, ToSchema)]
pub struct ValidateMessageRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub contact_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub phone_number: Option<Value>,
    /// Another name for `phone_number`.
    #[serde(default)]
    #[schema(ignore)]
    pub to: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub text: Option<Value>,
    /// The earlier service's name for `text`.
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub message: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub image_url: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub media: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub template_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = checked_in_errors)]
    pub variables: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
pub struct TestImageRequest {
    #[serde(default)]
    #[schema(schema_with = http_url, required = true)]
    pub image_url: Option<Value>,
    /// Another name for `image_url`.
    #[serde(default)]
    #[schema(ignore)]
    pub url: Option<Value>,
    /// Optional here; when given, a pair the caller may act on.
    #[serde(default)]
    #[schema(ignore)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub place_id: Option<Value>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's id, as a group or bulk send answered it.
    #[param(value_type = i64, minimum = 1, example = 1)]
    pub job_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// The message's id.
    #[param(value_type = i64, minimum = 1, example = 1)]
    pub message_id: String,
}

// ----- Schemas of the fields above -----

fn message_text() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
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
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(ids.into_iter().map(Some).chain([None])))
        .build()
}

/// Variable names to strings, numbers or booleans.
fn variable_map() -> Schema {
    let value = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(VARIABLE_VALUE_MAX_CHARS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^[A-Za-z0-9_]{{1,{VARIABLE_NAME_MAX_CHARS}}}$"
                ))),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(
            value.build(),
        )))))
        .max_properties(Some(MAX_VARIABLES))
        .examples([serde_json::json!({"offer": "20% off everything"})])
        .into()
}

fn optional_phone() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$"))
        .examples([serde_json::json!("+966501234567")])
        .build()
}

/// A message's file: its kind and where it comes from (exactly one of `url` and `media_id`).
fn media_object() -> Object {
    use crate::messaging::media::{FILE_NAME_MAX_CHARS, MEDIA_ID_MAX_CHARS};
    let string = |max: usize| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(max))
    };
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["image", "document", "video", "audio"])),
        )
        .required("type")
        .property("url", http_url())
        .property("media_id", string(MEDIA_ID_MAX_CHARS))
        .property(
            "caption",
            string(crate::messaging::MAX_TEXT_CHARS).description(Some(
                "The message's text; not with `text`, not for a voice note",
            )),
        )
        .property(
            "file_name",
            string(FILE_NAME_MAX_CHARS).description(Some(
                "A document's name as the recipient sees it (default: the upload's, else the \
                 URL's last path segment, else `document`)",
            )),
        )
        .property(
            "voice_note",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some("An audio to play as a voice note (`ptt`); no caption")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .build()
}

fn optional_http_url() -> Object {
    let mut o = http_url();
    o.schema_type = SchemaType::from_iter([Type::String, Type::Null]);
    o
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
    ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(MAX_BULK_RECIPIENTS))
        .examples([
            serde_json::json!(["+966501234567", {"phone_number": "+966501234568", "name": "Sara"}]),
        ])
        .into()
}

/// Any JSON value: a dry run reports a bad field in `errors` instead of refusing it.
fn checked_in_errors() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .build()
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
    decimal_up_to(MAX_BULK_DELAY_SECONDS)
}

fn delay_ms() -> Schema {
    decimal_up_to(MAX_BULK_DELAY_SECONDS * 1000.0)
}
