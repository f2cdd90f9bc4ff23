//! The simulated engine's phones on SQLite.

use sqlx::Row;

use super::SqliteStore;
use super::busy::write_tx;

crate::store::sim::impl_sim_store!(
    SqliteStore,
    write_tx,
    // One SQLite file is one node: a connection another node id opened was left by an
    // earlier process, and nothing keeps it alive.
    live: "(c.node_id = $2)"
);
