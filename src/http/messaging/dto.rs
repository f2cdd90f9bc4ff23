//! The messaging routes' requests and answers: the types the handlers read and return, and
//! so the ones the OpenAPI document describes.

use serde::Deserialize;
use utoipa::IntoParams;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// Filters of the message log; each one given narrows it. The earlier service's names are
/// taken too; a filter given under both names with different values is refused.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct MessageFilterQuery {
    /// `queued`, `sending`, `sent` or `failed`; `pending` is the earlier service's name for
    /// `queued`.
    #[param(schema_with = message_status_filter)]
    pub status: Option<String>,
    /// `text` or `image`.
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
}

pub fn message_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["queued", "sending", "sent", "failed"]))
        .build()
}

/// A status to filter by: ours, or the earlier service's `pending` (= `queued`).
fn message_status_filter() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["queued", "sending", "sent", "failed", "pending"]))
        .build()
}

pub fn message_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["text", "image"]))
        .build()
}
