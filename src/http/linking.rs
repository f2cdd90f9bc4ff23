//! Linking a phone: the QR code as an image or text, and the phone-number pairing code.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::envelope::ErrorEnvelope;
use super::envelope::success;
use super::extract::{Body, PairQuery, Params};
use super::openapi::tags;
use super::sessions::dto::{PairCodeRequest, QrFormat, QrQuery, session_status};
use crate::auth::Caller;
use crate::domain::{PhoneNumber, SessionId, SessionStatus};
use crate::http::error::{AppError, AppResult};
use crate::session::{SessionError, SessionSnapshot};

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
pub async fn qr(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
    Params(f): Params<QrQuery>,
) -> AppResult<Response> {
    let pair = q.pair(caller)?;
    let format = f.format()?;
    let snap = st
        .manager
        .snapshot(pair)
        .await?
        .ok_or(SessionError::NoSession)?;
    let qr = match (&snap.qr, snap.record.status) {
        (Some(qr), SessionStatus::QrReady) => qr.clone(),
        (_, status) => {
            return Err(AppError::NotFound(format!(
                "No QR code is showing for this session. Current status: {status}."
            )));
        }
    };
    Ok(match format {
        QrFormat::Png => PngImage(qr.png.clone()).into_response(),
        QrFormat::Raw => QrText(qr.raw.clone()).into_response(),
    })
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
    Body(b): Body<PairCodeRequest>,
) -> AppResult<PairCodeResponse> {
    let pair = b.pair(caller)?;
    let phone = b.phone()?;
    let (snap, code) = st.manager.pair_code(pair, phone.clone()).await?;
    Ok(PairCodeResponse::new(
        PairCode::new(&snap, phone, code),
        "Pairing code generated. On the phone open WhatsApp > Linked devices > Link a device > \
         Link with phone number instead, and enter the code.",
    ))
}

// ----- Answers -----

success!(PairCodeResponse, PairCode);

#[derive(Serialize, ToSchema)]
pub struct PairCode {
    #[schema(value_type = String)]
    session_id: SessionId,
    #[schema(schema_with = session_status)]
    status: SessionStatus,
    /// The number the code is for, E.164.
    #[schema(value_type = String, examples("+966501234567"))]
    phone_number: PhoneNumber,
    /// Eight characters to type on the phone.
    #[schema(examples("ABCD1234"))]
    code: String,
    /// The same code, under the name the earlier service used.
    pairing_code: String,
}

impl PairCode {
    pub fn new(s: &SessionSnapshot, phone: PhoneNumber, code: String) -> Self {
        Self {
            session_id: s.record.session_id.clone(),
            status: s.record.status,
            phone_number: phone,
            pairing_code: code.clone(),
            code,
        }
    }
}

/// The QR code as an image. Not in the envelope: an `<img>` can show it as it comes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct PngImage(pub Vec<u8>);

/// The text the QR code encodes.
#[derive(ToSchema)]
pub struct QrText(pub String);

// A QR code is a credential for a few seconds: never let a proxy keep one.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

impl IntoResponse for PngImage {
    fn into_response(self) -> Response {
        (NO_STORE, [(header::CONTENT_TYPE, "image/png")], self.0).into_response()
    }
}

impl IntoResponse for QrText {
    fn into_response(self) -> Response {
        (
            NO_STORE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.0,
        )
            .into_response()
    }
}
