//! PostgreSQL backend: one pool shared by every part of the server, bulk writes as one
//! statement over arrays (`UNNEST`), and explicit locks where SQLite's single writer gave
//! an order for free (see `events.rs`, and the `FOR UPDATE`s of read-modify-writes).

mod cluster;
mod contact_cache;
mod contacts;
mod device;
mod events;
mod groups;
mod inbox;
mod keys;
mod media;
mod number_checks;
mod outbox;
mod sessions;
mod sim;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder};
use tokio::time::Instant;

use crate::store::retry::jitter;
use crate::store::sql::{Arg, Dialect};
use crate::store::traits::Health;
use crate::store::{DatabaseOptions, StoreResult};

/// How long a request waits for a free connection before "the database is unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A statement, or a transaction left idle, running longer than this is cut off by the
/// server itself: nothing of ours takes that long, and a stuck one must not hold its locks.
const SERVER_TIMEOUT: &str = "60s";
/// Shown in `pg_stat_activity`, so an operator sees whose connections these are.
const APPLICATION_NAME: &str = "whatsapp-manager";

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// How long a write keeps retrying a transaction that lost a race (deadlock,
    /// serialization failure, a dropped connection) before the caller hears "unavailable".
    pub(super) busy_limit: Duration,
}

impl PgStore {
    /// Connects and migrates. Errors name the database with its password hidden.
    pub async fn connect(url: &str, options: &DatabaseOptions) -> anyhow::Result<Self> {
        let shown = redact(url);
        let opts = PgConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {shown}"))?
            .application_name(APPLICATION_NAME)
            .options([
                ("statement_timeout", SERVER_TIMEOUT),
                ("idle_in_transaction_session_timeout", SERVER_TIMEOUT),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot connect to database {shown}"))?;
        // sqlx holds an advisory lock while it migrates: servers starting together take turns.
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("database migration failed")?;
        Ok(Self {
            pool,
            busy_limit: options.busy_limit,
        })
    }
}

/// The URL as it may be shown: the password, in the user part or as a `password=`
/// parameter, replaced. Anything unparseable is shown by its scheme only.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        return format!("{scheme}:<unparseable URL hidden>");
    };
    if parsed.password().is_some() && parsed.set_password(Some("*****")).is_err() {
        return format!("{}:<URL hidden>", parsed.scheme());
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "*****".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Runs `$body` (a block returning a `StoreResult`, with `$tx: &mut PgConnection` inside a
/// transaction) as one write: committed when it returns `Ok` (early `return Ok(..)`s
/// included), rolled back when it returns `Err`. A try that failed before its commit because the database said
/// "not now" (a deadlock, a serialization failure, a lost connection: nothing of it was
/// kept) runs again whole, within the store's busy limit; so the block must not act outside
/// the transaction. A failed commit is never retried: it may have happened. A macro for the
/// same reason as SQLite's `write_tx!`: a closure borrowing the connection cannot be `Send`.
macro_rules! pg_tx {
    ($store:expr, $what:literal, |$tx:ident| $body:block) => {{
        let mut attempts = $crate::store::postgres::Attempts::new($store.busy_limit, $what);
        loop {
            let mut committing = false;
            let tried: $crate::store::StoreResult<_> = async {
                let mut tx = $store.pool.begin().await?;
                // Its own async block: a `return` in the body ends the body, not this try,
                // so whatever it returns `Ok` is committed.
                let out: $crate::store::StoreResult<_> = {
                    let $tx: &mut sqlx::PgConnection = &mut tx;
                    async { $body }.await
                };
                let out = out?;
                committing = true;
                tx.commit().await?;
                Ok(out)
            }
            .await;
            if let Some(done) = attempts.settle(tried, committing).await {
                break done;
            }
        }
    }};
}
pub(crate) use pg_tx;

/// One write through [`pg_tx!`]: how long it has been trying, and why.
pub(crate) struct Attempts {
    limit: Duration,
    what: &'static str,
    started: Instant,
    backoff: Duration,
    tries: u32,
}

impl Attempts {
    pub(crate) fn new(limit: Duration, what: &'static str) -> Self {
        Self {
            limit,
            what,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
            tries: 0,
        }
    }

    /// `Some` to hand to the caller, `None` to run the transaction again after a pause.
    pub(crate) async fn settle<T>(
        &mut self,
        tried: StoreResult<T>,
        committing: bool,
    ) -> Option<StoreResult<T>> {
        let e = match tried {
            Err(e) if !committing && e.is_unavailable() && !e.is_closed() => e,
            done => return Some(done),
        };
        self.tries += 1;
        let pause = jitter(self.backoff);
        if self.started.elapsed() + pause >= self.limit {
            return Some(Err(e.context(format!(
                "{} (gave up after {} tries in {:.1}s)",
                self.what,
                self.tries,
                self.started.elapsed().as_secs_f64()
            ))));
        }
        tracing::debug!("{} lost a race, trying again: {e:#}", self.what);
        tokio::time::sleep(pause).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        None
    }
}

/// Text PostgreSQL can store: it refuses NUL in `TEXT`, where SQLite keeps it, and one such
/// name from a phone must not fail a whole fetch batch.
pub(super) fn pg_text(s: Option<&str>) -> Option<String> {
    s.map(|s| {
        if s.contains('\0') {
            s.replace('\0', "")
        } else {
            s.to_owned()
        }
    })
}

/// A `LIMIT`: SQLite takes a negative one as "no limit", which PostgreSQL spells NULL.
pub(super) fn page_limit(limit: i64) -> Option<i64> {
    (limit >= 0).then_some(limit)
}

/// PostgreSQL's words where SQLite's differ (see [`Dialect`]).
impl Dialect for Postgres {
    const POSITION: &'static str = "strpos";

    fn bind<'t, T: Arg<'t>>(q: &mut QueryBuilder<Self>, value: T) {
        q.push_bind(value);
    }

    fn limit(limit: i64) -> Option<i64> {
        page_limit(limit)
    }

    fn text(s: Option<&str>) -> Option<String> {
        pg_text(s)
    }

    fn push_and_json_holds(q: &mut QueryBuilder<Self>, array: &str, value: String) {
        // `?` is JSONB's "has this string element" (sqlx binds with $n, so it is no
        // placeholder here).
        q.push(format!(" AND {array} ? ")).push_bind(value);
    }
}

#[async_trait]
impl Health for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn cluster(&self) -> Option<std::sync::Arc<dyn crate::store::traits::ClusterStore>> {
        Some(self.as_cluster())
    }

    fn signals(&self) -> Option<std::sync::Arc<dyn crate::store::traits::Signals>> {
        Some(self.as_signals())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_never_carries_its_password() {
        for (url, secret) in [
            ("postgres://wam:s3cr3t@db.example/wam", "s3cr3t"),
            (
                "postgresql://wam@db.example/wam?sslmode=require&password=hunter22",
                "hunter22",
            ),
            ("postgres://wam:p%40ss@localhost:5432/x", "p%40ss"),
            ("postgres://wam:[not a url", "not a url"),
        ] {
            let shown = redact(url);
            assert!(!shown.contains(secret), "{url} shown as {shown}");
            assert!(shown.starts_with("postgres"), "{shown}");
        }
        assert_eq!(
            redact("postgres://wam@localhost/db?host=/tmp/x&port=5433"),
            "postgres://wam@localhost/db?host=/tmp/x&port=5433"
        );
        assert!(redact("postgres://u:pw@h/db?sslmode=require").contains("sslmode=require"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_try_is_run_again_only_when_nothing_of_it_can_have_been_kept() {
        use crate::store::StoreError;
        let mut a = Attempts::new(Duration::from_secs(10), "write");
        let lost_race = || Err::<(), _>(StoreError::unavailable("deadlock detected"));
        assert!(a.settle(lost_race(), false).await.is_none(), "retried");
        // A commit that failed may have happened: never again.
        assert!(a.settle(lost_race(), true).await.is_some());
        let closed = Err::<(), _>(StoreError::from(sqlx::Error::PoolClosed));
        assert!(a.settle(closed, false).await.is_some());
        let other = Err::<(), _>(StoreError::other("syntax error"));
        assert!(a.settle(other, false).await.is_some());
        assert_eq!(a.settle(Ok(7), false).await.unwrap().unwrap(), 7);

        let mut a = Attempts::new(Duration::from_secs(1), "write");
        let started = Instant::now();
        let gave_up = loop {
            if let Some(out) = a.settle(lost_race(), false).await {
                break out;
            }
        };
        let e = gave_up.unwrap_err();
        assert!(e.is_unavailable(), "still the database's 'not now': {e}");
        assert!(e.to_string().contains("gave up after"), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(1));
    }

    #[test]
    fn nul_is_the_one_thing_dropped_from_text() {
        assert_eq!(pg_text(Some("a\0b")).as_deref(), Some("ab"));
        assert_eq!(pg_text(Some("علي")).as_deref(), Some("علي"));
        assert_eq!(pg_text(None), None);
    }
}
