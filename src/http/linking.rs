//! Linking a phone: the QR code as an image or text, and the phone-number pairing code.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::extract::{Body, Query, pair_from};
use super::openapi::{
    ErrorEnvelope, PairCodeRequest, PairCodeResponse, PairQuery, PngImage, QrQuery, QrText, tags,
};
use super::{AppState, envelope};
use crate::auth::Caller;
use crate::domain::{PhoneNumber, SessionStatus};
use crate::http::error::{AppError, AppResult};

/// # `GET /api/whatsapp/qr?user_id&place_id&format=png|raw`
#[utoipa::path(
    get,
    path = "/qr",
    tag = tags::LINKING,
    summary = "The QR code to scan, while the session is `qr_ready`",
    description = "Not in the JSON envelope when it succeeds: a PNG image (`format=png`, the \
        default) or the text the code encodes (`format=raw`). The code rotates; never cached.",
    params(PairQuery, QrQuery),
    responses(
        (status = 200, description = "The QR code",
            headers(("Cache-Control" = String, description = "`no-store`: a QR code is a credential for a few seconds")),
            content((PngImage = "image/png"), (QrText = "text/plain"))),
        (status = 400, description = "Bad `user_id`, `place_id` or `format`", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session, or its session shows no QR code now", body = ErrorEnvelope),
    )
)]
pub async fn qr(State(st): State<AppState>, q: Query) -> AppResult<Response> {
    let pair = q.pair()?;
    let format = match q.get("format").map(str::trim) {
        None | Some("") | Some("png") => Format::Png,
        Some("raw") => Format::Raw,
        Some(_) => return Err(AppError::BadRequest("format must be png or raw".into())),
    };
    let snap = st
        .manager
        .snapshot(pair)
        .await?
        .ok_or_else(AppError::no_session)?;
    let qr = match (&snap.qr, snap.record.status) {
        (Some(qr), SessionStatus::QrReady) => qr.clone(),
        (_, status) => {
            return Err(AppError::NotFound(format!(
                "No QR code is showing for this session. Current status: {status}."
            )));
        }
    };
    // A QR code is a credential for a few seconds: never let a proxy keep one.
    let headers = [(header::CACHE_CONTROL, "no-store")];
    Ok(match format {
        Format::Png => (
            headers,
            [(header::CONTENT_TYPE, "image/png")],
            qr.png.clone(),
        )
            .into_response(),
        Format::Raw => (
            headers,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            qr.raw.clone(),
        )
            .into_response(),
    })
}

enum Format {
    Png,
    Raw,
}

#[derive(serde::Deserialize)]
pub struct PairCodeBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default)]
    phone_number: Option<Value>,
}

/// # `POST /api/whatsapp/pair-code`
#[utoipa::path(
    post,
    path = "/pair-code",
    tag = tags::LINKING,
    summary = "Link by phone number instead of QR code: a code to type on the phone",
    description = "For a session waiting to be linked (`initializing` or `qr_ready`). On the \
        phone: WhatsApp > Linked devices > Link a device > Link with phone number instead.",
    request_body = PairCodeRequest,
    responses(
        (status = 200, description = "The pairing code", body = PairCodeResponse),
        (status = 400, description = "Bad `user_id`, `place_id` or `phone_number`, the session is not waiting to be linked, or WhatsApp refused the number", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
        (status = 409, description = "The session is already linked, or another pairing code is in progress", body = ErrorEnvelope),
        (status = 429, description = "WhatsApp asks to wait before another code", body = ErrorEnvelope),
        (status = 502, description = "WhatsApp failed the request", body = ErrorEnvelope),
        (status = 503, description = "The session's client is gone or not connected to WhatsApp yet", body = ErrorEnvelope),
    )
)]
pub async fn pair_code(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<PairCodeBody>,
) -> AppResult<Response> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let raw = match &b.phone_number {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest("phone_number is required".into()));
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(AppError::BadRequest("phone_number is required".into()));
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(_) => {
            return Err(AppError::BadRequest(
                "phone_number must be a string such as \"+966501234567\"".into(),
            ));
        }
    };
    let phone = PhoneNumber::parse_typed(&raw).ok_or_else(|| {
        AppError::BadRequest(
            "phone_number must be an international phone number with its country code, such as \
             +966501234567"
                .into(),
        )
    })?;
    let (snap, code) = st.manager.pair_code(pair, phone.clone()).await?;
    let data = json!({
        "session_id": snap.record.session_id,
        "status": snap.record.status,
        "phone_number": phone,
        "code": code,
        "pairing_code": code,
    });
    Ok(envelope::ok(
        data,
        "Pairing code generated. On the phone open WhatsApp > Linked devices > Link a device > \
         Link with phone number instead, and enter the code.",
    ))
}
