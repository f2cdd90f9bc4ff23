//! The session actor: the only owner of a session's engine client and record.

mod fence;
mod fetch;
mod groups;
mod receipts;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) use self::fence::Fence;

use super::error::{SessionError, SessionResult};
use super::registry::Registry;
use super::{Command, SessionSnapshot};
use crate::clock::SharedClock;
use crate::contacts::fetch::FetchMessage;
use crate::domain::{PhoneNumber, SessionStatus};
use crate::engine::{ClientStart, Engine, EngineClient, EngineEvent};
use crate::qr::QrImage;
use crate::store::prelude::*;
use crate::store::{SessionRecord, keep_trying};

/// How often a client that is not linked yet is checked for having silently died.
const LIVENESS_CHECK: Duration = Duration::from_secs(2);
pub(super) struct Deps {
    pub engine: Arc<dyn Engine>,
    pub store: Arc<dyn Database>,
    pub clock: SharedClock,
    pub registry: Arc<Registry>,
    pub fetch_slots: Arc<tokio::sync::Semaphore>,
    /// Where status changes, finished fetches and incoming messages are told.
    pub events: Option<crate::events::EventBus>,
    /// On a cluster: the lease this actor runs under. Every save first checks it is still
    /// held; a node that lost it (another node took the session over) stops the client
    /// without writing, so two nodes never drive one device.
    pub fence: Option<Fence>,
    /// What an incoming text must be to opt its writer out.
    pub opt_out_words: Arc<crate::inbox::OptOutWords>,
}

struct RunningFetch {
    serial: u64,
    started: std::time::Instant,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

pub(super) struct Actor {
    serial: u64,
    record: SessionRecord,
    deps: Deps,
    client: Option<Arc<dyn EngineClient>>,
    /// The current client's events; replaced on restart so a stopped client's late events
    /// can never touch the new one's state.
    events: Option<mpsc::Receiver<EngineEvent>>,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<Arc<SessionSnapshot>>,
    qr: Option<Arc<QrImage>>,
    counts: (i64, i64),
    /// When `counts` was last read during the running fetch.
    counted_at: Option<tokio::time::Instant>,
    fetch: Option<RunningFetch>,
    fetch_serial: u64,
    /// Fetch jobs hold clones of the sender.
    fetch_tx: mpsc::UnboundedSender<FetchMessage>,
    fetch_rx: mpsc::UnboundedReceiver<FetchMessage>,
    /// The status last told as an event, so each change is told once.
    told_status: SessionStatus,
    /// The lease is no longer this node's: nothing more is written, the actor ends.
    fenced: bool,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

impl Actor {
    pub(super) fn new(
        serial: u64,
        record: SessionRecord,
        deps: Deps,
        commands: mpsc::Receiver<Command>,
        state: watch::Sender<Arc<SessionSnapshot>>,
    ) -> Self {
        // Unbounded but small: at most one message per committed batch, and a stop must
        // never wait for the actor to drain it.
        let (fetch_tx, fetch_rx) = mpsc::unbounded_channel();
        let told_status = record.status;
        Self {
            serial,
            record,
            deps,
            client: None,
            events: None,
            commands,
            state,
            qr: None,
            counts: (0, 0),
            counted_at: None,
            fetch: None,
            fetch_serial: 0,
            fetch_tx,
            fetch_rx,
            told_status,
            fenced: false,
        }
    }

    async fn emit(&self, kind: crate::events::EventKind, data: serde_json::Value) {
        if let Some(bus) = &self.deps.events {
            bus.emit(self.record.pair, Some(&self.record.session_id), kind, data)
                .await;
        }
    }

    pub(super) fn initial_snapshot(record: &SessionRecord) -> SessionSnapshot {
        SessionSnapshot {
            record: record.clone(),
            qr: None,
            client: None,
            fetch_running: false,
            total_contacts: 0,
            total_groups: 0,
        }
    }

    #[tracing::instrument(name = "session", skip_all, fields(session.id = %self.record.session_id))]
    pub(super) async fn run(mut self) {
        self.refresh_counts().await;
        self.start_client().await;
        let mut liveness = tokio::time::interval(LIVENESS_CHECK);
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if !self.record.status.is_terminal() {
            loop {
                // Where no request will "use" the client soon, look whether it silently died:
                // before linking, and while it is supposedly reconnecting.
                let watch_liveness = matches!(
                    self.record.status,
                    SessionStatus::Initializing
                        | SessionStatus::QrReady
                        | SessionStatus::Authenticated
                        | SessionStatus::Disconnected
                );
                let flow = tokio::select! {
                    cmd = self.commands.recv() => match cmd {
                        Some(cmd) => self.on_command(cmd).await,
                        None => {
                            self.shutdown().await;
                            Flow::Stop
                        }
                    },
                    ev = next_event(&mut self.events) => match ev {
                        Some(ev) => self.on_event(ev).await,
                        None => {
                            self.events = None;
                            self.on_client_task_ended().await;
                            Flow::Continue
                        }
                    },
                    Some((serial, update)) = self.fetch_rx.recv() => {
                        // Updates of a fetch already let go are stale.
                        if self.fetch.as_ref().is_some_and(|f| f.serial == serial) {
                            self.on_fetch_update(update).await
                        } else {
                            Flow::Continue
                        }
                    }
                    _ = liveness.tick(), if watch_liveness && self.client.is_some() => {
                        self.check_liveness().await
                    }
                };
                if self.fenced {
                    tracing::warn!(
                        "⚠️ Session {} now runs on another node: stopping its client here",
                        self.record.session_id
                    );
                    self.stop_fetch("the session moved to another node").await;
                    if let Some(c) = self.client.take() {
                        c.stop().await;
                    }
                    break;
                }
                if flow == Flow::Stop {
                    break;
                }
            }
        }
        self.deps.registry.remove(self.record.pair, self.serial);
    }

    fn id(&self) -> &crate::domain::SessionId {
        &self.record.session_id
    }

    fn now_ms(&self) -> i64 {
        self.deps.clock.now_ms()
    }

    fn publish(&self) {
        let snap = SessionSnapshot {
            record: self.record.clone(),
            qr: self.qr.clone(),
            client: self.client.clone(),
            fetch_running: self.fetch.is_some(),
            total_contacts: self.counts.0,
            total_groups: self.counts.1,
        };
        self.state.send_replace(Arc::new(snap));
    }

    /// Writes the record through and publishes it.
    async fn save(&mut self) {
        if !self.still_holds().await {
            return;
        }
        let now = self.now_ms();
        self.record.updated_at = now;
        self.record.last_activity = Some(now);
        // What readers and a restart see; a busy database delays it rather than losing it.
        let (store, record) = (&self.deps.store, &self.record);
        let what = format!("Saving session {}", self.id());
        if let Err(e) = keep_trying(what, None, || store.save_session(record)).await {
            tracing::error!("❌ Failed to save session {}: {e:#}", self.id());
        }
        self.publish();
        if self.record.status != self.told_status {
            let previous = std::mem::replace(&mut self.told_status, self.record.status);
            self.emit(
                crate::events::EventKind::SessionStatus,
                serde_json::json!({
                    "status": self.record.status.as_str(),
                    "previous_status": previous.as_str(),
                    "phone_number": self.record.phone_number,
                    "error_message": self.record.error_message,
                }),
            )
            .await;
        }
    }

    async fn refresh_counts(&mut self) {
        match self.deps.store.pair_counts(self.record.pair).await {
            Ok(c) => self.counts = c,
            Err(e) => tracing::warn!("⚠️ Cannot count contacts of session {}: {e:#}", self.id()),
        }
    }

    async fn start_client(&mut self) {
        let (tx, rx) = mpsc::channel(64);
        let start = ClientStart {
            session_id: self.record.session_id.clone(),
            pair: self.record.pair,
            events: tx,
        };
        match self.deps.engine.start(start).await {
            Ok(client) => {
                tracing::info!("ℹ️ Client started for session: {}", self.id());
                self.client = Some(client);
                self.events = Some(rx);
                self.publish();
            }
            Err(e) => {
                tracing::error!("❌ Client failed to start for session {}: {e}", self.id());
                self.record.status = SessionStatus::Error;
                self.record.error_message = Some(format!(
                    "The WhatsApp client could not start: {e}. Call /api/whatsapp/restart to try again."
                ));
                self.save().await;
            }
        }
    }

    async fn on_event(&mut self, ev: EngineEvent) -> Flow {
        let id = self.id().clone();
        match ev {
            EngineEvent::Qr { code } => {
                match QrImage::render(code) {
                    Ok(img) => self.qr = Some(Arc::new(img)),
                    Err(e) => tracing::error!("❌ Cannot render QR code for session {id}: {e:#}"),
                }
                tracing::info!("ℹ️ QR code ready for session: {id}");
                if self.record.status != SessionStatus::QrReady {
                    self.record.status = SessionStatus::QrReady;
                    self.record.error_message = None;
                    self.save().await;
                } else {
                    self.publish();
                }
            }
            EngineEvent::QrExpired { message } => {
                self.qr = None;
                self.record.error_message = Some(message);
                self.save().await;
            }
            EngineEvent::Authenticated => {
                tracing::info!("✅ Session authenticated: {id}");
                self.qr = None;
                self.record.status = SessionStatus::Authenticated;
                self.save().await;
            }
            EngineEvent::Ready { phone, push_name } => {
                tracing::info!("✅ Session ready: {id}");
                crate::metrics::count(&self.deps.events, |m| m.connected());
                self.qr = None;
                if let Some(p) = PhoneNumber::parse_international(&phone) {
                    self.record.phone_number = Some(p);
                }
                if push_name.is_some() {
                    self.record.name = push_name;
                }
                self.record.connected_at = Some(self.now_ms());
                self.record.error_message = None;
                // Groups first: whoever sees `ready` must also see the two groups.
                self.create_default_groups().await;
                self.refresh_counts().await;
                self.record.status = if self.fetch.is_some() {
                    SessionStatus::FetchingContacts
                } else {
                    SessionStatus::Ready
                };
                self.save().await;
            }
            EngineEvent::Disconnected { reason } => {
                tracing::warn!("⚠️ Session disconnected: {id} ({reason})");
                tracing::info!("🔄 Reconnecting session {id} automatically");
                crate::metrics::count(&self.deps.events, |m| m.disconnected_reconnecting());
                // A QR code of a connection that is gone can no longer be scanned.
                self.qr = None;
                self.record.status = SessionStatus::Disconnected;
                self.record.error_message = Some(reason);
                self.save().await;
            }
            EngineEvent::LoggedOut { reason } => {
                tracing::warn!("⚠️ Session logged out: {id} ({reason})");
                crate::metrics::count(&self.deps.events, |m| m.disconnected());
                self.stop_fetch("the session was logged out").await;
                // Stopped first: a client still running must not write what is deleted.
                if let Some(c) = self.client.take() {
                    c.stop().await;
                }
                if let Err(e) = self.deps.engine.forget(&id).await {
                    tracing::error!("❌ Cannot delete credentials of session {id}: {e}");
                }
                self.events = None;
                self.qr = None;
                self.record.status = SessionStatus::LoggedOut;
                self.record.error_message = Some(format!(
                    "Logged out: {reason}. Call /api/whatsapp/init to link again with a new QR code."
                ));
                self.save().await;
                return Flow::Stop;
            }
            EngineEvent::Failed { message } => {
                tracing::error!("❌ Session error: {id}: {message}");
                self.stop_fetch("the session stopped with an error").await;
                if let Some(c) = self.client.take() {
                    c.stop().await;
                }
                self.events = None;
                self.qr = None;
                self.record.status = SessionStatus::Error;
                self.record.error_message = Some(message);
                self.save().await;
                return Flow::Stop;
            }
            EngineEvent::Receipt(r) => self.on_receipt(r).await,
            EngineEvent::MessageReceived(m) => {
                tracing::info!("ℹ️ Message {} received by session {id}", m.id);
                crate::inbox::Receiver {
                    store: self.deps.store.as_ref(),
                    events: self.deps.events.as_ref(),
                    words: &self.deps.opt_out_words,
                    pair: self.record.pair,
                    session_id: &id,
                    now_ms: self.now_ms(),
                }
                .receive(m)
                .await;
            }
        }
        Flow::Continue
    }

    /// The event channel closed: the client task is gone although nobody stopped it.
    async fn on_client_task_ended(&mut self) {
        if self.record.status.is_terminal() || self.client.is_none() {
            return;
        }
        tracing::warn!(
            "⚠️ Client task ended unexpectedly for session {}",
            self.id()
        );
        self.mark_client_gone().await;
    }

    /// A client that died before linking leaves no QR to scan and no error to read.
    async fn check_liveness(&mut self) -> Flow {
        // An event already sent (a QR failure, say) explains the death better than we can.
        if self.drain_events().await == Flow::Stop {
            return Flow::Stop;
        }
        if self.client.as_ref().is_some_and(|c| !c.is_alive()) {
            tracing::warn!("⚠️ Client of session {} stopped unexpectedly", self.id());
            self.qr = None;
            self.mark_client_gone().await;
        }
        Flow::Continue
    }

    /// Handles the engine's events already waiting, so what follows sees the state they set.
    async fn drain_events(&mut self) -> Flow {
        while let Some(ev) = self.events.as_mut().and_then(|rx| rx.try_recv().ok()) {
            if self.on_event(ev).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// The client is dead: drop it (a restart or init starts a new one) and say so.
    async fn mark_client_gone(&mut self) {
        tracing::warn!(
            "⚠️ Client not found in memory for session {}, updating status",
            self.id()
        );
        crate::metrics::count(&self.deps.events, |m| m.disconnected());
        if let Some(c) = self.client.take() {
            c.stop().await;
        }
        self.events = None;
        self.record.status = SessionStatus::Disconnected;
        self.record.error_message = Some(SessionError::ClientUnavailable.to_string());
        self.save().await;
        tracing::info!("🔄 Session status updated to disconnected");
    }

    async fn on_command(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::StartFetch(reply) => {
                let r = self.start_fetch().await;
                let _ = reply.send(r);
            }
            Command::EnsureRunning(reply) => {
                let alive = self.client.as_ref().is_some_and(|c| c.is_alive());
                if !alive {
                    self.restart().await;
                }
                let _ = reply.send(!alive);
            }
            Command::Restart(reply) => {
                self.restart().await;
                let _ = reply.send(());
            }
            Command::LinkingClient(reply) => {
                let r = self.linking_client().await;
                let _ = reply.send(r);
            }
            Command::Logout(reply) => {
                self.logout().await;
                let _ = reply.send(());
                return Flow::Stop;
            }
            Command::Shutdown(reply) => {
                self.shutdown().await;
                let _ = reply.send(());
                return Flow::Stop;
            }
            Command::Abandon(reply) => {
                // The connection first: it is what another node must not find still open.
                if let Some(c) = self.client.take() {
                    c.stop().await;
                }
                self.events = None;
                self.fenced = true;
                self.stop_fetch("this node lost its database").await;
                let _ = reply.send(());
                return Flow::Stop;
            }
        }
        // A client that could not start leaves nothing for this actor to drive.
        if self.record.status.is_terminal() {
            return Flow::Stop;
        }
        Flow::Continue
    }

    /// Checks 2 to 5 of the contract, in order, atomically: the actor handles one command
    /// at a time, so of any number of racing requests exactly one starts a fetch.
    async fn linking_client(&mut self) -> SessionResult<Arc<dyn EngineClient>> {
        let status = self.record.status;
        match status {
            SessionStatus::Ready
            | SessionStatus::FetchingContacts
            | SessionStatus::Authenticated => Err(SessionError::AlreadyLinked { status }),
            SessionStatus::LoggedOut | SessionStatus::Error => {
                Err(SessionError::NotLinking { status })
            }
            SessionStatus::Disconnected if self.deps.engine.has_credentials(self.id()).await => {
                Err(SessionError::Reconnecting)
            }
            SessionStatus::Initializing | SessionStatus::QrReady | SessionStatus::Disconnected => {
                match &self.client {
                    Some(c) if c.is_alive() => Ok(c.clone()),
                    _ => {
                        self.mark_client_gone().await;
                        Err(SessionError::ClientUnavailable)
                    }
                }
            }
        }
    }

    async fn restart(&mut self) {
        let id = self.id().clone();
        tracing::info!("🔄 Restarting session: {id}");
        self.stop_fetch("the session was restarted").await;
        if let Some(c) = self.client.take() {
            c.stop().await;
        }
        self.events = None;
        self.qr = None;
        self.record.status = SessionStatus::Initializing;
        self.record.error_message = None;
        self.save().await;
        self.start_client().await;
    }

    async fn logout(&mut self) {
        let id = self.id().clone();
        self.stop_fetch("the session was logged out").await;
        let result = match self.client.take() {
            Some(c) => c.logout().await,
            None => self.deps.engine.forget(&id).await,
        };
        let mut note = None;
        if let Err(e) = result {
            tracing::error!("❌ Logout of session {id} did not complete cleanly: {e}");
            // The credentials must not survive a logout, whatever the phone said.
            let _ = self.deps.engine.forget(&id).await;
            note = Some(e.to_string());
        }
        self.events = None;
        self.qr = None;
        self.record.status = SessionStatus::LoggedOut;
        self.record.error_message = note;
        self.save().await;
        tracing::info!("✅ Session logged out: {id}");
    }

    /// Server stop: keep the status as it is (a `ready` session is restored on start),
    /// but never leave it `fetching_contacts`.
    async fn shutdown(&mut self) {
        self.stop_fetch("the server stopped").await;
        if let Some(c) = self.client.take() {
            c.stop().await;
        }
        self.events = None;
        self.save().await;
    }
}

async fn next_event(rx: &mut Option<mpsc::Receiver<EngineEvent>>) -> Option<EngineEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
