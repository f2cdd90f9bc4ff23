//! Number checks on SQLite (see `store/sql/number_checks.rs`).

use super::SqliteStore;
use super::busy::write_tx;

crate::store::sql::number_checks::impl_number_check_store!(SqliteStore, write_tx);
