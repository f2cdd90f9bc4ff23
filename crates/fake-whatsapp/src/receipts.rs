//! Receipts from a recipient's phone: what WhatsApp forwards to the sender's devices when
//! the recipient's phone got, read or played messages.

use anyhow::bail;
use wacore_binary::builder::NodeBuilder;

use wacore_binary::node::Node;

use crate::nodes::attr;
use crate::{FakeWhatsApp, Inner, conn};

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

/// A `<receipt>` a client sent about messages it got: read receipts for what it showed its
/// user (`type="read"`), the automatic delivery receipts (no `type`), and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReceipt {
    /// The account (digits) and device that sent it.
    pub account: String,
    pub device: u16,
    /// The chat it is addressed to (`to`), as the client wrote it.
    pub to: String,
    /// `read`, `read-self`, `played`, ... or `None` for a delivery receipt.
    pub receipt_type: Option<String>,
    /// Every message id it names: `id`, then the `<list><item id=../></list>`.
    pub ids: Vec<String>,
}

/// Keeps a receipt the client sent, for [`FakeWhatsApp::client_receipts`].
pub(crate) fn record(inner: &Inner, account: &str, device: u16, node: &Node) {
    let ids = attr(node, "id")
        .into_iter()
        .chain(
            node.get_optional_child("list")
                .into_iter()
                .flat_map(|l| l.get_children_by_tag("item"))
                .filter_map(|i| attr(i, "id")),
        )
        .collect();
    let r = ClientReceipt {
        account: account.to_string(),
        device,
        to: attr(node, "to").unwrap_or_default(),
        receipt_type: attr(node, "type"),
        ids,
    };
    inner.lock().client_receipts.push(r);
    inner.notify_changed();
}

impl FakeWhatsApp {
    /// Every receipt clients sent about messages they got, in arrival order.
    pub fn client_receipts(&self) -> Vec<ClientReceipt> {
        self.inner.lock().client_receipts.clone()
    }

    /// The read receipts (`type="read"`) clients sent, in arrival order.
    pub fn read_receipts(&self) -> Vec<ClientReceipt> {
        self.client_receipts()
            .into_iter()
            .filter(|r| r.receipt_type.as_deref() == Some("read"))
            .collect()
    }
}
