//! Events of every session, in order: persisted first, then pushed to server-sent-event
//! listeners and queued for the tenant's webhook (see [`webhook`]).

pub mod nodes;
pub mod webhook;

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::clock::{SharedClock, rfc3339_ms};
use crate::domain::{Pair, SessionId};
use crate::store::prelude::*;
use crate::store::traits::Signals;
use crate::store::{EventRecord, keep_trying};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SessionStatus,
    ContactsFetchCompleted,
    MessageReceived,
    MessageSent,
    MessageFailed,
    /// The recipient's phone got a sent message.
    MessageDelivered,
    /// The recipient opened a sent message, or played a voice note (`status: played`).
    MessageRead,
    /// A contact wrote an opt-out word.
    ContactOptedOut,
}

impl EventKind {
    pub const ALL: [Self; 8] = [
        Self::SessionStatus,
        Self::ContactsFetchCompleted,
        Self::MessageReceived,
        Self::MessageSent,
        Self::MessageFailed,
        Self::MessageDelivered,
        Self::MessageRead,
        Self::ContactOptedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStatus => "session.status",
            Self::ContactsFetchCompleted => "contacts.fetch.completed",
            Self::MessageReceived => "message.received",
            Self::MessageSent => "message.sent",
            Self::MessageFailed => "message.failed",
            Self::MessageDelivered => "message.delivered",
            Self::MessageRead => "message.read",
            Self::ContactOptedOut => "contact.opted_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Listeners that fall this far behind lose the oldest events (and are told so); the
/// database keeps them all.
const LIVE_BUFFER: usize = 1_024;

#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn EventStore>,
    clock: SharedClock,
    live: broadcast::Sender<Arc<EventRecord>>,
    /// Wakes the webhook dispatcher when a delivery was queued.
    queued: Notify,
    /// Counted by the places that see the facts, which all hold this bus.
    metrics: crate::metrics::Metrics,
    /// Set on a node of a cluster: listeners then get every event, this node's too, from
    /// the [`nodes::Follower`], which puts them in id order per tenant.
    nodes: OnceLock<Nodes>,
}

struct Nodes {
    node_id: String,
    signals: Arc<dyn Signals>,
    /// The events this node recorded, `(id, tenant)`; the follower holds the other end.
    /// Unbounded: a burst of events (a restore) must not wait for the follower to start.
    recorded: mpsc::UnboundedSender<(i64, crate::domain::UserId)>,
}

impl EventBus {
    pub fn new(store: Arc<dyn EventStore>, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                live: broadcast::channel(LIVE_BUFFER).0,
                queued: Notify::new(),
                metrics: crate::metrics::Metrics::new(),
                nodes: OnceLock::new(),
            }),
        }
    }

    /// Makes this bus one node's view of the cluster's events: what it records is told to
    /// the other nodes, and its listeners get theirs. The follower must then run
    /// ([`nodes::Follower::run`]), or this node's listeners hear nothing. `None` when called
    /// twice.
    pub(crate) fn join_nodes(
        &self,
        node_id: &str,
        signals: Arc<dyn Signals>,
    ) -> Option<mpsc::UnboundedReceiver<(i64, crate::domain::UserId)>> {
        let (recorded, rx) = mpsc::unbounded_channel();
        self.inner
            .nodes
            .set(Nodes {
                node_id: node_id.to_owned(),
                signals,
                recorded,
            })
            .ok()?;
        Some(rx)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// This application's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// Records the event, then tells listeners. The body every listener and webhook gets is
    /// `{id, event, user_id, place_id, session_id, timestamp, data}`. A database busy with
    /// other writers delays the event; only one that stays unwritable for
    /// [`BACKGROUND_RETRY_FOR`](crate::store::BACKGROUND_RETRY_FOR) loses it (logged). Cancel
    /// by dropping the future.
    pub async fn emit(
        &self,
        pair: Pair,
        session_id: Option<&SessionId>,
        kind: EventKind,
        data: Value,
    ) {
        let now = self.inner.clock.now_ms();
        let session = session_id.map(|s| s.as_str().to_owned());
        let body = |id: i64| {
            json!({
                "id": id,
                "event": kind.as_str(),
                "user_id": pair.user_id,
                "place_id": pair.place_id,
                "session_id": session,
                "timestamp": rfc3339_ms(now),
                "data": data,
            })
            .to_string()
        };
        let store = &self.inner.store;
        let what = format!("Recording event {} for {pair}", kind.as_str());
        match keep_trying(what, None, || {
            store.record_event(pair, session_id, kind.as_str(), &body, now)
        })
        .await
        {
            Ok((event, queued)) => {
                if queued {
                    self.inner.queued.notify_one();
                }
                match self.inner.nodes.get() {
                    Some(nodes) => nodes.tell(&event, queued),
                    // Nobody listening is not an error.
                    None => {
                        let _ = self.inner.live.send(Arc::new(event));
                    }
                }
            }
            Err(e) => tracing::error!("❌ Cannot record event {} for {pair}: {e:#}", kind.as_str()),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.inner.live.subscribe()
    }

    pub(crate) fn queued(&self) -> &Notify {
        &self.inner.queued
    }

    /// Whether other nodes may share this bus's database (their dispatchers then too).
    pub(crate) fn clustered(&self) -> bool {
        self.inner.nodes.get().is_some()
    }

    /// Hands an event to this node's listeners; the follower calls it in id order per tenant.
    fn publish(&self, event: EventRecord) {
        // Nobody listening is not an error.
        let _ = self.inner.live.send(Arc::new(event));
    }
}

impl Nodes {
    /// The follower puts the event among the others' in order; the other nodes hear of it
    /// with a small NOTIFY and read it from the table.
    fn tell(&self, event: &EventRecord, queued: bool) {
        // The follower is gone only with the server.
        let _ = self.recorded.send((event.id, event.pair.user_id));
        let payload = nodes::EventNote {
            id: event.id,
            user_id: event.pair.user_id,
            queued,
            node_id: self.node_id.clone(),
        }
        .to_string();
        let signals = self.signals.clone();
        // Not awaited: the actor that emitted goes on; the others replay what a lost NOTIFY
        // did not tell them once their listening connection is back.
        tokio::spawn(async move {
            if let Err(e) = signals.notify(nodes::EVENTS_CHANNEL, &payload).await {
                tracing::warn!("⚠️ Cannot tell the other nodes of event {payload}: {e:#}");
            }
        });
    }
}
