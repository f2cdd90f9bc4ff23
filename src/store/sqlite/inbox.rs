//! The inbox on SQLite: all of it is in `store/sql/inbox.rs`.

use sqlx::Sqlite;

use super::SqliteStore;
use super::busy::write_tx;
use crate::store::sql::inbox::impl_inbox_store;

impl_inbox_store!(SqliteStore, Sqlite, write_tx);
