//! The inbox: messages people write to a linked number, and the conversations they make
//! with what we sent them.

use async_trait::async_trait;

use super::messaging::{MediaFields, MessageKind, MessageRecord};
use super::{ContactRecord, StoreResult};
use crate::domain::{Pair, PhoneNumber};

/// A message someone wrote, as the engine handed it over.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncoming {
    pub from: PhoneNumber,
    pub push_name: Option<String>,
    /// The sender's id for it: what makes a second hand-over the same message.
    pub wa_message_id: String,
    pub kind: MessageKind,
    /// The text, or the media's caption.
    pub body: Option<String>,
    /// Mime, size, file name, voice note (no URL, no upload id).
    pub media: MediaFields,
    pub media_ref: Option<String>,
    /// When the sender's phone stamped it (unix ms).
    pub sent_at_ms: i64,
}

/// What recording an incoming message came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub message: MessageRecord,
    /// The sender as a contact (made one when it was not).
    pub contact: ContactRecord,
    /// False when the message had been recorded before: nothing changed.
    pub fresh: bool,
}

/// One conversation: a contact, the newest message either way, and how many of theirs are
/// unread.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub contact: ContactRecord,
    pub last_message: MessageRecord,
    pub unread_count: i64,
}

#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// Keeps an incoming message once (a repeat answers the first with `fresh: false`), and
    /// makes its sender a contact, or moves the contact's last activity forward.
    async fn record_incoming(
        &self,
        pair: Pair,
        message: &NewIncoming,
        now_ms: i64,
    ) -> StoreResult<Recorded>;
    /// One page of the pair's conversations with contacts, newest last message first, and
    /// how many there are.
    async fn conversations(
        &self,
        pair: Pair,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<Conversation>, i64)>;
    /// One page of the messages with one number, both directions, newest first, and how
    /// many there are.
    async fn peer_messages(
        &self,
        pair: Pair,
        phone: &str,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)>;
    /// Marks every unread message from this number read; answers them as marked (the read
    /// receipts name them by WhatsApp's id).
    async fn mark_conversation_read(
        &self,
        pair: Pair,
        phone: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<MessageRecord>>;
}
