//! Checks that queue nothing: a dry run of a message, an image URL probe, the templates.

use axum::extract::State;

use super::answers::{
    ImageInfo, ImageProbe, ImageProbeResponse, TemplateList, TemplateListResponse, Validation,
    ValidationResponse,
};
use super::audience::refuse_opted_out;
use super::dto::{TestImageRequest, ValidateMessageRequest};
use super::{look_at_media, resolve, sendable, single_target};
use crate::auth::Caller;
use crate::http::AppState;
use crate::http::envelope::ErrorEnvelope;
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{Body, pair_from};
use crate::http::openapi::tags;
use crate::messaging::MAX_TEXT_CHARS;
use crate::messaging::content::{Content, ContentError, ContentInput, DryRun};
use crate::messaging::image::{self, ImageError};

/// # `POST /api/whatsapp/validate-message`
#[utoipa::path(
    post,
    path = "/validate-message",
    operation_id = "validate_message",
    tag = tags::MESSAGING,
    summary = "Check a message without sending it",
    description = "Runs every check a send runs (content, variables, recipient, image URL) and \
        shows the text as the recipient would get it. Problems are listed in `errors`, with \
        `valid: false`; nothing is queued. An `image_url` the server may not fetch at all (a \
        private or local address, credentials in the URL) is refused with 400 instead, \
        before any connection.",
    request_body = ValidateMessageRequest,
    responses(
        (status = 200, description = "The checks' result", body = ValidationResponse),
        (status = 400, description = "Bad `user_id` or `place_id`, or an `image_url` on a private or local address", body = ErrorEnvelope),
    )
)]
pub async fn validate(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<ValidateMessageRequest>,
) -> AppResult<ValidationResponse> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut c = match Content::parse(ContentInput {
        text: b.text.as_ref(),
        message: b.message.as_ref(),
        image_url: b.image_url.as_ref(),
        media: b.media.as_ref(),
        template_id: b.template_id.as_ref(),
        variables: b.variables.as_ref(),
    }) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let has_target = [&b.contact_id, &b.phone_number, &b.to]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| !v.is_null()));
    let mut resolved = None;
    if has_target {
        match single_target(&b.contact_id, &b.phone_number, &b.to) {
            Ok(t) => match resolve(&st, pair, &t).await {
                Ok(r) => resolved = Some(r),
                Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some((contact, phone)) = &resolved {
        match refuse_opted_out(&st, pair, contact.as_ref(), phone).await {
            Ok(()) => {}
            Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
            Err(e) => warnings.push(format!("Would be refused: {e}")),
        }
    }
    if let Err(e) = sendable(&st, pair).await {
        match e {
            AppError::Internal(e) => return Err(AppError::Internal(e)),
            other => warnings.push(format!("Not sendable now: {other}")),
        }
    }
    let mut run = DryRun::default();
    let mut image_info = None;
    if let Some(c) = &mut c {
        let mut image_problem = None;
        if let Some(m) = &mut c.media {
            match look_at_media(&st, pair, m).await {
                Ok(()) => {}
                Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
                Err(e) => image_problem = Some(e.to_string()),
            }
        }
        if let Some(url) = &c.image_url {
            match st.outbox.images().fetch(url).await {
                Ok(img) => {
                    image_info = Some(ImageInfo {
                        content_type: img.mime,
                        size_bytes: img.bytes.len(),
                    })
                }
                // Not a finding about the message: a URL the server will not fetch at all.
                Err(e @ ImageError::Refused(_)) => return Err(ContentError::from(e).into()),
                Err(e) => image_problem = Some(ContentError::from(e).to_string()),
            }
        }
        let recipient = resolved.as_ref().map(|(c, p)| (c.as_ref(), p.as_str()));
        run = DryRun::check(c, recipient, image_problem);
    }
    errors.extend(run.errors);
    warnings.extend(run.warnings);
    let length = run.preview.as_ref().map(|p| p.chars().count());
    Ok(ValidationResponse::new(
        Validation {
            valid: errors.is_empty(),
            errors,
            warnings,
            preview: run.preview,
            length,
            max_length: MAX_TEXT_CHARS,
            r#type: c.as_ref().map(|c| c.kind().as_str()),
            variables: run.variables,
            recipient: resolved.map(|(_, p)| p),
            image: image_info,
        },
        "Message checked",
    ))
}

/// # `POST /api/whatsapp/test-image-url`
#[utoipa::path(
    post,
    path = "/test-image-url",
    operation_id = "test_image_url",
    tag = tags::MESSAGING,
    summary = "Download an image URL as a send would, and say whether it can be used",
    description = "http/https only, public addresses only (on every redirect too), an \
        `image/*` answer, at most 10 MB, 30 s. A URL that cannot be used answers 200 with \
        `valid: false` and the reason; one on a private or local address, or with credentials, \
        is refused with 400 before any connection.",
    request_body = TestImageRequest,
    responses(
        (status = 200, description = "The probe's result", body = ImageProbeResponse),
        (status = 400, description = "`image_url` missing, not an http(s) URL, or on a private or local address", body = ErrorEnvelope),
    )
)]
pub async fn test_image_url(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<TestImageRequest>,
) -> AppResult<ImageProbeResponse> {
    // The pair is optional here, but when given it must be one the caller may act on.
    if b.user_id.is_some() || b.place_id.is_some() {
        pair_from(caller, &b.user_id, &b.place_id)?;
    }
    let raw = match (&b.image_url, &b.url) {
        (Some(serde_json::Value::String(u)), None) | (None, Some(serde_json::Value::String(u))) => {
            u.clone()
        }
        (None, None)
        | (Some(serde_json::Value::Null), None)
        | (None, Some(serde_json::Value::Null)) => {
            return Err(AppError::BadRequest("image_url is required".into()));
        }
        _ => return Err(AppError::BadRequest(ImageError::InvalidUrl.to_string())),
    };
    image::check_url(&raw).map_err(ContentError::from)?;
    let started = std::time::Instant::now();
    let result = match st.outbox.images().fetch(&raw).await {
        // Refused before any connection: nothing about what answers there is told.
        Err(e @ ImageError::Refused(_)) => return Err(ContentError::from(e).into()),
        other => other,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (probe, message) = match result {
        Ok(img) => (
            ImageProbe {
                valid: true,
                url: raw,
                final_url: Some(img.final_url),
                content_type: Some(img.mime),
                size_bytes: Some(img.bytes.len()),
                elapsed_ms,
                error: None,
            },
            "The image URL can be used",
        ),
        Err(e) => (
            ImageProbe {
                valid: false,
                url: raw,
                final_url: None,
                content_type: None,
                size_bytes: None,
                elapsed_ms,
                error: Some(e.to_string()),
            },
            "The image URL cannot be used",
        ),
    };
    Ok(ImageProbeResponse::new(probe, message))
}

/// # `GET /api/whatsapp/templates`
#[utoipa::path(
    get,
    path = "/templates",
    operation_id = "list_templates",
    tag = tags::MESSAGING,
    summary = "Message templates and the variables they use",
    description = "Send one with `template_id`. `{name}`, `{first_name}`, `{push_name}` and \
        `{phone}` are filled per recipient, as are the contact's custom fields by name; other \
        variables come from the request's `variables`.",
    responses(
        (status = 200, description = "The templates", body = TemplateListResponse),
    )
)]
pub async fn list_templates() -> AppResult<TemplateListResponse> {
    Ok(TemplateListResponse::new(
        TemplateList::all(),
        "Templates retrieved",
    ))
}
