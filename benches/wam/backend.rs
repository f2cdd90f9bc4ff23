//! Where a scenario's server keeps its state: a SQLite file in the scenario's own directory,
//! or a fresh database on a PostgreSQL server, either one the caller names (`--database`) or
//! a private durable cluster started for the run (`--postgres`).
//!
//! Every scenario gets a database nobody else used, so one scenario's rows, caches and
//! bloat never weigh on the next one's numbers.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use testkit::pg::{Cluster, ClusterOptions};

/// Which of the server's two backends a row was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL server of the run and what it is set to, for the report.
pub struct Postgres {
    admin: String,
    /// The private cluster of `--postgres`, stopped when the run ends; `None` for a server
    /// the caller named.
    _cluster: Option<Cluster>,
    /// "PostgreSQL 15.14; fsync=on, …", printed with every PostgreSQL row.
    pub settings: String,
}

/// Settings that decide what a write costs: the rows of a non-durable server would not
/// compare with SQLite's (`synchronous=NORMAL` in WAL mode still fsyncs at checkpoints).
const SETTINGS: [&str; 6] = [
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "shared_buffers",
    "wal_buffers",
    "max_wal_size",
];

impl Postgres {
    /// A server the caller runs; `admin` must be allowed to `CREATE DATABASE`.
    pub async fn existing(admin: &str) -> anyhow::Result<Self> {
        let settings = describe(admin).await?;
        Ok(Self {
            admin: admin.to_string(),
            _cluster: None,
            settings,
        })
    }

    /// A cluster of our own, set up as a production server is: fsync, synchronous commit
    /// and full page writes on.
    pub async fn private() -> anyhow::Result<Self> {
        // It panics, with the install hint, where no PostgreSQL is installed.
        let cluster = tokio::task::spawn_blocking(|| {
            Cluster::start(ClusterOptions {
                durable: true,
                ssl: false,
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start a PostgreSQL cluster: {e}"))?;
        let admin = cluster.admin_url().to_string();
        let settings = describe(&admin).await?;
        Ok(Self {
            admin,
            _cluster: Some(cluster),
            settings,
        })
    }

    async fn create(&self) -> anyhow::Result<(String, String)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut conn = PgConnection::connect(&self.admin)
            .await
            .with_context(|| format!("connect to {}", redact(&self.admin)))?;
        let name = format!(
            "wam_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // Our own name, made above; the server may hold one left by a crashed earlier run.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = conn.close().await;
        Ok((testkit::pg::with_database(&self.admin, &name), name))
    }

    async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect(&self.admin).await?;
        // FORCE: a server that failed to stop may still hold connections.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(())
    }
}

async fn describe(admin: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(admin)
        .await
        .with_context(|| format!("connect to {}", redact(admin)))?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let mut parts = Vec::new();
    for name in SETTINGS {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        parts.push(format!("{name}={value}"));
    }
    let _ = conn.close().await;
    Ok(format!("PostgreSQL {version}; {}", parts.join(", ")))
}

fn redact(url: &str) -> String {
    whatsapp_manager::store::redact(url)
}

/// A scenario's backend: what it names its rows and where it gets databases.
pub struct Target {
    pub backend: Backend,
    pg: Option<Arc<Postgres>>,
    /// Databases made for the running scenario, dropped when it ends.
    created: Mutex<Vec<String>>,
}

impl Target {
    pub fn sqlite() -> Self {
        Self {
            backend: Backend::Sqlite,
            pg: None,
            created: Mutex::new(Vec::new()),
        }
    }

    pub fn postgres(pg: Arc<Postgres>) -> Self {
        Self {
            backend: Backend::Postgres,
            pg: Some(pg),
            created: Mutex::new(Vec::new()),
        }
    }

    /// The SQLite rows keep the names they always had, so runs compare across history.
    pub fn scenario(&self, name: &str) -> String {
        match self.backend {
            Backend::Sqlite => name.to_string(),
            Backend::Postgres => format!("{name}-postgres"),
        }
    }

    pub fn postgres_settings(&self) -> Option<&str> {
        self.pg.as_deref().map(|p| p.settings.as_str())
    }

    /// A database nobody used, as a `--database` URL: `<dir>/<file>` for SQLite, a new
    /// database for PostgreSQL, dropped by [`Target::release`].
    pub async fn fresh(&self, dir: &Path, file: &str) -> anyhow::Result<String> {
        match (&self.pg, self.backend) {
            (_, Backend::Sqlite) => Ok(format!("sqlite://{}", dir.join(file).display())),
            (Some(pg), Backend::Postgres) => {
                let (url, name) = pg.create().await?;
                self.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name);
                Ok(url)
            }
            (None, Backend::Postgres) => bail!("no PostgreSQL server for this run"),
        }
    }

    /// Drops the databases made since the last release, however the scenario ended (a
    /// SQLite file goes with the scenario's directory). Best effort: a database left
    /// behind costs the server's disk, not a number.
    pub async fn release(&self) {
        let names = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(pg) = &self.pg else { return };
        for name in names {
            if let Err(e) = pg.drop_database(&name).await {
                eprintln!("could not drop the benchmark database {name}: {e:#}");
            }
        }
    }
}
