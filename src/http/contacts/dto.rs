//! The contact routes' requests and answers, as served and as documented.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_secs;
use crate::contacts::fields::{
    self, CUSTOM_FIELD_VALUE_MAX_CHARS, MAX_CUSTOM_FIELDS, MAX_TAGS, TAG_MAX_CHARS,
};
use crate::domain::{Invalid, parse_positive_str};
use crate::http::envelope::success;
use crate::http::extract::Pagination;
use crate::http::schema::{int64, optional_query, positive_id_in_body, string_enum, true_or_false};
use crate::store::{ContactFilter, ContactPatch, ContactRecord, SearchType};

/// Text searched for, counted once surrounding whitespace is removed.
pub const SEARCH_MAX_CHARS: usize = 200;
/// Ten years: enough for any "days since" a person means, small enough to never overflow.
pub const MAX_DAYS: i64 = 3_650;

#[derive(Serialize, ToSchema)]
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
    /// The contact wrote an opt-out word (or was marked so): nothing more is sent to it.
    opted_out: bool,
}

impl From<&ContactRecord> for Contact {
    fn from(c: &ContactRecord) -> Self {
        Self {
            id: c.id,
            phone_number: c.phone_number.clone(),
            name: c.name.clone(),
            push_name: c.push_name.clone(),
            is_business: c.is_business,
            last_interaction: c.last_message_at.and_then(rfc3339_secs),
            tags: c.tags.clone(),
            opted_out: c.opted_out,
        }
    }
}

/// A contact shown alone: the list fields and its custom fields.
#[derive(Serialize, ToSchema)]
pub struct ContactDetail {
    #[serde(flatten)]
    contact: Contact,
    /// Set with `PATCH`; never touched by a fetch.
    #[schema(value_type = Object)]
    custom_fields: Map<String, Value>,
}

impl From<&ContactRecord> for ContactDetail {
    fn from(c: &ContactRecord) -> Self {
        Self {
            contact: c.into(),
            custom_fields: c.custom_fields.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ContactSearch {
    pub contacts: Vec<Contact>,
    pub pagination: Pagination,
}

success!(ContactSearchResponse, ContactSearch);
success!(ContactResponse, ContactDetail);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContactPath {
    /// The contact's id.
    #[param(value_type = i64, minimum = 1, example = 1)]
    contact_id: String,
}

impl ContactPath {
    pub fn id(&self) -> Result<i64, Invalid> {
        parse_positive_str("contact_id", &self.contact_id)
    }
}

/// Tags and custom fields set by the back office; every field but the pair is optional, and
/// at least one of `tags` and `custom_fields` is required.
#[derive(Deserialize, ToSchema)]
pub struct ContactPatchRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// Replaces the contact's tags; trimmed, duplicates dropped.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = tag_list)]
    tags: Option<Value>,
    /// Merged into the contact's fields; `null` removes a field.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = custom_field_map)]
    custom_fields: Option<Value>,
}

/// `Some` whenever the field was sent, `null` included (plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl ContactPatchRequest {
    /// The change asked for. An explicit `null` is refused like any other wrong type: leave
    /// the field out instead.
    pub fn patch(&self) -> Result<ContactPatch, Invalid> {
        let patch = ContactPatch {
            tags: self.tags.as_ref().map(fields::tags).transpose()?,
            custom_fields: self
                .custom_fields
                .as_ref()
                .map(fields::custom_fields)
                .transpose()?,
            opted_out: None,
        };
        if patch.tags.is_none() && patch.custom_fields.is_none() {
            return Err(Invalid("Give tags, custom_fields, or both".into()));
        }
        Ok(patch)
    }
}

/// At most 50 tags of 1 to 50 characters.
fn tag_list() -> Schema {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(TAG_MAX_CHARS))
                .pattern(Some(r"\S")),
        )
        .max_items(Some(MAX_TAGS))
        .examples([serde_json::json!(["vip", "riyadh"])])
        .into()
}

/// At most 50 fields, each a short string, a number, a boolean, or null (to remove it).
fn custom_field_map() -> Schema {
    let value = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(CUSTOM_FIELD_VALUE_MAX_CHARS)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        .item(ObjectBuilder::new().schema_type(Type::Null));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::OneOf(
            value.build(),
        )))))
        .max_properties(Some(MAX_CUSTOM_FIELDS))
        .examples([serde_json::json!({"city": "Riyadh", "visits": 3})])
        .into()
}

/// Text searched for, and where.
#[derive(Deserialize)]
pub struct ContactSearchQuery {
    search: Option<String>,
    q: Option<String>,
    search_type: Option<String>,
}

impl IntoParams for ContactSearchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    r"^\s*([^\s][\s\S]{{0,{}}}[^\s]|[^\s])?\s*$",
                    SEARCH_MAX_CHARS - 2
                )))
        };
        vec![
            optional_query(
                "search",
                &format!(
                    "Text to look for in names and/or numbers; at most {SEARCH_MAX_CHARS} \
                     characters once surrounding whitespace is removed. Empty means no filter."
                ),
                text(),
            ),
            optional_query(
                "q",
                "The earlier service's name for `search`; give one of the two (or both the \
                 same).",
                text(),
            ),
            optional_query(
                "search_type",
                "Where `search` looks: `name` (saved and push names), `phone`, or `all` (the \
                 default; also when empty).",
                string_enum(&["name", "phone", "all", ""], "all"),
            ),
        ]
    }
}

/// Filters of contact search and export; each one given narrows the result.
#[derive(Deserialize)]
pub struct ContactFilterQuery {
    is_business: Option<String>,
    last_interaction_days: Option<String>,
    inactive_days: Option<String>,
    tags: Option<String>,
}

impl IntoParams for ContactFilterQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let days = || {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(int64())
                .minimum(Some(1))
                .maximum(Some(MAX_DAYS))
        };
        let tag = format!("[^,]{{0,{TAG_MAX_CHARS}}}");
        let tags = optional_query(
            "tags",
            &format!(
                "Comma-separated tags (at most {MAX_TAGS}, each at most {TAG_MAX_CHARS} \
                 characters); a contact must carry every one. Surrounding spaces are ignored."
            ),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^{tag}(,{tag}){{0,{}}}$", MAX_TAGS - 1)))
                .examples([serde_json::json!("vip,riyadh")]),
        );
        vec![
            optional_query(
                "is_business",
                "Only business accounts (`true`) or only the others (`false`).",
                true_or_false(),
            ),
            optional_query(
                "last_interaction_days",
                "Only contacts whose last chat activity is within this many days.",
                days(),
            ),
            optional_query(
                "inactive_days",
                "Only contacts with no chat activity for at least this many days (or never).",
                days(),
            ),
            tags,
        ]
    }
}

/// The filters every contact listing accepts, read from its two parameter groups. `now_s`
/// turns "days" into the times the store compares.
pub fn contact_filter(
    s: &ContactSearchQuery,
    f: &ContactFilterQuery,
    now_s: i64,
) -> Result<ContactFilter, Invalid> {
    let search_type = match s.search_type.as_deref().map(str::trim) {
        None | Some("") | Some("all") => SearchType::All,
        Some("name") => SearchType::Name,
        Some("phone") => SearchType::Phone,
        Some(_) => {
            return Err(Invalid(
                "search_type must be one of: name, phone, all".into(),
            ));
        }
    };
    // `q` is the earlier service's name for `search`: its clients send it, and ignoring it
    // would answer every contact to a search.
    let search = match (s.search.as_deref(), s.q.as_deref()) {
        (Some(search), Some(q)) if search.trim() != q.trim() => {
            return Err(Invalid(
                "Give search or q (the same parameter), not both".into(),
            ));
        }
        (Some(search), _) => Some(("search", search.trim())),
        (None, Some(q)) => Some(("q", q.trim())),
        (None, None) => None,
    };
    let search = match search {
        Some((field, text)) if text.chars().count() > SEARCH_MAX_CHARS => {
            return Err(Invalid(format!(
                "{field} must be at most {SEARCH_MAX_CHARS} characters"
            )));
        }
        Some((_, text)) if !text.is_empty() => Some(text.to_owned()),
        _ => None,
    };
    // Exact values only: the OpenAPI document promises as much, and the fuzz test holds us to it.
    let is_business = match f.is_business.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Invalid("is_business must be true or false".into())),
    };
    let since = |field: &str, raw: Option<&str>| -> Result<Option<i64>, Invalid> {
        match raw {
            None => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(d) if (1..=MAX_DAYS).contains(&d) && s.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Some(now_s - d * 86_400))
                }
                _ => Err(Invalid(format!(
                    "{field} must be a whole number of days between 1 and {MAX_DAYS}"
                ))),
            },
        }
    };
    let active_since = since("last_interaction_days", f.last_interaction_days.as_deref())?;
    let inactive_since = since("inactive_days", f.inactive_days.as_deref())?;
    let tags = match f.tags.as_deref() {
        None => Vec::new(),
        Some(raw) => fields::tag_filter(raw)?,
    };
    Ok(ContactFilter {
        search,
        search_type,
        is_business,
        active_since,
        inactive_since,
        tags,
    })
}
