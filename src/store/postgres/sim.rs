//! The simulated engine's phones on PostgreSQL.

use sqlx::Row;

use super::{PgStore, pg_tx};

crate::store::sim::impl_sim_store!(PgStore, pg_tx);
