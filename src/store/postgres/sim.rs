//! The simulated engine's phones on PostgreSQL.

use sqlx::Row;

use super::{PgStore, pg_tx};

crate::store::sim::impl_sim_store!(
    PgStore,
    pg_tx,
    // Alive as the cluster's leases see it (`cluster.rs`): a fresh heartbeat by the
    // database's clock, leaving nodes included (they still run what they hold).
    live: "(c.node_id = $2 OR EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.node_id = c.node_id \
           AND n.state IN ('alive', 'leaving') \
           AND n.last_heartbeat + n.lease_ms > (extract(epoch from clock_timestamp()) * 1000)::bigint))",
    // Writes run side by side here: two opens of one device, each seeing no open connection
    // of the other, would both stay open. "WAMS" keeps these locks apart from the others.
    one_at_a_time: "SELECT pg_advisory_xact_lock(1463897427, hashtext($1))"
);
