//! The sim's side of the inbox: a file someone sends, and the read receipts the phone sent.

use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{SIM_ONLY_ADMIN, network};
use crate::auth::Caller;
use crate::domain::{PlaceId, UserId};
use crate::engine::sim::{SimMedia, SimRead};
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{PairQuery, Params};
use crate::http::openapi::tags;

/// The largest file `POST /api/sim/incoming` takes: the sim keeps it in the message row.
pub const SIM_MEDIA_MAX_BYTES: usize = 1024 * 1024;

/// A file sent to the pair's number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimIncomingMedia {
    /// `image`, `document`, `video`, `audio` or `sticker`.
    r#type: String,
    #[schema(example = "application/pdf")]
    mime_type: String,
    file_name: Option<String>,
    /// The bytes, base64 (at most 1 MiB decoded).
    data_base64: String,
    /// An audio sent as a voice note.
    #[serde(default)]
    voice_note: bool,
}

const MEDIA_SHAPE: &str = "media must be {type, mime_type, data_base64, file_name?, voice_note?}";

pub(super) fn incoming_media(raw: Option<&Value>) -> AppResult<Option<SimMedia>> {
    let Some(raw) = raw.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let m: SimIncomingMedia = serde_json::from_value(raw.clone())
        .map_err(|e| AppError::BadRequest(format!("{MEDIA_SHAPE}: {e}")))?;
    if !["image", "document", "video", "audio", "sticker"].contains(&m.r#type.as_str()) {
        return Err(AppError::BadRequest(
            "media.type must be one of: image, document, video, audio, sticker".into(),
        ));
    }
    let mime_ok = m.mime_type.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && m.mime_type.chars().all(|c| c.is_ascii_graphic())
    });
    if !mime_ok {
        return Err(AppError::BadRequest(
            "media.mime_type must be a mime type, like application/pdf".into(),
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(m.data_base64.as_bytes())
        .map_err(|_| AppError::BadRequest("media.data_base64 must be base64".into()))?;
    if bytes.len() > SIM_MEDIA_MAX_BYTES {
        return Err(AppError::PayloadTooLarge(format!(
            "media.data_base64 holds more than {SIM_MEDIA_MAX_BYTES} bytes"
        )));
    }
    Ok(Some(SimMedia {
        kind: m.r#type,
        mime: m.mime_type,
        file_name: m.file_name,
        bytes,
        voice_note: m.voice_note,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SimReadReceipts {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    #[schema(value_type = i64)]
    pub place_id: PlaceId,
    /// Oldest first: each the chat and the WhatsApp ids its receipt named.
    #[schema(value_type = Vec<Object>)]
    pub receipts: Vec<SimRead>,
}

success!(SimReadReceiptsResponse, SimReadReceipts);

/// # `GET /api/sim/read-receipts`
#[utoipa::path(
    get,
    path = "/read-receipts",
    operation_id = "sim_read_receipts",
    tag = tags::SIM,
    summary = "The read receipts the pair's simulated phone sent (`--engine sim` only)",
    description = "One entry per `POST /api/whatsapp/contacts/{contact_id}/read` that sent \
        receipts, kept in memory until the server stops.",
    params(PairQuery),
    responses(
        (status = 200, description = "The receipts", body = SimReadReceiptsResponse),
        (status = 400, description = "Bad `user_id` or `place_id`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn read_receipts(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<SimReadReceiptsResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = q.pair(caller)?;
    let receipts = network(&st)?.read_receipts(pair);
    Ok(SimReadReceiptsResponse::new(
        SimReadReceipts {
            user_id: pair.user_id,
            place_id: pair.place_id,
            receipts,
        },
        "Simulated read receipts retrieved",
    ))
}
