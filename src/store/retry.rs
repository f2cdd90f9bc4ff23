//! Background work waits for the database instead of dropping its step.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::StoreResult;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How long background work (the event log, the outbox, webhook deliveries, contact fetches,
/// session records) keeps trying one write before it gives up on it.
pub const BACKGROUND_RETRY_FOR: Duration = Duration::from_secs(60);
const BACKGROUND_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds, retrying any failure with a growing, jittered backoff for
/// [`BACKGROUND_RETRY_FOR`]: background work waits for the database rather than dropping its
/// step. Logs once when it starts retrying and once when it got through (or gave up); stops
/// at once when `cancel` fires or the store was closed, with the last error.
pub async fn keep_trying<T, Fut>(
    what: impl fmt::Display,
    cancel: Option<&CancellationToken>,
    mut op: impl FnMut() -> Fut,
) -> StoreResult<T>
where
    Fut: Future<Output = StoreResult<T>>,
{
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        let e = match op().await {
            Ok(t) => {
                if failures > 0 {
                    tracing::info!("✅ {what}: done after {} tries", failures + 1);
                }
                return Ok(t);
            }
            Err(e) => e,
        };
        failures += 1;
        if e.is_closed() || started.elapsed() >= BACKGROUND_RETRY_FOR {
            return Err(e);
        }
        if failures == 1 {
            tracing::warn!(
                "⚠️ {what} failed; retrying for up to {}s: {e:#}",
                BACKGROUND_RETRY_FOR.as_secs()
            );
        }
        let pause = jitter(backoff);
        backoff = (backoff * 2).min(BACKGROUND_MAX_BACKOFF);
        match cancel {
            Some(c) => tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = c.cancelled() => return Err(e.context("stopped retrying: shutting down")),
            },
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// Somewhere in `[d/2, d]`, so work that failed together does not come back together.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return d;
    }
    let half = d / 2;
    half + half.mul_f64(f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::store::StoreError;

    #[tokio::test(start_paused = true)]
    async fn background_work_retries_until_the_database_takes_it() {
        let calls = AtomicU32::new(0);
        let out = keep_trying("a step", None, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(StoreError::unavailable("database is locked"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn background_work_gives_up_after_its_bound() {
        let started = Instant::now();
        let out: StoreResult<()> = keep_trying("a step", None, || async {
            Err(StoreError::other("disk I/O error"))
        })
        .await;
        assert!(out.is_err());
        let took = started.elapsed();
        assert!(
            took >= BACKGROUND_RETRY_FOR && took < BACKGROUND_RETRY_FOR * 2,
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn background_retries_stop_when_cancelled_or_the_store_is_closed() {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        let started = Instant::now();
        let out: StoreResult<()> = keep_trying("a step", Some(&cancel), || async {
            Err(StoreError::unavailable("database is locked"))
        })
        .await;
        assert!(out.is_err());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        let calls = AtomicU32::new(0);
        let out: StoreResult<()> = keep_trying("a step", None, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::from(sqlx::Error::PoolClosed))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a closed store is not retried"
        );
    }
}
