//! The engine's device store (whatsapp-rust's storage `Backend` over the service's database),
//! through its public API, on SQLite and on PostgreSQL: every test runs on both.
//!
//! PostgreSQL: each test gets a database of its own on the tests' server (`testkit::pg`: a
//! throwaway cluster, or the one `WAM_TEST_POSTGRES` names); without one they fail, never skip.

mod differential;
mod isolation;
mod methods;
mod protocol;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use whatsapp_manager::domain::SessionId;
use whatsapp_manager::store::SqliteStore;
use whatsapp_manager::store::device::{CredentialStore, PgCredentials};
use whatsapp_rust::store::traits::Backend;

/// A fresh database of one kind with the device store over it, and a side door (a plain
/// pool on the same database) for what the API does not show: row counts per table.
pub struct Db {
    pub creds: Arc<dyn CredentialStore>,
    /// The database's URL, as `--database` takes it.
    pub url: String,
    pub raw: Raw,
    pub kind: &'static str,
    pub closer: Closer,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<testkit::db::TestDb>,
}

pub enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// What shuts the store's own pools (the service stopping, the database going away).
pub enum Closer {
    Sqlite(SqliteStore),
    Postgres(sqlx::PgPool),
}

impl Db {
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("wam.db").display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let raw = sqlx::SqlitePool::connect_with(SqliteConnectOptions::from_str(&url).unwrap())
            .await
            .unwrap();
        Db {
            creds: Arc::new(store.clone()),
            url,
            raw: Raw::Sqlite(raw),
            kind: "sqlite",
            closer: Closer::Sqlite(store),
            _dir: Some(dir),
            _pg: None,
        }
    }

    pub async fn postgres() -> Db {
        let db = testkit::pg::database().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(PgConnectOptions::from_str(&db.url).unwrap())
            .await
            .unwrap();
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .unwrap();
        Db {
            creds: Arc::new(PgCredentials::new(pool.clone())),
            url: db.url.clone(),
            raw: Raw::Postgres(pool.clone()),
            kind: "postgres",
            closer: Closer::Postgres(pool),
            _dir: None,
            _pg: Some(db),
        }
    }

    /// Closes the pools the store reads and writes through.
    pub async fn close_store(&self) {
        use whatsapp_manager::store::prelude::Health as _;
        match &self.closer {
            Closer::Sqlite(s) => s.close().await,
            Closer::Postgres(p) => p.close().await,
        }
    }

    pub async fn backend(&self, session: &str) -> Arc<dyn Backend> {
        self.creds.device_backend(&sid(session)).await.unwrap()
    }

    /// Every `wa_*` table of the schema but `wa_devices`, read from the database itself, so
    /// a table added later cannot escape the tests that go through all of them.
    pub async fn device_tables(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'wa\\_%' ESCAPE '\\'",
            )
            .fetch_all(p)
            .await
            .unwrap(),
            Raw::Postgres(p) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name LIKE 'wa\\_%'",
            )
            .fetch_all(p)
            .await
            .unwrap(),
        };
        names.retain(|n| n != "wa_devices");
        names.sort();
        names
    }

    /// How many rows `table` holds for the device of `session` (by its `wa_devices` id).
    pub async fn rows_of(&self, table: &str, session: &str) -> i64 {
        let sql = format!(
            "SELECT COUNT(*) FROM {table} WHERE device_id IN \
             (SELECT id FROM wa_devices WHERE session_id = $1)"
        );
        self.count(&sql, session).await
    }

    pub async fn rows_with_device_id(&self, table: &str, device_id: i64) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE device_id = $1");
        match &self.raw {
            Raw::Sqlite(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                    .bind(device_id)
                    .fetch_one(p)
                    .await
            }
            Raw::Postgres(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.clone()))
                    .bind(device_id)
                    .fetch_one(p)
                    .await
            }
        }
        .unwrap()
    }

    pub async fn device_id(&self, session: &str) -> Option<i64> {
        let sql = "SELECT id FROM wa_devices WHERE session_id = $1";
        match &self.raw {
            Raw::Sqlite(p) => {
                sqlx::query_scalar(sql)
                    .bind(session)
                    .fetch_optional(p)
                    .await
            }
            Raw::Postgres(p) => {
                sqlx::query_scalar(sql)
                    .bind(session)
                    .fetch_optional(p)
                    .await
            }
        }
        .unwrap()
    }

    pub async fn count(&self, sql: &str, session: &str) -> i64 {
        match &self.raw {
            Raw::Sqlite(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .bind(session)
                    .fetch_one(p)
                    .await
            }
            Raw::Postgres(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .bind(session)
                    .fetch_one(p)
                    .await
            }
        }
        .unwrap()
    }

    /// A row in each of the service's engine caches for `session`, as the engine writes them.
    pub async fn cache_rows(&self, session: &str) {
        let statements = [
            "INSERT INTO engine_contact_cache (session_id, jid, updated_at) \
             VALUES ($1, '966501234567@s.whatsapp.net', 1)",
            "INSERT INTO engine_lid_map (session_id, lid_jid, pn_jid) \
             VALUES ($1, '1234@lid', '966501234567@s.whatsapp.net')",
        ];
        for sql in statements {
            match &self.raw {
                Raw::Sqlite(p) => sqlx::query(sql).bind(session).execute(p).await.map(drop),
                Raw::Postgres(p) => sqlx::query(sql).bind(session).execute(p).await.map(drop),
            }
            .unwrap();
        }
    }
}

pub fn sid(s: &str) -> SessionId {
    SessionId::from_db(s.to_owned())
}

/// Instantiates each listed `async fn name(db: Db)` once per backend:
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::postgres().await).await
                }
            )*
        }
    };
}
