//! The simulated network's list of numbers on WhatsApp (`--engine sim` only).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{SIM_ONLY_ADMIN, network};
use crate::auth::Caller;
use crate::domain::PhoneNumber;
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::{AppError, AppResult};
use crate::http::extract::Body;
use crate::http::openapi::tags;

success!(SimNetworkResponse, SimNetworkList);

/// Numbers on the list, at most.
const MAX_NETWORK_NUMBERS: usize = 100_000;

#[derive(Deserialize, ToSchema)]
pub struct SimNetworkRequest {
    /// Numbers with their country code; replaces the list.
    #[serde(default)]
    #[schema(value_type = Vec<String>, required = true, example = json!(["+966501234567"]))]
    pub numbers: Option<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SimNetworkList {
    /// E.164, as stored.
    numbers: Vec<String>,
    /// Numbers this server's simulated WhatsApp was asked about since it started (a check
    /// answered from the cache asks nothing).
    numbers_checked: u64,
}

async fn answer(st: &AppState, message: &'static str) -> AppResult<SimNetworkResponse> {
    let net = network(st)?;
    let numbers = net
        .network()
        .await
        .map_err(|e| AppError::Internal(e.context("read the simulated network")))?;
    Ok(SimNetworkResponse::new(
        SimNetworkList {
            numbers: numbers.iter().map(|n| n.as_str().to_owned()).collect(),
            numbers_checked: net.numbers_checked(),
        },
        message,
    ))
}

/// # `PUT /api/sim/network`
#[utoipa::path(
    put,
    path = "/network",
    operation_id = "sim_set_network",
    tag = tags::SIM,
    summary = "Set which numbers the simulated WhatsApp has accounts for (`--engine sim` only)",
    description = "Besides these, every number in a simulated phone book is on WhatsApp. \
        Replaces the list and forgets every cached number check, so the next check sees the \
        change. Admin key only.",
    request_body = SimNetworkRequest,
    responses(
        (status = 200, description = "The list as stored", body = SimNetworkResponse),
        (status = 400, description = "`numbers` missing, or an entry that is not a phone number", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn set_network(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<SimNetworkRequest>,
) -> AppResult<SimNetworkResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let net = network(&st)?;
    let items = match &b.numbers {
        Some(Value::Array(items)) if items.len() <= MAX_NETWORK_NUMBERS => items,
        _ => {
            return Err(AppError::BadRequest(format!(
                "numbers must be a list of at most {MAX_NETWORK_NUMBERS} phone numbers"
            )));
        }
    };
    let mut numbers = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let parsed = item.as_str().and_then(PhoneNumber::parse_typed);
        numbers.push(parsed.ok_or_else(|| {
            AppError::BadRequest(format!(
                "numbers[{i}] must be a phone number with its country code, like +966501234567"
            ))
        })?);
    }
    numbers.sort();
    numbers.dedup();
    net.set_network(&numbers)
        .await
        .map_err(|e| AppError::Internal(e.context("store the simulated network")))?;
    st.store.clear_number_checks().await?;
    answer(&st, "Simulated network set").await
}

/// # `GET /api/sim/network`
#[utoipa::path(
    get,
    path = "/network",
    operation_id = "sim_network",
    tag = tags::SIM,
    summary = "The simulated WhatsApp's own list of numbers (`--engine sim` only)",
    description = "As last set with `PUT /api/sim/network`, and how many numbers this server's \
        simulated WhatsApp was asked about. Admin key only.",
    responses(
        (status = 200, description = "The list", body = SimNetworkResponse),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn get_network(
    State(st): State<AppState>,
    caller: Caller,
) -> AppResult<SimNetworkResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    answer(&st, "Simulated network retrieved").await
}
