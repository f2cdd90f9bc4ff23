//! The inbox routes' answers.

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::contacts::dto::Contact;
use crate::http::envelope::success;
use crate::http::extract::Pagination;
use crate::http::messaging::answers::Message;
use crate::store::inbox::Conversation;

/// One conversation: the contact, the newest message either way, and how many of the
/// contact's messages nobody has read.
#[derive(Serialize, ToSchema)]
pub struct ConversationView {
    contact: Contact,
    last_message: Message,
    #[schema(minimum = 0)]
    unread_count: i64,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        Self {
            contact: (&c.contact).into(),
            last_message: (&c.last_message).into(),
            unread_count: c.unread_count,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConversationList {
    /// Newest last message first.
    pub conversations: Vec<ConversationView>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct ContactMessages {
    pub contact_id: i64,
    /// Both directions, newest first.
    pub messages: Vec<Message>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct ConversationRead {
    pub contact_id: i64,
    /// The contact's messages that were unread and now are read.
    #[schema(minimum = 0)]
    pub marked_read: usize,
    /// Whether WhatsApp took the read receipts (blue ticks) for them; false when there was
    /// nothing to mark or the phone refused them.
    pub receipts_sent: bool,
}

success!(ConversationListResponse, ConversationList);
success!(ContactMessagesResponse, ContactMessages);
success!(ConversationReadResponse, ConversationRead);
