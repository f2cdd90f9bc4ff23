//! Writing under contention. SQLite has one writer at a time; this module makes every write
//! of the server wait its turn instead of failing because something else wrote at the same
//! moment, and says so with a typed error when it could not get through in time.
//!
//! Three things together:
//! - every write transaction starts with `BEGIN IMMEDIATE`: it takes the write lock before
//!   it reads, so it waits for the lock. A deferred `BEGIN` that reads first cannot be
//!   upgraded once another connection has committed (`SQLITE_BUSY_SNAPSHOT`), and SQLite says
//!   so at once, without waiting: under load most group creations and contact patches failed
//!   that way;
//! - writers take turns through a fair in-process queue (the gate), on a connection of their
//!   own: the others wait in order holding no connection, so readers always find one, and
//!   nobody polls SQLite's lock, which is not fair (measured with 20 writers beside a
//!   100,000-contact fetch: the slowest write took 0.2-0.35 s this way against 1.2-2.8 s with
//!   every writer polling the lock, and reads stayed at a p99 of 14 ms against 110 ms);
//! - what still fails because the database is busy or locked (another process on the same
//!   file, a lock held longer than `busy_timeout`) is retried whole, with a short jittered
//!   backoff, until [`BUSY_LIMIT`]; then the caller gets [`StoreBusy`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::SqliteStore;
use crate::store::retry::jitter;
use crate::store::{StoreError, StoreResult};

/// How long a write may wait for its turn, in all, before the caller is told the database is
/// busy: as long as one lock wait took before (SQLite's `busy_timeout` was 10 s).
pub(super) const BUSY_LIMIT: Duration = Duration::from_secs(10);
/// The first wait before a retry; doubled each time up to [`MAX_BACKOFF`], then jittered.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// The database stayed busy (locked by other writers) for longer than a caller should wait.
/// The HTTP layer answers it with 503: trying again later can succeed.
#[derive(Debug)]
pub struct StoreBusy {
    what: &'static str,
    waited: Duration,
    last: Option<String>,
}

impl fmt::Display for StoreBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the database stayed busy for {:.1}s while trying to {}",
            self.waited.as_secs_f64(),
            self.what
        )?;
        if let Some(last) = &self.last {
            write!(f, " (last error: {last})")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreBusy {}

/// The in-process queue of writers; shared by every clone of one store.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Arc<Mutex<()>>);

/// Runs `$body` (a block that returns a `StoreResult`, with `$tx: &mut SqliteConnection`
/// inside a `BEGIN IMMEDIATE` transaction) as one write: committed when it returns `Ok`
/// (early `return Ok(..)`s included, as in PostgreSQL's `pg_tx!`, so a body written once for
/// both means the same on both), rolled back when it returns `Err`. A try that lost a race for the
/// database is rolled back and the block runs again, whole, so it must not act outside the
/// transaction. A macro, not a function taking a closure: a closure borrowing the connection
/// makes the future of every store method generic over that borrow, which `Send` bounds
/// cannot express.
macro_rules! write_tx {
    ($store:expr, $what:literal, |$tx:ident| $body:block) => {{
        let mut attempts = $crate::store::sqlite::busy::Attempts::new($store, $what);
        loop {
            let turn = attempts.turn().await?;
            let tried: $crate::store::StoreResult<_> = async {
                let mut tx = attempts.begin().await?;
                // Its own async block: a `return` in the body ends the body, not this try,
                // so whatever it returns `Ok` is committed.
                let out: $crate::store::StoreResult<_> = {
                    let $tx: &mut sqlx::SqliteConnection = &mut tx;
                    async { $body }.await
                };
                let out = out?;
                tx.commit().await?;
                Ok(out)
            }
            .await;
            drop(turn);
            if let Some(done) = attempts.settle(tried).await {
                break done;
            }
        }
    }};
}
pub(crate) use write_tx;

/// The state of one write through [`write_tx!`]: how long it has waited, and why.
pub(in crate::store) struct Attempts<'s> {
    store: &'s SqliteStore,
    what: &'static str,
    started: Instant,
    backoff: Duration,
    last: Option<String>,
}

impl<'s> Attempts<'s> {
    pub(in crate::store) fn new(store: &'s SqliteStore, what: &'static str) -> Self {
        Self {
            store,
            what,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            last: None,
        }
    }

    /// The writers' turn; [`StoreBusy`] when it does not come within the limit. Only this
    /// wait is cut short: a transaction under way runs to its end, so "busy" never hides a
    /// commit that happened.
    pub(in crate::store) async fn turn(&self) -> StoreResult<MutexGuard<'s, ()>> {
        let left = self.store.busy_limit.saturating_sub(self.started.elapsed());
        match tokio::time::timeout(left, self.store.gate.0.lock()).await {
            Ok(turn) => Ok(turn),
            Err(_) => Err(self.busy()),
        }
    }

    pub(in crate::store) async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.store.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// What the try came to: `Some` to hand to the caller, `None` to try again (after a
    /// pause) because it lost a race and there is time left.
    pub(in crate::store) async fn settle<T>(
        &mut self,
        tried: StoreResult<T>,
    ) -> Option<StoreResult<T>> {
        let e = match tried {
            Err(e) if e.is_unavailable() && !e.is_closed() => e,
            done => return Some(done),
        };
        self.last = Some(format!("{e:#}"));
        let pause = jitter(self.backoff);
        if self.started.elapsed() + pause >= self.store.busy_limit {
            return Some(Err(self.busy()));
        }
        tokio::time::sleep(pause).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        None
    }

    fn busy(&self) -> StoreError {
        StoreError::unavailable(
            StoreBusy {
                what: self.what,
                waited: self.started.elapsed(),
                last: self.last.clone(),
            }
            .to_string(),
        )
    }
}

/// A real [`StoreBusy`]: a write queued behind one that holds the database past the limit.
#[cfg(test)]
pub(crate) async fn busy_error_for_tests() -> StoreError {
    use crate::store::prelude::*;
    let store = SqliteStore::connect_with("sqlite::memory:", Duration::from_millis(100))
        .await
        .unwrap();
    let (holding_tx, holding) = tokio::sync::oneshot::channel::<()>();
    let (release, mut released) = tokio::sync::oneshot::channel::<()>();
    let holder = store.clone();
    let held = tokio::spawn(async move {
        let mut holding_tx = Some(holding_tx);
        let holder = &holder;
        write_tx!(holder, "hold the database", |_tx| {
            if let Some(tx) = holding_tx.take() {
                let _ = tx.send(());
            }
            let _ = (&mut released).await;
            Ok(())
        })
    });
    holding.await.unwrap();
    let started = Instant::now();
    let err = store.touch_api_key(1, 1).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(100));
    let _ = release.send(());
    held.await.unwrap().unwrap();
    err
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;
    use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, UserId};
    use crate::store::prelude::*;
    use crate::store::{BatchProgress, ContactFilter, ContactPatch, ImportContact, is_busy};

    fn pair() -> Pair {
        Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2))
    }

    /// A store on a fresh file with one contact; its id.
    async fn store_with_a_contact(
        dir: &tempfile::TempDir,
        busy_limit: Duration,
    ) -> (SqliteStore, String, i64) {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = SqliteStore::connect_with(&url, busy_limit).await.unwrap();
        let session = SessionId::from_db("session_1_2_3".into());
        let contact = ImportContact {
            phone: PhoneNumber::parse_international("+966501234567").unwrap(),
            jid: "966501234567@s.whatsapp.net".into(),
            name: Some("Ali".into()),
            push_name: None,
            is_business: false,
            last_message_at: None,
        };
        let progress = BatchProgress {
            session_id: &session,
            processed: 1,
            total: 1,
            percent: 100,
        };
        store
            .import_contacts(pair(), &[contact], progress, 1)
            .await
            .unwrap();
        let id = store
            .contacts_after(pair(), None, &ContactFilter::default(), 0, 0, 10)
            .await
            .unwrap()[0]
            .id;
        (store, url, id)
    }

    /// Another process's connection holding the write lock.
    async fn hold_write_lock(url: &str) -> sqlx::SqliteConnection {
        let mut other = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        other
    }

    fn tag_patch() -> ContactPatch {
        ContactPatch {
            opted_out: None,
            tags: Some(vec!["vip".into()]),
            custom_fields: None,
        }
    }

    #[tokio::test]
    async fn a_read_then_write_waits_out_a_lock_held_by_another_process() {
        let dir = tempfile::tempdir().unwrap();
        // busy_timeout is a quarter of the limit: the first try fails and is retried.
        let (store, url, id) = store_with_a_contact(&dir, Duration::from_secs(8)).await;
        let mut other = hold_write_lock(&url).await;
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            // A commit while the update waits: a deferred transaction that had read before
            // it would now fail with SQLITE_BUSY_SNAPSHOT.
            sqlx::query("UPDATE contacts SET name = 'Ali B'")
                .execute(&mut other)
                .await
                .unwrap();
            sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        });
        let updated = store.update_contact(pair(), id, &tag_patch(), 2).await;
        release.await.unwrap();
        let updated = updated.expect("the update waits for the lock").unwrap();
        assert_eq!(updated.tags, ["vip"]);
        assert_eq!(
            updated.name.as_deref(),
            Some("Ali B"),
            "read after the lock"
        );
    }

    #[tokio::test]
    async fn a_lock_held_past_the_limit_is_store_busy() {
        let dir = tempfile::tempdir().unwrap();
        let (store, url, id) = store_with_a_contact(&dir, Duration::from_millis(600)).await;
        let other = hold_write_lock(&url).await;
        let started = Instant::now();
        let err = store
            .update_contact(pair(), id, &tag_patch(), 2)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(600));
        assert!(err.is_unavailable(), "{err:#}");
        let said = err.to_string();
        assert!(said.contains("while trying to update a contact"), "{said}");
        assert!(said.contains("database is locked"), "{said}");
        drop(other);
        let contact = store.contact(pair(), id).await.unwrap().unwrap();
        assert!(contact.tags.is_empty(), "nothing was written");
    }

    #[tokio::test]
    async fn a_write_queued_behind_a_long_one_is_store_busy() {
        let err = busy_error_for_tests().await;
        assert!(err.is_unavailable(), "{err:#}");
        assert!(err.to_string().contains("stamp an API key's use"), "{err}");
    }

    #[tokio::test]
    async fn busy_snapshot_and_a_full_pool_count_as_busy_other_errors_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, url, _) = store_with_a_contact(&dir, BUSY_LIMIT).await;
        let mut reader = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM contacts")
            .execute(&mut reader)
            .await
            .unwrap();
        sqlx::query("UPDATE contacts SET name = 'B'")
            .execute(&mut writer)
            .await
            .unwrap();
        let snapshot = sqlx::query("UPDATE contacts SET name = 'C'")
            .execute(&mut reader)
            .await
            .unwrap_err();
        let code = snapshot
            .as_database_error()
            .and_then(|d| d.code())
            .unwrap()
            .into_owned();
        assert_eq!(code, "517", "SQLITE_BUSY_SNAPSHOT");
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(is_busy(&anyhow::Error::new(snapshot).context("upsert")));
        assert!(is_busy(&anyhow::Error::new(sqlx::Error::PoolTimedOut)));

        let unique = sqlx::query("INSERT INTO contacts SELECT * FROM contacts")
            .execute(&mut writer)
            .await
            .unwrap_err();
        assert!(!is_busy(&anyhow::Error::new(unique)));
        assert!(!is_busy(&anyhow::anyhow!("database is gone")));
    }
}
