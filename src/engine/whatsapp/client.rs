//! A session's client as the actor sees it: its calls, and the contact source a fetch reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use whatsapp_rust::Client;
use whatsapp_rust::pair_code::PairCodeOptions;
use whatsapp_rust::sync_task::MajorSyncTask;
use whatsapp_rust::wacore::appstate::patch_decode::WAPatchName;

use super::history::is_lid;
use super::run::Input;
use super::send::{AckWaiters, pair_error};
use super::{APP_STATE_WAIT, LOGOUT_CONNECT_WAIT, LOGOUT_GRACE, STOP_WAIT, WhatsAppEngine};
use crate::domain::{PhoneNumber, SessionId};
use crate::engine::{ContactSource, EngineClient, EngineError, OutgoingMessage};

/// One session's client as the actor sees it.
/// One session's client as the actor sees it.
pub(super) struct WaClient {
    pub(super) session_id: SessionId,
    pub(super) engine: WhatsAppEngine,
    /// The pump's input, for a fetch to wait until everything received so far is cached.
    pub(super) input: Mutex<Option<mpsc::UnboundedSender<Input>>>,
    /// Set once the library client is built; `None` while starting.
    pub(super) lib: Mutex<Option<Arc<Client>>>,
    /// Sends waiting for WhatsApp's ack; the library's event handler (a [`Forwarder`]) holds
    /// the other end and answers them.
    pub(super) acks: Arc<AckWaiters>,
    /// Cancelled when someone asks the client to stop; the client task then disconnects
    /// and ends by itself, whatever it was doing.
    pub(super) stop: CancellationToken,
    /// The client task is over, for whatever reason.
    pub(super) ended: AtomicBool,
    pub(super) ended_notify: Notify,
}

impl WaClient {
    pub(super) fn lib(&self) -> Option<Arc<Client>> {
        self.lib.lock().ok().and_then(|g| g.clone())
    }

    pub(super) fn set_lib(&self, client: Arc<Client>) {
        if let Ok(mut g) = self.lib.lock() {
            *g = Some(client);
        }
    }

    pub(super) fn mark_ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
        self.ended_notify.notify_waiters();
    }

    pub(super) async fn wait_ended(&self, limit: Duration) -> bool {
        let notified = self.ended_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.ended.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::timeout(limit, notified).await.is_ok()
    }

    /// Returns once the pump has cached every event received before this call.
    pub(super) async fn cached_so_far(&self) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .input
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|i| i.send(Input::Barrier(tx)).is_ok()))
            .unwrap_or(false);
        if !sent {
            return Err(EngineError::ClientGone);
        }
        match tokio::time::timeout(APP_STATE_WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EngineError::ClientGone),
            Err(_) => Err(EngineError::Failed(
                "contacts received from WhatsApp are still being saved; start the fetch again"
                    .into(),
            )),
        }
    }

    /// Asks the client task to end and waits for it: every step of its stop is bounded, so
    /// this returns with the task gone (and its files released) unless something is badly
    /// wrong, which is logged.
    pub(super) async fn shut_down(&self) {
        self.stop.cancel();
        if !self.wait_ended(STOP_WAIT).await {
            tracing::error!(
                "❌ WhatsApp client of session {} did not stop within {} s",
                self.session_id,
                STOP_WAIT.as_secs()
            );
        }
    }
}

#[async_trait]
impl EngineClient for WaClient {
    fn is_alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst)
    }

    async fn read_contacts(&self) -> Result<Box<dyn ContactSource>, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        // A fresh full snapshot of the contacts collection re-sends every saved name; bounded,
        // as a phone that does not answer must not hold the fetch.
        let resync = lib.process_sync_task(MajorSyncTask::AppStateSync {
            name: WAPatchName::CriticalUnblockLow,
            full_sync: true,
        });
        if tokio::time::timeout(APP_STATE_WAIT, resync).await.is_err() {
            tracing::warn!(
                "⚠️ Contacts snapshot of session {} took over {} s; using what is cached",
                self.session_id,
                APP_STATE_WAIT.as_secs()
            );
        }
        self.cached_so_far().await?;
        let mut contacts = self
            .engine
            .inner
            .store
            .cached_contacts(&self.session_id)
            .await
            .map_err(|e| EngineError::Failed(format!("cannot read the contact cache: {e:#}")))?;
        // LID chats our cache could not map: the library may have learned the number since
        // (from a message, a device list), in its own LID store.
        for c in contacts
            .iter_mut()
            .filter(|c| c.pn_jid.is_none() && is_lid(&c.jid))
        {
            if let Ok(jid) = c.jid.parse::<whatsapp_rust::Jid>()
                && let Ok(Some(entry)) = lib.get_lid_pn_entry(&jid).await
            {
                c.pn_jid = Some(format!("{}@s.whatsapp.net", entry.phone_number));
            }
        }
        let own = [lib.pn(), lib.lid()]
            .into_iter()
            .flatten()
            .map(|j| format!("{}@{}", j.user, j.server))
            .collect();
        Ok(Box::new(CachedSource {
            contacts: contacts.into(),
            own,
        }))
    }

    async fn logout(&self) -> Result<(), EngineError> {
        let mut unlinked_on_phone = false;
        if let Some(lib) = self.lib()
            && self.is_alive()
        {
            // remove-companion only goes out on a live connection: give a reconnect a moment.
            if !lib.is_connected() {
                let _ = lib.wait_for_connected(LOGOUT_CONNECT_WAIT).await;
            }
            unlinked_on_phone = lib.is_connected();
            if tokio::time::timeout(LOGOUT_GRACE, lib.logout())
                .await
                .is_err()
            {
                unlinked_on_phone = false;
                tracing::warn!(
                    "⚠️ WhatsApp did not confirm the unlink of session {} in time",
                    self.session_id
                );
            }
        }
        self.shut_down().await;
        self.engine.forget_device(&self.session_id).await?;
        if unlinked_on_phone {
            Ok(())
        } else {
            Err(EngineError::Failed(
                "WhatsApp could not be reached, so the phone may still list this device: remove \
                 it under WhatsApp > Linked devices. Its credentials are deleted here."
                    .into(),
            ))
        }
    }

    async fn stop(&self) {
        self.shut_down().await;
    }

    async fn pair_code(&self, phone: &PhoneNumber) -> Result<String, EngineError> {
        let lib = match self.lib() {
            Some(lib) if self.is_alive() => lib,
            _ => return Err(EngineError::ClientGone),
        };
        if !lib.is_connected() {
            return Err(EngineError::NotConnected);
        }
        let options = PairCodeOptions {
            phone_number: phone.digits().to_string(),
            ..Default::default()
        };
        lib.pair_with_code(options).await.map_err(pair_error)
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<String, EngineError> {
        self.send_message(message).await
    }

    async fn check_numbers(
        &self,
        numbers: &[PhoneNumber],
    ) -> Result<Vec<crate::engine::NumberInfo>, EngineError> {
        self.lookup_numbers(numbers).await
    }

    async fn mark_read(&self, chat: &PhoneNumber, ids: &[String]) -> Result<(), EngineError> {
        self.send_read_receipts(chat, ids).await
    }

    async fn download_media(&self, media_ref: &str) -> Result<Vec<u8>, EngineError> {
        self.download_file(media_ref).await
    }
}

/// The cache of a session, read in chunks like any contact source.
pub(super) struct CachedSource {
    contacts: std::collections::VecDeque<crate::engine::RawContact>,
    own: Vec<String>,
}

#[async_trait]
impl ContactSource for CachedSource {
    fn total(&self) -> Option<u64> {
        Some(self.contacts.len() as u64)
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<crate::engine::RawContact>>, EngineError> {
        if self.contacts.is_empty() {
            return Ok(None);
        }
        let n = self.contacts.len().min(1000);
        Ok(Some(self.contacts.drain(..n).collect()))
    }

    fn own_jids(&self) -> Vec<String> {
        self.own.clone()
    }
}
