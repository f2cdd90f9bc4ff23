//! The device store on SQLite: [`SqliteStore`] is the [`super::CredentialStore`], and each
//! session's engine gets a [`SqliteDevice`] over the same pools. Writes go through the store's
//! writer gate (`write_tx!`), the same turn-taking as every other write, so a Signal flush
//! and a 100,000-contact fetch never fight over SQLite's lock; reads use the read pool.

use sqlx::SqlitePool;
use whatsapp_rust::store::traits::Backend;

use super::imports::*;
use super::{appsync, creds, protocol, secrets, signal};
use crate::domain::SessionId;
use crate::store::SqliteStore;

/// One session's device on the shared SQLite database.
pub(crate) struct SqliteDevice {
    store: SqliteStore,
    device_id: i64,
    session: SessionId,
}

impl SqliteDevice {
    fn reads(&self) -> &SqlitePool {
        &self.store.pool
    }

    fn sqlite(&self) -> &SqliteStore {
        &self.store
    }
}

impl std::fmt::Debug for SqliteDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqliteDevice({}, {})", self.session, self.device_id)
    }
}

impl SqliteStore {
    fn device_reads(&self) -> &SqlitePool {
        &self.pool
    }

    fn sqlite(&self) -> &SqliteStore {
        self
    }

    fn new_device_backend(&self, device_id: i64, session: SessionId) -> Arc<dyn Backend> {
        Arc::new(SqliteDevice {
            store: self.clone(),
            device_id,
            session,
        })
    }
}

/// One write transaction through the store's writer gate; a `StoreResult`.
macro_rules! sqlite_write {
    ($self:expr, $what:literal, |$tx:ident| $body:block) => {
        // In a block of its own: `write_tx!` returns early with `?`, which must not leave the
        // trait method (its error type is the library's).
        async { $crate::store::sqlite::busy::write_tx!($self.sqlite(), $what, |$tx| $body) }.await
    };
}

creds::impl_credential_store!(SqliteStore, sqlx::Sqlite, sqlite_write);
signal::impl_signal_store!(SqliteDevice, sqlx::Sqlite, sqlite_write);
appsync::impl_app_sync_store!(SqliteDevice, sqlx::Sqlite, sqlite_write);
protocol::impl_protocol_store!(SqliteDevice, sqlx::Sqlite, sqlite_write);
secrets::impl_secret_and_device_store!(SqliteDevice, sqlx::Sqlite, sqlite_write);
