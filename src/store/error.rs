//! The store's error: what the callers need to tell apart, whichever database answered.
//! "The database is down or too busy" must stay a 503 on SQLite and on PostgreSQL alike, so
//! it is a variant, not a message to grep.

use std::fmt;

/// Every store method answers with this.
pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row the method was promised is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// A uniqueness rule the method does not resolve itself.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or stayed busy for longer than we wait: trying
    /// again later can succeed (unless it was closed, which only happens while stopping).
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Why the database did not answer in time.
#[derive(Debug)]
pub struct Unavailable {
    pub reason: String,
    /// Our own pool was closed: the server is stopping, nothing will come back.
    pub closed: bool,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl StoreError {
    pub fn other(message: impl fmt::Display) -> Self {
        Self::Other(anyhow::anyhow!("{message}"))
    }

    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable(Unavailable {
            reason: reason.into(),
            closed: false,
        })
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Unavailable(Unavailable { closed: true, .. }))
    }

    /// The same error, saying what was being done, without losing its kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        match self {
            Self::NotFound(m) => Self::NotFound(format!("{what}: {m}")),
            Self::Conflict(m) => Self::Conflict(format!("{what}: {m}")),
            Self::Unavailable(u) => Self::Unavailable(Unavailable {
                reason: format!("{what}: {}", u.reason),
                closed: u.closed,
            }),
            Self::Other(e) => Self::Other(e.context(what.to_string())),
        }
    }
}

/// SQLite's busy and locked codes with all their extended codes (`SQLITE_BUSY_SNAPSHOT` is
/// 517: the low byte is the primary code).
fn sqlite_contention(code: &str) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    code.parse::<i32>()
        .is_ok_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

/// PostgreSQL's SQLSTATEs that say "not now" rather than "not this": connection lost
/// (class 08), the server shutting down (57P01–57P03), out of resources (class 53), a lock
/// not available (55P03), and serialization failures and deadlocks (40001, 40P01), which
/// reach a caller only once our own retries are spent.
fn postgres_unavailable(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "55P03" | "40001" | "40P01"
        )
}

const UNIQUE_VIOLATION_PG: &str = "23505";
/// `SQLITE_CONSTRAINT_UNIQUE` and `SQLITE_CONSTRAINT_PRIMARYKEY`.
const UNIQUE_VIOLATION_SQLITE: [&str; 2] = ["2067", "1555"];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let unavailable = |closed: bool, e: &sqlx::Error| {
            Self::Unavailable(Unavailable {
                reason: format!("the database is unavailable: {e}"),
                closed,
            })
        };
        match &e {
            sqlx::Error::PoolClosed => unavailable(true, &e),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => unavailable(false, &e),
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if sqlite_contention(&code) || postgres_unavailable(&code) {
                    unavailable(false, &e)
                } else if code == UNIQUE_VIOLATION_PG || UNIQUE_VIOLATION_SQLITE.contains(&&*code) {
                    Self::Conflict(e.to_string())
                } else {
                    Self::Other(anyhow::Error::new(e))
                }
            }
            sqlx::Error::RowNotFound => Self::NotFound(e.to_string()),
            _ => Self::Other(anyhow::Error::new(e)),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Other(anyhow::Error::new(e))
    }
}

/// `.context(..)` on anything that becomes a [`StoreError`], keeping its kind (anyhow's
/// would turn "busy" into an opaque error).
pub trait StoreContext<T> {
    fn context(self, what: &'static str) -> StoreResult<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> StoreResult<T>;
}

impl<T, E: Into<StoreError>> StoreContext<T> for Result<T, E> {
    fn context(self, what: &'static str) -> StoreResult<T> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> StoreResult<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl<T> StoreContext<T> for Option<T> {
    fn context(self, what: &'static str) -> StoreResult<T> {
        self.ok_or_else(|| StoreError::other(what))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> StoreResult<T> {
        self.ok_or_else(|| StoreError::other(what()))
    }
}

/// Whether an error that went through `anyhow` (the session and engine layers) is the
/// store's "unavailable": the HTTP layer answers it with 503.
pub fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_unavailable)
            || c.downcast_ref::<sqlx::Error>().is_some_and(|s| {
                matches!(s, sqlx::Error::PoolTimedOut)
                    || matches!(s, sqlx::Error::Database(db)
                        if db.code().is_some_and(|c| sqlite_contention(&c) || postgres_unavailable(&c)))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind() {
        let e = StoreError::unavailable("locked").context("save session");
        assert!(e.is_unavailable());
        assert_eq!(e.to_string(), "save session: locked");
        let closed = StoreError::from(sqlx::Error::PoolClosed).context("x");
        assert!(closed.is_closed());
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::NotFound(_)
        ));
        assert!(!StoreError::other("boom").is_unavailable());
    }

    #[test]
    fn postgres_codes_that_mean_not_now() {
        for code in ["08006", "57P01", "53300", "55P03", "40001", "40P01"] {
            assert!(postgres_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "22001"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
        assert!(sqlite_contention("517"));
        assert!(sqlite_contention("6"));
        assert!(!sqlite_contention("2067"));
    }

    #[test]
    fn an_unavailable_store_error_is_busy_through_anyhow() {
        let e = anyhow::Error::new(StoreError::unavailable("down")).context("load");
        assert!(is_busy(&e));
        assert!(!is_busy(&anyhow::Error::new(StoreError::other("no"))));
        assert!(is_busy(&anyhow::Error::new(sqlx::Error::PoolTimedOut)));
    }
}
