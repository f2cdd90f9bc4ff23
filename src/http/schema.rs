//! Schemas built by hand, for what `#[derive(ToSchema)]` cannot say (constant booleans,
//! numbers that may come as strings, enums read from the domain). Shared by the routes'
//! request and answer types.

use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};

pub fn constant_bool(value: bool) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([value]))
        .build()
}

pub fn always_true() -> Object {
    constant_bool(true)
}

pub fn always_false() -> Object {
    constant_bool(false)
}

/// A string enum; `""` among the values where the server reads an empty value as absent.
pub fn string_enum(values: &[&str], default: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .default(Some(default.into()))
        .build()
}

pub fn true_or_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["true", "false"]))
        .build()
}

pub fn search_type() -> Object {
    string_enum(&["name", "phone", "all", ""], "all")
}

/// `user_id` / `place_id` in a JSON body: a positive integer, or the same digits as a
/// string (back offices often post form values as strings).
pub fn positive_id_in_body() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(int64())
                .minimum(Some(1))
                .maximum(Some(i64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*0*[1-9][0-9]*\s*$"))
                .description(Some(
                    "The same number written in digits; surrounding whitespace is ignored.",
                )),
        )
        .description(Some(
            "A positive 64-bit integer, as a JSON number or a string of digits.",
        ))
        .examples([serde_json::json!(1)])
        .into()
}

/// At most 50 tags of 1 to 50 characters.
pub fn tag_list() -> Schema {
    use crate::http::groups::{MAX_TAGS, TAG_MAX_CHARS};
    utoipa::openapi::schema::ArrayBuilder::new()
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
pub fn custom_field_map() -> Schema {
    use crate::http::groups::{CUSTOM_FIELD_VALUE_MAX_CHARS, MAX_CUSTOM_FIELDS};
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
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::RefOr(
            RefOr::T(Schema::OneOf(value.build())),
        )))
        .max_properties(Some(MAX_CUSTOM_FIELDS))
        .examples([serde_json::json!({"city": "Riyadh", "visits": 3})])
        .into()
}

/// 1 to 1,000 contact ids, each a positive integer or its digits as a string.
pub fn contact_id_list() -> Schema {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(RefOr::T(positive_id_in_body()))
        .min_items(Some(1))
        .max_items(Some(crate::http::groups::MAX_MEMBERS))
        .examples([serde_json::json!([1, 2, 3])])
        .into()
}

/// A phone number as a person types it, or its digits as a JSON number.
pub fn typed_phone_number() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^\s*\+?[0-9 .()-]*[0-9][0-9 .()-]*\s*$"))
                .examples([serde_json::json!("+966501234567")]),
        )
        // Read as an unsigned 64-bit integer.
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(u64::MAX)),
        )
        .description(Some(
            "An international number with its country code (`+966 50 123 4567`, \
             `00966501234567`, or its digits as a JSON number); spaces, dashes, dots and \
             brackets are ignored.",
        ))
        .into()
}

pub fn int64() -> Option<SchemaFormat> {
    Some(SchemaFormat::KnownFormat(KnownFormat::Int64))
}

pub fn null() -> Object {
    ObjectBuilder::new().schema_type(Type::Null).build()
}
