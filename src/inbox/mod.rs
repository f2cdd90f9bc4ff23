//! The inbox: what people write to a linked number is kept (once), makes them contacts, and
//! is told as `message.received`; an opt-out word marks its writer opted out.

mod words;

pub use words::{DEFAULT_OPT_OUT_WORDS, OptOutWords};

use serde_json::{Value, json};

use crate::clock::{rfc3339_ms, rfc3339_secs};
use crate::domain::{Pair, PhoneNumber, SessionId};
use crate::engine::IncomingMessage;
use crate::events::{EventBus, EventKind};
use crate::store::inbox::{NewIncoming, Recorded};
use crate::store::prelude::*;
use crate::store::{ContactPatch, MediaFields, MessageKind, MessageRecord, keep_trying};

/// What a session hands over for each message it is told of.
pub struct Receiver<'a> {
    pub store: &'a dyn Database,
    pub events: Option<&'a EventBus>,
    pub words: &'a OptOutWords,
    pub pair: Pair,
    pub session_id: &'a SessionId,
    pub now_ms: i64,
}

/// A message's file as an event shows it (never the bytes, nor how to fetch them).
pub fn media_json(m: &MessageRecord) -> Value {
    if !m.kind.is_media() {
        return Value::Null;
    }
    json!({
        "type": m.kind.as_str(),
        "mime_type": m.media.mime,
        "size_bytes": m.media.size,
        "file_name": m.media.file_name,
        "voice_note": m.media.voice_note,
    })
}

impl Receiver<'_> {
    async fn emit(&self, kind: EventKind, data: Value) {
        if let Some(bus) = self.events {
            bus.emit(self.pair, Some(self.session_id), kind, data).await;
        }
    }

    /// Keeps the message and tells it; a message handed over again is neither kept nor
    /// told twice.
    pub async fn receive(&self, m: IncomingMessage) {
        let Some(from) = PhoneNumber::parse_international(&m.from) else {
            // Not a number (a chat WhatsApp names otherwise): nothing to keep it under.
            tracing::warn!(
                "⚠️ Message {} from {:?} is not from a phone number",
                m.id,
                m.from
            );
            self.emit(
                EventKind::MessageReceived,
                self.payload(&m, m.from.as_str(), None),
            )
            .await;
            return;
        };
        let new = NewIncoming {
            from: from.clone(),
            push_name: m.push_name.clone(),
            wa_message_id: m.id.clone(),
            kind: MessageKind::parse(&m.kind).unwrap_or(MessageKind::Other),
            body: m.text.clone(),
            media: m
                .media
                .as_ref()
                .map_or_else(MediaFields::default, |f| MediaFields {
                    mime: f.mime.clone(),
                    size: f.size,
                    file_name: f.file_name.clone(),
                    voice_note: f.voice_note,
                    ..MediaFields::default()
                }),
            media_ref: m.media.as_ref().map(|f| f.media_ref.clone()),
            sent_at_ms: m.timestamp.saturating_mul(1000),
        };
        let what = format!("Keeping message {} of session {}", m.id, self.session_id);
        let recorded = match keep_trying(what, None, || {
            self.store.record_incoming(self.pair, &new, self.now_ms)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("❌ Cannot keep message {}: {e:#}", m.id);
                // Told all the same: a webhook still learns someone wrote.
                self.emit(
                    EventKind::MessageReceived,
                    self.payload(&m, from.as_str(), None),
                )
                .await;
                return;
            }
        };
        if !recorded.fresh {
            tracing::debug!("Message {} was handed over again", m.id);
            return;
        }
        self.emit(
            EventKind::MessageReceived,
            self.payload(&m, from.as_str(), Some(&recorded)),
        )
        .await;
        if recorded.message.kind == MessageKind::Text {
            self.check_opt_out(&recorded).await;
        }
    }

    fn payload(&self, m: &IncomingMessage, from: &str, kept: Option<&Recorded>) -> Value {
        json!({
            "whatsapp_message_id": m.id,
            "from": from,
            "push_name": m.push_name,
            "type": m.kind,
            "text": m.text,
            "sent_at": rfc3339_secs(m.timestamp),
            "message_id": kept.map(|r| r.message.id),
            "contact_id": kept.map(|r| r.contact.id),
            "direction": "in",
            "media": kept.map_or(Value::Null, |r| media_json(&r.message)),
        })
    }

    /// A text that is exactly an opt-out word opts its writer out (told once, when it
    /// changes: a second STOP is no news).
    async fn check_opt_out(&self, r: &Recorded) {
        let Some(word) = r
            .message
            .body
            .as_deref()
            .and_then(|t| self.words.matched(t))
        else {
            return;
        };
        if r.contact.opted_out {
            return;
        }
        let patch = ContactPatch {
            opted_out: Some(true),
            ..ContactPatch::default()
        };
        let what = format!("Opting out contact {}", r.contact.id);
        let updated = keep_trying(what, None, || {
            self.store
                .update_contact(self.pair, r.contact.id, &patch, self.now_ms)
        })
        .await;
        match updated {
            Ok(Some(c)) => {
                tracing::info!("ℹ️ Contact {} opted out by writing {word:?}", c.id);
                self.emit(
                    EventKind::ContactOptedOut,
                    json!({
                        "contact_id": c.id,
                        "phone_number": c.phone_number,
                        "word": word,
                        "at": c.opted_out_at.and_then(rfc3339_ms),
                    }),
                )
                .await;
            }
            Ok(None) => tracing::warn!("⚠️ Contact {} vanished before its opt-out", r.contact.id),
            Err(e) => tracing::error!("❌ Cannot opt out contact {}: {e:#}", r.contact.id),
        }
    }
}
