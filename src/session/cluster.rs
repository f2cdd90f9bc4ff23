//! The session manager's side of a cluster: sessions start only under a lease this node
//! took, and the lease loop ([`crate::cluster::leases`]) hands sessions in and out here.

use super::restore::Stopped;
use super::{Command, SessionError, SessionManager, SessionResult};
use crate::cluster::{Cluster, LEASES_CHANNEL};
use crate::domain::{Pair, SessionStatus};
use crate::store::traits::Lease;

impl SessionManager {
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.get()
    }

    /// Before a session starts here: the pair's lease, unless another live node holds it
    /// (then the command belongs there). `None` off a cluster.
    pub(super) async fn take_lease(&self, pair: Pair) -> SessionResult<Option<Lease>> {
        let Some(c) = self.cluster() else {
            return Ok(None);
        };
        let lease_ms = i64::try_from(c.lease().as_millis()).unwrap_or(i64::MAX);
        match c.store().acquire(pair, c.node_id(), lease_ms).await? {
            Some(epoch) => Ok(Some(Lease { pair, epoch })),
            None => Err(SessionError::Moving),
        }
    }

    pub(super) async fn give_up_lease(&self, lease: Option<Lease>) {
        if let (Some(c), Some(lease)) = (self.cluster(), lease)
            && let Err(e) = c.store().drop_lease(lease, c.node_id()).await
        {
            tracing::warn!("⚠️ Cannot drop the lease of {}: {e}", lease.pair);
        }
    }

    /// The pairs whose sessions run here.
    pub fn live_pairs(&self) -> Vec<Pair> {
        self.inner
            .registry
            .all()
            .into_iter()
            .filter(|h| h.is_running())
            .map(|h| h.pair)
            .collect()
    }

    /// Starts the sessions of leases this node just got (claimed after their node was lost
    /// or left, handed over, or held but not running), from what the database says: same
    /// session id, its credentials, no QR. Returns how many started.
    pub async fn run_leased(&self, leases: &[Lease]) -> usize {
        let mut records = Vec::with_capacity(leases.len());
        let mut guards = Vec::with_capacity(leases.len());
        for lease in leases {
            let guard = self.lock_pair(lease.pair).await;
            if self.live(lease.pair).is_some() {
                continue;
            }
            match self.inner.store.latest_session(lease.pair).await {
                Ok(Some(rec)) if !rec.status.is_terminal() => {
                    records.push((rec, Some(*lease)));
                    guards.push(guard);
                }
                Ok(_) => self.give_up_lease(Some(*lease)).await,
                Err(e) => {
                    // Still held: the next round starts it.
                    tracing::warn!("⚠️ Cannot read the session of {}: {e}", lease.pair)
                }
            }
        }
        match self.bring_back(records, Stopped::Node).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("❌ Cannot start sessions this node took over: {e}");
                0
            }
        }
    }

    /// Another node asked for this session: stop it here (its client closed, its record
    /// saved) and give it the lease. A session showing a QR code or fetching contacts stays
    /// (moving it would cost the person their scan or the fetch): the ask is declined.
    pub async fn hand_over(&self, lease: Lease, to: &str) -> bool {
        let Some(c) = self.cluster().cloned() else {
            return false;
        };
        let guard = self.lock_pair(lease.pair).await;
        if let Some(h) = self.live(lease.pair) {
            let status = h.snapshot().status();
            if !matches!(status, SessionStatus::Ready | SessionStatus::Disconnected) {
                if let Err(e) = c.store().decline_handover(lease, c.node_id()).await {
                    tracing::warn!("⚠️ Cannot decline handing {} over: {e}", lease.pair);
                }
                return false;
            }
            let _ = h.ask(Command::Shutdown).await;
        }
        let lease_ms = i64::try_from(c.lease().as_millis()).unwrap_or(i64::MAX);
        let handed = c.store().hand_over(lease, c.node_id(), to, lease_ms).await;
        // Starting it here again takes the lock anew.
        drop(guard);
        match handed {
            Ok(Some(to)) => {
                if let Err(e) = c.signals().notify(LEASES_CHANNEL, &to).await {
                    // It finds the lease at its next heartbeat.
                    tracing::warn!("⚠️ Cannot wake node {to}: {e}");
                }
                tracing::info!("🔄 Session of {} handed over to node {to}", lease.pair);
                true
            }
            Ok(None) => {
                // The asker is gone: run it here again.
                self.run_leased(&[lease]).await;
                false
            }
            Err(e) => {
                tracing::warn!("⚠️ Cannot hand {} over: {e}", lease.pair);
                self.run_leased(&[lease]).await;
                false
            }
        }
    }

    /// Stops the session here without another word to the database when the lease is not
    /// this node's anymore (taken over while this node could not renew). Looked at again
    /// under the pair's lock: an `init` may have just taken it.
    pub async fn let_go_unless_ours(&self, pair: Pair) {
        let _guard = self.lock_pair(pair).await;
        let Some(c) = self.cluster() else {
            return;
        };
        if matches!(c.owner(pair).await, Ok(Some(n)) if n == c.node_id()) {
            return;
        }
        if let Some(h) = self.live(pair) {
            tracing::warn!("⚠️ Session of {pair} now runs on another node: stopping it here");
            let _ = h.ask(Command::Shutdown).await;
        }
    }

    /// Stops every session here: this node cannot renew its leases, so another node may
    /// take them once they run out, and must not find them still connected here.
    pub async fn let_go_all(&self) {
        let mut stops = tokio::task::JoinSet::new();
        for h in self.inner.registry.all() {
            stops.spawn(async move {
                let _ = h.ask(Command::Abandon).await;
            });
        }
        while stops.join_next().await.is_some() {}
    }
}
