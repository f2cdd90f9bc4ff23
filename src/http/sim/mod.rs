//! The simulated phone network's controls (`--engine sim` only).

mod dto;
mod inbox;
mod network;
pub mod receipt;

use axum::extract::State;
use serde_json::Value;

use super::AppState;
use super::envelope::ErrorEnvelope;
use super::extract::{Body, Params, large_body, pair_from};
use super::extract::{PairQuery, PairRequest};
use super::openapi::tags;
use crate::auth::Caller;
use crate::contacts::own_numbers;
use crate::domain::PhoneNumber;
use crate::engine::sim::{Fault, PhoneBook, SimError, SimIncoming, SimNetwork};
use crate::http::error::{AppError, AppResult};
pub use dto::*;
pub use inbox::*;
pub use network::*;

/// `/api/sim/incoming` may carry a file of up to 1 MiB, base64.
pub const INCOMING_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What a tenant key is told: the simulated network drives every tenant's phones.
const SIM_ONLY_ADMIN: &str = "use the simulated phone network";

fn network(st: &AppState) -> AppResult<&SimNetwork> {
    st.sim
        .as_ref()
        .ok_or_else(|| AppError::NotFound("The simulated phone network is not running".into()))
}

fn sim_error(e: SimError) -> AppError {
    match e {
        SimError::NoQr(_) => AppError::BadRequest(e.to_string()),
        SimError::NoClient(_) => AppError::NotFound(e.to_string()),
        SimError::NotConnected(_) => AppError::BadRequest(e.to_string()),
    }
}

/// # `PUT /api/sim/phonebook`
#[utoipa::path(
    put,
    path = "/phonebook",
    operation_id = "sim_set_phonebook",
    tag = tags::SIM,
    summary = "Set what the simulated phone of a pair holds (`--engine sim` only)",
    description = "The next contact fetch of the pair reads these entries. Bodies up to \
        `--sim-max-phonebook-bytes` (64 MiB by default), read one upload at a time. Admin key \
        only.",
    request_body = PhonebookRequest,
    responses(
        (status = 200, description = "Stored", body = PhonebookResponse),
        (status = 400, description = "Bad `user_id`, `place_id`, `me` or `entries`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
        (status = 413, description = "The body is larger than `--sim-max-phonebook-bytes`", body = ErrorEnvelope),
    )
)]
pub async fn set_phonebook(
    State(st): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> AppResult<PhonebookResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let net = network(&st)?;
    let _turn = net.upload_turn().await;
    let form = super::form::is_form(&headers);
    let b: PhonebookRequest = large_body(body, net.max_phonebook_bytes(), form).await?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let entries = b
        .entries
        .ok_or_else(|| AppError::BadRequest("entries is required".into()))?;
    if let Some(me) = &b.me
        && (own_numbers([me.as_str()]).is_empty() || !me.contains('@'))
    {
        return Err(AppError::BadRequest(
            "me must be the account's jid, like 966512345678@s.whatsapp.net".into(),
        ));
    }
    let count = entries.len();
    net.set_phonebook(
        pair,
        PhoneBook {
            me: b.me,
            push_name: b.push_name,
            entries: entries.into_iter().map(Into::into).collect(),
        },
    )
    .await
    .map_err(|e| AppError::Internal(e.context("store the simulated phone book")))?;
    // Cached number checks would hide who this book puts on WhatsApp.
    st.store.clear_number_checks().await?;
    Ok(PhonebookResponse::new(
        PhonebookSet {
            user_id: pair.user_id,
            place_id: pair.place_id,
            entries: count as u64,
        },
        "Phone book set",
    ))
}

/// # `POST /api/sim/scan`
#[utoipa::path(
    post,
    path = "/scan",
    operation_id = "sim_scan",
    tag = tags::SIM,
    summary = "The simulated phone scans the pair's QR code (`--engine sim` only)",
    request_body = PairRequest,
    responses(
        (status = 200, description = "Scanned; the session goes on to `ready`", body = ScanResponse),
        (status = 400, description = "Bad `user_id`/`place_id`, or no QR code is showing for the pair", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn scan(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<PairRequest>,
) -> AppResult<ScanResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = b.pair(caller)?;
    let session_id = network(&st)?.scan(pair).await.map_err(sim_error)?;
    Ok(ScanResponse::new(
        Scanned {
            session_id,
            user_id: pair.user_id,
            place_id: pair.place_id,
        },
        "QR code scanned",
    ))
}

/// # `POST /api/sim/fault`
#[utoipa::path(
    post,
    path = "/fault",
    operation_id = "sim_fault",
    tag = tags::SIM,
    summary = "Make something go wrong with the pair's simulated client (`--engine sim` only)",
    request_body = FaultRequest,
    responses(
        (status = 200, description = "Injected", body = FaultResponse),
        (status = 400, description = "Bad `user_id`, `place_id` or `kind`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The pair has no live simulated client, or the server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn fault(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<FaultRequest>,
) -> AppResult<FaultResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let (kind, given) = match &b.kind {
        None | Some(Value::Null) => return Err(AppError::BadRequest("kind is required".into())),
        Some(Value::String(s)) => (
            Fault::parse(s.trim()).ok_or_else(|| {
                AppError::BadRequest(format!("kind must be one of: {}", Fault::NAMES))
            })?,
            s.clone(),
        ),
        Some(_) => {
            return Err(AppError::BadRequest(format!(
                "kind must be one of: {}",
                Fault::NAMES
            )));
        }
    };
    let session_id = network(&st)?.fault(pair, kind).map_err(sim_error)?;
    Ok(FaultResponse::new(
        FaultInjected {
            session_id,
            kind: given,
        },
        "Fault injected",
    ))
}

/// # `GET /api/sim/outbox`
#[utoipa::path(
    get,
    path = "/outbox",
    operation_id = "sim_outbox",
    tag = tags::SIM,
    summary = "What the pair's simulated phone sent, oldest first (`--engine sim` only)",
    description = "One entry per send that reached the simulated WhatsApp; it survives \
        restarts. The same `id` twice would mean one message went out twice.",
    params(PairQuery),
    responses(
        (status = 200, description = "The sent messages", body = SimOutboxResponse),
        (status = 400, description = "Bad `user_id` or `place_id`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn outbox(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<SimOutboxResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = q.pair(caller)?;
    let sent = network(&st)?
        .outbox(pair)
        .await
        .map_err(|e| AppError::Internal(e.context("read the simulated outbox")))?;
    Ok(SimOutboxResponse::new(
        SimOutbox::new(pair, &sent),
        "Simulated outbox retrieved",
    ))
}

/// # `POST /api/sim/incoming`
#[utoipa::path(
    post,
    path = "/incoming",
    operation_id = "sim_incoming",
    tag = tags::SIM,
    summary = "Someone writes to the pair's number (`--engine sim` only)",
    description = "The linked client reports it as WhatsApp would: a `message.received` event \
        goes to the webhook and the event stream.",
    request_body = SimIncomingRequest,
    responses(
        (status = 200, description = "Delivered to the linked client", body = SimIncomingResponse),
        (status = 400, description = "Bad `user_id`, `place_id`, `from`, `text` or `push_name`, or the client is not connected", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The pair has no live simulated client, or the server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn incoming(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<SimIncomingRequest>,
) -> AppResult<SimIncomingResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let from = match &b.from {
        None | Some(Value::Null) => return Err(AppError::BadRequest("from is required".into())),
        Some(Value::String(s)) => PhoneNumber::parse_typed(s).ok_or_else(|| {
            AppError::BadRequest(
                "from must be a phone number with its country code, like +966501234567".into(),
            )
        })?,
        Some(_) => {
            return Err(AppError::BadRequest(
                "from must be a phone number with its country code, like +966501234567".into(),
            ));
        }
    };
    let media = inbox::incoming_media(b.media.as_ref())?;
    let text = match &b.text {
        Some(Value::String(t)) if !t.trim().is_empty() && t.chars().count() <= TEXT_MAX_CHARS => {
            Some(t.clone())
        }
        None | Some(Value::Null) if media.is_some() => None,
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest("text is required (or media)".into()));
        }
        Some(_) => {
            return Err(AppError::BadRequest(format!(
                "text must be a string of 1 to {TEXT_MAX_CHARS} characters"
            )));
        }
    };
    let push_name = match &b.push_name {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if n.chars().count() <= PUSH_NAME_MAX_CHARS => Some(n.clone()),
        Some(_) => {
            return Err(AppError::BadRequest(format!(
                "push_name must be a string of at most {PUSH_NAME_MAX_CHARS} characters"
            )));
        }
    };
    let id = network(&st)?
        .incoming(
            pair,
            SimIncoming {
                from: from.clone(),
                push_name,
                text,
                media,
            },
        )
        .await
        .map_err(sim_error)?;
    Ok(SimIncomingResponse::new(
        SimIncomingDelivered {
            id,
            from,
            user_id: pair.user_id,
            place_id: pair.place_id,
        },
        "Incoming message delivered",
    ))
}

/// # `GET /api/sim/connections`
#[utoipa::path(
    get,
    path = "/connections",
    operation_id = "sim_connections",
    tag = tags::SIM,
    summary = "Every connection the pair's linked devices opened to the simulated WhatsApp (`--engine sim` only)",
    description = "Oldest first, whichever node opened them. As on WhatsApp a device has one \
        open connection: a second one replaces the first (closed as `replaced`, and its \
        session stops with an error saying so). A client showing QR codes is not linked to \
        any device yet and opens none.",
    params(PairQuery),
    responses(
        (status = 200, description = "The connections", body = SimConnectionsResponse),
        (status = 400, description = "Bad `user_id` or `place_id`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn connections(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<SimConnectionsResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = q.pair(caller)?;
    let all = network(&st)?
        .connections(pair)
        .await
        .map_err(|e| AppError::Internal(e.context("read the simulated connections")))?;
    Ok(SimConnectionsResponse::new(
        SimConnections::new(pair, &all),
        "Simulated connections retrieved",
    ))
}
