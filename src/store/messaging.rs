//! What the outbox, the event log and the webhook queue keep.

use crate::domain::{Pair, SessionId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    /// The recipient's phone got it (a receipt).
    Delivered,
    /// The recipient opened it; an incoming message we marked read.
    Read,
    /// The recipient played a voice note.
    Played,
    Failed,
    /// An incoming message nobody has read yet.
    Received,
}

impl MessageStatus {
    pub const ALL: [Self; 8] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Played,
        Self::Failed,
        Self::Received,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    /// How far an outgoing message has come: a receipt moves a message only to a higher
    /// rank, never back (receipts arrive out of order, and twice).
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sending => 1,
            Self::Failed => 2,
            Self::Sent => 3,
            Self::Received => 3,
            Self::Delivered => 4,
            Self::Read => 5,
            Self::Played => 6,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    Document,
    Video,
    Audio,
    /// Incoming only.
    Sticker,
    /// Incoming only: a location, a contact card, a poll... kept as a line in the inbox.
    Other,
}

impl MessageKind {
    pub const ALL: [Self; 7] = [
        Self::Text,
        Self::Image,
        Self::Document,
        Self::Video,
        Self::Audio,
        Self::Sticker,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Document => "document",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Sticker => "sticker",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether a message of this kind carries a file.
    pub fn is_media(self) -> bool {
        !matches!(self, Self::Text | Self::Other)
    }
}

/// Who wrote a message: we (`out`, to `recipient`) or the other party (`in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    In,
    #[default]
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in" => Some(Self::In),
            "out" => Some(Self::Out),
            _ => None,
        }
    }
}

/// The file a message carries, as the log shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaFields {
    /// Downloaded when the message is sent.
    pub url: Option<String>,
    /// An upload (`POST /api/whatsapp/media`), read when the message is sent.
    pub media_id: Option<String>,
    pub mime: Option<String>,
    pub size: Option<i64>,
    pub file_name: Option<String>,
    /// An audio sent (or received) as a voice note (`ptt`).
    pub voice_note: bool,
}

/// One message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub contact_id: Option<i64>,
    /// E.164.
    pub recipient: String,
    pub recipient_name: Option<String>,
    pub kind: MessageKind,
    pub body: Option<String>,
    pub image_url: Option<String>,
    pub template_id: Option<String>,
    pub wa_message_id: String,
    pub min_gap_ms: i64,
    pub media: MediaFields,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Group,
    Bulk,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Bulk => "bulk",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: i64,
    pub pair: Pair,
    pub job_id: Option<i64>,
    pub contact_id: Option<i64>,
    pub recipient: String,
    pub recipient_name: Option<String>,
    pub kind: MessageKind,
    pub body: Option<String>,
    pub image_url: Option<String>,
    pub template_id: Option<String>,
    pub status: MessageStatus,
    pub wa_message_id: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub min_gap_ms: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub direction: Direction,
    pub media: MediaFields,
    /// Incoming media: what the engine needs to download it (JSON, engine-specific).
    pub media_ref: Option<String>,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
    pub played_at: Option<i64>,
}

/// Which messages a log listing or the stats read; every filter narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub kind: Option<MessageKind>,
    /// Created at or after (unix ms).
    pub from_ms: Option<i64>,
    /// Created before (unix ms).
    pub to_ms: Option<i64>,
    /// Digits found in the recipient's number.
    pub recipient: Option<String>,
    pub job_id: Option<i64>,
    /// The messages of the group sends to this group.
    pub group_id: Option<i64>,
    /// Only what we sent (`out`) or what people wrote (`in`).
    pub direction: Option<Direction>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub queued: i64,
    pub sending: i64,
    /// Outgoing messages WhatsApp took: `sent` and those that went on to a receipt.
    pub sent: i64,
    /// Of `sent`, those the recipient's phone got (`delivered`, `read` or `played`).
    pub delivered: i64,
    /// Of `delivered`, those the recipient opened (`read` or `played`).
    pub read: i64,
    /// Of `read`, the voice notes played.
    pub played: i64,
    pub failed: i64,
    pub text: i64,
    pub image: i64,
    pub document: i64,
    pub video: i64,
    pub audio: i64,
}

impl MessageCounts {
    pub fn total(&self) -> i64 {
        self.queued + self.sending + self.sent + self.failed
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub pair: Pair,
    pub kind: JobKind,
    pub group_id: Option<i64>,
    pub total: i64,
    pub created_at: i64,
    pub counts: MessageCounts,
    pub skipped: JobSkips,
}

/// Recipients a group or bulk send left out before queueing, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobSkips {
    pub opted_out: i64,
    pub not_on_whatsapp: i64,
}

/// A group or bulk send's job, made with its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewJob {
    pub kind: JobKind,
    /// The contact group a group send went to.
    pub group_id: Option<i64>,
    /// Kept on the job in the same transaction as its messages: a job is never seen
    /// without what it left out.
    pub skipped: JobSkips,
}

impl NewJob {
    pub fn new(kind: JobKind, group_id: Option<i64>) -> Self {
        Self {
            kind,
            group_id,
            skipped: JobSkips::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Queued(Box<MessageRecord>),
    NotFound,
    NotFailed(MessageStatus),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub user_id: UserId,
    pub url: String,
    pub secret: String,
    pub events: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: i64,
    pub pair: Pair,
    pub session_id: Option<SessionId>,
    pub kind: String,
    /// The JSON body as delivered and signed.
    pub payload: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: i64,
    pub user_id: UserId,
    pub event: EventRecord,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered {
        status_code: i64,
    },
    /// Tried again at `retry_at`, or given up when `None`.
    Failed {
        status_code: Option<i64>,
        error: String,
        retry_at: Option<i64>,
    },
}
