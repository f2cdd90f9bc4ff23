//! The contract's two envelopes; every response of the API is one of them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use crate::clock::rfc3339;

fn now() -> String {
    rfc3339(chrono::Utc::now())
}

pub fn ok<T: Serialize>(data: T, message: &str) -> Response {
    with_status(StatusCode::OK, data, message)
}

pub fn with_status<T: Serialize>(status: StatusCode, data: T, message: &str) -> Response {
    (
        status,
        Json(json!({
            "success": true,
            "data": data,
            "message": message,
            "timestamp": now(),
        })),
    )
        .into_response()
}

pub fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({
            "success": false,
            "message": message,
            "status_code": status.as_u16(),
            "timestamp": now(),
        })),
    )
        .into_response()
}
