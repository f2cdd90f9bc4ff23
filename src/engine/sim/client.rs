//! One session's simulated client: an actor (`run_client`) that shows QR codes until the
//! phone scans, then stays connected until a fault, an unlink or a stop; the
//! [`EngineClient`] handle the session actor holds talks to it through [`Control`] messages
//! and the flags of [`ClientShared`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::network::SimNetwork;
use super::source::SimSource;
use super::{Fault, SimSent, default_me_digits};
use crate::domain::text::phone_name_opt;
use crate::domain::{Pair, PhoneNumber, SessionId};
use crate::engine::{ContactSource, Engine, EngineClient, EngineError, EngineEvent};
use crate::store::traits::SimCloseReason;

/// What a client whose connection another one replaced reports: the real engine's words for
/// WhatsApp's `<conflict type="replaced"/>` (`engine/whatsapp/events.rs`).
pub(super) const REPLACED: &str = "This number was opened in another WhatsApp Web session, \
    which replaced this one. Call /api/whatsapp/restart to take it back.";

/// The linked device a credentials file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LinkedDevice {
    me: String,
    push_name: Option<String>,
    linked_at_ms: i64,
}

pub(super) enum Control {
    Scan(oneshot::Sender<bool>),
    Fault(Fault),
    /// Unlink on the API's request; the actor records `logged_out` itself.
    Unlink(oneshot::Sender<()>),
    Stop,
    /// Someone else closed connection `id` (another connection of the device replaced it,
    /// or its node was taken for dead).
    Closed {
        id: i64,
        reason: SimCloseReason,
    },
}

/// State a client shares between its task, its handle and the network's fault routes.
pub(super) struct ClientShared {
    pub(super) session_id: SessionId,
    pub(super) pair: Pair,
    pub(super) alive: AtomicBool,
    pub(super) connected: AtomicBool,
    /// Bumped on every connection change, so a fetch notices a drop mid-read.
    pub(super) generation: AtomicU64,
    pub(super) qr_showing: AtomicBool,
    pub(super) fail_next_fetch: AtomicBool,
    pub(super) slow_next_fetch: AtomicBool,
    pub(super) fail_next_send: AtomicBool,
    /// The id of its open connection's row; 0 while it has none. Whoever swaps it to 0
    /// closes the row.
    pub(super) connection: AtomicI64,
    pub(super) control: mpsc::UnboundedSender<Control>,
    /// Held here as well as by the task: a dropped client vanishes *without* closing the
    /// actor's event channel, exactly like a client that died silently. Incoming messages
    /// go through it too.
    pub(super) events: mpsc::Sender<EngineEvent>,
}

pub(super) struct SimClient {
    pub(super) net: SimNetwork,
    pub(super) shared: Arc<ClientShared>,
}

#[async_trait]
impl EngineClient for SimClient {
    fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    async fn read_contacts(&self) -> Result<Box<dyn ContactSource>, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        if self.shared.fail_next_fetch.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Failed(
                "the phone did not answer the contact read (simulated failure)".into(),
            ));
        }
        let book = self.net.phonebook(self.shared.pair).await;
        Ok(Box::new(SimSource {
            generation: self.shared.generation.load(Ordering::SeqCst),
            shared: self.shared.clone(),
            book,
            pos: 0,
            slow: self.shared.slow_next_fetch.swap(false, Ordering::SeqCst),
            delay: self.net.inner.cfg.fetch_delay,
        }))
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        if self.shared.control.send(Control::Unlink(tx)).is_ok() {
            let _ = rx.await;
        }
        self.shared.alive.store(false, Ordering::SeqCst);
        self.net.forget(&self.shared.session_id).await
    }

    async fn stop(&self) {
        self.shared.alive.store(false, Ordering::SeqCst);
        // Closed before this returns: a restart starts the next client right after, and its
        // connection must not find this one open and replace it.
        self.net
            .close_connection(&self.shared, SimCloseReason::Closed)
            .await;
        let _ = self.shared.control.send(Control::Stop);
    }

    /// The simulated phone accepts a code like it accepts a scan: through the sim's scan
    /// route (or auto-scan), while the session is waiting to be linked.
    async fn pair_code(&self, _phone: &PhoneNumber) -> Result<String, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.qr_showing.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        Ok(self.net.next_pair_code(&self.shared.session_id))
    }

    async fn send(&self, message: &crate::engine::OutgoingMessage) -> Result<String, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        if self.shared.fail_next_send.swap(false, Ordering::SeqCst) {
            return Err(EngineError::Failed(
                "WhatsApp refused the message (simulated failure)".into(),
            ));
        }
        let media = message.media.as_ref();
        let image = media.filter(|m| m.kind == crate::store::MessageKind::Image);
        let sent = SimSent {
            id: message.id.clone(),
            to: message.to.as_str().to_owned(),
            text: message.text.clone(),
            image_mime: image.map(|i| i.mime.clone()),
            image_bytes: image.map(|i| i.bytes.len()),
            media_type: media.map(|m| m.kind.as_str().to_owned()),
            media_mime: media.map(|m| m.mime.clone()),
            media_bytes: media.map(|m| m.bytes.len()),
            file_name: media.and_then(|m| m.file_name.clone()),
            voice_note: media.is_some_and(|m| m.voice_note),
            width: media.and_then(|m| m.width),
            height: media.and_then(|m| m.height),
            at_ms: self.net.inner.clock.now_ms(),
        };
        self.net.record_sent(self.shared.pair, &sent).await?;
        Ok(message.id.clone())
    }

    async fn check_numbers(
        &self,
        numbers: &[PhoneNumber],
    ) -> Result<Vec<crate::engine::NumberInfo>, EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        self.net.check_numbers(self.shared.pair, numbers).await
    }

    async fn mark_read(&self, chat: &PhoneNumber, ids: &[String]) -> Result<(), EngineError> {
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        self.net.record_read(
            self.shared.pair,
            super::SimRead {
                chat: chat.as_str().to_owned(),
                ids: ids.to_vec(),
                at_ms: self.net.inner.clock.now_ms(),
            },
        );
        Ok(())
    }

    async fn download_media(&self, media_ref: &str) -> Result<Vec<u8>, EngineError> {
        use base64::Engine as _;
        if !self.is_alive() {
            return Err(EngineError::ClientGone);
        }
        if !self.shared.connected.load(Ordering::SeqCst) {
            return Err(EngineError::NotConnected);
        }
        let data = serde_json::from_str::<serde_json::Value>(media_ref)
            .ok()
            .and_then(|v| v.get("sim_data_base64")?.as_str().map(str::to_owned))
            .ok_or_else(|| EngineError::Invalid("not a simulated file".into()))?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| EngineError::Failed(format!("the simulated file is corrupt: {e}")))
    }
}

enum Linking {
    Linked(LinkedDevice),
    Exhausted,
    Stopped,
}

pub(super) async fn run_client(
    net: SimNetwork,
    shared: Arc<ClientShared>,
    mut ctl: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<EngineEvent>,
) {
    let stored = match net.inner.store.sim_device(&shared.session_id).await {
        Ok(json) => json.and_then(|j| serde_json::from_str::<LinkedDevice>(&j).ok()),
        Err(e) => {
            tracing::warn!("⚠️ Simulated engine cannot read its credentials: {e}");
            None
        }
    };
    let device = match stored {
        Some(d) => d,
        None => match show_qr_codes(&net, &shared, &mut ctl, &events).await {
            Linking::Linked(d) => d,
            Linking::Exhausted => {
                let n = net.inner.cfg.qr_attempts;
                let _ = events
                    .send(EngineEvent::Failed {
                        message: format!(
                            "QR code attempts ran out: {n} QR codes were shown and none was \
                             scanned. Call /api/whatsapp/restart or /api/whatsapp/init to get a \
                             new QR code."
                        ),
                    })
                    .await;
                // Dead only after saying why, so a liveness check finds the reason first.
                shared.alive.store(false, Ordering::SeqCst);
                return;
            }
            Linking::Stopped => return,
        },
    };
    connected_loop(&net, &shared, &mut ctl, &events, device).await;
}

async fn show_qr_codes(
    net: &SimNetwork,
    shared: &ClientShared,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::Sender<EngineEvent>,
) -> Linking {
    let cfg = &net.inner.cfg;
    let auto_scan_at = cfg.auto_scan.map(|d| Instant::now() + d);
    for _ in 0..cfg.qr_attempts.max(1) {
        let code = net.next_qr(&shared.session_id);
        shared.qr_showing.store(true, Ordering::SeqCst);
        if events.send(EngineEvent::Qr { code }).await.is_err() {
            return Linking::Stopped;
        }
        let rotate_at = Instant::now() + cfg.qr_interval;
        loop {
            let auto = auto_scan_at;
            tokio::select! {
                _ = tokio::time::sleep_until(rotate_at) => break,
                _ = tokio::time::sleep_until(auto.unwrap_or(rotate_at)), if auto.is_some() => {
                    return link(net, shared, events).await;
                }
                c = ctl.recv() => match c {
                    Some(Control::Scan(reply)) => {
                        let _ = reply.send(true);
                        return link(net, shared, events).await;
                    }
                    Some(Control::Unlink(reply)) => {
                        let _ = reply.send(());
                        shared.qr_showing.store(false, Ordering::SeqCst);
                        return Linking::Stopped;
                    }
                    Some(Control::Fault(Fault::DropClient)) | Some(Control::Stop) | None => {
                        shared.qr_showing.store(false, Ordering::SeqCst);
                        return Linking::Stopped;
                    }
                    // Nothing to drop or unlink before the phone has linked.
                    Some(Control::Fault(_)) => {}
                    Some(Control::Closed { .. }) => {}
                }
            }
        }
    }
    shared.qr_showing.store(false, Ordering::SeqCst);
    Linking::Exhausted
}

async fn link(
    net: &SimNetwork,
    shared: &ClientShared,
    events: &mpsc::Sender<EngineEvent>,
) -> Linking {
    shared.qr_showing.store(false, Ordering::SeqCst);
    let _ = events.send(EngineEvent::Authenticated).await;
    let book = net.identity(shared.pair).await;
    let me = book
        .me
        .as_deref()
        .and_then(|jid| jid.split('@').next())
        .map(|u| u.split(':').next().unwrap_or(u).to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default_me_digits(shared.pair));
    let device = LinkedDevice {
        me,
        push_name: book.push_name.clone(),
        linked_at_ms: net.inner.clock.now_ms(),
    };
    match serde_json::to_string(&device) {
        Ok(json) => {
            let now = net.inner.clock.now_ms();
            if let Err(e) = net
                .inner
                .store
                .save_sim_device(&shared.session_id, &json, now)
                .await
            {
                tracing::error!("❌ Simulated engine cannot store credentials: {e}");
            }
        }
        Err(e) => tracing::error!("❌ Simulated engine cannot encode credentials: {e}"),
    }
    Linking::Linked(device)
}

/// Connected until a stop, an unlink or a replacement; the connection's row is closed with
/// why whichever way it ends.
async fn connected_loop(
    net: &SimNetwork,
    shared: &Arc<ClientShared>,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::Sender<EngineEvent>,
    device: LinkedDevice,
) {
    let why = stay_connected(net, shared, ctl, events, device).await;
    net.close_connection(shared, why).await;
}

async fn stay_connected(
    net: &SimNetwork,
    shared: &Arc<ClientShared>,
    ctl: &mut mpsc::UnboundedReceiver<Control>,
    events: &mpsc::Sender<EngineEvent>,
    device: LinkedDevice,
) -> SimCloseReason {
    let ready = || EngineEvent::Ready {
        phone: device.me.clone(),
        push_name: phone_name_opt(device.push_name.as_deref()),
    };
    let down = || {
        shared.connected.store(false, Ordering::SeqCst);
        shared.generation.fetch_add(1, Ordering::SeqCst);
    };
    net.open_connection(shared).await;
    shared.connected.store(true, Ordering::SeqCst);
    if events.send(ready()).await.is_err() {
        return SimCloseReason::Closed;
    }
    // While the connection is down, when it comes back. Every control message is handled
    // the same way up or down: an unlink during the backoff must not be lost.
    let mut reconnect_at: Option<Instant> = None;
    loop {
        let wake = reconnect_at;
        tokio::select! {
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                reconnect_at = None;
                if !shared.alive.load(Ordering::SeqCst) {
                    return SimCloseReason::Closed;
                }
                net.open_connection(shared).await;
                shared.connected.store(true, Ordering::SeqCst);
                if events.send(ready()).await.is_err() {
                    return SimCloseReason::Closed;
                }
            }
            c = ctl.recv() => match c {
                Some(Control::Scan(reply)) => {
                    let _ = reply.send(false);
                }
                Some(Control::Fault(Fault::Disconnect)) => {
                    if reconnect_at.is_none() {
                        // Told before a read notices the drop, as a real socket's close
                        // reaches its owner before a request on it times out.
                        let _ = events
                            .send(EngineEvent::Disconnected {
                                reason: "connection to WhatsApp lost (simulated)".into(),
                            })
                            .await;
                        down();
                        net.close_connection(shared, SimCloseReason::ConnectionLost).await;
                        reconnect_at = Some(Instant::now() + net.inner.cfg.reconnect_backoff);
                    }
                }
                Some(Control::Closed { id, reason }) => {
                    // About an earlier connection of this client: nothing to do now.
                    if shared
                        .connection
                        .compare_exchange(id, 0, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        continue;
                    }
                    if reason == SimCloseReason::Replaced {
                        down();
                        shared.alive.store(false, Ordering::SeqCst);
                        let _ = events
                            .send(EngineEvent::Failed {
                                message: REPLACED.into(),
                            })
                            .await;
                        return reason;
                    }
                    // Taken for dead by WhatsApp: a real client connects again, and the
                    // connection it opens then replaces whichever took its place.
                    let _ = events
                        .send(EngineEvent::Disconnected {
                            reason: format!(
                                "WhatsApp closed the connection ({}, simulated)",
                                reason.as_str()
                            ),
                        })
                        .await;
                    down();
                    reconnect_at = Some(Instant::now() + net.inner.cfg.reconnect_backoff);
                }
                Some(Control::Fault(Fault::Logout)) => {
                    down();
                    shared.alive.store(false, Ordering::SeqCst);
                    net.close_connection(shared, SimCloseReason::LoggedOut).await;
                    let _ = net.forget(&shared.session_id).await;
                    let _ = events
                        .send(EngineEvent::LoggedOut {
                            reason: "the device was unlinked from the phone".into(),
                        })
                        .await;
                    return SimCloseReason::LoggedOut;
                }
                Some(Control::Unlink(reply)) => {
                    down();
                    shared.alive.store(false, Ordering::SeqCst);
                    net.close_connection(shared, SimCloseReason::LoggedOut).await;
                    let _ = net.forget(&shared.session_id).await;
                    let _ = reply.send(());
                    return SimCloseReason::LoggedOut;
                }
                Some(Control::Fault(Fault::DropClient)) => {
                    down();
                    return SimCloseReason::ConnectionLost;
                }
                Some(Control::Stop) | None => {
                    down();
                    return SimCloseReason::Closed;
                }
                Some(Control::Fault(Fault::FailFetch | Fault::SlowFetch | Fault::FailSend)) => {}
            }
        }
    }
}
