//! The contract's two envelopes; every response of the API is one of them. The types here are
//! the ones serialized, and the OpenAPI document describes these same types.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::clock::rfc3339;

pub fn now() -> String {
    rfc3339(chrono::Utc::now())
}

/// Every failure: the HTTP status is repeated in `status_code`.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    #[schema(schema_with = crate::http::schema::always_false)]
    success: bool,
    /// What went wrong, in a sentence meant for a person; names the offending field.
    message: String,
    #[schema(minimum = 400, maximum = 599)]
    status_code: u16,
    #[schema(format = DateTime)]
    timestamp: String,
}

/// Declares a route's answer: `success!(GroupListResponse, GroupList)` is the envelope around
/// a `GroupList`, named `GroupListResponse` in the document, built with
/// `GroupListResponse::new(data, "message")` and answered with 200 (or as
/// `(StatusCode::CREATED, answer)`). The handler returns this type, so the document and the
/// bytes on the wire come from one declaration.
macro_rules! success {
    ($(#[$meta:meta])* $name:ident, $data:ty) => {
        $(#[$meta])*
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            #[schema(schema_with = $crate::http::schema::always_true)]
            success: bool,
            data: $data,
            /// A sentence for a person.
            #[schema(value_type = String)]
            message: std::borrow::Cow<'static, str>,
            #[schema(format = DateTime)]
            timestamp: String,
        }

        impl $name {
            pub fn new(data: $data, message: impl Into<std::borrow::Cow<'static, str>>) -> Self {
                Self {
                    success: true,
                    data,
                    message: message.into(),
                    timestamp: $crate::http::envelope::now(),
                }
            }
        }

        impl axum::response::IntoResponse for $name {
            fn into_response(self) -> axum::response::Response {
                axum::Json(self).into_response()
            }
        }
    };
}
pub(crate) use success;

pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(ErrorEnvelope {
            success: false,
            message: message.to_owned(),
            status_code: status.as_u16(),
            timestamp: now(),
        }),
    )
        .into_response()
}
