//! The seam between a session actor and whatever speaks to WhatsApp.
//!
//! An engine starts clients; a client reports what happens through an ordered event channel
//! (the actor's only view of the connection) and answers the actor's calls.

pub mod sim;
pub mod whatsapp;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::domain::{Pair, PhoneNumber, SessionId};

/// What a client tells its actor, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// A new QR code is showing; it replaces the previous one.
    Qr { code: String },
    /// The QR codes ran out while a pairing code is still valid: nothing left to scan.
    QrExpired { message: String },
    /// The phone accepted the link.
    Authenticated,
    /// Connected and usable. `phone` is the account's number as WhatsApp writes it (digits).
    Ready {
        phone: String,
        push_name: Option<String>,
    },
    /// The connection dropped; the client reconnects by itself.
    Disconnected { reason: String },
    /// Unlinked from the phone: credentials are gone, a new QR is needed.
    LoggedOut { reason: String },
    /// The client stopped for a reason a person must act on.
    Failed { message: String },
    /// A person wrote to the account (chats with one number only; groups are ignored).
    MessageReceived(IncomingMessage),
    /// The other party's phone reports on messages the account sent.
    Receipt(Receipt),
}

/// A delivery, read or played receipt for one or more messages the account sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// WhatsApp's ids of the messages (ours, chosen when queued).
    pub ids: Vec<String>,
    /// Whose phone sent the receipt: digits as WhatsApp writes them.
    pub from: String,
    pub kind: ReceiptKind,
    /// Unix seconds.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
    /// A voice note (or video) was played; implies read.
    Played,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(Self::Delivered),
            "read" => Some(Self::Read),
            "played" => Some(Self::Played),
            _ => None,
        }
    }
}

/// The file of an incoming message: what the inbox shows, and what the engine needs to
/// download it later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMedia {
    pub mime: Option<String>,
    pub size: Option<i64>,
    pub file_name: Option<String>,
    pub voice_note: bool,
    /// Opaque to everything but the engine that made it (JSON): handed back to
    /// [`EngineClient::download_media`].
    pub media_ref: String,
}

/// Whether a number is on WhatsApp, as WhatsApp answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberInfo {
    pub phone: PhoneNumber,
    pub on_whatsapp: bool,
    pub is_business: bool,
    /// The account's jid when it is on WhatsApp.
    pub jid: Option<String>,
}

/// A message that reached the linked account from another number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// WhatsApp's id of the message.
    pub id: String,
    /// The sender's number, digits only as WhatsApp writes it.
    pub from: String,
    pub push_name: Option<String>,
    /// The text, or a media's caption.
    pub text: Option<String>,
    /// `text`, `image`, `document`, `video`, `audio`, `sticker` (anything else is `other`):
    /// a [`crate::store::MessageKind`] name.
    pub kind: String,
    /// Unix seconds, as the sender's phone stamped it.
    pub timestamp: i64,
    /// The file, for a media message.
    pub media: Option<IncomingMedia>,
}

/// What the outbox hands an engine to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The WhatsApp message id, chosen before the first attempt and kept for every later
    /// one, so a send repeated after a crash is the same message to the recipient.
    pub id: String,
    pub to: PhoneNumber,
    /// The text, or the media's caption.
    pub text: Option<String>,
    pub media: Option<OutgoingMedia>,
}

/// A file to send, already downloaded (or read from its upload).
#[derive(Clone)]
pub struct OutgoingMedia {
    /// `Image`, `Document`, `Video` or `Audio`.
    pub kind: crate::store::MessageKind,
    pub bytes: Arc<Vec<u8>>,
    /// `image/jpeg`, `application/pdf`, ... as the server that served it (or the upload) said.
    pub mime: String,
    /// The name a document shows.
    pub file_name: Option<String>,
    /// An audio to play as a voice note (`ptt`).
    pub voice_note: bool,
    /// An image's JPEG preview, shown until the image is downloaded.
    pub thumbnail: Option<Vec<u8>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl std::fmt::Debug for OutgoingMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMedia")
            .field("kind", &self.kind)
            .field("bytes", &self.bytes.len())
            .field("mime", &self.mime)
            .field("file_name", &self.file_name)
            .field("voice_note", &self.voice_note)
            .field("thumbnail", &self.thumbnail.as_ref().map(Vec::len))
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the client is not available")]
    ClientGone,
    #[error("the client is not connected")]
    NotConnected,
    /// Something is already under way that this request would collide with.
    #[error("{0}")]
    Busy(String),
    /// WhatsApp will not take this input.
    #[error("{0}")]
    Invalid(String),
    /// WhatsApp asks to wait before trying again.
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Failed(String),
}

/// One chat or contact as the account holds it, before any filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawContact {
    pub jid: String,
    /// The phone-number jid of a LID chat, when WhatsApp told us the mapping.
    pub pn_jid: Option<String>,
    pub name: Option<String>,
    pub push_name: Option<String>,
    pub is_business: bool,
    /// Unix seconds of the last message in the chat.
    pub last_message_at: Option<i64>,
}

/// Streams the account's contacts in chunks, so a fetch can commit and report as it goes.
#[async_trait]
pub trait ContactSource: Send {
    /// How many entries will come, when known up front.
    fn total(&self) -> Option<u64>;
    async fn next_chunk(&mut self) -> Result<Option<Vec<RawContact>>, EngineError>;
    /// The account's own jids as the source knows them, to keep the account out of its contacts.
    fn own_jids(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What an engine needs to start a client for a session.
pub struct ClientStart {
    pub session_id: SessionId,
    pub pair: Pair,
    /// The actor holds the receiving end; a client sends every status change here, in order.
    pub events: mpsc::Sender<EngineEvent>,
}

#[async_trait]
pub trait EngineClient: Send + Sync {
    /// False once the client has vanished, with or without an event.
    fn is_alive(&self) -> bool;
    async fn read_contacts(&self) -> Result<Box<dyn ContactSource>, EngineError>;
    /// Unlinks from the phone and deletes the credentials.
    async fn logout(&self) -> Result<(), EngineError>;
    /// Disconnects, keeping the credentials for the next start.
    async fn stop(&self);
    /// Links by a code typed on the phone (Linked devices → Link with phone number)
    /// instead of a QR scan; returns the code to show.
    async fn pair_code(&self, phone: &PhoneNumber) -> Result<String, EngineError>;
    /// Sends one message; answers WhatsApp's id for it (the one in `message.id`).
    /// `Invalid` means the recipient or content will never go (not on WhatsApp, ...).
    async fn send(&self, message: &OutgoingMessage) -> Result<String, EngineError>;
    /// Asks WhatsApp which of these numbers have an account, all in one query; answers one
    /// entry per number, in order.
    async fn check_numbers(&self, numbers: &[PhoneNumber]) -> Result<Vec<NumberInfo>, EngineError> {
        let _ = numbers;
        Err(EngineError::Failed(
            "this engine cannot check numbers".into(),
        ))
    }
    /// Sends read receipts for these incoming messages of one chat.
    async fn mark_read(&self, chat: &PhoneNumber, ids: &[String]) -> Result<(), EngineError> {
        let _ = (chat, ids);
        Err(EngineError::Failed(
            "this engine cannot send read receipts".into(),
        ))
    }
    /// Downloads (and decrypts) an incoming message's file from its `media_ref`.
    async fn download_media(&self, media_ref: &str) -> Result<Vec<u8>, EngineError> {
        let _ = media_ref;
        Err(EngineError::Failed(
            "this engine cannot download media".into(),
        ))
    }
}

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Starts a client: reconnects on stored credentials, or starts showing QR codes.
    async fn start(&self, start: ClientStart) -> Result<Arc<dyn EngineClient>, EngineError>;
    /// Whether the session is linked (credentials stored).
    async fn has_credentials(&self, session_id: &SessionId) -> bool;
    /// Which of these sessions are linked. A restart asks this for every session at once,
    /// before any client starts: one query per session would queue behind the restored
    /// clients' own queries for the pool's connections.
    async fn linked_among(&self, session_ids: &[SessionId]) -> HashSet<SessionId> {
        let mut linked = HashSet::new();
        for id in session_ids {
            if self.has_credentials(id).await {
                linked.insert(id.clone());
            }
        }
        linked
    }
    /// Deletes the credentials of a session that has no live client.
    async fn forget(&self, session_id: &SessionId) -> Result<(), EngineError>;
}
