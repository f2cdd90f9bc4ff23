//! SQLite backend: WAL, one file, multi-row upserts inside transactions.

pub(crate) mod busy;
mod contact_cache;
mod contacts;
mod events;
pub(super) mod group_names;
mod groups;
mod inbox;
mod keys;
mod media;
mod number_checks;
mod outbox;
mod sessions;
mod sim;

pub use busy::StoreBusy;
#[cfg(test)]
pub(crate) use busy::busy_error_for_tests;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};

use crate::files;
use crate::store::sql::{Arg, Dialect};
use crate::store::traits::Health;
use crate::store::{DatabaseOptions, StoreResult};
use busy::{BUSY_LIMIT, WriteGate};

/// Upper bound of the database mapped into memory; only pages read are resident.
const MMAP_BYTES: u64 = 1 << 30;

#[derive(Clone)]
pub struct SqliteStore {
    /// Reads; a transaction that writes goes through `writer` instead.
    pub(super) pool: SqlitePool,
    /// The one connection of writes (the same pool as `pool` for an in-memory database,
    /// which lives in one connection).
    pub(super) writer: SqlitePool,
    /// Writers queue here for their turn; see [`super::busy`].
    pub(super) gate: WriteGate,
    pub(super) busy_limit: Duration,
}

impl SqliteStore {
    /// Opens (creating file and folder if missing) and migrates the database.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, BUSY_LIMIT).await
    }

    /// [`Self::connect`], with writes that wait at most `busy_limit` for their turn before
    /// they fail with [`super::StoreBusy`].
    pub async fn connect_with(url: &str, busy_limit: Duration) -> anyhow::Result<Self> {
        let options = DatabaseOptions {
            busy_limit,
            ..DatabaseOptions::default()
        };
        Self::connect_with_options(url, &options).await
    }

    /// [`Self::connect`] with the pool's size and the writers' wait as configured.
    pub async fn connect_with_options(
        url: &str,
        options: &DatabaseOptions,
    ) -> anyhow::Result<Self> {
        let busy_limit = options.busy_limit;
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {url:?}"))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            private_database_file(opts.get_filename())?;
        }
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // A share of the limit, so a lock held by another process is retried a few times
            // (see `busy::write_tx!`) before the limit is reached.
            .busy_timeout(busy_limit / 4)
            .foreign_keys(true)
            // Each pooled connection's page cache is emptied whenever another connection
            // commits, so without a mapping every transaction re-reads its pages with pread
            // (most of a 100k-contact fetch's time). Mapped pages are the OS page cache, shared
            // by every connection and never copied.
            .pragma("mmap_size", MMAP_BYTES.to_string());
        // Writes take turns (see `busy`), so one connection serves them all, and readers
        // never wait for a connection that a queued writer holds.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if in_memory {
                1
            } else {
                options.max_connections.max(1)
            })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .with_context(|| format!("cannot open database {url}"))?;
        let writer = if in_memory {
            pool.clone()
        } else {
            writer
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open database {url}"))?
        };
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("database migration failed")?;
        group_names::backfill(&writer).await;
        Ok(Self {
            pool,
            writer,
            gate: WriteGate::default(),
            busy_limit,
        })
    }
}

/// The database holds every tenant's contacts: its folder (when we create it) is 0700, and
/// the file 0600 before SQLite opens it. A file we may not chmod (another owner's) is used
/// as it is, with a warning.
fn private_database_file(file: &Path) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        files::create_private_dir_all(dir)
            .with_context(|| format!("cannot create database folder {}", dir.display()))?;
    }
    if let Err(e) = files::private_sqlite_file(file) {
        if !file.exists() {
            return Err(e).with_context(|| format!("cannot create database {}", file.display()));
        }
        tracing::warn!(
            "⚠️ Cannot make the database {} readable by this user only: {e}",
            file.display()
        );
    }
    Ok(())
}

#[async_trait]
impl Health for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// SQLite's words where PostgreSQL's differ (see [`Dialect`]).
impl Dialect for Sqlite {
    const POSITION: &'static str = "instr";

    fn bind<'t, T: Arg<'t>>(q: &mut QueryBuilder<Self>, value: T) {
        q.push_bind(value);
    }

    fn limit(limit: i64) -> Option<i64> {
        Some(limit)
    }

    fn text(s: Option<&str>) -> Option<String> {
        s.map(str::to_owned)
    }

    fn push_and_json_holds(q: &mut QueryBuilder<Self>, array: &str, value: String) {
        q.push(format!(
            " AND EXISTS (SELECT 1 FROM json_each({array}) t WHERE t.value = "
        ))
        .push_bind(value)
        .push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Pair, PlaceId, UserId};
    use crate::store::prelude::*;

    // The default groups raced from two servers and the contact cache's merge rules are
    // held against every backend by tests/store_conformance.

    #[tokio::test]
    async fn the_schema_refuses_a_second_group_of_a_default_name() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
        store.ensure_default_groups(pair, 1).await.unwrap();
        let dup = sqlx::query(
            "INSERT INTO contact_groups (user_id, place_id, name, kind, created_at, updated_at) \
             VALUES (1, 2, 'جميع الارقام', 'manual', 1, 1)",
        )
        .execute(&store.pool)
        .await;
        assert!(dup.is_err(), "the database must enforce the unique name");
    }
}
