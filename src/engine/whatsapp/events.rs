//! The pump: turns the library's events, in order, into the actor's events and the
//! contact cache.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use whatsapp_rust::types::events::{ConnectFailureReason, Event, InboundMessage, LazyHistorySync};
use whatsapp_rust::{Client, Jid};

use super::client::WaClient;
use super::history::{contact_action_fact, history_facts, is_lid, is_pn, message_content};
use super::inbox::media_content;
use super::send::human_duration;
use super::{NO_PROGRESS_AFTER, STOP_GRACE};
use crate::domain::text::phone_name_opt;
use crate::engine::{EngineEvent, IncomingMessage};
use crate::store::CachedContact;

pub(super) struct Pump {
    pub(super) client: Arc<WaClient>,
    pub(super) lib: Arc<Client>,
    pub(super) events: mpsc::Sender<EngineEvent>,
    /// The last connection failure reported, so retries of the same failure stay quiet.
    pub(super) last_failure: Option<String>,
    /// Since when the client has been trying to get somewhere (a QR code, a connection)
    /// without news; `None` while it is showing a QR code or connected.
    pub(super) waiting_since: Option<tokio::time::Instant>,
}

impl Pump {
    pub(super) async fn send(&self, ev: EngineEvent) {
        // A stop must not wait on an actor that is busy stopping this very client; and a
        // dropped receiver means the actor no longer listens to it.
        tokio::select! {
            _ = self.events.send(ev) => {}
            _ = self.client.stop.cancelled() => {}
        }
    }

    pub(super) async fn mark_linked(&self) {
        let engine = &self.client.engine.inner;
        let now = engine.clock.now_ms();
        if let Err(e) = engine.creds.mark_linked(&self.client.session_id, now).await {
            tracing::error!(
                "❌ Cannot record the link of session {}: {e}",
                self.client.session_id
            );
        }
    }

    /// Ends the library client for good before the actor hears why: the actor may delete
    /// the credentials next, and a running client must not be writing them.
    pub(super) async fn end_then_send(&self, ev: EngineEvent) {
        let _ = tokio::time::timeout(STOP_GRACE, self.lib.disconnect()).await;
        self.send(ev).await;
    }

    /// Writes through at once: history comes once and is acknowledged before we see it, so
    /// a fact not written here is lost.
    pub(super) async fn cache(
        &self,
        mut entries: Vec<CachedContact>,
        pairs: Vec<(String, String)>,
    ) {
        // Every name WhatsApp sends about contacts passes here on its way to the database.
        for e in &mut entries {
            e.name = phone_name_opt(e.name.as_deref());
            e.push_name = phone_name_opt(e.push_name.as_deref());
        }
        let store = &self.client.engine.inner.store;
        let id = &self.client.session_id;
        let now = self.client.engine.inner.clock.now_ms();
        for attempt in 1..=3 {
            let r = async {
                if !pairs.is_empty() {
                    store.cache_lid_mappings(id, &pairs).await?;
                }
                if !entries.is_empty() {
                    store.cache_contacts(id, &entries, now).await?;
                }
                Ok::<(), crate::store::StoreError>(())
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) if attempt == 3 => {
                    tracing::error!(
                        "❌ Cannot save {} contacts WhatsApp sent for session {id}: {e:#}",
                        entries.len()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
            }
        }
    }

    pub(super) async fn on_history(&self, h: &LazyHistorySync) {
        let id = self.client.session_id.clone();
        let h = h.clone();
        // Inflating and decoding a large chunk takes a while: off the async threads.
        let parsed = tokio::task::spawn_blocking(move || h.get().map(history_facts)).await;
        match parsed {
            Ok(Some((entries, pairs))) => {
                tracing::info!(
                    "ℹ️ History from WhatsApp for session {id}: {} chats and contacts",
                    entries.len()
                );
                self.cache(entries, pairs).await;
            }
            Ok(None) => tracing::warn!("⚠️ Session {id}: a history chunk could not be decoded"),
            Err(e) => tracing::error!("❌ Session {id}: reading a history chunk failed: {e}"),
        }
    }

    /// What the actor hears of a message: only one a person wrote to the account in a chat
    /// with one number. Groups, status updates, channels, our own messages (echoed from the
    /// phone) and protocol traffic are not conversations with a contact.
    pub(super) async fn incoming(&self, m: &InboundMessage) -> Option<IncomingMessage> {
        let src = &m.info.source;
        if src.is_from_me || src.is_group || !(src.chat.is_pn() || src.chat.is_lid()) {
            return None;
        }
        let (kind, text, media) = match media_content(&m.message) {
            Some(found) => found,
            None => {
                let (kind, text) = message_content(&m.message)?;
                (kind, text, None)
            }
        };
        let Some(from) = self
            .sender_number(&src.sender, src.sender_alt.as_ref())
            .await
        else {
            tracing::info!(
                "ℹ️ Session {}: message {} comes from a hidden number (LID {}) and no phone                  number is known for it; not reported",
                self.client.session_id,
                m.info.id,
                src.sender.user
            );
            return None;
        };
        Some(IncomingMessage {
            id: m.info.id.to_string(),
            from,
            push_name: phone_name_opt(Some(&m.info.push_name)),
            text,
            kind: kind.to_string(),
            timestamp: m.info.timestamp.timestamp(),
            media,
        })
    }

    /// The sender's phone number (digits). A LID sender is a number WhatsApp hides behind an
    /// opaque id: the stanza may name the number too, or the library may have learned it.
    pub(super) async fn sender_number(&self, sender: &Jid, alt: Option<&Jid>) -> Option<String> {
        if sender.is_pn() {
            return Some(sender.user.to_string());
        }
        if !sender.is_lid() {
            return None;
        }
        if let Some(alt) = alt.filter(|a| a.is_pn()) {
            return Some(alt.user.to_string());
        }
        match self.lib.get_lid_pn_entry(&sender.to_non_ad()).await {
            Ok(Some(entry)) => Some(entry.phone_number.to_string()),
            _ => None,
        }
    }

    /// A handshake that never completes (packets silently dropped, a proxy that accepts and
    /// stalls) fails inside the library without passing our transport: say so after a while.
    pub(super) async fn check_progress(&mut self) {
        let Some(since) = self.waiting_since else {
            return;
        };
        if since.elapsed() < NO_PROGRESS_AFTER || self.last_failure.is_some() {
            return;
        }
        self.on_connect_failure(format!(
            "no answer from WhatsApp within {} s",
            NO_PROGRESS_AFTER.as_secs()
        ))
        .await;
    }

    pub(super) async fn on_connect_failure(&mut self, reason: String) {
        if self.last_failure.as_deref() == Some(reason.as_str()) {
            return;
        }
        tracing::warn!(
            "⚠️ Cannot reach WhatsApp servers for session {}: {reason}",
            self.client.session_id
        );
        self.last_failure = Some(reason.clone());
        self.send(EngineEvent::Disconnected {
            reason: format!(
                "cannot reach WhatsApp servers ({reason}); retrying automatically with backoff"
            ),
        })
        .await;
    }

    pub(super) async fn on_library_event(&mut self, ev: &Event) {
        let id = &self.client.session_id;
        match ev {
            Event::PairingQrCode(qr) => {
                self.last_failure = None;
                self.waiting_since = None;
                self.send(EngineEvent::Qr {
                    code: qr.code.clone(),
                })
                .await;
            }
            Event::PairSuccess(_) => {
                // Next comes the reconnect of a linked device; watch that it gets through.
                self.waiting_since = Some(tokio::time::Instant::now());
                self.mark_linked().await;
                self.send(EngineEvent::Authenticated).await;
            }
            Event::Connected(_) => {
                self.last_failure = None;
                self.waiting_since = None;
                self.mark_linked().await;
                let phone = self
                    .lib
                    .pn()
                    .map(|j| j.user.to_string())
                    .unwrap_or_default();
                let push_name = phone_name_opt(Some(&self.lib.push_name()));
                self.send(EngineEvent::Ready { phone, push_name }).await;
            }
            Event::Disconnected(d) => {
                self.waiting_since = Some(tokio::time::Instant::now());
                self.send(EngineEvent::Disconnected {
                    reason: format!("connection to WhatsApp lost ({})", d.reason),
                })
                .await;
            }
            Event::LoggedOut(l) => {
                let reason = match &l.reason {
                    ConnectFailureReason::LoggedOut => {
                        "the device was removed from the phone's linked devices".to_string()
                    }
                    ConnectFailureReason::AccountLocked => {
                        "WhatsApp locked this account".to_string()
                    }
                    other => format!("WhatsApp ended the link ({other:?})"),
                };
                self.end_then_send(EngineEvent::LoggedOut { reason }).await;
            }
            Event::StreamReplaced(_) => {
                self.end_then_send(EngineEvent::Failed {
                    message: "This number was opened in another WhatsApp Web session, which \
                              replaced this one. Call /api/whatsapp/restart to take it back."
                        .into(),
                })
                .await;
            }
            Event::TemporaryBan(b) => {
                let secs = b.expire.num_seconds().max(0);
                let until = chrono::Utc::now() + chrono::Duration::seconds(secs);
                self.end_then_send(EngineEvent::Failed {
                    message: format!(
                        "WhatsApp temporarily banned this number ({:?}{}). The ban ends in {} \
                         (at {}); call /api/whatsapp/restart after that.{}",
                        b.code,
                        b.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                        human_duration(secs),
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        b.url
                            .as_deref()
                            .map(|u| format!(" To appeal: {u}"))
                            .unwrap_or_default()
                    ),
                })
                .await;
            }
            Event::ClientOutdated(_) => {
                self.end_then_send(EngineEvent::Failed {
                    message: "WhatsApp rejected this client version as outdated. Restart the \
                              server while it can reach web.whatsapp.com (it fetches the current \
                              version once per process), or update WhatsApp Manager; then call \
                              /api/whatsapp/restart."
                        .into(),
                })
                .await;
            }
            Event::ConnectFailure(f) => {
                let detail = f.message.clone().unwrap_or_default();
                if f.reason.should_reconnect() {
                    self.send(EngineEvent::Disconnected {
                        reason: format!(
                            "WhatsApp refused the connection ({:?}) {detail}",
                            f.reason
                        )
                        .trim_end()
                        .to_string(),
                    })
                    .await;
                } else {
                    let what_to_do = match f.reason {
                        ConnectFailureReason::BadUserAgent
                        | ConnectFailureReason::ClientUnknown
                        | ConnectFailureReason::CatInvalid
                        | ConnectFailureReason::CatExpired
                        | ConnectFailureReason::NotFound => {
                            "This device's link is no longer accepted: call \
                             /api/whatsapp/logout, then /api/whatsapp/init to link again."
                        }
                        _ => "Call /api/whatsapp/restart to try again.",
                    };
                    self.end_then_send(EngineEvent::Failed {
                        message: format!(
                            "WhatsApp refused the connection ({:?}){}. {what_to_do}",
                            f.reason,
                            if detail.is_empty() {
                                String::new()
                            } else {
                                format!(": {detail}")
                            }
                        ),
                    })
                    .await;
                }
            }
            Event::PairingQrCodesExhausted(x) => {
                if x.disconnected {
                    self.end_then_send(EngineEvent::Failed {
                        message: "QR code attempts ran out: no phone scanned the QR codes in \
                                  time. Call /api/whatsapp/restart or /api/whatsapp/init to get a \
                                  new QR code."
                            .into(),
                    })
                    .await;
                } else {
                    tracing::info!(
                        "ℹ️ QR codes expired for session {id}; a pairing code is still valid"
                    );
                    self.send(EngineEvent::QrExpired {
                        message: "The QR codes expired. Enter the pairing code already issued on \
                                  the phone, or call /api/whatsapp/restart for new QR codes."
                            .into(),
                    })
                    .await;
                }
            }
            Event::PairError(e) => {
                self.end_then_send(EngineEvent::Failed {
                    message: format!(
                        "Linking failed: {}. Call /api/whatsapp/init to try again.",
                        e.error
                    ),
                })
                .await;
            }
            Event::QrScannedWithoutMultidevice(_) => {
                tracing::warn!(
                    "⚠️ Session {id}: the phone scanned the QR code without multi-device support"
                );
            }
            Event::StreamError(e) => {
                tracing::warn!("⚠️ Session {id}: unexpected stream error {}", e.code);
            }
            Event::HistorySync(h) => self.on_history(h).await,
            Event::Receipt(r) => self.on_receipt(r).await,
            Event::ContactUpdate(c) => {
                let (entry, pair) = contact_action_fact(c.jid.to_string(), &c.action);
                self.cache(vec![entry], pair.into_iter().collect()).await;
            }
            Event::PushNameUpdate(p) => {
                let entry = CachedContact {
                    jid: p.jid.to_non_ad().to_string(),
                    push_name: Some(p.new_push_name.clone()),
                    ..Default::default()
                };
                self.cache(vec![entry], Vec::new()).await;
            }
            Event::Messages(batch) => {
                let mut entries = Vec::new();
                let mut pairs = Vec::new();
                for m in batch.messages.iter() {
                    let src = &m.info.source;
                    // Group chats are not contacts; protocol messages (the phone's key share,
                    // history notifications) are not chat activity.
                    if src.is_group || m.message.protocol_message.is_set() {
                        continue;
                    }
                    let chat = src.chat.to_non_ad().to_string();
                    let alt = if src.is_from_me {
                        src.recipient_alt.as_ref()
                    } else {
                        src.sender_alt.as_ref()
                    }
                    .map(|j| j.to_non_ad().to_string());
                    if let Some(alt) = &alt {
                        if is_lid(&chat) && is_pn(alt) {
                            pairs.push((chat.clone(), alt.clone()));
                        } else if is_pn(&chat) && is_lid(alt) {
                            pairs.push((alt.clone(), chat.clone()));
                        }
                    }
                    entries.push(CachedContact {
                        jid: chat,
                        push_name: (!src.is_from_me)
                            .then(|| m.info.push_name.clone())
                            .filter(|n| !n.trim().is_empty()),
                        last_message_at: Some(m.info.timestamp.timestamp()),
                        ..Default::default()
                    });
                }
                self.cache(entries, pairs).await;
                for m in batch.messages.iter() {
                    if let Some(incoming) = self.incoming(m).await {
                        self.send(EngineEvent::MessageReceived(incoming)).await;
                    }
                }
            }
            _ => {}
        }
    }
}
