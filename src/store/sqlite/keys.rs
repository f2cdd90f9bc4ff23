//! Tenant API keys on SQLite: only hashes are stored (see `store/sql/keys.rs`).

use sqlx::Sqlite;

use super::SqliteStore;
use super::busy::write_tx;

crate::store::sql::keys::impl_key_store!(SqliteStore, Sqlite, write_tx);
