//! Nodes and session leases on PostgreSQL (see `migrations/postgres/0004_cluster.sql`), and
//! `LISTEN/NOTIFY` between the servers of one database.
//!
//! Every time here is the database's clock (`NOW_MS`), so nodes with skewed clocks agree on
//! when a lease ran out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::{PgStore, pg_tx};
use crate::domain::{Pair, PlaceId, UserId};
use crate::store::StoreResult;
use crate::store::traits::{
    Census, ClusterStore, JoinOutcome, Lease, LeaseHolder, NodeJoin, NodeRecord, NodeState,
    Renewal, Signal, Signals,
};

/// The database's clock in ms; `clock_timestamp()`, not `now()`, which stands still for a
/// whole transaction.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// A node counts as alive while its heartbeat is younger than its lease (leaving ones too:
/// they still run their sessions until they hand them over).
macro_rules! node_live {
    ($n:literal) => {
        concat!(
            $n,
            ".state IN ('alive', 'leaving') AND ",
            $n,
            ".last_heartbeat + ",
            $n,
            ".lease_ms > ",
            now_ms!()
        )
    };
}

fn lease_of(row: &sqlx::postgres::PgRow) -> StoreResult<Lease> {
    Ok(Lease {
        pair: Pair::new(
            UserId::new_unchecked(row.try_get("user_id")?),
            PlaceId::new_unchecked(row.try_get("place_id")?),
        ),
        epoch: row.try_get("epoch")?,
    })
}

#[async_trait]
impl ClusterStore for PgStore {
    async fn join(&self, join: &NodeJoin<'_>) -> StoreResult<JoinOutcome> {
        pg_tx!(self, "join the cluster", |tx| {
            let held = sqlx::query(concat!(
                "SELECT advertise_url FROM cluster_nodes n WHERE node_id = $1 AND ",
                node_live!("n"),
                " FOR UPDATE"
            ))
            .bind(join.node_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = held
                && !join.force
            {
                return Ok(JoinOutcome::Held {
                    advertise_url: row.try_get("advertise_url")?,
                });
            }
            sqlx::query(concat!(
                "INSERT INTO cluster_nodes (node_id, advertise_url, incarnation, started_at, \
                 last_heartbeat, lease_ms, state) VALUES ($1, $2, $3, ",
                now_ms!(),
                ", ",
                now_ms!(),
                ", $4, 'alive') ON CONFLICT (node_id) DO UPDATE SET \
                 advertise_url = excluded.advertise_url, incarnation = excluded.incarnation, \
                 started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat, \
                 lease_ms = excluded.lease_ms, state = 'alive'"
            ))
            .bind(join.node_id)
            .bind(join.advertise_url)
            .bind(join.incarnation)
            .bind(join.lease_ms)
            .execute(&mut *tx)
            .await?;
            Ok(JoinOutcome::Joined)
        })
    }

    async fn renew(
        &self,
        node_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Renewal>> {
        pg_tx!(self, "renew the node's leases", |tx| {
            let mine = sqlx::query(concat!(
                "UPDATE cluster_nodes SET last_heartbeat = ",
                now_ms!(),
                ", lease_ms = $3 WHERE node_id = $1 AND incarnation = $2 RETURNING state"
            ))
            .bind(node_id)
            .bind(incarnation)
            .bind(lease_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if mine.is_none() {
                return Ok(None);
            }
            let rows = sqlx::query(concat!(
                "UPDATE session_leases SET expires_at = ",
                now_ms!(),
                " + $2 WHERE owner = $1 RETURNING user_id, place_id, epoch, handover_to"
            ))
            .bind(node_id)
            .bind(lease_ms)
            .fetch_all(&mut *tx)
            .await?;
            let mut renewal = Renewal::default();
            for row in &rows {
                let lease = lease_of(row)?;
                if let Some(to) = row.try_get::<Option<String>, _>("handover_to")? {
                    renewal.asked.push((lease, to));
                }
                renewal.held.push(lease);
            }
            Ok(Some(renewal))
        })
    }

    async fn census(&self, node_id: &str) -> StoreResult<Census> {
        let row = sqlx::query(concat!(
            "SELECT (SELECT count(*) FROM session_leases) AS total, \
             (SELECT count(*) FROM cluster_nodes n WHERE n.state = 'alive' AND \
              n.last_heartbeat + n.lease_ms > ",
            now_ms!(),
            ") AS alive, \
             (SELECT count(*) FROM session_leases WHERE owner = $1 AND expires_at > ",
            now_ms!(),
            ") AS mine, \
             (SELECT count(*) FROM session_leases WHERE handover_to = $1) AS incoming, \
             (SELECT count(*) FROM session_leases WHERE owner IS NULL OR expires_at <= ",
            now_ms!(),
            ") AS claimable"
        ))
        .bind(node_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Census {
            total: row.try_get("total")?,
            alive: row.try_get("alive")?,
            mine: row.try_get("mine")?,
            incoming: row.try_get("incoming")?,
            claimable: row.try_get("claimable")?,
        })
    }

    async fn set_node_state(
        &self,
        node_id: &str,
        incarnation: &str,
        state: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE cluster_nodes SET state = $3 WHERE node_id = $1 AND incarnation = $2")
            .bind(node_id)
            .bind(incarnation)
            .bind(state)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT n.node_id, n.advertise_url, n.started_at, n.last_heartbeat, n.state, \
             (n.last_heartbeat + n.lease_ms > ",
            now_ms!(),
            ") AS fresh, \
             (SELECT count(*) FROM session_leases l WHERE l.owner = n.node_id AND \
              l.expires_at > ",
            now_ms!(),
            ") AS sessions FROM cluster_nodes n ORDER BY n.node_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let fresh: bool = r.try_get("fresh")?;
                let state: String = r.try_get("state")?;
                Ok(NodeRecord {
                    node_id: r.try_get("node_id")?,
                    advertise_url: r.try_get("advertise_url")?,
                    started_at: r.try_get("started_at")?,
                    last_heartbeat: r.try_get("last_heartbeat")?,
                    sessions: r.try_get("sessions")?,
                    state: match (fresh, state.as_str()) {
                        (true, "alive") => NodeState::Alive,
                        (true, "leaving") => NodeState::Leaving,
                        _ => NodeState::Dead,
                    },
                })
            })
            .collect()
    }

    async fn seed_leases(&self) -> StoreResult<u64> {
        let done = sqlx::query(concat!(
            "INSERT INTO session_leases (user_id, place_id, owner, epoch, expires_at, \
             updated_at) SELECT newest.user_id, newest.place_id, NULL, 0, 0, ",
            now_ms!(),
            " FROM (SELECT DISTINCT ON (user_id, place_id) user_id, place_id, status \
             FROM sessions ORDER BY user_id, place_id, created_at DESC, seq DESC) AS newest \
             WHERE newest.status NOT IN ('logged_out', 'error') \
             ON CONFLICT (user_id, place_id) DO NOTHING"
        ))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn acquire(&self, pair: Pair, node_id: &str, lease_ms: i64) -> StoreResult<Option<i64>> {
        pg_tx!(self, "take a session's lease", |tx| {
            let row = sqlx::query(concat!(
                "INSERT INTO session_leases AS l (user_id, place_id, owner, epoch, expires_at, \
                 updated_at) VALUES ($1, $2, $3, 1, ",
                now_ms!(),
                " + $4, ",
                now_ms!(),
                ") ON CONFLICT (user_id, place_id) DO UPDATE SET owner = excluded.owner, \
                 epoch = CASE WHEN l.owner = excluded.owner THEN l.epoch ELSE l.epoch + 1 END, \
                 expires_at = excluded.expires_at, handover_to = NULL, \
                 updated_at = excluded.updated_at \
                 WHERE l.owner IS NULL OR l.owner = excluded.owner OR l.expires_at <= ",
                now_ms!(),
                " RETURNING epoch"
            ))
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(node_id)
            .bind(lease_ms)
            .fetch_optional(&mut *tx)
            .await?;
            Ok(row.map(|r| r.try_get("epoch")).transpose()?)
        })
    }

    async fn claim(&self, node_id: &str, lease_ms: i64, limit: i64) -> StoreResult<Vec<Lease>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        pg_tx!(self, "claim sessions nobody runs", |tx| {
            let rows = sqlx::query(concat!(
                "UPDATE session_leases l SET owner = $1, epoch = l.epoch + 1, expires_at = ",
                now_ms!(),
                " + $2, handover_to = NULL, updated_at = ",
                now_ms!(),
                " FROM (SELECT user_id, place_id FROM session_leases WHERE owner IS NULL OR \
                 expires_at <= ",
                now_ms!(),
                " ORDER BY expires_at, user_id, place_id LIMIT $3 FOR UPDATE SKIP LOCKED) c \
                 WHERE l.user_id = c.user_id AND l.place_id = c.place_id \
                 RETURNING l.user_id, l.place_id, l.epoch"
            ))
            .bind(node_id)
            .bind(lease_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            rows.iter().map(lease_of).collect()
        })
    }

    async fn ask_handover(&self, node_id: &str, share: i64, limit: i64) -> StoreResult<u64> {
        if limit <= 0 {
            return Ok(0);
        }
        pg_tx!(self, "ask a busy node for sessions", |tx| {
            let busiest = sqlx::query(concat!(
                "SELECT l.owner, count(*) AS held FROM session_leases l JOIN cluster_nodes n \
                 ON n.node_id = l.owner WHERE l.owner <> $1 AND n.state = 'alive' AND ",
                node_live!("n"),
                " GROUP BY l.owner HAVING count(*) > $2 ORDER BY held DESC LIMIT 1"
            ))
            .bind(node_id)
            .bind(share)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = busiest else {
                return Ok(0);
            };
            let owner: String = row.try_get("owner")?;
            let held: i64 = row.try_get("held")?;
            let limit = limit.min(held - share);
            let done = sqlx::query(
                "UPDATE session_leases l SET handover_to = $1 FROM (SELECT o.user_id, \
                 o.place_id FROM session_leases o WHERE o.owner = $2 AND o.handover_to IS NULL \
                 AND (SELECT s.status FROM sessions s WHERE s.user_id = o.user_id AND \
                 s.place_id = o.place_id ORDER BY s.created_at DESC, s.seq DESC LIMIT 1) = \
                 'ready' ORDER BY o.user_id, o.place_id LIMIT $3 FOR UPDATE SKIP LOCKED) c \
                 WHERE l.user_id = c.user_id AND l.place_id = c.place_id",
            )
            .bind(node_id)
            .bind(&owner)
            .bind(limit)
            .execute(&mut *tx)
            .await?;
            Ok(done.rows_affected())
        })
    }

    async fn hand_over(
        &self,
        lease: Lease,
        from: &str,
        to: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<String>> {
        pg_tx!(self, "hand a session over", |tx| {
            let row = sqlx::query(concat!(
                "UPDATE session_leases l SET owner = l.handover_to, epoch = l.epoch + 1, \
                 handover_to = NULL, expires_at = ",
                now_ms!(),
                " + $6, updated_at = ",
                now_ms!(),
                " WHERE l.user_id = $1 AND l.place_id = $2 AND l.owner = $3 AND l.epoch = $4 \
                 AND l.handover_to = $5 AND EXISTS (SELECT 1 FROM cluster_nodes n WHERE \
                 n.node_id = $5 AND n.state = 'alive' AND ",
                node_live!("n"),
                ") RETURNING owner"
            ))
            .bind(lease.pair.user_id.get())
            .bind(lease.pair.place_id.get())
            .bind(from)
            .bind(lease.epoch)
            .bind(to)
            .bind(lease_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = row {
                return Ok(Some(row.try_get("owner")?));
            }
            sqlx::query(
                "UPDATE session_leases SET handover_to = NULL WHERE user_id = $1 AND \
                 place_id = $2 AND owner = $3 AND handover_to = $4",
            )
            .bind(lease.pair.user_id.get())
            .bind(lease.pair.place_id.get())
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
            Ok(None)
        })
    }

    async fn decline_handover(&self, lease: Lease, from: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE session_leases SET handover_to = NULL WHERE user_id = $1 AND place_id = $2 \
             AND owner = $3",
        )
        .bind(lease.pair.user_id.get())
        .bind(lease.pair.place_id.get())
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn release_all(&self, node_id: &str) -> StoreResult<u64> {
        pg_tx!(self, "release the node's sessions", |tx| {
            let done = sqlx::query(concat!(
                "UPDATE session_leases SET owner = NULL, epoch = epoch + 1, expires_at = 0, \
                 handover_to = NULL, updated_at = ",
                now_ms!(),
                " WHERE owner = $1"
            ))
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
            // Nobody should hand this node anything now.
            sqlx::query("UPDATE session_leases SET handover_to = NULL WHERE handover_to = $1")
                .bind(node_id)
                .execute(&mut *tx)
                .await?;
            Ok(done.rows_affected())
        })
    }

    async fn drop_lease(&self, lease: Lease, node_id: &str) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM session_leases WHERE user_id = $1 AND place_id = $2 AND owner = $3 \
             AND epoch = $4",
        )
        .bind(lease.pair.user_id.get())
        .bind(lease.pair.place_id.get())
        .bind(node_id)
        .bind(lease.epoch)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn holder(&self, pair: Pair) -> StoreResult<LeaseHolder> {
        let row = sqlx::query(concat!(
            "SELECT l.owner, l.epoch, n.advertise_url, (l.expires_at > ",
            now_ms!(),
            " AND n.node_id IS NOT NULL AND ",
            node_live!("n"),
            ") AS live FROM session_leases l LEFT JOIN cluster_nodes n ON n.node_id = l.owner \
             WHERE l.user_id = $1 AND l.place_id = $2"
        ))
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(LeaseHolder::Nobody);
        };
        let live: Option<bool> = row.try_get("live")?;
        let owner: Option<String> = row.try_get("owner")?;
        Ok(match (owner, live) {
            (Some(node_id), Some(true)) => LeaseHolder::Node {
                node_id,
                advertise_url: row.try_get("advertise_url")?,
                epoch: row.try_get("epoch")?,
            },
            _ => LeaseHolder::Orphaned,
        })
    }

    async fn roomiest(&self, me: &str) -> StoreResult<Option<(String, String)>> {
        let row = sqlx::query(concat!(
            "SELECT n.node_id, n.advertise_url FROM cluster_nodes n WHERE n.state = 'alive' \
             AND ",
            node_live!("n"),
            " ORDER BY (SELECT count(*) FROM session_leases l WHERE l.owner = n.node_id) + \
             (SELECT count(*) FROM session_leases l WHERE l.handover_to = n.node_id), \
             n.node_id <> $1, n.node_id LIMIT 1"
        ))
        .bind(me)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("node_id")?, r.try_get("advertise_url")?)))
            .transpose()
    }

    async fn holds(&self, lease: Lease, node_id: &str) -> StoreResult<bool> {
        let row = sqlx::query(
            "SELECT 1 AS held FROM session_leases WHERE user_id = $1 AND place_id = $2 AND \
             owner = $3 AND epoch = $4",
        )
        .bind(lease.pair.user_id.get())
        .bind(lease.pair.place_id.get())
        .bind(node_id)
        .bind(lease.epoch)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// Waits between attempts to get a lost listening connection back.
const RELISTEN: Duration = Duration::from_millis(500);

#[async_trait]
impl Signals for PgStore {
    async fn notify(&self, channel: &str, payload: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn listen(&self, channels: &[&str]) -> StoreResult<mpsc::Receiver<Signal>> {
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await?;
        let (tx, rx) = mpsc::channel(1_024);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        let signal = Signal::Notified {
                            channel: n.channel().to_owned(),
                            payload: n.payload().to_owned(),
                        };
                        if tx.send(signal).await.is_err() {
                            return;
                        }
                    }
                    // The connection was lost; sqlx reconnects on the next call, and what
                    // was notified meanwhile is gone.
                    Ok(None) => {
                        if tx.send(Signal::Reconnected).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        if tx.is_closed() || pool.is_closed() {
                            return;
                        }
                        tracing::warn!("⚠️ Listening for other nodes failed, again soon: {e}");
                        tokio::time::sleep(RELISTEN).await;
                    }
                }
            }
        });
        Ok(rx)
    }
}

impl PgStore {
    pub(super) fn as_cluster(&self) -> Arc<dyn ClusterStore> {
        Arc::new(self.clone())
    }

    pub(super) fn as_signals(&self) -> Arc<dyn Signals> {
        Arc::new(self.clone())
    }
}
