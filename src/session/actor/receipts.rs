//! Receipts from the recipients' phones: the pair's outgoing messages move on, and each
//! message that moved is told once (`message.delivered` or `message.read`).

use serde_json::json;

use super::Actor;
use crate::clock::rfc3339_ms;
use crate::engine::{Receipt, ReceiptKind};
use crate::events::EventKind;
use crate::store::keep_trying;
use crate::store::messaging::{MessageRecord, MessageStatus};

impl Actor {
    pub(super) async fn on_receipt(&mut self, r: Receipt) {
        let to = match r.kind {
            ReceiptKind::Delivered => MessageStatus::Delivered,
            ReceiptKind::Read => MessageStatus::Read,
            ReceiptKind::Played => MessageStatus::Played,
        };
        // Stamped with our clock, like `sent_at`: the phone's clock may be off, and a
        // receipt must never look older than the send it answers.
        let now = self.now_ms();
        let (store, pair) = (&self.deps.store, self.record.pair);
        let what = format!("Recording a {} receipt for {pair}", r.kind.as_str());
        let moved =
            match keep_trying(what, None, || store.apply_receipt(pair, &r.ids, to, now)).await {
                Ok(moved) => moved,
                Err(e) => {
                    tracing::error!(
                        "❌ Cannot record a {} receipt for session {}: {e:#}",
                        r.kind.as_str(),
                        self.id()
                    );
                    return;
                }
            };
        tracing::debug!(
            "Session {}: {} receipt moved {} of {} message(s)",
            self.id(),
            r.kind.as_str(),
            moved.len(),
            r.ids.len()
        );
        for m in &moved {
            let kind = if m.status == MessageStatus::Delivered {
                EventKind::MessageDelivered
            } else {
                EventKind::MessageRead
            };
            self.emit(kind, receipt_payload(m)).await;
        }
    }
}

/// Like `message.sent`'s, with where the message now stands.
fn receipt_payload(m: &MessageRecord) -> serde_json::Value {
    json!({
        "message_id": m.id,
        "job_id": m.job_id,
        "contact_id": m.contact_id,
        "recipient": m.recipient,
        "type": m.kind.as_str(),
        "whatsapp_message_id": m.wa_message_id,
        "status": m.status.as_str(),
        "delivered_at": m.delivered_at.and_then(rfc3339_ms),
        "read_at": m.read_at.and_then(rfc3339_ms),
        "played_at": m.played_at.and_then(rfc3339_ms),
    })
}
