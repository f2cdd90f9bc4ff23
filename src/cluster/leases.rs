//! The lease loop of one node: its heartbeat and the renewal of its leases every third of a
//! lease, its fair share of the sessions claimed every second, sessions handed over when
//! another node asks, and all of them released when it leaves.
//!
//! Safety first: a node that could not renew for half a lease stops every client it runs,
//! well before its leases can run out and another node may connect the same devices; and
//! each actor's writes check the lease's epoch (see `session::actor`'s fence).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Cluster, LEASES_CHANNEL};
use crate::domain::Pair;
use crate::session::SessionManager;
use crate::store::traits::{Census, Signal};

/// How often a node looks for sessions to claim or ask for.
const ROUND: Duration = Duration::from_secs(1);
/// Rounds with sessions nobody runs before a node at its share claims them anyway (a node
/// counted alive may be unable to claim).
const ORPHAN_ROUNDS: u32 = 3;

/// The running loop; [`LeaseLoop::leave`] ends it with a handover.
pub struct LeaseLoop {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    cluster: Cluster,
}

struct Node {
    cluster: Cluster,
    manager: SessionManager,
    lease_ms: i64,
    rebalance_per_second: f64,
    /// When the last renewal that went through started; the watchdog reads it.
    renewed: watch::Sender<Instant>,
    /// Sessions this node may ask for now (rebalance budget).
    credit: f64,
    orphan_rounds: u32,
    /// Clients were stopped for want of renewals (set by the watchdog).
    cut_off: Arc<AtomicBool>,
}

impl LeaseLoop {
    /// Gives a lease to every session that should run, takes this node's share and starts
    /// those sessions, then keeps going in the background.
    pub async fn start(
        cluster: Cluster,
        manager: SessionManager,
        rebalance_per_second: f64,
    ) -> anyhow::Result<Self> {
        let seeded = cluster.store().seed_leases().await?;
        if seeded > 0 {
            tracing::info!("ℹ️ {seeded} sessions that should run got a lease");
        }
        let lease_ms = i64::try_from(cluster.lease().as_millis()).unwrap_or(i64::MAX);
        let mut node = Node {
            cluster: cluster.clone(),
            manager,
            lease_ms,
            rebalance_per_second,
            renewed: watch::channel(Instant::now()).0,
            credit: 0.0,
            orphan_rounds: 0,
            cut_off: Arc::new(AtomicBool::new(false)),
        };
        // Before the node listens, like a single server's restore.
        if !node.renew().await {
            anyhow::bail!(
                "another process took node id {} at start",
                cluster.node_id()
            );
        }
        node.claim_round(Duration::ZERO).await;
        let signals = match cluster.signals().listen(&[LEASES_CHANNEL]).await {
            Ok(rx) => Some(rx),
            Err(e) => {
                tracing::warn!("⚠️ Cannot listen for other nodes; relying on rounds: {e}");
                None
            }
        };
        let cancel = CancellationToken::new();
        // On its own task: a loop stuck in a call to a database that does not answer must
        // not delay the stop of the clients.
        tokio::spawn(watchdog(
            node.renewed.subscribe(),
            cluster.lease() / 2,
            node.manager.clone(),
            node.cut_off.clone(),
            cancel.clone(),
        ));
        let task = tokio::spawn(node.run(signals, cancel.clone()));
        Ok(Self {
            cancel,
            task,
            cluster,
        })
    }

    /// The node stops: every session here is stopped, then its lease released and the other
    /// nodes woken, so they run again elsewhere within seconds rather than after the lease.
    pub async fn leave(self, manager: &SessionManager) {
        let c = &self.cluster;
        if let Err(e) = c
            .store()
            .set_node_state(c.node_id(), c.incarnation(), "leaving")
            .await
        {
            tracing::warn!("⚠️ Cannot tell the cluster this node is leaving: {e}");
        }
        self.cancel.cancel();
        let _ = self.task.await;
        manager.shutdown().await;
        match c.store().release_all(c.node_id()).await {
            Ok(n) => {
                if let Err(e) = c.signals().notify(LEASES_CHANNEL, "*").await {
                    tracing::warn!("⚠️ Cannot wake the other nodes: {e}");
                }
                tracing::info!("✅ Released {n} sessions to the other nodes");
            }
            Err(e) => tracing::error!(
                "❌ Cannot release this node's sessions; the others take them once its leases \
                 run out: {e}"
            ),
        }
        if let Err(e) = c
            .store()
            .set_node_state(c.node_id(), c.incarnation(), "left")
            .await
        {
            tracing::warn!("⚠️ Cannot record that this node left: {e}");
        }
    }
}

impl Node {
    fn renew_every(&self) -> Duration {
        self.cluster.lease() / 3
    }

    async fn run(mut self, mut signals: Option<mpsc::Receiver<Signal>>, cancel: CancellationToken) {
        let mut round = tokio::time::interval(ROUND);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_round = Instant::now();
        let mut last_renewal_try = Instant::now();
        loop {
            let mut renew_now = false;
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = round.tick() => {}
                signal = next_signal(&mut signals) => match signal {
                    Some(Signal::Notified { payload, .. }) => {
                        renew_now = payload == "*" || payload == self.cluster.node_id();
                    }
                    Some(Signal::Reconnected) => renew_now = true,
                    None => signals = None,
                },
            }
            if renew_now || last_renewal_try.elapsed() >= self.renew_every() {
                last_renewal_try = Instant::now();
                if !self.renew().await {
                    tracing::error!(
                        "❌ Another process took node id {}: this one stops its sessions and \
                         runs none",
                        self.cluster.node_id()
                    );
                    self.manager.let_go_all().await;
                    return;
                }
            }
            if self.cut_off.load(Ordering::SeqCst) {
                continue;
            }
            let elapsed = last_round.elapsed();
            last_round = Instant::now();
            self.claim_round(elapsed).await;
        }
    }

    /// The heartbeat: renews every lease of this node, stops what it lost, starts what it
    /// holds but does not run, hands over what others asked for. False: the node id is no
    /// longer this process's.
    async fn renew(&mut self) -> bool {
        let started = Instant::now();
        let c = self.cluster.clone();
        // Bounded: a database that does not answer must not hold the loop past the moment
        // it has to stop the clients.
        let renewal = match tokio::time::timeout(
            self.renew_every(),
            c.store().renew(c.node_id(), c.incarnation(), self.lease_ms),
        )
        .await
        {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return false,
            Ok(Err(e)) => {
                tracing::warn!("⚠️ Cannot renew this node's leases: {e}");
                return true;
            }
            Err(_) => {
                tracing::warn!("⚠️ The database did not answer this node's renewal in time");
                return true;
            }
        };
        self.renewed.send_replace(started);
        if self.cut_off.swap(false, Ordering::SeqCst) {
            tracing::info!("✅ This node renews its leases again");
        }
        let held: HashSet<Pair> = renewal.held.iter().map(|l| l.pair).collect();
        for pair in self.manager.live_pairs() {
            if !held.contains(&pair) {
                self.manager.let_go_unless_ours(pair).await;
            }
        }
        let asked: HashSet<Pair> = renewal.asked.iter().map(|(l, _)| l.pair).collect();
        let idle: Vec<_> = renewal
            .held
            .iter()
            .filter(|l| !asked.contains(&l.pair) && self.manager.live(l.pair).is_none())
            .copied()
            .collect();
        if !idle.is_empty() {
            self.manager.run_leased(&idle).await;
        }
        let mut handovers = tokio::task::JoinSet::new();
        for (lease, to) in renewal.asked {
            let manager = self.manager.clone();
            handovers.spawn(async move { manager.hand_over(lease, &to).await });
        }
        while handovers.join_next().await.is_some() {}
        true
    }

    /// Claims sessions nobody runs up to this node's fair share, and asks busier nodes for
    /// more at the rebalance rate. Claims after a loss are not throttled: those numbers are
    /// offline until someone takes them.
    async fn claim_round(&mut self, elapsed: Duration) {
        let c = self.cluster.clone();
        let census = match tokio::time::timeout(ROUND, c.store().census(c.node_id())).await {
            Ok(Ok(census)) => census,
            Ok(Err(e)) => {
                tracing::warn!("⚠️ Cannot count the cluster's sessions: {e}");
                return;
            }
            Err(_) => return,
        };
        let Census {
            total,
            alive,
            mine,
            incoming,
            claimable,
        } = census;
        let share = fair_share(total, alive);
        let mut need = share - mine - incoming;
        if claimable > 0 {
            self.orphan_rounds += 1;
        } else {
            self.orphan_rounds = 0;
        }
        if claimable > 0 && (need > 0 || self.orphan_rounds >= ORPHAN_ROUNDS) {
            let limit = if need > 0 {
                need.min(claimable)
            } else {
                claimable
            };
            match c.store().claim(c.node_id(), self.lease_ms, limit).await {
                Ok(leases) if !leases.is_empty() => {
                    need -= leases.len() as i64;
                    let started = self.manager.run_leased(&leases).await;
                    tracing::info!(
                        "🔄 Node {} took over {} sessions ({started} reconnecting)",
                        c.node_id(),
                        leases.len()
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("⚠️ Cannot claim sessions: {e}"),
            }
        }
        // A joining node's share comes from the others, gently.
        let rate = self.rebalance_per_second;
        if need > 0 && claimable == 0 {
            self.credit = (self.credit + rate * elapsed.as_secs_f64()).min(rate.max(1.0));
            let ask = (self.credit.floor() as i64).min(need);
            if ask > 0 {
                match c.store().ask_handover(c.node_id(), share, ask).await {
                    Ok(0) => {}
                    Ok(n) => {
                        self.credit -= n as f64;
                        if let Err(e) = c.signals().notify(LEASES_CHANNEL, "*").await {
                            tracing::warn!("⚠️ Cannot wake the other nodes: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("⚠️ Cannot ask for sessions: {e}"),
                }
            }
        } else {
            self.credit = 0.0;
        }
    }
}

/// Stops every client of the node once half a lease passed without a renewal, well before
/// its leases run out and another node may connect the same devices; then waits for the
/// next renewal.
async fn watchdog(
    mut renewed: watch::Receiver<Instant>,
    give_up_after: Duration,
    manager: SessionManager,
    cut_off: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    loop {
        let last = *renewed.borrow_and_update();
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = renewed.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(last + give_up_after) => {
                if !cut_off.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        "❌ Cannot renew this node's leases for {:?}: stopping its sessions \
                         before another node takes them over",
                        last.elapsed()
                    );
                    manager.let_go_all().await;
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = renewed.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Each alive node's part of the sessions, rounded up so the parts cover them all.
fn fair_share(total: i64, alive: i64) -> i64 {
    let alive = alive.max(1);
    (total + alive - 1) / alive
}

async fn next_signal(rx: &mut Option<mpsc::Receiver<Signal>>) -> Option<Signal> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::fair_share;

    #[test]
    fn shares_cover_every_session() {
        assert_eq!(fair_share(90, 3), 30);
        assert_eq!(fair_share(91, 3), 31);
        assert_eq!(fair_share(5, 0), 5);
        assert_eq!(fair_share(0, 2), 0);
    }
}
