//! `GET /metrics`: the Prometheus exposition, behind the admin key on the API's listener,
//! and without a key on the `--metrics-listen` one (which serves nothing else).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, observe};
use crate::auth::Caller;
use crate::http::error::AppResult;
use crate::metrics::{self, Snapshot};

pub const METRICS_PATH: &str = "/metrics";

/// A scrape waits no longer for each queue count: a slow database leaves the gauge out of
/// this scrape rather than holding the scraper.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// # `GET /metrics` (admin key)
pub async fn with_key(State(st): State<AppState>, caller: Caller) -> AppResult<Response> {
    caller.require_admin("read the metrics")?;
    Ok(scrape(&st).await)
}

/// # `GET /metrics` on `--metrics-listen`
async fn open(State(st): State<AppState>) -> Response {
    scrape(&st).await
}

/// The second listener's whole router: the metrics, with request ids and counting like the
/// API's, and 404 for anything else.
pub fn open_router(state: AppState) -> Router {
    let metrics = state.events.metrics().clone();
    Router::new()
        .route(METRICS_PATH, get(open))
        .fallback(|| async {
            super::envelope::error(
                axum::http::StatusCode::NOT_FOUND,
                "This address serves only GET /metrics",
            )
        })
        .layer(middleware::from_fn_with_state(metrics, observe::observe))
        .with_state(state)
}

async fn scrape(st: &AppState) -> Response {
    let (outbox, webhooks) = tokio::join!(
        count("outbox", st.store.pending_count()),
        count("webhook queue", st.store.pending_delivery_count()),
    );
    let up = st.started.elapsed().as_secs_f64();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let snapshot = Snapshot {
        sessions: st.manager.status_counts(),
        live_clients: st.manager.live_count() as u64,
        outbox_pending: outbox,
        webhook_queue: webhooks,
        engine: st.engine,
        start_time_seconds: (now - up).floor(),
    };
    let body = st.events.metrics().render(&snapshot);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn count(
    what: &str,
    query: impl Future<Output = crate::store::StoreResult<i64>>,
) -> Option<i64> {
    match tokio::time::timeout(COUNT_TIMEOUT, query).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::warn!("⚠️ Metrics: cannot count the {what}: {e:#}");
            None
        }
        Err(_) => {
            tracing::warn!("⚠️ Metrics: counting the {what} took over {COUNT_TIMEOUT:?}");
            None
        }
    }
}
