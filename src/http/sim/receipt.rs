//! `POST /api/sim/receipt`: the recipient of a message the simulated phone sent reports it
//! delivered, read or played.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use super::{SIM_ONLY_ADMIN, network, sim_error};
use crate::auth::Caller;
use crate::domain::{PlaceId, UserId};
use crate::engine::ReceiptKind;
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{Body, pair_from};
use crate::http::openapi::tags;
use crate::http::schema::positive_id_in_body;

/// WhatsApp's ids are far shorter; longer is a mistake, not an id.
const WA_ID_MAX_CHARS: usize = 128;

#[derive(Deserialize, ToSchema)]
pub struct SimReceiptRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// A message the pair's simulated phone sent (`GET /api/sim/outbox` lists them).
    #[serde(default)]
    #[schema(schema_with = wa_id, required = true)]
    pub whatsapp_message_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = receipt_kind, required = true)]
    pub kind: Option<Value>,
}

fn wa_id() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(WA_ID_MAX_CHARS))
        .pattern(Some(r"\S"))
        .build()
}

fn receipt_kind() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["delivered", "read", "played"]))
        .build()
}

/// The receipt the recipient sent.
#[derive(Serialize, ToSchema)]
pub struct SimReceiptSent {
    whatsapp_message_id: String,
    /// `delivered`, `read` or `played`.
    kind: &'static str,
    /// The recipient who sent it (E.164).
    from: String,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(value_type = i64)]
    place_id: PlaceId,
}

success!(SimReceiptResponse, SimReceiptSent);

/// # `POST /api/sim/receipt`
#[utoipa::path(
    post,
    path = "/receipt",
    operation_id = "sim_receipt",
    tag = tags::SIM,
    summary = "The recipient of a sent message reports it delivered, read or played (`--engine sim` only)",
    description = "The linked client hears the receipt as WhatsApp would pass it on: the message \
        moves on (never back) and `message.delivered` or `message.read` goes to the webhook and \
        the event stream.",
    request_body = SimReceiptRequest,
    responses(
        (status = 200, description = "Sent to the linked client", body = SimReceiptResponse),
        (status = 400, description = "Bad `user_id`, `place_id`, `whatsapp_message_id` or `kind`, or the client is not connected", body = ErrorEnvelope),
        (status = 403, description = "A tenant key: the simulated network is the admin's", body = ErrorEnvelope),
        (status = 404, description = "The pair's simulated phone sent no message with this id, the pair has no live simulated client, or the server does not run the simulated network", body = ErrorEnvelope),
    )
)]
pub async fn receipt(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<SimReceiptRequest>,
) -> AppResult<SimReceiptResponse> {
    caller.require_admin(SIM_ONLY_ADMIN)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let wa_id = match &b.whatsapp_message_id {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest(
                "whatsapp_message_id is required".into(),
            ));
        }
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= WA_ID_MAX_CHARS => {
            s.trim().to_owned()
        }
        Some(_) => {
            return Err(AppError::BadRequest(format!(
                "whatsapp_message_id must be a string of 1 to {WA_ID_MAX_CHARS} characters"
            )));
        }
    };
    let kind = match &b.kind {
        None | Some(Value::Null) => return Err(AppError::BadRequest("kind is required".into())),
        Some(Value::String(s)) => ReceiptKind::parse(s),
        Some(_) => None,
    }
    .ok_or_else(|| AppError::BadRequest("kind must be one of: delivered, read, played".into()))?;
    let net = network(&st)?;
    let sent = net
        .outbox(pair)
        .await
        .map_err(|e| AppError::Internal(e.context("read the simulated outbox")))?;
    let Some(msg) = sent.iter().rev().find(|m| m.id == wa_id) else {
        return Err(AppError::NotFound(format!(
            "The simulated phone of user_id {} place_id {} sent no message with \
             whatsapp_message_id {wa_id}",
            pair.user_id, pair.place_id
        )));
    };
    net.receipt(pair, &msg.to, &wa_id, kind)
        .await
        .map_err(sim_error)?;
    Ok(SimReceiptResponse::new(
        SimReceiptSent {
            whatsapp_message_id: wa_id,
            kind: kind.as_str(),
            from: msg.to.clone(),
            user_id: pair.user_id,
            place_id: pair.place_id,
        },
        "Receipt sent",
    ))
}
