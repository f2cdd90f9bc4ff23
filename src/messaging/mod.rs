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
pub mod media;
pub mod numbers;
pub mod pacing;
pub mod templates;
pub mod thumbnail;
mod worker;

use worker::Worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::domain::{Pair, PhoneNumber};
use crate::engine::{EngineClient, EngineError, OutgoingMedia, OutgoingMessage};
use crate::events::{EventBus, EventKind};
use crate::session::SessionManager;
use crate::store::prelude::*;
use crate::store::traits::Signals;
use crate::store::{MessageKind, MessageRecord, NewJob, NewMessage, keep_trying};
use pacing::{DAY_MS, Pacer, Pacing};

pub const MAX_TEXT_CHARS: usize = 4_096;
/// Attempts that never got an answer from WhatsApp (a timeout, a dropped connection while
/// sending) before a message is recorded as failed.
const MAX_ATTEMPTS: i64 = 5;
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting worker looks again (a session that appears, a clock moved by hand).
const RECHECK: Duration = Duration::from_secs(2);
/// A fetched file is reused for the next messages with the same source (a group send).
const MEDIA_REUSE: Duration = Duration::from_secs(600);

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
    /// Where files sent by `media_id` are read.
    uploads: Arc<dyn MediaStore>,
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
        uploads: Arc<dyn MediaStore>,
        manager: SessionManager,
        events: EventBus,
        clock: SharedClock,
        pacing: Pacing,
        images: image::Images,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                uploads,
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

    pub fn uploads(&self) -> &Arc<dyn MediaStore> {
        &self.inner.uploads
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
        job: Option<NewJob>,
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
