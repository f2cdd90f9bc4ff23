//! Tenant API keys on PostgreSQL: only hashes are stored (see `store/sql/keys.rs`).

use sqlx::Postgres;

use super::{PgStore, pg_tx};

crate::store::sql::keys::impl_key_store!(PgStore, Postgres, pg_tx);
