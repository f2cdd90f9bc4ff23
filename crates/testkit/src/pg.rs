//! The tests' PostgreSQL: a fresh database per call, so tests run in parallel.
//!
//! The server is the one `WAM_TEST_POSTGRES` names (an admin URL), else a throwaway cluster
//! this test process starts once from the installed binaries: data and unix socket in
//! `<temp>/wam-pg-<pid>`, no TCP, durability off (a test database is never worth an fsync).
//! The postmaster is tied to the process with `PR_SET_PDEATHSIG`, so however the test binary
//! ends (even `kill -9`) the cluster ends with it; the directories of dead processes are
//! removed by the next start. Where no PostgreSQL can be had, every call panics with the
//! install hint: a test never skips silently.
//!
//! A test that must stop the server under a client, run it durably, or speak TLS to it starts
//! a [`Cluster`] of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

// Every name put into SQL here is one we made (`wam_t_<pid>_<n>`).
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub use crate::db::TestDb;
pub use cluster::{Cluster, ClusterOptions};
pub use postmaster::alive;

mod cluster;
mod postmaster;

pub const HINT: &str = "install PostgreSQL (apt-get install postgresql) or set WAM_TEST_POSTGRES";
/// An admin URL of a running server; when set, no cluster is started.
pub const SERVER_ENV: &str = "WAM_TEST_POSTGRES";

/// A new empty database; panics with [`HINT`] (and what went wrong) when there is no server.
pub async fn database() -> TestDb {
    match try_database().await {
        Ok(db) => db,
        Err(e) => panic!("no PostgreSQL for the tests: {e}\n{HINT}"),
    }
}

/// A new empty database named `wam_t_<pid>_<n>`, or why none could be had.
pub async fn try_database() -> Result<TestDb, String> {
    create_database(&admin_url().await?).await
}

/// A new empty database on the server of this admin URL.
async fn create_database(admin: &str) -> Result<TestDb, String> {
    drop_released(admin).await;
    let mut conn = PgConnection::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(admin)))?;
    let name = loop {
        let name = format!(
            "wam_t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let create = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")));
        match create.execute(&mut conn).await {
            Ok(_) => break name,
            // Another host's test process with our pid on a shared server: take the next n.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => continue,
            Err(e) => return Err(format!("CREATE DATABASE {name}: {e}")),
        }
    };
    let _ = conn.close().await;
    let url = with_database(admin, &name);
    let admin = admin.to_string();
    Ok(TestDb::postgres(url, Release { admin, name }))
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// Databases whose tests are done, dropped by the next [`database`] call: a drop cannot
/// await, and the last few of a process are left to the cluster's own removal (or, on a
/// shared server, to whoever empties it).
static RELEASED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Queues its database (admin URL, name) for dropping when dropped.
pub(crate) struct Release {
    admin: String,
    name: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let released = (
            std::mem::take(&mut self.admin),
            std::mem::take(&mut self.name),
        );
        if let Ok(mut queue) = RELEASED.lock() {
            queue.push(released);
        }
    }
}

/// Forgets the released databases of a cluster that is gone.
fn forget_released(admin: &str) {
    if let Ok(mut queue) = RELEASED.lock() {
        queue.retain(|(a, _)| a != admin);
    }
}

async fn drop_released(admin: &str) {
    let names: Vec<String> = {
        let Ok(mut queue) = RELEASED.lock() else {
            return;
        };
        let (ours, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *queue)
            .into_iter()
            .partition(|(a, _)| a == admin);
        *queue = others;
        ours.into_iter().map(|(_, name)| name).collect()
    };
    if names.is_empty() {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(admin).await else {
        return;
    };
    for name in names {
        // Best effort: a database left behind costs disk, not correctness. FORCE ends the
        // connections a finished test's pool may still hold.
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
    let _ = conn.close().await;
}

async fn admin_url() -> Result<String, String> {
    if let Ok(url) = std::env::var(SERVER_ENV)
        && !url.trim().is_empty()
    {
        return Ok(url.trim().to_string());
    }
    let cluster = tokio::task::spawn_blocking(|| {
        CLUSTER
            .get_or_init(Cluster::start_shared)
            .as_ref()
            .map(|c| c.admin_url().to_string())
            .map_err(Clone::clone)
    });
    cluster
        .await
        .map_err(|e| format!("starting the cluster panicked: {e}"))?
}

/// The admin URL with its database replaced by `name`; the query (socket directory, TLS)
/// kept.
pub fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.find('?') {
        Some(q) => admin.split_at(q),
        None => (admin, ""),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

/// The database a URL names: the path after the authority, before the query.
fn database_name(url: &str) -> &str {
    let base = url.split('?').next().unwrap_or(url);
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    base[after_scheme..]
        .split_once('/')
        .map_or("", |(_, name)| name)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => match url[start..start + at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..start + colon], &url[start + at..]),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_cluster;
