//! What a logged-in device's connection does for its account: the lookups its sends need,
//! the messages it sends (recorded, decrypted), and what the phone pushes after a login
//! (the app-state key share, history).

use wacore_binary::node::Node;

use super::{Conn, Role};
use crate::iq;
use crate::nodes::attr;
use crate::noise::TransportCipher;

impl Conn {
    /// The directory a logged-in device's lookups are answered from, and the
    /// account's Signal users.
    pub(super) fn directory(&self) -> Option<(crate::outbox::Directory, crate::Signals)> {
        let Some(Role::Login { phone, .. }) = &self.role else {
            return None;
        };
        let st = self.inner.lock();
        let acc = st.accounts.get(phone)?;
        let lid_pn = st
            .histories
            .get(phone)
            .map(|h| h.lid_pn.clone())
            .unwrap_or_default();
        Some((
            crate::outbox::Directory {
                account: acc.phone.clone(),
                lid_pn,
                unregistered: st.unregistered.clone(),
                businesses: st.businesses.clone(),
            },
            acc.signal.clone(),
        ))
    }

    /// What a client asks before it sends a message: device lists and
    /// pre-key bundles. `None` for every other IQ.
    pub(super) async fn answer_send_iq(&self, node: &Node) -> Option<Node> {
        let xmlns = attr(node, "xmlns").unwrap_or_default();
        let kind = attr(node, "type").unwrap_or_default();
        let child = node
            .children()
            .and_then(|c| c.first())
            .map(|c| c.tag.to_string())
            .unwrap_or_default();
        match (xmlns.as_str(), kind.as_str(), child.as_str()) {
            ("usync", "get", "usync") => {
                let (dir, _) = self.directory()?;
                if let Some(numbers) = crate::outbox::number_check(node) {
                    self.inner.lock().number_checks.push(numbers);
                }
                Some(iq::result_for(
                    node,
                    crate::outbox::usync_answer(node, &dir),
                ))
            }
            ("encrypt", "get", "key") => {
                let (dir, signals) = self.directory()?;
                let mut senders = signals.lock().await;
                Some(iq::result_for(
                    node,
                    crate::outbox::prekeys_answer(node, &dir, &mut senders),
                ))
            }
            _ => None,
        }
    }

    /// Keeps what the client sent for the tests to look at.
    pub(super) async fn record_message(&self, node: &Node) {
        let (phone, device) = match &self.role {
            Some(Role::Login { phone, device }) => (phone.clone(), *device),
            _ => (String::new(), 0),
        };
        let found = self.directory();
        let mut sent = crate::outbox::record(
            node,
            &phone,
            device,
            found.as_ref().map(|(d, _)| d),
            found.as_ref().map(|(_, s)| s),
        )
        .await;
        let mut st = self.inner.lock();
        if let Some(image) = sent
            .message
            .as_ref()
            .and_then(|m| m.image_message.as_option())
        {
            sent.image = crate::media::open_image(&st.uploads, image);
        }
        if let Some(m) = sent.message.as_ref() {
            sent.file = crate::media::open_file(&st.uploads, m);
        }
        tracing::debug!(
            conn = self.id,
            to = sent.to,
            id = sent.id,
            read = sent.message.is_some(),
            "fake-whatsapp: message from the client"
        );
        st.sent.push(sent);
        drop(st);
        self.inner.notify_changed();
    }

    /// The phone shares its app-state key with this companion (best effort).
    pub(super) async fn send_key_share(&self, cipher: &mut TransportCipher) -> anyhow::Result<()> {
        let Some(Role::Login { phone, device }) = &self.role else {
            return Ok(());
        };
        let material = {
            let st = self.inner.lock();
            if !st.key_share {
                return Ok(());
            }
            st.accounts.get(phone).and_then(|acc| {
                let record = acc.devices.get(device)?;
                if record.bootstrapped && record.push_name_sent {
                    return None;
                }
                let bundle = record.bundle.clone()?;
                Some((
                    acc.phone.clone(),
                    bundle,
                    acc.app_state_key.clone(),
                    acc.signal.clone(),
                ))
            })
        };
        let Some((account, bundle, key, signals)) = material else {
            tracing::trace!(conn = self.id, "fake-whatsapp: no key share needed");
            return Ok(());
        };
        let plaintext = crate::keyshare::key_share_plaintext(&account, *device, &key);
        match crate::signal::phone_message(&account, &signals, *device, &bundle, &plaintext).await {
            Ok(msg) => self.send_node(cipher, &msg),
            Err(e) => {
                tracing::warn!(
                    conn = self.id,
                    "fake-whatsapp: cannot build the key share: {e:#}"
                );
                Ok(())
            }
        }
    }

    /// The phone sends a newly linked companion its history (once per
    /// device, if [`crate::FakeWhatsApp::set_history`] gave it one).
    pub(super) async fn send_history(&self, cipher: &mut TransportCipher) -> anyhow::Result<()> {
        let Some(Role::Login { phone, device }) = &self.role else {
            return Ok(());
        };
        let material = {
            let st = self.inner.lock();
            let history = st.histories.get(phone).cloned();
            st.accounts.get(phone).and_then(|acc| {
                let record = acc.devices.get(device)?;
                if record.history_sent {
                    return None;
                }
                Some((
                    acc.phone.clone(),
                    record.bundle.clone()?,
                    history?,
                    acc.signal.clone(),
                ))
            })
        };
        let Some((account, bundle, history, signals)) = material else {
            // Like the real phone: the bootstrap goes with the first login
            // only; a history set later needs `send_history`.
            self.with_device(|d| d.history_sent = true);
            return Ok(());
        };
        let node = async {
            let plaintext = crate::history::notification_plaintext(&history)?;
            crate::signal::phone_message(&account, &signals, *device, &bundle, &plaintext).await
        }
        .await;
        match node {
            Ok(msg) => {
                self.send_node(cipher, &msg)?;
                self.with_device(|d| d.history_sent = true);
                tracing::debug!(conn = self.id, phone, device, "fake-whatsapp: history sent");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    conn = self.id,
                    "fake-whatsapp: cannot build the history sync: {e:#}"
                );
                Ok(())
            }
        }
    }

    /// Runs `f` on this connection's device record, if it is a known device.
    /// The account's contacts and app-state key, for a logged-in device.
    pub(super) fn contacts_ctx(&self) -> Option<iq::ContactsCtx> {
        let Some(Role::Login { phone, device }) = &self.role else {
            return None;
        };
        let st = self.inner.lock();
        let acc = st.accounts.get(phone)?;
        Some(iq::ContactsCtx {
            key: acc.app_state_key.clone(),
            batches: st.contacts.get(phone).cloned().unwrap_or_default(),
            sent: acc.devices.get(device)?.contacts_sent,
        })
    }

    pub(super) fn with_device<T>(
        &self,
        f: impl FnOnce(&mut crate::DeviceRecord) -> T,
    ) -> Option<T> {
        let Some(Role::Login { phone, device }) = &self.role else {
            return None;
        };
        let mut st = self.inner.lock();
        st.accounts
            .get_mut(phone)
            .and_then(|a| a.devices.get_mut(device))
            .map(f)
    }
}
