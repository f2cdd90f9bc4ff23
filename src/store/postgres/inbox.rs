//! The inbox on PostgreSQL: all of it is in `store/sql/inbox.rs`.

use sqlx::Postgres;

use super::{PgStore, pg_tx};
use crate::store::sql::inbox::impl_inbox_store;

impl_inbox_store!(PgStore, Postgres, pg_tx);
