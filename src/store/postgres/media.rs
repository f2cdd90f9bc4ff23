//! Uploaded media on PostgreSQL (see `store/sql/media.rs`).

use super::{PgStore, pg_tx};

crate::store::sql::media::impl_media_store!(PgStore, pg_tx);
