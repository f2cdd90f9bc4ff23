//! A fresh, empty database of either backend for one test; gone (or queued for removal) when
//! the test drops it.

use crate::pg;

/// Which of the server's backends a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

impl TestBackend {
    /// A database nobody else uses, named by [`TestDb::url`].
    pub async fn database(self) -> TestDb {
        match self {
            Self::Sqlite => sqlite().await,
            Self::Postgres => postgres().await,
        }
    }
}

/// A database URL the server's `--database` accepts, and what keeps that database alive.
pub struct TestDb {
    pub url: String,
    _guard: Guard,
}

enum Guard {
    /// The directory of the SQLite file (and its `-wal`/`-shm`); removed on drop.
    Sqlite { _dir: tempfile::TempDir },
    /// Queues the PostgreSQL database for dropping on drop.
    Postgres { _release: pg::Release },
}

impl TestDb {
    pub(crate) fn postgres(url: String, release: pg::Release) -> Self {
        Self {
            url,
            _guard: Guard::Postgres { _release: release },
        }
    }
}

/// A SQLite file in a temporary directory of its own.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir for a SQLite database");
    let url = format!("sqlite://{}", dir.path().join("wam.db").display());
    TestDb {
        url,
        _guard: Guard::Sqlite { _dir: dir },
    }
}

/// A new database on the tests' PostgreSQL ([`pg::database`]); panics with the install hint
/// when there is none.
pub async fn postgres() -> TestDb {
    pg::database().await
}
