//! Schemas built by hand, for what `#[derive(ToSchema)]` cannot say (constant booleans,
//! numbers that may come as strings, enums read from the domain). Shared by the routes'
//! request and answer types.

use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, SchemaFormat};

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

/// An optional query parameter, for `IntoParams` written by hand: the derive drops a field's
/// description when its schema is built from the constants that enforce it.
pub fn optional_query(
    name: &str,
    description: &str,
    schema: impl Into<utoipa::openapi::RefOr<Schema>>,
) -> utoipa::openapi::path::Parameter {
    utoipa::openapi::path::ParameterBuilder::new()
        .name(name)
        .parameter_in(utoipa::openapi::path::ParameterIn::Query)
        .required(utoipa::openapi::Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}
