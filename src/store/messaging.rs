//! What the outbox, the event log and the webhook queue keep.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Pair, PlaceId, SessionId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Failed,
}

impl MessageStatus {
    pub const ALL: [Self; 4] = [Self::Queued, Self::Sending, Self::Sent, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
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
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "image" => Some(Self::Image),
            _ => None,
        }
    }
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub text: i64,
    pub image: i64,
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Queued(Box<MessageRecord>),
    NotFound,
    NotFailed(MessageStatus),
}

#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Queues the messages (and their job, when given) in one transaction; the rows as
    /// queued, in order.
    async fn enqueue(
        &self,
        pair: Pair,
        job: Option<(JobKind, Option<i64>)>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)>;
    /// Pairs with messages not yet sent or failed: their workers start with the server.
    async fn pairs_with_pending(&self) -> StoreResult<Vec<Pair>>;
    /// The oldest message of the pair still to send (queued, or caught mid-send by a stop).
    async fn next_pending(&self, pair: Pair) -> StoreResult<Option<MessageRecord>>;
    async fn mark_sending(&self, id: i64, now_ms: i64) -> StoreResult<()>;
    async fn mark_sent(&self, id: i64, wa_message_id: &str, now_ms: i64) -> StoreResult<()>;
    async fn mark_failed(&self, id: i64, error: &str, now_ms: i64) -> StoreResult<()>;
    /// Back to the queue after an attempt that never reached WhatsApp.
    async fn requeue(&self, id: i64, now_ms: i64) -> StoreResult<()>;
    /// How many of the pair's messages were sent since then, and when the oldest of them was.
    async fn sent_since(&self, pair: Pair, since_ms: i64) -> StoreResult<(i64, Option<i64>)>;
    async fn last_sent_at(&self, pair: Pair) -> StoreResult<Option<i64>>;
    async fn message(&self, pair: Pair, id: i64) -> StoreResult<Option<MessageRecord>>;
    async fn list_messages(
        &self,
        pair: Pair,
        filter: &MessageFilter,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)>;
    async fn message_counts(
        &self,
        pair: Pair,
        filter: &MessageFilter,
    ) -> StoreResult<MessageCounts>;
    /// A failed message goes back to the queue with its error cleared.
    async fn retry_message(&self, pair: Pair, id: i64, now_ms: i64) -> StoreResult<RetryOutcome>;
    async fn job(&self, pair: Pair, id: i64) -> StoreResult<Option<JobRecord>>;
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

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends the event and, when the tenant's webhook subscribes to it, queues its delivery,
    /// in one transaction. The payload is built from the id the event gets. Returns the
    /// event and whether a delivery was queued.
    async fn record_event(
        &self,
        pair: Pair,
        session_id: Option<&SessionId>,
        kind: &str,
        payload: &(dyn Fn(i64) -> String + Send + Sync),
        now_ms: i64,
    ) -> StoreResult<(EventRecord, bool)>;
    /// Events of the user (of one place when given) after `after_id`, oldest first: what a
    /// reconnecting event-stream listener missed.
    async fn events_after(
        &self,
        user: UserId,
        place: Option<PlaceId>,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>>;
    async fn set_webhook(&self, hook: &WebhookRecord) -> StoreResult<WebhookRecord>;
    async fn webhook(&self, user: UserId) -> StoreResult<Option<WebhookRecord>>;
    /// Removes the webhook; its pending deliveries fail with the reason.
    async fn delete_webhook(&self, user: UserId, now_ms: i64) -> StoreResult<bool>;
    /// The oldest pending delivery of every tenant that has one: deliveries of one tenant go
    /// strictly in order, so only the head of each queue may be tried.
    async fn pending_heads(&self) -> StoreResult<Vec<DeliveryRecord>>;
    async fn record_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn deliveries(
        &self,
        user: UserId,
        status: Option<DeliveryStatus>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<DeliveryRecord>, i64)>;
}
