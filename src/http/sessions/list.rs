//! `GET /api/whatsapp/sessions`: every pair's latest session, for the dashboard and for an
//! operator who wants the whole picture without asking pair by pair.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::session_status;
use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::domain::{Invalid, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::http::AppState;
use crate::http::envelope::{ErrorEnvelope, success};
use crate::http::error::AppResult;
use crate::http::extract::{PageQuery, Pagination, Params};
use crate::http::openapi::tags;
use crate::store::SessionRecord;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// Only this user's sessions. Optional for the admin key; a tenant key sees its own user
    /// whether it names it or not.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub user_id: Option<String>,
    /// Only sessions in this status.
    #[param(value_type = Option<String>, schema_with = session_status)]
    pub status: Option<String>,
}

impl SessionListQuery {
    fn user(&self) -> Result<Option<UserId>, Invalid> {
        match self.user_id.as_deref() {
            None => Ok(None),
            some => UserId::from_text(some).map(Some),
        }
    }

    fn status(&self) -> Result<Option<SessionStatus>, Invalid> {
        self.status
            .as_deref()
            .map(|s| {
                SessionStatus::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = SessionStatus::ALL.map(SessionStatus::as_str).into();
                    Invalid(format!("status must be one of: {}", all.join(", ")))
                })
            })
            .transpose()
    }
}

/// One pair's latest session, as it was last saved.
#[derive(Serialize, ToSchema)]
pub struct SessionSummary {
    #[schema(value_type = String, examples("session_1_1_1700000000000"))]
    session_id: SessionId,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(value_type = i64)]
    place_id: PlaceId,
    #[schema(schema_with = session_status)]
    status: SessionStatus,
    #[schema(value_type = Option<String>, required = true)]
    phone_number: Option<PhoneNumber>,
    #[schema(required = true)]
    name: Option<String>,
    /// Why the session is disconnected or in error.
    #[schema(required = true)]
    error_message: Option<String>,
    total_contacts: i64,
    total_groups: i64,
    #[schema(required = true, format = DateTime)]
    last_activity: Option<String>,
    #[schema(required = true, format = DateTime)]
    connected_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Option<String>,
}

impl SessionSummary {
    fn of(r: &SessionRecord, (total_contacts, total_groups): (i64, i64)) -> Self {
        Self {
            session_id: r.session_id.clone(),
            user_id: r.pair.user_id,
            place_id: r.pair.place_id,
            status: r.status,
            phone_number: r.phone_number.clone(),
            name: r.name.clone(),
            error_message: r.error_message.clone(),
            total_contacts,
            total_groups,
            last_activity: r.last_activity.and_then(rfc3339_ms),
            connected_at: r.connected_at.and_then(rfc3339_ms),
            created_at: rfc3339_ms(r.created_at),
            updated_at: rfc3339_ms(r.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionSummary>,
    /// Sessions per status, every status named, over the `user_id` filter but not the
    /// `status` one: the numbers a filter bar shows.
    counts: BTreeMap<&'static str, u64>,
    pagination: Pagination,
}

success!(SessionListResponse, SessionList);

/// # `GET /api/whatsapp/sessions`
#[utoipa::path(
    get,
    path = "/sessions",
    operation_id = "list_sessions",
    tag = tags::SESSIONS,
    summary = "Every pair's latest session, with counts by status",
    description = "Ordered by `user_id`, then `place_id`. A tenant key lists its own user's \
        sessions only; naming another user is refused with 403.",
    params(SessionListQuery, PageQuery),
    responses(
        (status = 200, description = "One page of sessions and the counts by status", body = SessionListResponse),
        (status = 400, description = "Bad `user_id`, `status`, `page` or `limit`", body = ErrorEnvelope),
        (status = 403, description = "A tenant key named another user", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<SessionListQuery>,
    Params(page): Params<PageQuery>,
) -> AppResult<SessionListResponse> {
    let user = caller.scope_listing(q.user()?)?;
    let status = q.status()?;
    let (page, limit) = page.page_and_limit()?;
    let mut counts: BTreeMap<&'static str, u64> =
        SessionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    // The newest session of every pair is one row per pair: thousands at most, so filtering
    // here costs less than a second query shape per backend.
    let mut sessions: Vec<SessionRecord> = st
        .store
        .latest_sessions()
        .await?
        .into_iter()
        .filter(|r| user.is_none_or(|u| r.pair.user_id == u))
        .inspect(|r| *counts.entry(r.status.as_str()).or_default() += 1)
        .filter(|r| status.is_none_or(|s| r.status == s))
        .collect();
    sessions.sort_by_key(|r| (r.pair.user_id, r.pair.place_id));
    let total = sessions.len() as i64;
    let skip = usize::try_from((page - 1).saturating_mul(limit)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for r in sessions.iter().skip(skip).take(limit as usize) {
        out.push(SessionSummary::of(r, st.store.pair_counts(r.pair).await?));
    }
    Ok(SessionListResponse::new(
        SessionList {
            sessions: out,
            counts,
            pagination: Pagination::new(page, limit, total),
        },
        "Sessions retrieved",
    ))
}
