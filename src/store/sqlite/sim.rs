//! The simulated engine's phones on SQLite.

use sqlx::Row;

use super::SqliteStore;
use super::busy::write_tx;

crate::store::sim::impl_sim_store!(SqliteStore, write_tx);
