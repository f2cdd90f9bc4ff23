//! Uploaded media on SQLite (see `store/sql/media.rs`).

use super::SqliteStore;
use super::busy::write_tx;

crate::store::sql::media::impl_media_store!(SqliteStore, write_tx);
