//! The server's side of a client sending a message.
//!
//! Before a client encrypts a 1:1 message it asks the server who the
//! recipient is (`usync`: device list, LID, whether the number has an
//! account) and fetches a pre-key bundle for each device it has no Signal
//! session with (`<iq xmlns="encrypt" type="get"><key>`). The fake answers
//! from a small directory: every number is on WhatsApp with one device (its
//! phone, device 0) unless [`crate::FakeWhatsApp::set_not_on_whatsapp`] says
//! otherwise, and each user's keys are those of its Signal entry in the
//! account's [`crate::Signals`], the same entry that writes to the account in
//! [`crate::FakeWhatsApp::send_message`].
//!
//! Every `<message>` the client sends is recorded as a [`SentMessage`]; the
//! fake holds the recipient's private keys, so it also reads the recipient's
//! copy.

use std::collections::{HashMap, HashSet};

use wacore_binary::Jid;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::node::Node;
use waproto::whatsapp as wa;

use crate::nodes::{attr, content_bytes};
use crate::phone::PhoneAccount;
use crate::signal::{self, SignalSender};

/// A `<message>` stanza a client sent, as the server saw it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    /// The number whose device sent it (digits) and that device's id.
    pub from_phone: String,
    pub from_device: u16,
    /// The stanza's `to` (`<digits>@s.whatsapp.net`, `<lid>@lid`, a group…).
    pub to: String,
    /// The stanza's `id`: the message id.
    pub id: String,
    /// The stanza's `type` (`text`, `media`, …).
    pub msg_type: String,
    /// Whether it carries encrypted content (`<enc>`, bare or per device).
    pub encrypted: bool,
    /// The device JIDs of `<participants><to jid=..>`, in order.
    pub participants: Vec<String>,
    /// The `<enc type>`s (`pkmsg`, `msg`, `skmsg`, …), in order.
    pub enc_types: Vec<String>,
    /// The recipient's copy, decrypted with the recipient's keys; `None` if
    /// the fake could not read it (see `decrypt_error`).
    pub message: Option<wa::Message>,
    pub decrypt_error: Option<String>,
    /// For an image message: the image, downloaded from the fake media
    /// server and decrypted with the key the message carries.
    pub image: Option<Vec<u8>>,
    /// The file the message carries, of any kind, downloaded and decrypted as the
    /// recipient's phone would (with the caption, file name and `ptt` the message gives).
    pub file: Option<crate::PhoneMedia>,
}

impl SentMessage {
    /// The text the recipient reads: a plain or extended text, or a media
    /// caption.
    pub fn text(&self) -> Option<&str> {
        let m = self.message.as_ref()?;
        m.conversation
            .as_deref()
            .or_else(|| {
                m.extended_text_message
                    .as_option()
                    .and_then(|t| t.text.as_deref())
            })
            .or_else(|| {
                m.image_message
                    .as_option()
                    .and_then(|i| i.caption.as_deref())
            })
            .or_else(|| {
                m.document_message
                    .as_option()
                    .and_then(|d| d.caption.as_deref())
            })
            .or_else(|| {
                m.video_message
                    .as_option()
                    .and_then(|v| v.caption.as_deref())
            })
    }

    /// The recipient's number, when `to` is a phone-number JID.
    pub fn to_number(&self) -> Option<&str> {
        self.to.strip_suffix("@s.whatsapp.net")
    }
}

/// Who is who, as the server answers one account's device.
pub(crate) struct Directory {
    pub account: PhoneAccount,
    /// `(lid jid, pn jid)` pairs the account's history names.
    pub lid_pn: Vec<(String, String)>,
    /// Numbers (digits) without a WhatsApp account.
    pub unregistered: HashSet<String>,
    /// Numbers (digits) with a WhatsApp Business account.
    pub businesses: HashSet<String>,
}

impl Directory {
    /// The phone number (digits) of a user JID, if the server knows it.
    pub(crate) fn number_of(&self, jid: &Jid) -> Option<String> {
        if jid.is_pn() {
            return Some(jid.user.to_string());
        }
        if !jid.is_lid() {
            return None;
        }
        if jid.user.as_str() == self.account.lid {
            return Some(self.account.phone.clone());
        }
        let lid = format!("{}@lid", jid.user);
        self.lid_pn
            .iter()
            .find(|(l, _)| *l == lid)
            .and_then(|(_, pn)| pn.strip_suffix("@s.whatsapp.net"))
            .map(str::to_string)
    }

    fn lid_of(&self, number: &str) -> Option<String> {
        if number == self.account.phone {
            return Some(self.account.lid.clone());
        }
        let pn = format!("{number}@s.whatsapp.net");
        self.lid_pn
            .iter()
            .find(|(_, p)| *p == pn)
            .and_then(|(l, _)| l.strip_suffix("@lid"))
            .map(str::to_string)
    }

    fn registered(&self, number: &str) -> bool {
        !self.unregistered.contains(number)
    }
}

/// The `<usync>` answer: for each user asked about, each protocol asked for
/// (devices, contact, lid); other protocols are left out, which the client
/// reads as "nothing known".
/// The numbers (digits) of a `usync` query that asks whether they are on WhatsApp (the
/// `contact` protocol); `None` for other queries (device lists).
pub(crate) fn number_check(req: &Node) -> Option<Vec<String>> {
    let usync = req.get_optional_child("usync")?;
    usync
        .get_optional_child("query")?
        .get_optional_child("contact")?;
    Some(
        usync
            .get_optional_child("list")
            .map(|l| l.get_children_by_tag("user").collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| u.get_optional_child("contact").and_then(content_bytes))
            .filter_map(|b| std::str::from_utf8(b).ok())
            .map(|p| p.trim_start_matches('+').to_string())
            .collect(),
    )
}

pub(crate) fn usync_answer(req: &Node, dir: &Directory) -> Vec<Node> {
    let Some(usync) = req.get_optional_child("usync") else {
        return Vec::new();
    };
    let protocols: Vec<String> = usync
        .get_optional_child("query")
        .and_then(|q| q.children())
        .map(|c| c.iter().map(|n| n.tag.to_string()).collect())
        .unwrap_or_default();
    let users: Vec<Node> = usync
        .get_optional_child("list")
        .map(|l| l.get_children_by_tag("user").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|user| usync_user(user, &protocols, dir))
        .collect();
    vec![
        NodeBuilder::new("usync")
            .children([
                NodeBuilder::new("result").build(),
                NodeBuilder::new("list").children(users).build(),
            ])
            .build(),
    ]
}

fn usync_user(user: &Node, protocols: &[String], dir: &Directory) -> Option<Node> {
    // By JID, or (a contact lookup) by the number in `<contact>+…</contact>`.
    let jid_text = attr(user, "jid").or_else(|| {
        let phone = user
            .get_optional_child("contact")
            .and_then(content_bytes)
            .and_then(|b| std::str::from_utf8(b).ok())?
            .trim_start_matches('+')
            .to_string();
        (!phone.is_empty()).then(|| format!("{phone}@s.whatsapp.net"))
    })?;
    let jid: Jid = jid_text.parse().ok()?;
    let number = dir.number_of(&jid);
    // An unknown LID is someone the server knows and we do not: on WhatsApp.
    let registered = number.as_deref().is_none_or(|n| dir.registered(n));
    let mut children = Vec::new();
    for p in protocols {
        match p.as_str() {
            "devices" => {
                let devices: Vec<Node> = if registered {
                    vec![NodeBuilder::new("device").attr("id", "0").build()]
                } else {
                    Vec::new()
                };
                children.push(
                    NodeBuilder::new("devices")
                        .children([NodeBuilder::new("device-list").children(devices).build()])
                        .build(),
                );
            }
            "contact" => children.push(
                NodeBuilder::new("contact")
                    .attr("type", if registered { "in" } else { "out" })
                    .build(),
            ),
            "business"
                if registered
                    && number
                        .as_deref()
                        .is_some_and(|n| dir.businesses.contains(n)) =>
            {
                children.push(NodeBuilder::new("business").build());
            }
            "lid" if jid.is_pn() && registered => {
                if let Some(lid) = number.as_deref().and_then(|n| dir.lid_of(n)) {
                    children.push(
                        NodeBuilder::new("lid")
                            .attr("val", format!("{lid}@lid"))
                            .build(),
                    );
                }
            }
            _ => {}
        }
    }
    Some(
        NodeBuilder::new("user")
            .attr("jid", jid_text)
            .children(children)
            .build(),
    )
}

/// The pre-key fetch answer: a bundle for each primary device asked for.
/// Devices the directory does not list (companions, numbers without an
/// account) are answered with a per-device `406`, as the server does for
/// devices it does not know.
pub(crate) fn prekeys_answer(
    req: &Node,
    dir: &Directory,
    senders: &mut HashMap<String, SignalSender>,
) -> Vec<Node> {
    let users: Vec<Node> = req
        .get_optional_child("key")
        .map(|k| k.get_children_by_tag("user").collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| {
            let jid_text = attr(u, "jid")?;
            let jid: Jid = jid_text.parse().ok()?;
            let number = dir
                .number_of(&jid)
                .filter(|n| jid.device == 0 && dir.registered(n));
            Some(match number {
                Some(n) => signal::user(senders, &dir.account, &format!("{n}@s.whatsapp.net"))
                    .bundle_node(&jid_text),
                None => NodeBuilder::new("user")
                    .attr("jid", jid_text)
                    .children([NodeBuilder::new("error")
                        .attr("code", "406")
                        .attr("text", "not-acceptable")
                        .build()])
                    .build(),
            })
        })
        .collect();
    vec![NodeBuilder::new("list").children(users).build()]
}

/// What a client's `<message>` holds; the recipient's copy is decrypted with
/// the keys the fake handed out for it.
pub(crate) async fn record(
    node: &Node,
    from_phone: &str,
    from_device: u16,
    dir: Option<&Directory>,
    signals: Option<&crate::Signals>,
) -> SentMessage {
    let to = attr(node, "to").unwrap_or_default();
    let mut participants = Vec::new();
    let mut encs: Vec<(Option<String>, &Node)> = Vec::new();
    for child in node.children().into_iter().flatten() {
        match child.tag.as_ref() {
            "enc" => encs.push((None, child)),
            "participants" => {
                for p in child.get_children_by_tag("to") {
                    let device = attr(p, "jid").unwrap_or_default();
                    participants.push(device.clone());
                    for enc in p.get_children_by_tag("enc") {
                        encs.push((Some(device.clone()), enc));
                    }
                }
            }
            _ => {}
        }
    }
    let mut sent = SentMessage {
        from_phone: from_phone.to_string(),
        from_device,
        to: to.clone(),
        id: attr(node, "id").unwrap_or_default(),
        msg_type: attr(node, "type").unwrap_or_default(),
        encrypted: !encs.is_empty(),
        participants,
        enc_types: encs
            .iter()
            .map(|(_, e)| attr(e, "type").unwrap_or_default())
            .collect(),
        message: None,
        decrypt_error: None,
        image: None,
        file: None,
    };
    let (Some(dir), Some(signals)) = (dir, signals) else {
        sent.decrypt_error = Some("not a logged-in device".into());
        return sent;
    };
    let recipient = to.parse::<Jid>().ok().and_then(|j| dir.number_of(&j));
    let Some(recipient) = recipient else {
        sent.decrypt_error = Some(format!("no known number behind {to:?}"));
        return sent;
    };
    // The recipient's copy: a bare <enc>, or the <to> of one of its devices.
    let copy = encs.iter().find(|(device, _)| match device {
        None => true,
        Some(d) => d
            .parse::<Jid>()
            .ok()
            .and_then(|j| dir.number_of(&j))
            .is_some_and(|n| n == recipient),
    });
    let Some((_, enc)) = copy else {
        sent.decrypt_error = Some("no copy for the recipient's devices".into());
        return sent;
    };
    let Some(ciphertext) = content_bytes(enc) else {
        sent.decrypt_error = Some("the recipient's <enc> is empty".into());
        return sent;
    };
    let enc_type = attr(enc, "type").unwrap_or_default();
    // v=3 plaintexts carry no padding; earlier ones do.
    let padding = attr(enc, "v")
        .and_then(|v| v.parse::<u8>().ok())
        .unwrap_or(2);
    let mut senders = signals.lock().await;
    let user = signal::user(
        &mut senders,
        &dir.account,
        &format!("{recipient}@s.whatsapp.net"),
    );
    let read = user
        .decrypt(
            &format!("{from_phone}.companion"),
            from_device,
            &enc_type,
            ciphertext,
        )
        .await
        .and_then(|padded| wacore::messages::decode_plaintext(&padded, padding));
    match read {
        Ok(m) => sent.message = Some(m),
        Err(e) => sent.decrypt_error = Some(format!("{e:#}")),
    }
    sent
}
