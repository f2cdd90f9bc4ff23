//! `GET /api/health`: whether the service and its database answer.

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::envelope::{ErrorEnvelope, success};
use super::openapi::tags;
use crate::auth::Caller;
use crate::http::error::{AppError, AppResult};

/// Without a key only `status`, `database` and `features`; the rest with a valid key, or
/// on a server without an admin key.
#[derive(Serialize, ToSchema)]
pub struct HealthData {
    #[schema(examples("healthy"))]
    status: &'static str,
    #[schema(examples("connected"))]
    database: &'static str,
    features: HealthFeatures,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    uptime_seconds: Option<u64>,
    /// Sessions with a live client in this process.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    active_sessions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    engine: Option<EngineName>,
    /// Who the key presented belongs to: what a dashboard shows once signed in.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    caller: Option<CallerInfo>,
}

/// The admin key (or anyone, on a server without one), or a tenant key and its user.
#[derive(Serialize, ToSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum CallerInfo {
    Admin,
    Tenant {
        #[schema(value_type = i64)]
        user_id: crate::domain::UserId,
    },
}

impl From<Caller> for CallerInfo {
    fn from(c: Caller) -> Self {
        match c {
            Caller::Admin => Self::Admin,
            Caller::Tenant { user_id, .. } => Self::Tenant { user_id },
        }
    }
}

/// Which engine the server runs (`--engine`).
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum EngineName {
    Sim,
    Whatsapp,
}

impl EngineName {
    pub fn of(engine: &str) -> Self {
        if engine == "sim" {
            Self::Sim
        } else {
            Self::Whatsapp
        }
    }
}

/// What the earlier service's health answer promised, kept for its clients.
#[derive(Serialize, ToSchema)]
pub struct HealthFeatures {
    #[schema(examples("ON DEMAND"))]
    background_contact_fetching: &'static str,
    error_handling: bool,
    session_recovery: bool,
    auto_default_groups: bool,
    duplicate_prevention: bool,
    client_availability_check: bool,
}

success!(HealthResponse, HealthData);

/// # `GET /api/health`
#[utoipa::path(
    get,
    path = "/api/health",
    tag = tags::HEALTH,
    summary = "Whether the service and its database answer",
    description = "Needs no API key. Without one (or with a wrong one) the answer holds only \
        `status`, `database` and `features`; with a valid key, or on a server without an \
        admin key, it also tells `version`, `uptime_seconds`, `active_sessions`, `engine` and `caller` (whose key it is).",
    responses(
        (status = 200, description = "Healthy", body = HealthResponse),
        (status = 403, description = "Without an admin key only: the request came from a web page of another origin, or named a host that is not this machine", body = ErrorEnvelope),
        (status = 503, description = "The database is unreachable", body = ErrorEnvelope),
    )
)]
pub async fn health(
    State(st): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> AppResult<HealthResponse> {
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
    // How busy the server is and what it runs tell an attacker what to aim at; they are
    // for callers with a key.
    let known = caller.is_some();
    let data = HealthData {
        status: "healthy",
        database: "connected",
        features: HealthFeatures {
            background_contact_fetching: "ON DEMAND",
            error_handling: true,
            session_recovery: true,
            auto_default_groups: true,
            duplicate_prevention: true,
            client_availability_check: true,
        },
        version: known.then_some(env!("CARGO_PKG_VERSION")),
        uptime_seconds: known.then(|| st.started.elapsed().as_secs()),
        active_sessions: known.then(|| st.manager.live_count() as u64),
        engine: known.then(|| EngineName::of(st.engine)),
        caller: caller.map(|Extension(c)| CallerInfo::from(c)),
    };
    Ok(HealthResponse::new(data, "Service is healthy"))
}
