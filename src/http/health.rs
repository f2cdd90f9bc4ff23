use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::openapi::{ErrorEnvelope, HealthResponse, tags};
use super::{AppState, envelope};
use crate::auth::Caller;
use crate::error::{AppError, AppResult};

/// # `GET /api/health`
#[utoipa::path(
    get,
    path = "/api/health",
    tag = tags::HEALTH,
    summary = "Whether the service and its database answer",
    description = "Needs no API key. Without one (or with a wrong one) the answer holds only \
        `status`, `database` and `features`; with a valid key, or on a server without an \
        admin key, it also tells `version`, `uptime_seconds`, `active_sessions` and `engine`.",
    responses(
        (status = 200, description = "Healthy", body = HealthResponse),
        (status = 403, description = "Without an admin key only: the request came from a web page of another origin, or named a host that is not this machine", body = ErrorEnvelope),
        (status = 503, description = "The database is unreachable", body = ErrorEnvelope),
    )
)]
pub async fn health(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> AppResult<Response> {
    match tokio::time::timeout(Duration::from_secs(3), st.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!("❌ Health check: database unreachable: {e:#}");
            return Err(AppError::Unavailable("Database is unreachable".into()));
        }
        Err(_) => {
            tracing::error!("❌ Health check: database did not answer in time");
            return Err(AppError::Unavailable("Database is unreachable".into()));
        }
    }
    let mut data = json!({
        "status": "healthy",
        "database": "connected",
        "features": {
            "background_contact_fetching": "ON DEMAND",
            "error_handling": true,
            "session_recovery": true,
            "auto_default_groups": true,
            "duplicate_prevention": true,
            "client_availability_check": true,
        },
    });
    // How busy the server is and what it runs tell an attacker what to aim at; they are
    // for callers with a key.
    if caller.is_some() {
        data["version"] = json!(env!("CARGO_PKG_VERSION"));
        data["uptime_seconds"] = json!(st.started.elapsed().as_secs());
        data["active_sessions"] = json!(st.manager.live_count());
        data["engine"] = json!(st.engine);
    }
    Ok(envelope::ok(data, "Service is healthy"))
}
