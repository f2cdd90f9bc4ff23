//! WhatsApp's receipts for messages the account sent, as the actor hears them.

use whatsapp_rust::types::events::Receipt as LibReceipt;
use whatsapp_rust::types::presence::ReceiptType;

use super::events::Pump;
use crate::engine::{EngineEvent, Receipt, ReceiptKind};

impl Pump {
    /// Only what the other party's phone says about our messages in a one-to-one chat: our
    /// own devices' receipts (`read-self`, `played-self`, a companion's delivery ack of the
    /// copy it got) say nothing about the recipient, we send to no group, and the rest
    /// (`retry`, `sender`, server errors, a delivery WhatsApp downgraded to `sent`) is protocol.
    pub(super) async fn on_receipt(&self, r: &LibReceipt) {
        let kind = match r.r#type {
            ReceiptType::Delivered => ReceiptKind::Delivered,
            ReceiptType::Read => ReceiptKind::Read,
            ReceiptType::Played => ReceiptKind::Played,
            _ => return,
        };
        let src = &r.source;
        let one_to_one = src.chat.is_pn() || src.chat.is_lid();
        if src.is_from_me || src.is_group || !one_to_one || r.message_ids.is_empty() {
            return;
        }
        if self.is_own(&src.chat) || self.is_own(&src.sender) {
            return;
        }
        // A hidden number (LID) may stay unresolved: the ids alone find our messages.
        let from = self
            .sender_number(&src.sender, src.sender_alt.as_ref())
            .await
            .unwrap_or_else(|| src.sender.user.to_string());
        self.send(EngineEvent::Receipt(Receipt {
            ids: r.message_ids.iter().map(ToString::to_string).collect(),
            from,
            kind,
            timestamp: r.timestamp.timestamp(),
        }))
        .await;
    }

    fn is_own(&self, jid: &whatsapp_rust::Jid) -> bool {
        let user = &jid.user;
        self.lib.pn().is_some_and(|j| j.user == *user)
            || self.lib.lid().is_some_and(|j| j.user == *user)
    }
}
