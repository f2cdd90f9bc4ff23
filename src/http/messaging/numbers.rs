//! `POST /check-numbers`: which numbers are on WhatsApp, and the check the sends run before
//! queueing when asked to leave out numbers without an account.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use crate::auth::Caller;
use crate::domain::{Pair, PhoneNumber};
use crate::engine::EngineClient;
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{Body, pair_from};
use crate::http::openapi::tags;
use crate::http::schema::positive_id_in_body;
use crate::messaging::numbers::{self, CheckError, MAX_NUMBERS_PER_CHECK, NumberStatus};
use crate::session::SessionError;

success!(NumberCheckResponse, NumberCheckList);

impl From<CheckError> for AppError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Engine(e) => SessionError::from(e).into(),
            CheckError::Store(e) => e.into(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CheckNumbersRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// 1 to 100 numbers with their country code, as strings or JSON numbers.
    #[serde(default)]
    #[schema(schema_with = numbers_schema, required = true)]
    pub numbers: Option<Value>,
}

fn numbers_schema() -> Schema {
    let item = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        );
    ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(MAX_NUMBERS_PER_CHECK))
        .examples([serde_json::json!(["+966501234567", "966501234568"])])
        .into()
}

#[derive(Serialize, ToSchema)]
pub struct NumberCheckList {
    /// One per number given, in the same order.
    results: Vec<NumberCheckResult>,
}

#[derive(Serialize, ToSchema)]
pub struct NumberCheckResult {
    /// The number as given.
    input: String,
    /// E.164, when the number parses.
    #[schema(required = true)]
    phone_number: Option<String>,
    /// Whether it is a phone number at all; an invalid one is never asked about.
    valid: bool,
    on_whatsapp: bool,
    /// A WhatsApp Business account.
    is_business: bool,
}

/// The pair's live client, when the session is linked and connected.
pub(super) async fn ready_client(st: &AppState, pair: Pair) -> AppResult<Arc<dyn EngineClient>> {
    let snap = st
        .manager
        .snapshot(pair)
        .await?
        .ok_or(SessionError::NoSession)?;
    if snap.status().is_ready() && !snap.client_alive() {
        return Err(SessionError::ClientUnavailable.into());
    }
    match snap.client.clone() {
        Some(c) if snap.client_ready() => Ok(c),
        _ => Err(SessionError::NotReadyToCheck {
            status: snap.status(),
        }
        .into()),
    }
}

/// Answers for any number of numbers, asking the engine in batches it takes at once.
pub(super) async fn check_all(
    st: &AppState,
    client: &dyn EngineClient,
    list: &[PhoneNumber],
) -> AppResult<HashMap<PhoneNumber, NumberStatus>> {
    let mut unique: Vec<PhoneNumber> = list.to_vec();
    unique.sort();
    unique.dedup();
    let mut all = HashMap::with_capacity(unique.len());
    for batch in unique.chunks(MAX_NUMBERS_PER_CHECK) {
        let now = st.clock.now_ms();
        all.extend(numbers::check(st.store.as_ref(), client, now, batch).await?);
    }
    Ok(all)
}

/// Each entry as given, and its number when it parses. An entry that is neither a string
/// nor a number is the caller's mistake, not an answer.
fn parse_entries(raw: &Option<Value>) -> AppResult<Vec<(String, Option<PhoneNumber>)>> {
    let bad = || {
        AppError::BadRequest(format!(
            "numbers must be a list of 1 to {MAX_NUMBERS_PER_CHECK} phone numbers"
        ))
    };
    let items = match raw {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_NUMBERS_PER_CHECK => {
            items
        }
        _ => return Err(bad()),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = match item {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_u64() => n.to_string(),
                _ => {
                    return Err(AppError::BadRequest(format!(
                        "numbers[{i}] must be a phone number (a string, or digits as a number)"
                    )));
                }
            };
            let parsed = PhoneNumber::parse_typed(&input);
            Ok((input, parsed))
        })
        .collect()
}

/// # `POST /api/whatsapp/check-numbers`
#[utoipa::path(
    post,
    path = "/check-numbers",
    operation_id = "check_numbers",
    tag = tags::MESSAGING,
    summary = "Say which numbers are on WhatsApp",
    description = "One result per number, in order. A number that does not parse is \
        `valid: false` (not a refusal of the request). Answers are kept a day per number; the \
        numbers without one are asked of WhatsApp in one query. Needs a `ready` session.",
    request_body = CheckNumbersRequest,
    responses(
        (status = 200, description = "The answers", body = NumberCheckResponse),
        (status = 400, description = "A bad field (the message names it), or a session that is not ready", body = ErrorEnvelope),
        (status = 404, description = "No session for the pair", body = ErrorEnvelope),
        (status = 502, description = "WhatsApp did not answer", body = ErrorEnvelope),
        (status = 503, description = "The session's WhatsApp client is gone; restart the session", body = ErrorEnvelope),
    )
)]
pub async fn check_numbers(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<CheckNumbersRequest>,
) -> AppResult<NumberCheckResponse> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let entries = parse_entries(&b.numbers)?;
    let client = ready_client(&st, pair).await?;
    let valid: Vec<PhoneNumber> = entries.iter().filter_map(|(_, p)| p.clone()).collect();
    let known = if valid.is_empty() {
        HashMap::new()
    } else {
        check_all(&st, client.as_ref(), &valid).await?
    };
    let results = entries
        .into_iter()
        .map(|(input, phone)| {
            let status = phone.as_ref().and_then(|p| known.get(p)).copied();
            NumberCheckResult {
                input,
                valid: phone.is_some(),
                phone_number: phone.map(|p| p.as_str().to_owned()),
                on_whatsapp: status.is_some_and(|s| s.on_whatsapp),
                is_business: status.is_some_and(|s| s.is_business),
            }
        })
        .collect();
    Ok(NumberCheckResponse::new(
        NumberCheckList { results },
        "Numbers checked",
    ))
}
