//! fetch: a 100,000-entry phone book with the junk a real account carries, fetched into
//! contacts; beside it, the same rows bulk-upserted straight into a fresh database of the
//! same backend by this process.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::Opts;
use crate::backend::{Backend, Target};
use crate::density::AUTO_SCAN;
use crate::report::Row;
use crate::server::ServerProcess;

const PAIR: (u64, u64) = (1, 1);
/// Polling the progress route this often bounds the error of the measured time.
const POLL: Duration = Duration::from_millis(10);

/// One contact row as the server stored it.
struct Contact {
    phone_number: String,
    jid: Option<String>,
    name: Option<String>,
    push_name: Option<String>,
    name_lc: Option<String>,
    push_name_lc: Option<String>,
    is_business: bool,
    last_message_at: Option<i64>,
    created_at: i64,
}

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let contacts = opts.contacts.to_string();
    let mut args = AUTO_SCAN.to_vec();
    args.extend(["--sim-contacts", contacts.as_str()]);
    let database = target.fresh(dir.path(), "wam.db").await?;
    let server = ServerProcess::serve_sim(dir.path(), &database, &args)?;
    let api = &server.api;
    let (u, p) = PAIR;
    api.init(u, p).await?;
    api.wait_count("ready", 1, Duration::from_secs(30)).await?;

    let body = json!({"user_id": u, "place_id": p});
    let progress = format!("/api/whatsapp/contacts/progress?user_id={u}&place_id={p}");
    let t = Instant::now();
    api.post("/api/whatsapp/start-contact-fetch", &body).await?;
    let done = loop {
        let d = api.get(&progress).await?;
        let data = &d["data"];
        if data["is_fetching"] == false && data["status"] == "ready" {
            if let Some(e) = data["contacts_fetch_error"].as_str() {
                bail!("the fetch failed: {e}");
            }
            if data["contacts_fetch_completed"] == true {
                break d;
            }
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the fetch did not end in 300 s: {d}");
        }
        tokio::time::sleep(POLL).await;
    };
    let took = t.elapsed();
    let stored = done["data"]["total_contacts"].as_u64().unwrap_or(0);

    let rows = match target.backend {
        Backend::Sqlite => read_contacts_sqlite(&dir.path().join("wam.db"), PAIR).await?,
        Backend::Postgres => read_contacts_postgres(&database, PAIR).await?,
    };
    if rows.len() as u64 != stored {
        bail!(
            "the server says {stored} contacts, its database holds {}",
            rows.len()
        );
    }
    server.stop()?;
    let baseline = match target.backend {
        Backend::Sqlite => baseline_sqlite(&dir.path().join("baseline.db"), PAIR, &rows).await?,
        Backend::Postgres => {
            let fresh = target.fresh(dir.path(), "baseline.db").await?;
            baseline_postgres(&fresh, PAIR, &rows).await?
        }
    };

    let mut row = Row::new("fetch", target);
    let ours_rate = stored as f64 / took.as_secs_f64();
    let raw_rate = stored as f64 / baseline.as_secs_f64();
    row.metric("phone_book_entries", opts.contacts as f64, "")
        .metric("contacts_stored", stored as f64, "")
        .metric("fetch_seconds", took.as_secs_f64(), "s")
        .metric("contacts_per_second", ours_rate, "/s")
        .metric("baseline_seconds", baseline.as_secs_f64(), "s")
        .metric("baseline_contacts_per_second", raw_rate, "/s")
        .metric("share_of_baseline", ours_rate / raw_rate, "")
        .target("fetch_seconds", true, 3.0, "s")
        .target("share_of_baseline", false, 0.30, "")
        .note(
            "fetch = start-contact-fetch answered → progress says completed (polled every 10 ms): \
             reading the simulated phone book, filtering and E.164-normalising every entry, \
             upserting in batches with progress, counting",
        )
        .note(match target.backend {
            Backend::Sqlite => {
                "baseline = this process upserting the rows the server stored, in 2,000-row \
                 statements in one transaction, into a fresh database with the same schema \
                 and pragmas (WAL, synchronous=NORMAL)"
            }
            Backend::Postgres => {
                "baseline = this process upserting the rows the server stored, in 2,000-row \
                 statements in one transaction, into a fresh database with the same schema \
                 on the same PostgreSQL server, after the server under test has stopped"
            }
        });
    Ok(row)
}

async fn open(path: &std::path::Path, create: bool) -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await?)
}

const SELECT_CONTACTS: &str = "SELECT phone_number, jid, name, push_name, name_lc, \
     push_name_lc, is_business, last_message_at, created_at FROM contacts \
     WHERE user_id = $1 AND place_id = $2";

async fn read_contacts_sqlite(
    db: &std::path::Path,
    (u, p): (u64, u64),
) -> anyhow::Result<Vec<Contact>> {
    let pool = open(db, false).await?;
    let rows = sqlx::query(SELECT_CONTACTS)
        .bind(u as i64)
        .bind(p as i64)
        .fetch_all(&pool)
        .await
        .context("read the server's contacts")?;
    pool.close().await;
    rows.iter().map(contact).collect()
}

async fn read_contacts_postgres(url: &str, (u, p): (u64, u64)) -> anyhow::Result<Vec<Contact>> {
    let pool = open_postgres(url).await?;
    let rows = sqlx::query(SELECT_CONTACTS)
        .bind(u as i64)
        .bind(p as i64)
        .fetch_all(&pool)
        .await
        .context("read the server's contacts")?;
    pool.close().await;
    rows.iter().map(contact).collect()
}

async fn open_postgres(url: &str) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new().max_connections(1).connect(url).await?)
}

/// One row of either backend: the column types decode alike (SQLite's 0/1 as a bool).
fn contact<R>(r: &R) -> anyhow::Result<Contact>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Contact {
        phone_number: r.try_get(0)?,
        jid: r.try_get(1)?,
        name: r.try_get(2)?,
        push_name: r.try_get(3)?,
        name_lc: r.try_get(4)?,
        push_name_lc: r.try_get(5)?,
        is_business: r.try_get(6)?,
        last_message_at: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

/// Rows per multi-row statement: 13 values each, under SQLite's 32,766 bound parameters
/// (PostgreSQL takes 65,535; the same size keeps the two baselines alike).
const BASELINE_ROWS_PER_STATEMENT: usize = 2_000;

/// The rows upserted the fastest plain way: one transaction, multi-row `INSERT … ON
/// CONFLICT` statements of 2,000 rows, on `$tx` of database `$db`; the statement text is
/// the same on both backends.
macro_rules! upsert_all {
    ($db:ty, $tx:expr, ($u:expr, $p:expr), $rows:expr) => {
        for chunk in $rows.chunks(BASELINE_ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO contacts (user_id, place_id, phone_number, jid, name, push_name, \
                 name_lc, push_name_lc, is_business, last_message_at, created_at, updated_at, \
                 last_synced_at) ",
            );
            q.push_values(chunk, |mut b, c| {
                b.push_bind($u as i64)
                    .push_bind($p as i64)
                    .push_bind(&c.phone_number)
                    .push_bind(&c.jid)
                    .push_bind(&c.name)
                    .push_bind(&c.push_name)
                    .push_bind(&c.name_lc)
                    .push_bind(&c.push_name_lc)
                    .push_bind(c.is_business)
                    .push_bind(c.last_message_at)
                    .push_bind(c.created_at)
                    .push_bind(c.created_at)
                    .push_bind(c.created_at);
            });
            q.push(
                " ON CONFLICT (user_id, place_id, phone_number) DO UPDATE SET jid = excluded.jid, \
                 name = excluded.name, push_name = excluded.push_name, \
                 name_lc = excluded.name_lc, push_name_lc = excluded.push_name_lc, \
                 is_business = excluded.is_business, \
                 last_message_at = excluded.last_message_at, updated_at = excluded.updated_at",
            );
            q.build().execute(&mut *$tx).await?;
        }
    };
}

async fn baseline_sqlite(
    db: &std::path::Path,
    (u, p): (u64, u64),
    rows: &[Contact],
) -> anyhow::Result<Duration> {
    let pool = open(db, true).await?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    let t = Instant::now();
    let mut tx = pool.begin().await?;
    upsert_all!(sqlx::Sqlite, tx, (u, p), rows);
    tx.commit().await?;
    let took = t.elapsed();
    pool.close().await;
    Ok(took)
}

async fn baseline_postgres(
    url: &str,
    (u, p): (u64, u64),
    rows: &[Contact],
) -> anyhow::Result<Duration> {
    let pool = open_postgres(url).await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    let t = Instant::now();
    let mut tx = pool.begin().await?;
    upsert_all!(sqlx::Postgres, tx, (u, p), rows);
    tx.commit().await?;
    let took = t.elapsed();
    pool.close().await;
    Ok(took)
}
