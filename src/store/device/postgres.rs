//! The device store on PostgreSQL: [`PgCredentials`] is the [`super::CredentialStore`], and
//! each session's engine gets a [`PgDevice`] over the same pool.

use std::time::Duration;

use sqlx::PgPool;
use whatsapp_rust::store::traits::Backend;

use super::imports::*;
use super::{appsync, creds, protocol, secrets, signal};
use crate::domain::SessionId;

/// How long a write keeps retrying a transaction that lost a serialization race or a deadlock
/// before the caller gets the error.
pub(super) const PG_RETRY_FOR: Duration = Duration::from_secs(10);

/// The engine's credentials on PostgreSQL (the `wa_*` tables of migration 0002).
#[derive(Clone)]
pub struct PgCredentials {
    pool: PgPool,
}

impl PgCredentials {
    /// Over a pool whose database has the service's migrations applied.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    fn device_reads(&self) -> &PgPool {
        &self.pool
    }

    fn pg(&self) -> &PgPool {
        &self.pool
    }

    fn new_device_backend(&self, device_id: i64, session: SessionId) -> Arc<dyn Backend> {
        Arc::new(PgDevice {
            pool: self.pool.clone(),
            device_id,
            session,
        })
    }
}

/// One session's device on the shared PostgreSQL database.
pub(crate) struct PgDevice {
    pool: PgPool,
    device_id: i64,
    session: SessionId,
}

impl PgDevice {
    fn reads(&self) -> &PgPool {
        &self.pool
    }

    fn pg(&self) -> &PgPool {
        &self.pool
    }
}

impl std::fmt::Debug for PgDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgDevice({}, {})", self.session, self.device_id)
    }
}

/// A transaction that Postgres aborted to resolve a race (serialization failure, deadlock):
/// running it again whole is the documented remedy.
pub(super) fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// Runs `$body` (with `$tx: &mut PgConnection`) as one transaction, committed when it returns
/// `Ok`; a try that lost a race is rolled back and run again, whole, for up to
/// [`PG_RETRY_FOR`]. A `Result<_, sqlx::Error>`: the driver's error, whole, for the caller
/// to map (the library's error keeps it as its source; ours converts with `?`).
macro_rules! pg_write {
    ($self:expr, $what:literal, |$tx:ident| $body:block) => {{
        let started = tokio::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let tried: Result<_, sqlx::Error> = async {
                let mut tx = $self.pg().begin().await?;
                let out: Result<_, sqlx::Error> = {
                    let $tx: &mut sqlx::PgConnection = &mut tx;
                    $body
                };
                let out = out?;
                tx.commit().await?;
                Ok(out)
            }
            .await;
            match tried {
                Err(e) if is_retryable(&e) && started.elapsed() + pause < PG_RETRY_FOR => {
                    tracing::debug!("{} lost a race, trying again: {e:#}", $what);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(500));
                }
                done => break done,
            }
        }
    }};
}

creds::impl_credential_store!(PgCredentials, sqlx::Postgres, pg_write);
signal::impl_signal_store!(PgDevice, sqlx::Postgres, pg_write);
appsync::impl_app_sync_store!(PgDevice, sqlx::Postgres, pg_write);
protocol::impl_protocol_store!(PgDevice, sqlx::Postgres, pg_write);
secrets::impl_secret_and_device_store!(PgDevice, sqlx::Postgres, pg_write);
