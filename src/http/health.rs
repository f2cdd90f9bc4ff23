use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::openapi::{ErrorEnvelope, HealthResponse, tags};
use super::{AppState, envelope};
use crate::error::{AppError, AppResult};

/// # `GET /api/health`
#[utoipa::path(
    get,
    path = "/api/health",
    tag = tags::HEALTH,
    summary = "Whether the service and its database answer",
    description = "Needs no API key.",
    responses(
        (status = 200, description = "Healthy", body = HealthResponse),
        (status = 503, description = "The database is unreachable", body = ErrorEnvelope),
    )
)]
pub async fn health(State(st): State<AppState>) -> AppResult<Response> {
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
    Ok(envelope::ok(
        json!({
            "status": "healthy",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": st.started.elapsed().as_secs(),
            "active_sessions": st.manager.live_count(),
            "database": "connected",
            "engine": st.engine,
            "features": {
                "background_contact_fetching": "ON DEMAND",
                "error_handling": true,
                "session_recovery": true,
                "auto_default_groups": true,
                "duplicate_prevention": true,
                "client_availability_check": true,
            },
        }),
        "Service is healthy",
    ))
}
