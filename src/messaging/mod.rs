//! The durable outbox: every send is a row first; one worker per number sends the rows in
//! order at that number's pace, only while its session is `ready`, and records each outcome.
//!
//! Exactly once: a message's WhatsApp id is chosen when it is queued and kept for every
//! attempt. A send cut short by a stop or crash (still `sending`) is sent again after the
//! restart under the same id, which WhatsApp's clients treat as the same message.
//!
//! On a node of a cluster a number's worker runs only where its session runs: a node that
//! queues for a number it does not run tells the others (the owner wakes its worker), a node
//! wakes the worker of each session that starts running on it (a takeover finds the
//! messages, and the `sending` one its dead node cut short), and a worker whose session is
//! no longer here ends.

pub mod content;
pub mod image;
pub mod pacing;
pub mod templates;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::domain::{Pair, PhoneNumber};
use crate::engine::{EngineClient, EngineError, OutgoingImage, OutgoingMessage};
use crate::events::{EventBus, EventKind};
use crate::session::SessionManager;
use crate::store::prelude::*;
use crate::store::traits::Signals;
use crate::store::{JobKind, MessageKind, MessageRecord, NewMessage, keep_trying};
use pacing::{DAY_MS, Pacer, Pacing};

pub const MAX_TEXT_CHARS: usize = 4_096;
/// Attempts that never got an answer from WhatsApp (a timeout, a dropped connection while
/// sending) before a message is recorded as failed.
const MAX_ATTEMPTS: i64 = 5;
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting worker looks again (a session that appears, a clock moved by hand).
const RECHECK: Duration = Duration::from_secs(2);
/// A fetched image is reused for the next messages with the same URL (a group send).
const IMAGE_REUSE: Duration = Duration::from_secs(600);

/// A WhatsApp message id in the form WhatsApp Web uses: `3EB0` and 16 random hex bytes.
pub fn new_message_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Unique enough without the OS's randomness: time and a process-wide counter.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&n.to_le_bytes());
    }
    let mut id = String::from("3EB0");
    for x in b {
        id.push_str(&format!("{x:02X}"));
    }
    id
}

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn OutboxStore>,
    manager: SessionManager,
    events: EventBus,
    clock: SharedClock,
    pacing: Pacing,
    images: image::Images,
    workers: Mutex<HashMap<Pair, Arc<Notify>>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Set on a node of a cluster: where it tells the others of messages for numbers it
    /// does not run.
    signals: OnceLock<Arc<dyn Signals>>,
}

impl Outbox {
    pub fn new(
        store: Arc<dyn OutboxStore>,
        manager: SessionManager,
        events: EventBus,
        clock: SharedClock,
        pacing: Pacing,
        images: image::Images,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                manager,
                events,
                clock,
                pacing,
                images,
                workers: Mutex::default(),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                signals: OnceLock::new(),
            }),
        }
    }

    /// Makes this outbox one node's: workers only for the numbers whose sessions run here.
    /// Before [`Self::start`].
    pub fn join_nodes(&self, signals: Arc<dyn Signals>) {
        // Set once, at start-up.
        let _ = self.inner.signals.set(signals);
    }

    pub fn store(&self) -> &Arc<dyn OutboxStore> {
        &self.inner.store
    }

    pub fn pacing(&self) -> Pacing {
        self.inner.pacing
    }

    pub fn images(&self) -> &image::Images {
        &self.inner.images
    }

    /// Starts a worker for every number with messages left from before the restart; on a
    /// node of a cluster, for those whose sessions run here, and from now on for each
    /// session that starts running here.
    pub async fn start(&self) -> anyhow::Result<usize> {
        if self.inner.signals.get().is_some() {
            // Subscribed before the look at the queue, so no start falls between the two.
            let mut started = self.inner.manager.subscribe_started();
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                loop {
                    let next = tokio::select! {
                        r = started.recv() => r,
                        () = this.inner.cancel.cancelled() => return,
                    };
                    match next {
                        Ok(pair) => this.wake_here(pair),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            this.resume_here().await;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        let pairs = self.inner.store.pairs_with_pending().await?;
        for p in &pairs {
            self.wake_here(*p);
        }
        Ok(pairs.len())
    }

    /// Wakes the pair's worker if its session runs here (another node asked, or the session
    /// just started here).
    pub fn wake_here(&self, pair: Pair) {
        if self.inner.manager.live(pair).is_some() {
            self.wake(pair);
        }
    }

    /// Wakes the worker of every number with messages to send whose session runs here: what
    /// this node may have missed hearing.
    pub async fn resume_here(&self) {
        match self.inner.store.pairs_with_pending().await {
            Ok(pairs) => pairs.into_iter().for_each(|p| self.wake_here(p)),
            Err(e) => tracing::warn!("⚠️ Cannot look for numbers with messages to send: {e:#}"),
        }
    }

    /// Queues messages (one transaction) and wakes the pair's worker; the rows as queued,
    /// before the worker could touch them.
    pub async fn enqueue(
        &self,
        pair: Pair,
        job: Option<(JobKind, Option<i64>)>,
        messages: &[NewMessage],
    ) -> anyhow::Result<(Option<i64>, Vec<MessageRecord>)> {
        let out = self
            .inner
            .store
            .enqueue(pair, job, messages, self.inner.clock.now_ms())
            .await?;
        self.wake(pair);
        Ok(out)
    }

    /// Makes sure the pair's worker runs and looks at its queue now; on a node of a cluster
    /// that does not run the pair's session, tells the node that does.
    pub fn wake(&self, pair: Pair) {
        if self.inner.cancel.is_cancelled() {
            return;
        }
        let mut workers = self.inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        // Under the workers' lock, as a worker's decision to end (`Inner::end_worker`).
        if let Some(signals) = self.inner.signals.get()
            && self.inner.manager.live(pair).is_none()
        {
            drop(workers);
            let signals = signals.clone();
            // Not awaited: queuing is done; a lost note leaves the messages for the owner's
            // next look (its session's next start, or its node hearing the others again).
            tokio::spawn(async move {
                let note = crate::events::nodes::pair_note(pair);
                if let Err(e) = signals
                    .notify(crate::events::nodes::OUTBOX_CHANNEL, &note)
                    .await
                {
                    tracing::warn!("⚠️ Cannot tell the node of {pair} about its messages: {e:#}");
                }
            });
            return;
        }
        if let Some(n) = workers.get(&pair) {
            n.notify_one();
            return;
        }
        let notify = Arc::new(Notify::new());
        workers.insert(pair, notify.clone());
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            Worker::new(inner, pair, notify).await.run().await;
        });
    }

    /// Stops every worker. A send under way is cut short and stays `sending`: it goes again,
    /// under the same id, after the next start.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    /// Ends the pair's worker (the one woken by `notify`) unless its session runs here.
    /// Decided under the workers' lock, as [`Outbox::wake`] decides: a wake either reaches a
    /// worker that stays, or finds none and starts one, or tells the session's node.
    fn end_worker(&self, pair: Pair, notify: &Arc<Notify>) -> bool {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if self.manager.live(pair).is_some() {
            return false;
        }
        if workers.get(&pair).is_some_and(|n| Arc::ptr_eq(n, notify)) {
            workers.remove(&pair);
        }
        true
    }
}

struct Worker {
    inner: Arc<Inner>,
    pair: Pair,
    notify: Arc<Notify>,
    pacer: Pacer,
    image: Option<(String, OutgoingImage, tokio::time::Instant)>,
}

enum Outcome {
    Sent(String),
    Failed(String),
    /// Never reached WhatsApp: back to the queue.
    Interrupted,
}

impl Worker {
    async fn new(inner: Arc<Inner>, pair: Pair, notify: Arc<Notify>) -> Self {
        let since_last = match inner.store.last_sent_at(pair).await {
            Ok(Some(at)) => Some(Duration::from_millis(
                (inner.clock.now_ms() - at).max(0) as u64
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("⚠️ Cannot read when {pair} last sent; pacing from now: {e:#}");
                Some(Duration::ZERO)
            }
        };
        let pacer = Pacer::new(inner.pacing, since_last);
        Self {
            inner,
            pair,
            notify,
            pacer,
            image: None,
        }
    }

    /// Sleeps, unless cancelled (then false).
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.inner.cancel.cancelled() => false,
        }
    }

    async fn run(mut self) {
        loop {
            if self.inner.cancel.is_cancelled() {
                return;
            }
            let msg = match self.inner.store.next_pending(self.pair).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if self.idle().await {
                        continue;
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!("❌ Cannot read the outbox of {}: {e:#}", self.pair);
                    if !self.pause(RECHECK).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(client) = self.wait_ready().await else {
                return;
            };
            // The daily cap, counted from the database so a restart does not reset it.
            let now = self.inner.clock.now_ms();
            match self.inner.store.sent_since(self.pair, now - DAY_MS).await {
                Ok((n, oldest)) => {
                    if let Some(wait) = self.pacer.cap_wait(n, oldest, now) {
                        tracing::info!(
                            "ℹ️ {} reached its daily cap of {} messages; the next goes in {}s",
                            self.pair,
                            self.inner.pacing.daily_cap,
                            wait.as_secs()
                        );
                        if !self.pause(wait.min(RECHECK)).await {
                            return;
                        }
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!("❌ Cannot count the sends of {}: {e:#}", self.pair);
                    if !self.pause(RECHECK).await {
                        return;
                    }
                    continue;
                }
            }
            let gap = Duration::from_millis(msg.min_gap_ms.max(0) as u64);
            tokio::select! {
                () = self.pacer.wait(gap) => {}
                () = self.inner.cancel.cancelled() => return,
            }
            // The session may have dropped while waiting for the pace.
            let client = if client.is_alive() {
                client
            } else {
                continue;
            };
            let (store, now) = (&self.inner.store, self.inner.clock.now_ms());
            let marked = keep_trying(
                format!("Marking message {} as sending", msg.id),
                Some(&self.inner.cancel),
                || store.mark_sending(msg.id, now),
            )
            .await;
            if let Err(e) = marked {
                if self.inner.cancel.is_cancelled() {
                    return;
                }
                // Not sent, still queued: it is tried again.
                tracing::error!("❌ Cannot mark message {} as sending: {e:#}", msg.id);
                if !self.pause(RECHECK).await {
                    return;
                }
                continue;
            }
            let cancel = self.inner.cancel.clone();
            let outcome = tokio::select! {
                o = self.deliver(client.as_ref(), &msg) => o,
                () = cancel.cancelled() => return,
            };
            self.record(&msg, outcome).await;
        }
    }

    /// Waits for a wake with nothing to send; false when the worker should end (a stop, or
    /// its session no longer runs on this node).
    async fn idle(&self) -> bool {
        loop {
            tokio::select! {
                () = self.notify.notified() => return true,
                () = self.inner.cancel.cancelled() => return false,
                // Only the registry is looked at, not the queue: a wake says when to look.
                () = tokio::time::sleep(RECHECK), if self.inner.signals.get().is_some() => {
                    if self.inner.end_worker(self.pair, &self.notify) {
                        return false;
                    }
                }
            }
        }
    }

    /// The live client once the session is ready; `None` when stopping, or on a node of a
    /// cluster when the session does not run here (its node sends).
    async fn wait_ready(&self) -> Option<Arc<dyn EngineClient>> {
        loop {
            match self.inner.manager.live(self.pair) {
                Some(h) => {
                    let mut state = h.state.clone();
                    let snap = state.borrow_and_update().clone();
                    if snap.client_ready()
                        && let Some(c) = snap.client.clone()
                    {
                        return Some(c);
                    }
                    tokio::select! {
                        _ = state.changed() => {}
                        () = tokio::time::sleep(RECHECK) => {}
                        () = self.inner.cancel.cancelled() => return None,
                    }
                }
                None => {
                    if self.inner.signals.get().is_some()
                        && self.inner.end_worker(self.pair, &self.notify)
                    {
                        return None;
                    }
                    if !self.pause(RECHECK).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn image_for(&mut self, url: &str) -> Result<OutgoingImage, String> {
        if let Some((u, img, at)) = &self.image
            && u == url
            && at.elapsed() < IMAGE_REUSE
        {
            return Ok(img.clone());
        }
        let fetched = self
            .inner
            .images
            .fetch(url)
            .await
            .map_err(|e| format!("image_url: {e}"))?;
        let img = OutgoingImage {
            bytes: Arc::new(fetched.bytes),
            mime: fetched.mime,
        };
        self.image = Some((url.to_owned(), img.clone(), tokio::time::Instant::now()));
        Ok(img)
    }

    async fn deliver(&mut self, client: &dyn EngineClient, msg: &MessageRecord) -> Outcome {
        let Some(to) = PhoneNumber::parse_international(&msg.recipient) else {
            return Outcome::Failed(format!("{} is not a valid phone number", msg.recipient));
        };
        if msg
            .body
            .as_ref()
            .is_some_and(|b| b.chars().count() > MAX_TEXT_CHARS)
        {
            return Outcome::Failed(format!(
                "the text is longer than {MAX_TEXT_CHARS} characters once its variables are filled"
            ));
        }
        let image = match (msg.kind, msg.image_url.as_deref()) {
            (MessageKind::Image, Some(url)) => match self.image_for(url).await {
                Ok(i) => Some(i),
                Err(reason) => return Outcome::Failed(reason),
            },
            _ => None,
        };
        let out = OutgoingMessage {
            id: msg.wa_message_id.clone(),
            to,
            text: msg.body.clone(),
            image,
        };
        match tokio::time::timeout(SEND_TIMEOUT, client.send(&out)).await {
            Ok(Ok(id)) => Outcome::Sent(id),
            Ok(Err(EngineError::NotConnected | EngineError::ClientGone | EngineError::Busy(_))) => {
                Outcome::Interrupted
            }
            Ok(Err(EngineError::RateLimited(why))) => {
                tracing::warn!("⚠️ WhatsApp asks {} to slow down: {why}", self.pair);
                Outcome::Interrupted
            }
            Ok(Err(EngineError::Invalid(why) | EngineError::Failed(why))) => Outcome::Failed(why),
            Err(_) => Outcome::Interrupted,
        }
    }

    async fn record(&mut self, msg: &MessageRecord, outcome: Outcome) {
        let now = self.inner.clock.now_ms();
        let session_id = self
            .inner
            .manager
            .live(self.pair)
            .map(|h| h.snapshot().record.session_id.clone());
        let data = |extra: serde_json::Value| {
            let mut d = json!({
                "message_id": msg.id,
                "job_id": msg.job_id,
                "contact_id": msg.contact_id,
                "recipient": msg.recipient,
                "type": msg.kind.as_str(),
            });
            if let (Some(d), serde_json::Value::Object(e)) = (d.as_object_mut(), extra) {
                d.extend(e);
            }
            d
        };
        match outcome {
            Outcome::Sent(wa_id) => {
                self.pacer.sent();
                // Unrecorded, the message would go again (under the same id, which WhatsApp
                // shows once, but still a second send): wait for a busy database.
                let store = &self.inner.store;
                let recorded = keep_trying(
                    format!("Recording message {} as sent", msg.id),
                    Some(&self.inner.cancel),
                    || store.mark_sent(msg.id, &wa_id, now),
                )
                .await;
                if let Err(e) = recorded {
                    tracing::error!(
                        "❌ Message {} was sent but cannot be recorded: {e:#}",
                        msg.id
                    );
                }
                tracing::info!("✅ Message {} sent by {}", msg.id, self.pair);
                self.tell(
                    session_id,
                    EventKind::MessageSent,
                    data(json!({ "whatsapp_message_id": wa_id })),
                )
                .await;
            }
            Outcome::Failed(reason) => {
                self.pacer.sent();
                self.fail(msg, &reason, session_id, data(json!({ "error": reason })))
                    .await;
            }
            Outcome::Interrupted if msg.attempts + 1 >= MAX_ATTEMPTS => {
                let reason =
                    format!("WhatsApp did not confirm the send after {MAX_ATTEMPTS} attempts");
                self.fail(msg, &reason, session_id, data(json!({ "error": reason })))
                    .await;
            }
            Outcome::Interrupted => {
                let store = &self.inner.store;
                let requeued = keep_trying(
                    format!("Putting message {} back in the queue", msg.id),
                    Some(&self.inner.cancel),
                    || store.requeue(msg.id, now),
                )
                .await;
                if let Err(e) = requeued {
                    tracing::error!("❌ Cannot put message {} back in the queue: {e:#}", msg.id);
                }
                // Give a dropping connection a moment before the next look.
                self.pause(Duration::from_millis(500)).await;
            }
        }
    }

    async fn fail(
        &self,
        msg: &MessageRecord,
        reason: &str,
        session_id: Option<crate::domain::SessionId>,
        data: serde_json::Value,
    ) {
        let (store, now) = (&self.inner.store, self.inner.clock.now_ms());
        let recorded = keep_trying(
            format!("Recording the failure of message {}", msg.id),
            Some(&self.inner.cancel),
            || store.mark_failed(msg.id, reason, now),
        )
        .await;
        if let Err(e) = recorded {
            tracing::error!("❌ Cannot record the failure of message {}: {e:#}", msg.id);
        }
        tracing::warn!("⚠️ Message {} of {} failed: {reason}", msg.id, self.pair);
        self.tell(session_id, EventKind::MessageFailed, data).await;
    }

    /// Tells an outcome as an event. The event waits for a busy database, but a stop does not
    /// wait for the event.
    async fn tell(
        &self,
        session_id: Option<crate::domain::SessionId>,
        kind: EventKind,
        data: serde_json::Value,
    ) {
        let told = self
            .inner
            .events
            .emit(self.pair, session_id.as_ref(), kind, data);
        tokio::select! {
            () = told => {}
            () = self.inner.cancel.cancelled() => {}
        }
    }
}
