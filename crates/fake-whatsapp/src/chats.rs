//! What the people on the other side do: the account's own phone sends history and its
//! address book, contacts write (their files are in `inbound`, their receipts in `receipts`),
//! numbers are on WhatsApp or not; and what clients sent, as recorded.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::sync::mpsc;
use wacore_binary::node::Node;

use crate::{
    ConnKind, FakeMediaServer, FakeWhatsApp, History, PhoneContact, SentMessage, Signals, State,
    conn, history, keyshare, phone, signal,
};

impl FakeWhatsApp {
    /// History the phone sends to a device of this number right after it
    /// links (scan or pairing code), once per device, like WhatsApp's
    /// initial bootstrap: a `HISTORY_SYNC_NOTIFICATION` protocol message from
    /// the account's own phone, `INITIAL_BOOTSTRAP`, with the zlib'd
    /// `HistorySync` inline (no media download). It goes out on the device's
    /// first login, right after the app-state key share; the client answers
    /// with a `hist_sync` receipt and emits `Event::HistorySync`.
    ///
    /// Devices that already had their first login (with or without a
    /// history) do not get it: use [`send_history`](Self::send_history) for
    /// those.
    pub fn set_history(&self, phone_digits: &str, history: History) {
        self.inner
            .lock()
            .histories
            .insert(phone_digits.to_string(), history);
    }

    /// The phone's address book, as app state: the next time a device of
    /// this number syncs `critical_unblock_low` (its login bootstrap, or a
    /// `MajorSyncTask::AppStateSync { name: CriticalUnblockLow, .. }`), it
    /// gets one `SET ["contact", jid]` mutation per contact (a
    /// `ContactAction`), encrypted and MAC'd with the app-state key the phone
    /// shares, and the client emits `Event::ContactUpdate` for each.
    ///
    /// Each call adds one version of the collection holding just these
    /// contacts (a contact with a JID set before overwrites the earlier one);
    /// devices that already synced get only the newer versions. Calls before
    /// the number is linked are fine. An empty list changes nothing.
    pub fn set_contacts(&self, phone_digits: &str, contacts: Vec<PhoneContact>) {
        if contacts.is_empty() {
            return;
        }
        self.inner
            .lock()
            .contacts
            .entry(phone_digits.to_string())
            .or_default()
            .push(contacts);
    }

    /// Sends `history` now to every connected (logged-in) device of the
    /// number, whether or not it got one before. `Err` if no device of the
    /// number is connected or a message cannot be built.
    pub async fn send_history(&self, phone_digits: &str, history: History) -> anyhow::Result<()> {
        let plaintext = history::notification_plaintext(&history)?;
        let sent = self
            .push_to_devices(phone_digits, |account, signals, device, bundle| {
                let plaintext = plaintext.clone();
                async move {
                    signal::phone_message(&account, &signals, device, &bundle, &plaintext).await
                }
            })
            .await?;
        let mut st = self.inner.lock();
        if let Some(acc) = st.accounts.get_mut(phone_digits) {
            for device in sent {
                if let Some(d) = acc.devices.get_mut(&device) {
                    d.history_sent = true;
                }
            }
        }
        Ok(())
    }

    /// A contact (`from_jid`, e.g. `"966500000001@s.whatsapp.net"` or
    /// `"123456789012345@lid"`) sends a text to the account; every connected
    /// device of `phone_digits` receives it with this timestamp (unix
    /// seconds, the stanza's `t`) and the sender's push name (`notify`).
    ///
    /// Each contact JID is its own Signal user: an identity key of its own
    /// and one session per companion, started from the companion's uploaded
    /// pre-keys (`pkmsg`). When the number's [`History`] maps the contact's
    /// LID and phone number (`lid_pn`), the stanza carries the other one too
    /// (`sender_lid` for a phone-number sender, `sender_pn` for a LID sender),
    /// so the client's `info.source.sender_alt` is set.
    ///
    /// `Err` if `from_jid` is not a user JID or no device is connected.
    pub async fn send_message(
        &self,
        phone_digits: &str,
        from_jid: &str,
        push_name: &str,
        text: &str,
        timestamp: i64,
    ) -> anyhow::Result<()> {
        let msg = waproto::whatsapp::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        };
        let id = signal::message_id();
        self.deliver(
            phone_digits,
            from_jid,
            push_name,
            msg,
            "text",
            &id,
            timestamp,
        )
        .await
    }

    /// Encrypts `msg` from `from_jid` to every connected companion of the account, as
    /// [`Self::send_message`] describes, under the stanza `type` and id given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deliver(
        &self,
        phone_digits: &str,
        from_jid: &str,
        push_name: &str,
        msg: waproto::whatsapp::Message,
        msg_type: &str,
        id: &str,
        timestamp: i64,
    ) -> anyhow::Result<()> {
        let from: wacore_binary::Jid = from_jid
            .parse()
            .map_err(|e| anyhow!("bad sender JID {from_jid:?}: {e:?}"))?;
        if !(from.is_pn() || from.is_lid()) || from.device != 0 {
            bail!("the sender must be a user JID (…@s.whatsapp.net or …@lid), got {from_jid:?}");
        }
        let from = from.to_string();
        let alt = self.inner.lock().histories.get(phone_digits).and_then(|h| {
            h.lid_pn.iter().find_map(|(lid, pn)| {
                if *pn == from {
                    Some(("sender_lid", lid.clone()))
                } else if *lid == from {
                    Some(("sender_pn", pn.clone()))
                } else {
                    None
                }
            })
        });
        let plaintext = wacore::messages::MessageUtils::pad_message_v2(
            waproto::buffa::Message::encode_to_vec(&msg),
        );
        let mut extra = vec![("notify", push_name.to_string())];
        extra.extend(alt);
        let (id, msg_type) = (id.to_string(), msg_type.to_string());
        self.push_to_devices(phone_digits, |account, signals, device, bundle| {
            let plaintext = plaintext.clone();
            let from = from.clone();
            let extra = extra.clone();
            let (id, msg_type) = (id.clone(), msg_type.clone());
            async move {
                let enc = signal::encrypt_from(
                    &signals,
                    &from,
                    signal::SignalSender::generate,
                    &account.phone,
                    device,
                    &bundle,
                    &plaintext,
                )
                .await?;
                Ok(signal::enc_message_node(
                    &from, &id, &msg_type, timestamp, &extra, enc,
                ))
            }
        })
        .await?;
        Ok(())
    }

    /// The HTTP client to hand to the client (`BotBuilder::with_http_client`):
    /// it reaches the fake media server, where uploads land (the image of a
    /// [`SentMessage`] is read back from there), and nothing else.
    pub fn http_client(&self) -> FakeMediaServer {
        FakeMediaServer {
            inner: self.inner.clone(),
        }
    }

    /// While true, the media server answers every request with 503.
    pub fn refuse_uploads(&self, refuse: bool) {
        self.inner.lock().uploads_refused = refuse;
    }

    /// Messages to `to_digits` are refused: their `<ack>` carries
    /// `error="<code>"` (a nack; e.g. 404 no such recipient, 463 missing
    /// privacy token, 479 malformed stanza). `None` accepts them again. They
    /// are still recorded.
    pub fn nack_messages_to(&self, to_digits: &str, code: Option<u16>) {
        let mut st = self.inner.lock();
        match code {
            Some(c) => st.nacks.insert(to_digits.to_string(), c.to_string()),
            None => st.nacks.remove(to_digits),
        };
    }

    /// Makes `phone_digits` a number without a WhatsApp account: lookups
    /// (`usync` devices and contact) say so, and pre-key fetches for it fail
    /// with 406. Every other number has an account with one device (its
    /// phone, device 0), whose pre-key bundle the fake makes up and keeps the
    /// private half of, so it can read what clients send it.
    pub fn set_not_on_whatsapp(&self, phone_digits: &str) {
        self.inner
            .lock()
            .unregistered
            .insert(phone_digits.to_string());
    }

    /// Makes `phone_digits` a WhatsApp Business account: `usync` answers carry
    /// `<business/>` for it.
    pub fn set_business(&self, phone_digits: &str) {
        self.inner
            .lock()
            .businesses
            .insert(phone_digits.to_string());
    }

    /// The numbers (digits) of every "is this number on WhatsApp" query clients sent
    /// (`usync` with the `contact` protocol), one list per query, in arrival order.
    pub fn number_checks(&self) -> Vec<Vec<String>> {
        self.inner.lock().number_checks.clone()
    }

    /// Every `<message>` stanza clients sent so far, in arrival order (each
    /// was acknowledged with `<ack class="message">`), with the recipient's
    /// copy decrypted when the fake holds its keys.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.inner.lock().sent.clone()
    }

    /// Waits until a client sent a message with this id; `None` on timeout.
    pub async fn wait_sent(&self, id: &str, timeout: Duration) -> Option<SentMessage> {
        let found = |st: &State| st.sent.iter().rev().find(|m| m.id == id).cloned();
        let mut hit = None;
        self.inner
            .wait_until(timeout, |st| {
                hit = found(st);
                hit.is_some()
            })
            .await;
        hit
    }

    /// Builds a node per logged-in device of the account with `make` and
    /// pushes it down that device's connection; the devices reached.
    async fn push_to_devices<F, Fut>(&self, phone_digits: &str, make: F) -> anyhow::Result<Vec<u16>>
    where
        F: Fn(phone::PhoneAccount, Signals, u16, keyshare::DeviceBundle) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Node>>,
    {
        let (account, signals, targets) = {
            let st = self.inner.lock();
            let acc = st
                .accounts
                .get(phone_digits)
                .with_context(|| format!("no account {phone_digits}"))?;
            let targets: Vec<(
                u16,
                mpsc::UnboundedSender<conn::Cmd>,
                Option<keyshare::DeviceBundle>,
            )> = st
                .conns
                .values()
                .filter_map(|e| match &e.kind {
                    ConnKind::Login {
                        phone,
                        device,
                        logged_in: true,
                    } if phone == phone_digits => Some((
                        *device,
                        e.cmd.clone(),
                        acc.devices.get(device).and_then(|d| d.bundle.clone()),
                    )),
                    _ => None,
                })
                .collect();
            (acc.phone.clone(), acc.signal.clone(), targets)
        };
        if targets.is_empty() {
            bail!("no device of {phone_digits} is connected");
        }
        let mut sent = Vec::new();
        for (device, cmd, bundle) in targets {
            let bundle = bundle.with_context(|| {
                format!("device {device} of {phone_digits} has no known Signal identity")
            })?;
            let node = make(account.clone(), signals.clone(), device, bundle).await?;
            cmd.send(conn::Cmd::Send(node))
                .map_err(|_| anyhow!("the connection of device {device} closed"))?;
            sent.push(device);
        }
        Ok(sent)
    }
}
