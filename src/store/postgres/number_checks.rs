//! Number checks on PostgreSQL (see `store/sql/number_checks.rs`).

use super::{PgStore, pg_tx};

crate::store::sql::number_checks::impl_number_check_store!(PgStore, pg_tx);
