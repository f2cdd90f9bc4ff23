//! The registry of live sessions and every operation that spans the database and an actor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use super::actor::Fence;
use super::actor::{Actor, Deps};
use super::error::{SessionError, SessionResult};
use super::registry::Registry;
use super::{Command, FetchStarted, SessionHandle, SessionSnapshot};
use crate::clock::SharedClock;
use crate::domain::{Pair, PhoneNumber, SessionId, SessionStatus, UserId};
use crate::engine::{Engine, EngineError};
use crate::store::SessionRecord;
use crate::store::prelude::*;
use crate::store::traits::Lease;

// Above a real client's bounded stop (flush, then close), so a stop is never cut short.
/// Within the 10 s a process manager gives between SIGTERM and SIGKILL, after the HTTP drain.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);

pub struct InitOutcome {
    pub snapshot: Arc<SessionSnapshot>,
    pub already_active: bool,
}

pub struct LogoutOutcome {
    pub snapshot: Arc<SessionSnapshot>,
    pub already_logged_out: bool,
}

pub(super) struct Inner {
    pub(super) registry: Arc<Registry>,
    pub(super) engine: Arc<dyn Engine>,
    pub(super) store: Arc<dyn Database>,
    pub(super) clock: SharedClock,
    /// Serialises init/restart/logout of one pair, so 100 racing inits make one session.
    pair_locks: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises the count-and-create of a user's new sessions, so racing inits of many
    /// pairs never end above the quota. Always taken inside a pair lock, never the other
    /// way round.
    user_locks: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<()>>>>,
    serial: AtomicU64,
    actors: TaskTracker,
    /// Contact fetches running at once across the server; the rest wait their turn.
    fetch_slots: Arc<tokio::sync::Semaphore>,
    events: std::sync::OnceLock<crate::events::EventBus>,
    opt_out_words: std::sync::OnceLock<Arc<crate::inbox::OptOutWords>>,
    /// On PostgreSQL: sessions run under leases (see [`crate::cluster`]).
    pub(super) cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// Told the pair of every session this node starts running (a start, a restore, a
    /// takeover from another node), for work that follows the session (its outbox).
    started: tokio::sync::broadcast::Sender<Pair>,
}

#[derive(Clone)]
pub struct SessionManager {
    pub(super) inner: Arc<Inner>,
}

impl SessionManager {
    pub fn new(
        engine: Arc<dyn Engine>,
        store: Arc<dyn Database>,
        clock: SharedClock,
        max_concurrent_fetches: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Arc::default(),
                engine,
                store,
                clock,
                pair_locks: Mutex::default(),
                user_locks: Mutex::default(),
                serial: AtomicU64::new(1),
                actors: TaskTracker::new(),
                fetch_slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent_fetches.max(1))),
                events: std::sync::OnceLock::new(),
                opt_out_words: std::sync::OnceLock::new(),
                cluster: std::sync::OnceLock::new(),
                started: tokio::sync::broadcast::channel(1_024).0,
            }),
        }
    }

    /// Sessions started from now on tell their events here.
    pub fn with_events(self, events: crate::events::EventBus) -> Self {
        let _ = self.inner.events.set(events);
        self
    }

    /// Sessions started from now on opt out who writes one of these (the default list
    /// otherwise).
    pub fn with_opt_out_words(self, words: crate::inbox::OptOutWords) -> Self {
        let _ = self.inner.opt_out_words.set(std::sync::Arc::new(words));
        self
    }

    /// Sessions run under this cluster's leases from now on.
    pub fn with_cluster(self, cluster: crate::cluster::Cluster) -> Self {
        let _ = self.inner.cluster.set(cluster);
        self
    }

    /// The pairs of sessions this node starts running from now on. A receiver that lags
    /// loses the oldest; look at [`Self::live`] again then.
    pub fn subscribe_started(&self) -> tokio::sync::broadcast::Receiver<Pair> {
        self.inner.started.subscribe()
    }

    pub fn live_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// This node's running sessions by status, read from their published snapshots (no
    /// actor is asked): cheap enough for every metrics scrape.
    pub fn status_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for h in self.inner.registry.all().iter().filter(|h| h.is_running()) {
            *counts
                .entry(h.snapshot().record.status.as_str())
                .or_default() += 1;
        }
        counts
    }

    pub fn live(&self, pair: Pair) -> Option<SessionHandle> {
        self.inner.registry.get(pair)
    }

    pub(super) async fn lock_pair(&self, pair: Pair) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .inner
            .pair_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pair)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    async fn lock_user(&self, user: UserId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .user_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Locks nobody holds or waits for are only memory; drop them as users come.
            if locks.len() >= 1024 {
                locks.retain(|_, l| Arc::strong_count(l) > 1);
            }
            locks.entry(user).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Refuses one more session for the user once it holds `limit` (`None`: no limit). The
    /// guard it returns must be held until the new session is saved, so the next count
    /// sees it.
    async fn admit_new_session(
        &self,
        pair: Pair,
        limit: Option<u32>,
    ) -> SessionResult<Option<tokio::sync::OwnedMutexGuard<()>>> {
        let Some(limit) = limit else {
            return Ok(None);
        };
        let guard = self.lock_user(pair.user_id).await;
        let held = self.inner.store.counted_sessions(pair.user_id).await?;
        if held >= i64::from(limit) {
            tracing::warn!(
                "⚠️ Session quota reached: user {} holds {held} sessions (limit {limit}); {pair} \
                 refused",
                pair.user_id
            );
            return Err(SessionError::TooManySessions {
                user: pair.user_id,
                held,
                limit,
            });
        }
        Ok(Some(guard))
    }

    /// Starts the session's actor; on a cluster under `lease` (taken by the caller), which
    /// the session gives up once it ends for good (logged out, failed).
    pub(super) fn spawn(&self, record: SessionRecord, lease: Option<Lease>) -> SessionHandle {
        let serial = self.inner.serial.fetch_add(1, Ordering::Relaxed);
        let record_pair = record.pair;
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let (state_tx, state_rx) = watch::channel(Arc::new(Actor::initial_snapshot(&record)));
        let handle = SessionHandle {
            serial,
            pair: record.pair,
            commands: cmd_tx,
            state: state_rx,
        };
        self.inner.registry.insert(handle.clone());
        let deps = Deps {
            engine: self.inner.engine.clone(),
            store: self.inner.store.clone(),
            clock: self.inner.clock.clone(),
            registry: self.inner.registry.clone(),
            fetch_slots: self.inner.fetch_slots.clone(),
            events: self.inner.events.get().cloned(),
            opt_out_words: self.inner.opt_out_words.get().cloned().unwrap_or_default(),
            fence: self.inner.cluster.get().zip(lease).map(|(c, lease)| Fence {
                store: c.store().clone(),
                node_id: c.node_id().to_owned(),
                lease,
            }),
        };
        let actor = Actor::new(serial, record, deps, cmd_rx, state_tx);
        let ended = handle.state.clone();
        let cluster = self.inner.cluster.get().cloned();
        self.inner.actors.spawn(async move {
            actor.run().await;
            // Nothing to run anymore: no lease, so no node takes it over.
            if let (Some(c), Some(lease)) = (cluster, lease)
                && ended.borrow().record.status.is_terminal()
                && let Err(e) = c.store().drop_lease(lease, c.node_id()).await
            {
                tracing::warn!(
                    "⚠️ Cannot drop the lease of ended session {}: {e}",
                    lease.pair
                );
            }
        });
        // Nobody listening is not an error.
        let _ = self.inner.started.send(record_pair);
        handle
    }

    /// The latest session of the pair: the live one, or the last one persisted.
    pub async fn snapshot(&self, pair: Pair) -> SessionResult<Option<Arc<SessionSnapshot>>> {
        if let Some(h) = self.live(pair) {
            return Ok(Some(h.snapshot()));
        }
        let Some(record) = self.inner.store.latest_session(pair).await? else {
            return Ok(None);
        };
        let (total_contacts, total_groups) = self.inner.store.pair_counts(pair).await?;
        Ok(Some(Arc::new(SessionSnapshot {
            record,
            qr: None,
            client: None,
            fetch_running: false,
            total_contacts,
            total_groups,
        })))
    }

    /// # `POST /api/whatsapp/init`
    ///
    /// `limit`: the sessions the user may hold (`None`: no limit); a pair it already holds
    /// is never refused, only one more.
    pub async fn init(&self, pair: Pair, limit: Option<u32>) -> SessionResult<InitOutcome> {
        let this = self.clone();
        detached(async move { this.init_now(pair, limit).await }).await
    }

    async fn init_now(&self, pair: Pair, limit: Option<u32>) -> SessionResult<InitOutcome> {
        let _guard = self.lock_pair(pair).await;
        // An actor that ended meanwhile answers None: start anew below.
        if let Some(h) = self.live(pair)
            && !h.snapshot().status().is_terminal()
            && let Some(restarted) = h.ask(Command::EnsureRunning).await
        {
            return Ok(InitOutcome {
                snapshot: h.snapshot(),
                already_active: !restarted,
            });
        }
        let latest = self.inner.store.latest_session(pair).await?;
        let now = self.inner.clock.now_ms();
        if let Some(rec) = latest.as_ref() {
            // Still linked: reconnect the same session, no new QR. That includes a session
            // stopped by an error (a ban that ended, a replaced stream): the phone still
            // lists the device.
            if rec.status != SessionStatus::LoggedOut
                && self.inner.engine.has_credentials(&rec.session_id).await
            {
                tracing::info!("🔄 Reconnecting linked session: {}", rec.session_id);
                let lease = self.take_lease(pair).await?;
                let mut rec = rec.clone();
                rec.status = SessionStatus::Initializing;
                rec.error_message = None;
                let handle = self.spawn(rec, lease);
                return Ok(InitOutcome {
                    snapshot: handle.snapshot(),
                    already_active: false,
                });
            }
        }
        // A pair whose latest session is not logged out is already counted.
        let _user_guard = if latest
            .as_ref()
            .is_none_or(|r| r.status == SessionStatus::LoggedOut)
        {
            self.admit_new_session(pair, limit).await?
        } else {
            None
        };
        // Ids of one pair strictly increase, even within one millisecond.
        let ms = latest
            .as_ref()
            .and_then(|r| r.session_id.unix_ms())
            .map_or(now, |last| now.max(last + 1));
        let record = SessionRecord::new(SessionId::new(pair, ms), pair, now);
        let lease = self.take_lease(pair).await?;
        self.inner.store.save_session(&record).await?;
        tracing::info!(
            "ℹ️ Initializing new session: {} for {pair}",
            record.session_id
        );
        let handle = self.spawn(record, lease);
        Ok(InitOutcome {
            snapshot: handle.snapshot(),
            already_active: false,
        })
    }

    /// # `POST /api/whatsapp/start-contact-fetch`
    pub async fn start_contact_fetch(&self, pair: Pair) -> SessionResult<FetchStarted> {
        let this = self.clone();
        detached(async move { this.start_contact_fetch_now(pair).await }).await
    }

    async fn start_contact_fetch_now(&self, pair: Pair) -> SessionResult<FetchStarted> {
        tracing::info!(
            "ℹ️ Attempting to start contact fetch for user {}, place {}",
            pair.user_id,
            pair.place_id
        );
        if let Some(h) = self.live(pair)
            && let Some(result) = h.ask(Command::StartFetch).await
        {
            if result.is_ok() {
                tracing::info!(
                    "ℹ️ Starting background contact fetch for user {}, place {}",
                    pair.user_id,
                    pair.place_id
                );
                tracing::info!("✅ Background contact fetch started successfully");
            }
            return result;
        }
        // No live actor: the database has the last word on what the session was. Under the
        // pair's lock, so a concurrent init's reconnect is not overwritten.
        let _guard = self.lock_pair(pair).await;
        if let Some(h) = self.live(pair)
            && let Some(result) = h.ask(Command::StartFetch).await
        {
            return result;
        }
        let Some(mut rec) = self.inner.store.latest_session(pair).await? else {
            return Err(SessionError::NoSession);
        };
        if !rec.status.is_ready() {
            return Err(SessionError::NotReady { status: rec.status });
        }
        // The same span as the actor's lines, so these carry the session id too.
        let span = tracing::info_span!("session", session.id = %rec.session_id);
        span.in_scope(|| {
            tracing::warn!(
                "⚠️ Client not found in memory for session {}, updating status",
                rec.session_id
            )
        });
        rec.status = SessionStatus::Disconnected;
        rec.error_message = Some(SessionError::ClientUnavailable.to_string());
        rec.updated_at = self.inner.clock.now_ms();
        self.inner.store.save_session(&rec).await?;
        span.in_scope(|| {
            tracing::info!("🔄 Session status updated to disconnected");
            tracing::error!(
                "❌ Error starting contact fetch: Client not available - session may have been disconnected"
            );
        });
        Err(SessionError::ClientUnavailable)
    }

    /// # `POST /api/whatsapp/pair-code`
    pub async fn pair_code(
        &self,
        pair: Pair,
        phone: PhoneNumber,
    ) -> SessionResult<(Arc<SessionSnapshot>, String)> {
        let this = self.clone();
        detached(async move { this.pair_code_now(pair, phone).await }).await
    }

    async fn pair_code_now(
        &self,
        pair: Pair,
        phone: PhoneNumber,
    ) -> SessionResult<(Arc<SessionSnapshot>, String)> {
        let live = match self.live(pair) {
            Some(h) => h.ask(Command::LinkingClient).await.map(|r| (h, r)),
            None => None,
        };
        let Some((handle, client)) = live else {
            // No actor: the session ended (logged out, failed) or was never started here.
            return match self.inner.store.latest_session(pair).await? {
                None => Err(SessionError::NoSession),
                Some(rec) if rec.status.is_terminal() => {
                    Err(SessionError::NotLinking { status: rec.status })
                }
                Some(_) => Err(SessionError::ClientUnavailable),
            };
        };
        let client = client?;
        let id = handle.snapshot().record.session_id.clone();
        tracing::info!("ℹ️ Pairing code requested for session: {id}");
        match client.pair_code(&phone).await {
            Ok(code) => {
                tracing::info!("✅ Pairing code issued for session: {id}");
                Ok((handle.snapshot(), code))
            }
            Err(EngineError::Failed(m)) => {
                tracing::warn!("⚠️ Pairing code refused for session {id}: {m}");
                Err(EngineError::Failed(m).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// # `POST /api/whatsapp/restart`
    ///
    /// Restarting a logged-out session brings it back, so it counts against `limit` as a
    /// new one would.
    pub async fn restart(
        &self,
        pair: Pair,
        limit: Option<u32>,
    ) -> SessionResult<Arc<SessionSnapshot>> {
        let this = self.clone();
        detached(async move { this.restart_now(pair, limit).await }).await
    }

    async fn restart_now(
        &self,
        pair: Pair,
        limit: Option<u32>,
    ) -> SessionResult<Arc<SessionSnapshot>> {
        let _guard = self.lock_pair(pair).await;
        if let Some(h) = self.live(pair)
            && h.ask(Command::Restart).await.is_some()
        {
            return Ok(h.snapshot());
        }
        let Some(mut rec) = self.inner.store.latest_session(pair).await? else {
            return Err(SessionError::NoSession);
        };
        let user_guard = if rec.status == SessionStatus::LoggedOut {
            self.admit_new_session(pair, limit).await?
        } else {
            None
        };
        let lease = self.take_lease(pair).await?;
        tracing::info!("🔄 Restarting session: {}", rec.session_id);
        rec.status = SessionStatus::Initializing;
        rec.error_message = None;
        if user_guard.is_some() {
            // Saved before the user's lock goes, so the next count sees the pair again.
            rec.updated_at = self.inner.clock.now_ms();
            self.inner.store.save_session(&rec).await?;
        }
        let handle = self.spawn(rec, lease);
        Ok(handle.snapshot())
    }

    /// # `POST /api/whatsapp/logout`
    pub async fn logout(&self, pair: Pair) -> SessionResult<LogoutOutcome> {
        let this = self.clone();
        detached(async move { this.logout_now(pair).await }).await
    }

    async fn logout_now(&self, pair: Pair) -> SessionResult<LogoutOutcome> {
        let _guard = self.lock_pair(pair).await;
        if let Some(h) = self.live(pair) {
            let mut state = h.state.clone();
            if h.ask(Command::Logout).await.is_some() {
                let snapshot = state.borrow_and_update().clone();
                return Ok(LogoutOutcome {
                    snapshot,
                    already_logged_out: false,
                });
            }
        }
        let Some(mut rec) = self.inner.store.latest_session(pair).await? else {
            return Err(SessionError::NoSession);
        };
        let already = rec.status == SessionStatus::LoggedOut;
        if let Err(e) = self.inner.engine.forget(&rec.session_id).await {
            return Err(SessionError::Internal(
                anyhow::anyhow!(e).context("delete credentials"),
            ));
        }
        if !already {
            rec.status = SessionStatus::LoggedOut;
            rec.error_message = None;
            rec.updated_at = self.inner.clock.now_ms();
            self.inner.store.save_session(&rec).await?;
            tracing::info!("✅ Session logged out: {}", rec.session_id);
        }
        let (total_contacts, total_groups) = self.inner.store.pair_counts(pair).await?;
        Ok(LogoutOutcome {
            snapshot: Arc::new(SessionSnapshot {
                record: rec,
                qr: None,
                client: None,
                fetch_running: false,
                total_contacts,
                total_groups,
            }),
            already_logged_out: already,
        })
    }

    /// Stops every actor (each stops its fetch at a batch boundary and its client) and
    /// waits for them, bounded.
    pub async fn shutdown(&self) {
        let handles = self.inner.registry.all();
        let mut waits = tokio::task::JoinSet::new();
        for h in handles {
            waits.spawn(async move {
                let _ = h.ask(Command::Shutdown).await;
            });
        }
        let all = async {
            while waits.join_next().await.is_some() {}
            self.inner.actors.close();
            self.inner.actors.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("⚠️ Some sessions did not stop within {SHUTDOWN_GRACE:?}");
        }
    }
}

/// Runs a state change to its end even if the request that asked for it goes away: a
/// client that hangs up must not leave a session row without its actor, or half a logout.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = SessionResult<T>> + Send + 'static,
) -> SessionResult<T> {
    // In the caller's span: the request's id stays on the lines the work logs.
    tokio::spawn(tracing::Instrument::in_current_span(work))
        .await
        .map_err(|e| SessionError::Internal(anyhow::anyhow!("session task failed: {e}")))?
}
