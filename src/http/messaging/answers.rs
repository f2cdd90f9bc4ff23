//! What the messaging routes answer: the types serialized, and so the ones the OpenAPI
//! document describes, each inside its declared envelope.

use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::clock::rfc3339_ms;
use crate::http::envelope::success;
use crate::http::extract::Pagination;
use crate::messaging::templates::{self, Category, RECIPIENT_VARIABLES, Template};
use crate::store::{Direction, JobRecord, MessageKind, MessageRecord, MessageStatus};

success!(MessageResponse, Message);
success!(QueuedMessageResponse, QueuedMessage);
success!(JobResponse, Job);
success!(GroupJobResponse, GroupJob);
success!(BulkJobResponse, BulkJob);
success!(MessageListResponse, MessageList);
success!(MessageStatsResponse, MessageStats);
success!(ValidationResponse, Validation);
success!(ImageProbeResponse, ImageProbe);
success!(TemplateListResponse, TemplateList);

pub fn message_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(MessageStatus::ALL.map(MessageStatus::as_str)))
        .build()
}

pub fn message_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(MessageKind::ALL.map(MessageKind::as_str)))
        .build()
}

/// A message in the outbox and what became of it.
#[derive(Serialize, ToSchema)]
pub struct Message {
    id: i64,
    /// The group or bulk send it belongs to.
    #[schema(required = true)]
    job_id: Option<i64>,
    #[schema(required = true)]
    contact_id: Option<i64>,
    /// E.164.
    recipient: String,
    #[schema(required = true)]
    recipient_name: Option<String>,
    #[schema(schema_with = message_type)]
    r#type: &'static str,
    /// As sent: variables filled.
    #[schema(required = true)]
    text: Option<String>,
    #[schema(required = true)]
    image_url: Option<String>,
    #[schema(required = true)]
    template_id: Option<String>,
    #[schema(schema_with = message_status)]
    status: &'static str,
    /// WhatsApp's id, once sent.
    #[schema(required = true)]
    whatsapp_message_id: Option<String>,
    /// Why it failed.
    #[schema(required = true)]
    error: Option<String>,
    attempts: i64,
    #[schema(value_type = String, required = true, format = DateTime)]
    created_at: Option<String>,
    #[schema(value_type = String, required = true, format = DateTime)]
    updated_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    sent_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    failed_at: Option<String>,
    /// `out`: sent by the linked number to `recipient`; `in`: written by `recipient` to it.
    #[schema(schema_with = message_direction)]
    direction: &'static str,
    /// The file a media message carries.
    #[schema(required = true)]
    media: Option<MediaInfo>,
    /// When the recipient's phone got it (a receipt).
    #[schema(required = true, format = DateTime)]
    delivered_at: Option<String>,
    /// When the recipient read it; for an incoming message, when it was marked read.
    #[schema(required = true, format = DateTime)]
    read_at: Option<String>,
    /// When the recipient played a voice note.
    #[schema(required = true, format = DateTime)]
    played_at: Option<String>,
}

pub fn message_direction() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["in", "out"]))
        .build()
}

/// A media message's file, as sent or received.
#[derive(Serialize, ToSchema)]
pub struct MediaInfo {
    /// `image`, `document`, `video`, `audio` (or `sticker`, incoming).
    r#type: &'static str,
    #[schema(required = true)]
    mime_type: Option<String>,
    #[schema(required = true)]
    size_bytes: Option<i64>,
    /// The name the recipient sees for a document.
    #[schema(required = true)]
    file_name: Option<String>,
    /// An audio sent or received as a voice note.
    voice_note: bool,
    /// Downloaded from here when the message is sent.
    #[schema(required = true)]
    url: Option<String>,
    /// The upload (`POST /api/whatsapp/media`) it was sent from.
    #[schema(required = true)]
    media_id: Option<String>,
}

impl MediaInfo {
    fn of(m: &MessageRecord) -> Option<Self> {
        m.kind.is_media().then(|| Self {
            r#type: m.kind.as_str(),
            mime_type: m.media.mime.clone(),
            size_bytes: m.media.size,
            file_name: m.media.file_name.clone(),
            voice_note: m.media.voice_note,
            url: m.media.url.clone(),
            media_id: m.media.media_id.clone(),
        })
    }
}

impl From<&MessageRecord> for Message {
    fn from(m: &MessageRecord) -> Self {
        Self {
            id: m.id,
            job_id: m.job_id,
            contact_id: m.contact_id,
            recipient: m.recipient.clone(),
            recipient_name: m.recipient_name.clone(),
            r#type: m.kind.as_str(),
            text: m.body.clone(),
            image_url: m.image_url.clone(),
            template_id: m.template_id.clone(),
            status: m.status.as_str(),
            // Not WhatsApp's until it has taken the message.
            whatsapp_message_id: (m.direction == Direction::In || m.sent_at.is_some())
                .then(|| m.wa_message_id.clone()),
            error: m.error.clone(),
            attempts: m.attempts,
            created_at: rfc3339_ms(m.created_at),
            updated_at: rfc3339_ms(m.updated_at),
            sent_at: m.sent_at.and_then(rfc3339_ms),
            failed_at: m.failed_at.and_then(rfc3339_ms),
            direction: m.direction.as_str(),
            media: MediaInfo::of(m),
            delivered_at: m.delivered_at.and_then(rfc3339_ms),
            read_at: m.read_at.and_then(rfc3339_ms),
            played_at: m.played_at.and_then(rfc3339_ms),
        }
    }
}

/// A message just queued: the log's entry, and its WhatsApp id under the earlier service's
/// name.
#[derive(Serialize, ToSchema)]
pub struct QueuedMessage {
    #[serde(flatten)]
    message: Message,
    /// The WhatsApp id the message is sent under, chosen when it is queued.
    message_id: String,
}

impl From<&MessageRecord> for QueuedMessage {
    fn from(m: &MessageRecord) -> Self {
        Self {
            message: m.into(),
            message_id: m.wa_message_id.clone(),
        }
    }
}

/// A group or bulk send's progress.
#[derive(Serialize, ToSchema)]
pub struct Job {
    job_id: i64,
    /// `group` or `bulk`.
    r#type: &'static str,
    #[schema(required = true)]
    group_id: Option<i64>,
    total: i64,
    queued: i64,
    sending: i64,
    /// WhatsApp took them: `sent`, and those that went on to `delivered`, `read` or `played`.
    sent: i64,
    /// Of `sent`, those the recipients' phones got (`delivered`, `read` or `played`).
    delivered: i64,
    /// Of `delivered`, those the recipients opened (`read` or `played`).
    read: i64,
    /// Of `read`, the voice notes played.
    played: i64,
    failed: i64,
    /// Percent of the messages sent or failed.
    #[schema(minimum = 0, maximum = 100)]
    progress: i64,
    completed: bool,
    /// Members or recipients left out because they opted out.
    opted_out_skipped: i64,
    /// Left out by `skip_not_on_whatsapp`: no WhatsApp account.
    not_on_whatsapp_skipped: i64,
    #[schema(value_type = String, required = true, format = DateTime)]
    created_at: Option<String>,
}

impl From<&JobRecord> for Job {
    fn from(j: &JobRecord) -> Self {
        let done = j.counts.sent + j.counts.failed;
        Self {
            job_id: j.id,
            r#type: j.kind.as_str(),
            group_id: j.group_id,
            total: j.total,
            queued: j.counts.queued,
            sending: j.counts.sending,
            sent: j.counts.sent,
            delivered: j.counts.delivered,
            read: j.counts.read,
            played: j.counts.played,
            failed: j.counts.failed,
            progress: if j.total > 0 {
                done * 100 / j.total
            } else {
                100
            },
            completed: done >= j.total,
            opted_out_skipped: j.skipped.opted_out,
            not_on_whatsapp_skipped: j.skipped.not_on_whatsapp,
            created_at: rfc3339_ms(j.created_at),
        }
    }
}

/// The ids of queued messages, in their order: ours (for `/messages/{id}/retry` and the log)
/// and WhatsApp's (chosen when queued; `message.sent` events carry it as
/// `whatsapp_message_id`, and the recipient's phone sees it).
fn ids(queued: &[MessageRecord]) -> (Vec<i64>, Vec<String>) {
    queued
        .iter()
        .map(|m| (m.id, m.wa_message_id.clone()))
        .unzip()
}

/// A group send just queued.
#[derive(Serialize, ToSchema)]
pub struct GroupJob {
    #[serde(flatten)]
    job: Job,
    /// The queued messages, in the members' order.
    message_ids: Vec<i64>,
    /// Their WhatsApp ids, in the same order.
    whatsapp_message_ids: Vec<String>,
}

impl GroupJob {
    pub fn new(job: &JobRecord, queued: &[MessageRecord]) -> Self {
        let (message_ids, whatsapp_message_ids) = ids(queued);
        Self {
            job: job.into(),
            message_ids,
            whatsapp_message_ids,
        }
    }
}

/// A bulk send just queued.
#[derive(Serialize, ToSchema)]
pub struct BulkJob {
    #[serde(flatten)]
    job: Job,
    /// The queued messages, in the recipients' order.
    message_ids: Vec<i64>,
    /// Their WhatsApp ids, in the same order.
    whatsapp_message_ids: Vec<String>,
    /// Recipients dropped because their number came earlier in the list.
    duplicates_skipped: usize,
    /// The numbers left out because they opted out, in the recipients' order.
    opted_out_numbers: Vec<String>,
    /// The numbers left out by `skip_not_on_whatsapp`, in the recipients' order.
    not_on_whatsapp_numbers: Vec<String>,
}

impl BulkJob {
    pub fn new(job: &JobRecord, queued: &[MessageRecord], duplicates_skipped: usize) -> Self {
        let (message_ids, whatsapp_message_ids) = ids(queued);
        Self {
            job: job.into(),
            message_ids,
            whatsapp_message_ids,
            duplicates_skipped,
            opted_out_numbers: Vec::new(),
            not_on_whatsapp_numbers: Vec::new(),
        }
    }

    pub fn skipped(mut self, opted_out: Vec<String>, not_on_whatsapp: Vec<String>) -> Self {
        self.opted_out_numbers = opted_out;
        self.not_on_whatsapp_numbers = not_on_whatsapp;
        self
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<Message>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct MessageStats {
    pub total: i64,
    pub queued: i64,
    pub sending: i64,
    /// Outgoing messages WhatsApp took: `sent`, and those that went on to `delivered`,
    /// `read` or `played` (so `total` = `queued` + `sending` + `sent` + `failed`).
    pub sent: i64,
    /// Of `sent`, those the recipients' phones got (`delivered`, `read` or `played`).
    pub delivered: i64,
    /// Of `delivered`, those the recipients opened (`read` or `played`).
    pub read: i64,
    /// Of `read`, the voice notes played.
    pub played: i64,
    pub failed: i64,
    pub by_type: ByType,
    /// Sends in the last 24 hours against the daily cap.
    pub last_24_hours: LastDay,
    /// The number's pace: interval, jitter, daily cap.
    pub pacing: PacingInfo,
}

#[derive(Serialize, ToSchema)]
pub struct ByType {
    pub text: i64,
    pub image: i64,
    pub document: i64,
    pub video: i64,
    pub audio: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LastDay {
    pub sent: i64,
    pub daily_cap: i64,
    pub remaining: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PacingInfo {
    pub interval_seconds: f64,
    pub jitter_seconds: f64,
    pub daily_cap: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The text as the recipient would get it.
    #[schema(required = true)]
    pub preview: Option<String>,
    #[schema(required = true)]
    pub length: Option<usize>,
    pub max_length: usize,
    #[schema(required = true)]
    pub r#type: Option<&'static str>,
    /// The placeholders the text uses.
    pub variables: Vec<String>,
    #[schema(required = true)]
    pub recipient: Option<String>,
    /// The image's type and size, when an `image_url` was checked.
    #[schema(required = true)]
    pub image: Option<ImageInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct ImageInfo {
    pub content_type: String,
    pub size_bytes: usize,
}

#[derive(Serialize, ToSchema)]
pub struct ImageProbe {
    pub valid: bool,
    pub url: String,
    #[schema(required = true)]
    pub final_url: Option<String>,
    #[schema(required = true)]
    pub content_type: Option<String>,
    #[schema(required = true)]
    pub size_bytes: Option<usize>,
    pub elapsed_ms: u64,
    /// Why the URL cannot be used.
    #[schema(required = true)]
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TemplateList {
    templates: Vec<TemplateInfo>,
    /// Variables every recipient fills itself.
    recipient_variables: Vec<&'static str>,
}

impl TemplateList {
    pub fn all() -> Self {
        Self {
            templates: templates::TEMPLATES
                .iter()
                .map(TemplateInfo::from)
                .collect(),
            recipient_variables: RECIPIENT_VARIABLES.to_vec(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Template)]
pub struct TemplateInfo {
    id: &'static str,
    name: &'static str,
    language: &'static str,
    text: &'static str,
    /// The earlier service's name for `text`.
    content: &'static str,
    #[schema(schema_with = template_category)]
    category: &'static str,
    variables: Vec<String>,
    description: &'static str,
}

impl From<&'static Template> for TemplateInfo {
    fn from(t: &'static Template) -> Self {
        Self {
            id: t.id,
            name: t.name,
            language: t.language,
            text: t.text,
            content: t.text,
            category: t.category.as_str(),
            variables: templates::placeholders(t.text),
            description: t.description,
        }
    }
}

fn template_category() -> Object {
    let names: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .build()
}
