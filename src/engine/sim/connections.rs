//! The connections of linked devices to the simulated WhatsApp, as WhatsApp sees them: one
//! open connection per device. Each is a `sim_connections` row (node, opened, closed, why),
//! so a test can prove no device ever had two live connections, whichever node they ran on.
//!
//! A connection opens when a linked client connects (right after its phone linked it, at a
//! restart with its credentials, after every reconnect) and closes when it stops. A client
//! showing QR codes is not recorded: WhatsApp sees a connection then, but of no device yet,
//! so there is nothing it could replace.
//!
//! A second connection of a device while one is open replaces the first, as WhatsApp does:
//! the first is closed as `replaced` in the same transaction and its client learns it at
//! once when it runs in this process, through `NOTIFY wam_sim` when it runs on another node,
//! and from a look at its node's open rows every few seconds whatever happened to the
//! notification. A connection whose node is dead is closed as `connection_lost` instead:
//! WhatsApp drops a dead TCP connection, it does not count as replaced.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::client::{ClientShared, Control};
use super::lock;
use super::network::{Inner, SimNetwork};
use crate::domain::Pair;
use crate::store::traits::{Signal, SimCloseReason, SimConnection};

/// The channel a node tells the others on that it closed one of their connections; the
/// payload is the connection's id (its row says why).
pub const SIM_CHANNEL: &str = "wam_sim";

/// How often a node looks at its own open rows, in case a notification was lost.
const LOOK_EVERY: Duration = Duration::from_secs(3);

/// How long a stopping client waits to record its close before it goes anyway: a database
/// that is down must not hold a server's stop.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl SimNetwork {
    /// Records that the client connected; tells the device's earlier connection (here or on
    /// its node) that it was replaced. Not recorded when the database cannot say: the
    /// client still connects, as the real one would whatever our database does.
    pub(super) async fn open_connection(&self, shared: &Arc<ClientShared>) {
        let inner = &self.inner;
        let opened = match inner
            .store
            .open_sim_connection(
                shared.pair,
                &shared.session_id,
                &inner.node.id,
                inner.clock.now_ms(),
            )
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(
                    "⚠️ Simulated engine cannot record the connection of {}: {e}",
                    shared.session_id
                );
                return;
            }
        };
        lock(&inner.open).insert(opened.id, shared.clone());
        shared.connection.store(opened.id, Ordering::SeqCst);
        for (id, node, reason) in opened.closed {
            if node == inner.node.id {
                self.tell_closed(id, reason);
            } else if let Some(signals) = &inner.node.signals
                && let Err(e) = signals.notify(SIM_CHANNEL, &id.to_string()).await
            {
                // Its node finds out from its own rows within `LOOK_EVERY`.
                tracing::warn!("⚠️ Simulated engine cannot notify node {node}: {e}");
            }
        }
        // Stopped while the row was written: the stop found nothing to close.
        if !shared.alive.load(Ordering::SeqCst) {
            self.close_connection(shared, SimCloseReason::Closed).await;
        }
    }

    /// Closes the client's open connection, if it has one and nobody closed it already.
    pub(super) async fn close_connection(&self, shared: &ClientShared, reason: SimCloseReason) {
        let id = shared.connection.swap(0, Ordering::SeqCst);
        if id == 0 {
            return;
        }
        // Gone from the open ones first, so a look at the rows meanwhile does not take our
        // own close for someone else's.
        lock(&self.inner.open).remove(&id);
        let now = self.inner.clock.now_ms();
        let closing = self.inner.store.close_sim_connection(id, reason, now);
        match tokio::time::timeout(CLOSE_GRACE, closing).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(
                    "⚠️ Simulated engine cannot record the close of connection {id}: {e}"
                )
            }
            Err(_) => tracing::warn!(
                "⚠️ Simulated engine gave up recording the close of connection {id} after {CLOSE_GRACE:?}"
            ),
        }
    }

    /// Hands the news to the client of a connection of this node that someone closed.
    fn tell_closed(&self, id: i64, reason: SimCloseReason) {
        if let Some(client) = lock(&self.inner.open).remove(&id) {
            let _ = client.control.send(Control::Closed { id, reason });
        }
    }

    /// The row of one of this node's connections says why it closed: tell its client.
    async fn look_at(&self, id: i64) {
        let reason = match self.inner.store.sim_connection(id).await {
            Ok(Some(SimConnection {
                closed_at: None, ..
            })) => return,
            Ok(Some(c)) => c
                .reason
                .as_deref()
                .and_then(SimCloseReason::parse)
                .unwrap_or(SimCloseReason::ConnectionLost),
            // Deleted behind our back: as good as dropped.
            Ok(None) => SimCloseReason::ConnectionLost,
            Err(e) => {
                tracing::warn!("⚠️ Simulated engine cannot read connection {id}: {e}");
                return;
            }
        };
        self.tell_closed(id, reason);
    }

    /// Every connection of this node whose row is closed, told to its client.
    async fn look_at_open_rows(&self) {
        // Taken before the query: a connection opened after it started is not in its answer.
        let ours: Vec<i64> = lock(&self.inner.open).keys().copied().collect();
        if ours.is_empty() {
            return;
        }
        let open: HashSet<i64> = match self
            .inner
            .store
            .open_sim_connections_of(&self.inner.node.id)
            .await
        {
            Ok(ids) => ids.into_iter().collect(),
            Err(e) => {
                tracing::warn!("⚠️ Simulated engine cannot read its open connections: {e}");
                return;
            }
        };
        for id in ours.into_iter().filter(|id| !open.contains(id)) {
            self.look_at(id).await;
        }
    }

    /// At start: closes what this node's earlier process left open (it died with them),
    /// then keeps this node's clients told of the connections others close.
    pub async fn start_node(&self) -> anyhow::Result<()> {
        let inner = &self.inner;
        let left = inner
            .store
            .close_sim_connections_of(
                &inner.node.id,
                SimCloseReason::ConnectionLost,
                inner.clock.now_ms(),
            )
            .await?;
        if left > 0 {
            tracing::info!("ℹ️ Closed {left} simulated connections an earlier process left open");
        }
        let signals = match &inner.node.signals {
            Some(s) => Some(s.listen(&[SIM_CHANNEL]).await?),
            None => None,
        };
        tokio::spawn(watch(Arc::downgrade(&self.inner), signals));
        Ok(())
    }

    /// Every connection of the pair, oldest first.
    pub async fn connections(&self, pair: Pair) -> anyhow::Result<Vec<SimConnection>> {
        Ok(self.inner.store.sim_connections(pair).await?)
    }
}

/// Until the network is gone: notified ids looked at, and every node's open rows now and then.
async fn watch(net: Weak<Inner>, mut signals: Option<mpsc::Receiver<Signal>>) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let signal = tokio::select! {
            s = async { signals.as_mut()?.recv().await }, if signals.is_some() => match s {
                Some(s) => Some(s),
                None => {
                    // The listener is gone for good: the look at the rows is all there is.
                    signals = None;
                    continue;
                }
            },
            _ = every.tick() => None,
        };
        let Some(inner) = net.upgrade() else { return };
        let net_now = SimNetwork { inner };
        match signal {
            Some(Signal::Notified { payload, .. }) => {
                let id = payload.parse::<i64>().ok();
                if let Some(id) = id.filter(|id| lock(&net_now.inner.open).contains_key(id)) {
                    net_now.look_at(id).await;
                }
            }
            Some(Signal::Reconnected) | None => net_now.look_at_open_rows().await,
        }
    }
}
