//! Receipts from a recipient's phone: what WhatsApp forwards to the sender's devices when
//! the recipient's phone got, read or played messages.

use anyhow::bail;
use wacore_binary::builder::NodeBuilder;

use crate::{FakeWhatsApp, conn};

/// What the recipient reports, as the stanza's `type` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// No `type`: the phone got it.
    Delivered,
    /// `type="read"`.
    Read,
    /// `type="played"`: a voice note (or video) was played.
    Played,
}

impl FakeWhatsApp {
    /// `from_phone` (digits) reports on messages `to_account_phone` sent: every connection
    /// of the account gets `<receipt from="<from>@s.whatsapp.net" id="<first>" t=..
    /// [type=..]>`, the other ids in `<list><item id=../></list>` as WhatsApp batches them.
    /// `Err` with no id or no connection of the account.
    pub fn send_receipt(
        &self,
        to_account_phone: &str,
        from_phone: &str,
        ids: &[&str],
        kind: ReceiptKind,
    ) -> anyhow::Result<()> {
        let Some((first, rest)) = ids.split_first() else {
            bail!("a receipt names at least one message");
        };
        let mut node = NodeBuilder::new("receipt")
            .attr("from", format!("{from_phone}@s.whatsapp.net"))
            .attr("id", (*first).to_string())
            .attr("t", wacore::time::now_secs().max(0).to_string());
        match kind {
            ReceiptKind::Delivered => {}
            ReceiptKind::Read => node = node.attr("type", "read"),
            ReceiptKind::Played => node = node.attr("type", "played"),
        }
        if !rest.is_empty() {
            let items = rest.iter().map(|id| {
                NodeBuilder::new("item")
                    .attr("id", (*id).to_string())
                    .build()
            });
            node = node.children([NodeBuilder::new("list").children(items).build()]);
        }
        let node = node.build();
        let reached = self.send_to_account(to_account_phone, |_| conn::Cmd::Send(node.clone()));
        if reached.is_empty() {
            bail!("no device of {to_account_phone} is connected");
        }
        Ok(())
    }
}
