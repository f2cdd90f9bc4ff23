//! The inbox: conversations, one contact's messages both ways, an incoming file, and
//! marking a conversation read (with WhatsApp read receipts).

pub mod dto;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use self::dto::{
    ContactMessages, ContactMessagesResponse, ConversationList, ConversationListResponse,
    ConversationRead, ConversationReadResponse,
};
use super::AppState;
use super::contacts::dto::ContactPath;
use super::envelope::ErrorEnvelope;
use super::extract::{Body, PageQuery, Pagination, PairQuery, PairRequest, Params};
use super::messaging::answers::Message;
use super::messaging::dto::MessagePath;
use super::openapi::tags;
use crate::auth::Caller;
use crate::domain::{Pair, PhoneNumber, parse_positive_str};
use crate::engine::EngineClient;
use crate::http::error::{AppError, AppResult};
use crate::session::SessionError;
use crate::store::{ContactRecord, Direction};

async fn contact_of(st: &AppState, pair: Pair, path: &ContactPath) -> AppResult<ContactRecord> {
    let id = path.id()?;
    st.store.contact(pair, id).await?.ok_or_else(|| {
        AppError::NotFound(format!("Contact {id} not found for this user and place"))
    })
}

/// The pair's client, when its session is connected: downloads and receipts go through it.
async fn ready_client(st: &AppState, pair: Pair) -> AppResult<Arc<dyn EngineClient>> {
    let snap = st
        .manager
        .snapshot(pair)
        .await?
        .ok_or(SessionError::NoSession)?;
    let status = snap.status();
    // As a send to a session that is not linked: the caller's to fix (link it), not ours.
    if !status.is_ready() {
        return Err(AppError::BadRequest(format!(
            "Session is not ready. Current status: {}. Please wait for the session to be ready.",
            status.as_str()
        )));
    }
    match &snap.client {
        Some(c) if c.is_alive() => Ok(c.clone()),
        _ => Err(SessionError::ClientUnavailable.into()),
    }
}

/// # `GET /api/whatsapp/conversations`
#[utoipa::path(
    get,
    path = "/conversations",
    operation_id = "list_conversations",
    tag = tags::MESSAGING,
    summary = "The pair's conversations with contacts, newest last message first",
    description = "One line per contact the number exchanged messages with, either way \
        (messages sent to the contact's bare number count): the contact, its newest message \
        and how many of its messages are unread.",
    params(PairQuery, PageQuery),
    responses(
        (status = 200, description = "One page of conversations", body = ConversationListResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn conversations(
    State(st): State<AppState>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(pg): Params<PageQuery>,
) -> AppResult<ConversationListResponse> {
    let pair = pq.pair(caller)?;
    let (page, limit) = pg.page_and_limit()?;
    let (list, total) = st.store.conversations(pair, page, limit).await?;
    Ok(ConversationListResponse::new(
        ConversationList {
            conversations: list.iter().map(Into::into).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "Conversations retrieved",
    ))
}

/// # `GET /api/whatsapp/contacts/{contact_id}/messages`
#[utoipa::path(
    get,
    path = "/contacts/{contact_id}/messages",
    operation_id = "contact_messages",
    tag = tags::MESSAGING,
    summary = "The messages with one contact, both directions, newest first",
    description = "What the contact wrote and what was sent to it, by contact or to its number.",
    params(ContactPath, PairQuery, PageQuery),
    responses(
        (status = 200, description = "One page of messages", body = ContactMessagesResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
        (status = 404, description = "No such contact for this pair", body = ErrorEnvelope),
    )
)]
pub async fn contact_messages(
    State(st): State<AppState>,
    caller: Caller,
    Path(path): Path<ContactPath>,
    Params(pq): Params<PairQuery>,
    Params(pg): Params<PageQuery>,
) -> AppResult<ContactMessagesResponse> {
    let pair = pq.pair(caller)?;
    let (page, limit) = pg.page_and_limit()?;
    let contact = contact_of(&st, pair, &path).await?;
    let (list, total) = st
        .store
        .peer_messages(pair, &contact.phone_number, page, limit)
        .await?;
    Ok(ContactMessagesResponse::new(
        ContactMessages {
            contact_id: contact.id,
            messages: list.iter().map(Message::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "Messages retrieved",
    ))
}

/// # `GET /api/whatsapp/messages/{message_id}/media`
#[utoipa::path(
    get,
    path = "/messages/{message_id}/media",
    operation_id = "message_media",
    tag = tags::MESSAGING,
    summary = "The file of an incoming message, downloaded from WhatsApp now",
    description = "Answered with the file's own Content-Type and a Content-Disposition naming \
        it. Needs the session connected: WhatsApp keeps the file, not this server.",
    params(MessagePath, PairQuery),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "A bad parameter (the message names it), or a session that is not ready", body = ErrorEnvelope),
        (status = 404, description = "No such message for this pair, or it is not an incoming message with a file", body = ErrorEnvelope),
        (status = 502, description = "WhatsApp did not hand the file over (expired or refused)", body = ErrorEnvelope),
        (status = 503, description = "The session's client is gone: restart it", body = ErrorEnvelope),
    )
)]
pub async fn media(
    State(st): State<AppState>,
    caller: Caller,
    Path(path): Path<MessagePath>,
    Params(pq): Params<PairQuery>,
) -> AppResult<Response> {
    let id = parse_positive_str("message_id", &path.message_id)?;
    let pair = pq.pair(caller)?;
    let m = st
        .outbox
        .store()
        .message(pair, id)
        .await?
        .ok_or_else(|| AppError::NotFound("Message not found".into()))?;
    let media_ref = match (&m.media_ref, m.direction) {
        (Some(r), Direction::In) if m.kind.is_media() => r,
        _ => {
            return Err(AppError::NotFound(format!(
                "Message {id} is not an incoming message with a file"
            )));
        }
    };
    let client = ready_client(&st, pair).await?;
    let bytes = client
        .download_media(media_ref)
        .await
        .map_err(SessionError::from)?;
    let mime = m
        .media
        .mime
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let name = m
        .media
        .file_name
        .clone()
        .unwrap_or_else(|| format!("message-{id}.{}", extension(m.media.mime.as_deref())));
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, disposition(&name)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response())
}

/// A file name's extension for a file WhatsApp sent without a name (images, voice notes).
fn extension(mime: Option<&str>) -> &'static str {
    let base = mime.and_then(|m| m.split(';').next()).map(str::trim);
    match base {
        Some("image/jpeg") => "jpg",
        Some("image/png") => "png",
        Some("image/webp") => "webp",
        Some("image/gif") => "gif",
        Some("video/mp4") => "mp4",
        Some("audio/ogg") => "ogg",
        Some("audio/mpeg") => "mp3",
        Some("audio/mp4") => "m4a",
        Some("application/pdf") => "pdf",
        _ => "bin",
    }
}

/// `attachment` with the name twice: a plain ASCII one for old clients, and the exact one
/// (RFC 5987) for the rest; whatever the sender named the file, the header stays valid.
fn disposition(name: &str) -> HeaderValue {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut exact = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            exact.push(char::from(b));
        } else {
            exact.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{exact}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

async fn read_conversation(
    st: AppState,
    caller: Caller,
    path: ContactPath,
    b: PairRequest,
) -> AppResult<ConversationReadResponse> {
    let pair = b.pair(caller)?;
    let contact = contact_of(&st, pair, &path).await?;
    // Receipts need the connection: nothing is marked that could not be told.
    let client = ready_client(&st, pair).await?;
    let marked = st
        .store
        .mark_conversation_read(pair, &contact.phone_number, st.clock.now_ms())
        .await?;
    let ids: Vec<String> = marked.iter().map(|m| m.wa_message_id.clone()).collect();
    let mut receipts_sent = false;
    if !ids.is_empty() {
        match PhoneNumber::parse_international(&contact.phone_number) {
            Some(chat) => match client.mark_read(&chat, &ids).await {
                Ok(()) => receipts_sent = true,
                Err(e) => tracing::warn!(
                    "⚠️ Read receipts for contact {} were not sent: {e}",
                    contact.id
                ),
            },
            None => tracing::warn!("⚠️ Contact {} has no valid number", contact.id),
        }
    }
    Ok(ConversationReadResponse::new(
        ConversationRead {
            contact_id: contact.id,
            marked_read: ids.len(),
            receipts_sent,
        },
        "Conversation marked read",
    ))
}

/// One read route: the route and its two aliases differ only in path and summary, and each
/// needs a handler of its own for its entry in the OpenAPI document.
macro_rules! read_route {
    ($(#[$doc:meta])* $name:ident, $path:tt, $operation:tt, $summary:tt) => {
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $operation,
            tag = tags::MESSAGING,
            summary = $summary,
            description = "Also routed as `/contacts/{contact_id}/read`, \
                `/contacts/{contact_id}/messages/read` and `/conversations/{contact_id}/read`. \
                Needs the session connected.",
            params(ContactPath),
            request_body = PairRequest,
            responses(
                (status = 200, description = "How many were marked", body = ConversationReadResponse),
                (status = 400, description = "A bad parameter (the message names it), or a session that is not ready", body = ErrorEnvelope),
                (status = 404, description = "No such contact for this pair", body = ErrorEnvelope),
                (status = 503, description = "The session's client is gone: restart it", body = ErrorEnvelope),
            )
        )]
        pub async fn $name(
            State(st): State<AppState>,
            caller: Caller,
            Path(path): Path<ContactPath>,
            Body(b): Body<PairRequest>,
        ) -> AppResult<ConversationReadResponse> {
            read_conversation(st, caller, path, b).await
        }
    };
}

read_route!(
    /// # `POST /api/whatsapp/contacts/{contact_id}/read`
    read,
    "/contacts/{contact_id}/read",
    "read_contact_messages",
    "Mark a contact's unread messages read, and send WhatsApp's read receipts"
);
read_route!(
    /// # `POST /api/whatsapp/contacts/{contact_id}/messages/read`
    read_messages,
    "/contacts/{contact_id}/messages/read",
    "read_contact_messages_alias",
    "The same as `POST /contacts/{contact_id}/read`"
);
read_route!(
    /// # `POST /api/whatsapp/conversations/{contact_id}/read`
    read_conversation_route,
    "/conversations/{contact_id}/read",
    "read_conversation",
    "The same as `POST /contacts/{contact_id}/read`"
);
