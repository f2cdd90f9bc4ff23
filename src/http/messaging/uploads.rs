//! Uploads: a file sent once (multipart) and then named by its `media_id` in any send of
//! the next 24 hours.

use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::domain::UserId;
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::{AppError, AppResult};
use crate::http::openapi::tags;
use crate::messaging::media::{self, MAX_DOCUMENT_BYTES};
use crate::messaging::new_message_id;
use crate::store::{MessageKind, NewUpload};

/// How long an upload may be sent.
pub const UPLOAD_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// The route's body limit: the largest file (a 100 MB document) and its multipart framing.
pub const UPLOAD_BODY_LIMIT: usize = MAX_DOCUMENT_BYTES + 1024 * 1024;

/// The form `POST /media` takes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file: at most 16 MB for an image, a video or an audio, 100 MB for a document.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `image`, `document`, `video` or `audio`; by default from the file's content type
    /// (`image/*`, `video/*`, `audio/*`, anything else a document).
    #[schema(value_type = Option<String>)]
    r#type: Option<String>,
    /// Whose upload it is (admin key only; a tenant's upload is its own user's). Without
    /// it, the admin key's upload may be sent by any user.
    #[schema(value_type = Option<i64>, minimum = 1)]
    user_id: Option<i64>,
    /// Accepted, as every request names one, and not kept: an upload is its user's, and
    /// any of the user's places may send it.
    #[schema(value_type = Option<i64>, minimum = 1)]
    place_id: Option<i64>,
}

/// A kept upload.
#[derive(Serialize, ToSchema)]
pub struct Upload {
    /// Give it as `media.media_id` in a send.
    media_id: String,
    /// `image`, `document`, `video` or `audio`.
    r#type: &'static str,
    mime_type: String,
    size_bytes: i64,
    #[schema(required = true)]
    file_name: Option<String>,
    /// After this the `media_id` is unknown.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

success!(UploadResponse, Upload);

fn read_error(e: MultipartError) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(format!(
            "The file is larger than {} MB, WhatsApp's limit for a document",
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        ))
    } else {
        AppError::BadRequest(format!(
            "Could not read the multipart body: {}",
            e.body_text()
        ))
    }
}

fn too_large(kind: MessageKind) -> AppError {
    AppError::PayloadTooLarge(format!(
        "The file is larger than {} MB, WhatsApp's limit for {} {}",
        media::cap(kind) / (1024 * 1024),
        if kind == MessageKind::Image {
            "an"
        } else {
            "a"
        },
        kind.as_str()
    ))
}

async fn text_field(field: Field<'_>, name: &str) -> AppResult<String> {
    let t = field.text().await.map_err(read_error)?;
    if t.len() > 100 {
        return Err(AppError::BadRequest(format!("{name} is too long")));
    }
    Ok(t.trim().to_owned())
}

/// # `POST /api/whatsapp/media`
#[utoipa::path(
    post,
    path = "/media",
    operation_id = "upload_media",
    tag = tags::MESSAGING,
    summary = "Upload a file to send by media_id",
    description = "A `multipart/form-data` body with the file in the field `file` (and \
        optionally `type`, `user_id`, `place_id`). The file is kept 24 hours; any send of its user (the \
        admin key's: of any user) may name it as `media: {type, media_id}`. WhatsApp's caps: \
        16 MB for an image, a video or an audio, 100 MB for a document.",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Kept", body = UploadResponse),
        (status = 400, description = "No `file`, an empty file, a bad `type`, `user_id` or `place_id`, or a file whose content type is not of its `type`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key naming another user", body = ErrorEnvelope),
        (status = 413, description = "Larger than WhatsApp's cap for its kind (the message says the cap)", body = ErrorEnvelope),
    )
)]
pub async fn upload_media(
    State(st): State<AppState>,
    caller: Caller,
    form: Result<Multipart, MultipartRejection>,
) -> AppResult<(StatusCode, UploadResponse)> {
    let mut form = form.map_err(|_| {
        AppError::BadRequest(
            "The body must be multipart/form-data with the file in the field `file`".into(),
        )
    })?;
    let mut kind: Option<MessageKind> = None;
    let mut user: Option<UserId> = None;
    let mut place_seen = false;
    let mut file: Option<(Vec<u8>, String, Option<String>)> = None;
    while let Some(mut field) = form.next_field().await.map_err(read_error)? {
        match field.name().unwrap_or_default() {
            // A field given twice is a list, which neither is.
            "type" if kind.is_some() => return Err(twice("type")),
            "user_id" if user.is_some() => return Err(twice("user_id")),
            "place_id" if place_seen => return Err(twice("place_id")),
            "type" => {
                let t = text_field(field, "type").await?;
                kind = Some(media::parse_kind(&t, "type")?);
            }
            "user_id" => {
                let t = text_field(field, "user_id").await?;
                let id = t.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    AppError::BadRequest("user_id must be a positive integer".into())
                })?;
                user = Some(UserId::new_unchecked(id));
            }
            "place_id" => {
                let t = text_field(field, "place_id").await?;
                if t.parse::<i64>().ok().filter(|n| *n > 0).is_none() {
                    return Err(AppError::BadRequest(
                        "place_id must be a positive integer".into(),
                    ));
                }
                place_seen = true;
            }
            "file" if file.is_none() => {
                let mime = field
                    .content_type()
                    .map(|m| {
                        m.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "application/octet-stream".into());
                let name = field
                    .file_name()
                    .and_then(|n| n.rsplit(['/', '\\']).next())
                    .and_then(|n| media::file_name(n, "file").ok());
                // Known before the file (a `type` sent first), the cap is the kind's; else
                // the largest, and the kind's is checked once the file is in.
                let early = kind.unwrap_or(MessageKind::Document);
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(read_error)? {
                    if bytes.len() + chunk.len() > media::cap(early) {
                        return Err(too_large(early));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((bytes, mime, name));
            }
            other => {
                return Err(AppError::BadRequest(format!(
                    "{other:?} is not a field of an upload (file, type, user_id, place_id)"
                )));
            }
        }
    }
    let Some((bytes, mime, file_name)) = file else {
        return Err(AppError::BadRequest(
            "file is required: the file to upload, as the multipart field `file`".into(),
        ));
    };
    let kind = kind.unwrap_or_else(|| media::kind_of_mime(&mime));
    if bytes.len() > media::cap(kind) {
        return Err(too_large(kind));
    }
    if bytes.is_empty() {
        return Err(AppError::BadRequest("file is empty".into()));
    }
    if !crate::messaging::image::mime_fits(kind, &mime) {
        return Err(AppError::BadRequest(format!(
            "type is {} but the file is {mime}",
            kind.as_str()
        )));
    }
    let user = caller.scope_listing(user)?;
    let now = st.clock.now_ms();
    let up = st
        .store
        .insert_upload(&NewUpload {
            // The message-id form: 36 random hex characters, unguessable.
            id: new_message_id().to_ascii_lowercase(),
            user,
            kind,
            mime,
            file_name,
            bytes,
            created_at: now,
            expires_at: now + UPLOAD_TTL_MS,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        UploadResponse::new(
            Upload {
                media_id: up.id,
                r#type: up.kind.as_str(),
                mime_type: up.mime,
                size_bytes: up.size,
                file_name: up.file_name,
                expires_at: rfc3339_ms(up.expires_at),
            },
            "File uploaded; send it by media_id within 24 hours",
        ),
    ))
}

fn twice(field: &str) -> AppError {
    AppError::BadRequest(format!("{field} must be given once"))
}
