//! Session lifecycle and the on-demand contact fetch.

use std::collections::BTreeMap;

use axum::extract::State;

use self::dto::*;
use super::AppState;
use super::envelope::ErrorEnvelope;
use super::extract::{Body, PairQuery, PairRequest, Params};
use super::health::EngineName;
use super::openapi::tags;
use crate::auth::{Caller, SessionLimit};
use crate::domain::{Pair, SessionStatus};
use crate::http::error::AppResult;
use crate::session::{SessionError, SessionSnapshot};
use crate::store::AutoRule;

pub mod dto;
pub mod list;

fn status_message(s: &SessionSnapshot) -> String {
    match s.record.status {
        SessionStatus::Initializing => "Session is initializing".into(),
        SessionStatus::QrReady => "QR code is ready: scan it with WhatsApp on the phone".into(),
        SessionStatus::Authenticated => "QR code scanned; the session is connecting".into(),
        SessionStatus::Ready => "Session is ready".into(),
        SessionStatus::FetchingContacts => "Session is ready and fetching contacts".into(),
        SessionStatus::Disconnected => match &s.record.error_message {
            Some(m) => format!("Session is disconnected: {m}"),
            None => "Session is disconnected; reconnecting automatically".into(),
        },
        SessionStatus::LoggedOut => {
            "Session is logged out. Call /api/whatsapp/init to link again with a new QR code."
                .into()
        }
        SessionStatus::Error => match &s.record.error_message {
            Some(m) => format!("Session error: {m}"),
            None => "Session error. Call /api/whatsapp/restart.".into(),
        },
    }
}

async fn require(st: &AppState, pair: Pair) -> AppResult<std::sync::Arc<SessionSnapshot>> {
    st.manager
        .snapshot(pair)
        .await?
        .ok_or_else(|| SessionError::NoSession.into())
}

/// # `POST /api/whatsapp/init`
#[utoipa::path(
    post,
    path = "/init",
    tag = tags::SESSIONS,
    summary = "Start the pair's session, or return the live one",
    description = "Starts a session (status `initializing`, then `qr_ready` with a QR code to \
        scan) or reconnects a still-linked one without a new QR code. A live session is \
        returned as it is, with the message \"Session already active\".",
    request_body = PairRequest,
    responses(
        (status = 200, description = "The session, new or already live", body = SessionStartedResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer, or the body is not a JSON object", body = ErrorEnvelope),
        (status = 429, description = "A new pair, and the user already holds the most sessions allowed (`--max-sessions-per-user`, or the key's `max_sessions`); or the key's rate limit", body = ErrorEnvelope),
    )
)]
pub async fn init(
    State(st): State<AppState>,
    caller: Caller,
    SessionLimit(limit): SessionLimit,
    Body(b): Body<PairRequest>,
) -> AppResult<SessionStartedResponse> {
    let pair = b.pair(caller)?;
    let out = st.manager.init(pair, limit).await?;
    let message = if out.already_active {
        "Session already active"
    } else {
        "Client initialization started"
    };
    Ok(SessionStartedResponse::new(
        SessionStarted::new(&out.snapshot, message),
        message,
    ))
}

/// # `GET /api/whatsapp/status`
#[utoipa::path(
    get,
    path = "/status",
    tag = tags::SESSIONS,
    summary = "The pair's latest session",
    description = "Never 404: a pair without a session answers `status: not_initialized` and \
        `session_exists: false`.",
    params(PairQuery),
    responses(
        (status = 200, description = "The session, or `not_initialized`", body = StatusResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer", body = ErrorEnvelope),
    )
)]
pub async fn status(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<StatusResponse> {
    let pair = q.pair(caller)?;
    Ok(match st.manager.snapshot(pair).await? {
        Some(s) => StatusResponse::new(
            StatusData::Session(Box::new(SessionOnNode::of(&s, node_of(&st, pair).await?))),
            status_message(&s),
        ),
        None => StatusResponse::new(
            StatusData::NoSession(NoSession::of(pair)),
            "No session found for this user and place. Call /api/whatsapp/init to start one.",
        ),
    })
}

/// The node that runs the pair's session: this one when its actor lives here, else the
/// cluster's owner (none on SQLite, where this server is the only node).
async fn node_of(st: &AppState, pair: Pair) -> AppResult<Option<String>> {
    if st.manager.live(pair).is_some() {
        return Ok(Some(st.identity.node_id.clone()));
    }
    Ok(match &st.cluster {
        Some(cluster) => cluster.owner(pair).await?,
        None => None,
    })
}

/// # `GET /api/whatsapp/contacts/progress`
#[utoipa::path(
    get,
    path = "/contacts/progress",
    operation_id = "contact_fetch_progress",
    tag = tags::SESSIONS,
    summary = "Progress of the running or last contact fetch",
    params(PairQuery),
    responses(
        (status = 200, description = "The fetch's progress", body = ProgressResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
    )
)]
pub async fn progress(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<ProgressResponse> {
    let s = require(&st, q.pair(caller)?).await?;
    Ok(ProgressResponse::new(
        FetchProgress::of(&s),
        "Contact fetch progress retrieved",
    ))
}

/// # `GET /api/whatsapp/info`
#[utoipa::path(
    get,
    path = "/info",
    tag = tags::SESSIONS,
    summary = "The session with contact statistics, a health score and recommendations",
    params(PairQuery),
    responses(
        (status = 200, description = "The session in detail", body = InfoResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
    )
)]
pub async fn info(
    State(st): State<AppState>,
    caller: Caller,
    Params(q): Params<PairQuery>,
) -> AppResult<InfoResponse> {
    let pair = q.pair(caller)?;
    let s = require(&st, pair).await?;
    let now = st.clock.now();
    let since = now.timestamp() - AutoRule::RECENT_DAYS * 86_400;
    let stats = st.store.contact_stats(pair, since).await?;
    let health = crate::session::health::assess(&s, &stats, now.timestamp_millis());
    let data = SessionInfo {
        session: SessionState::of(&s),
        contact_statistics: stats.into(),
        health: SessionHealth {
            score: health.score,
            issues: health.issues,
        },
        recommendations: health.recommendations,
        fetch_summary: s.record.fetch.summary.as_ref().map(FetchSummary::from),
    };
    Ok(InfoResponse::new(data, "Session information retrieved"))
}

/// # `POST /api/whatsapp/start-contact-fetch`
#[utoipa::path(
    post,
    path = "/start-contact-fetch",
    tag = tags::SESSIONS,
    summary = "Start reading the linked account's contacts into the pair's groups",
    description = "Answers at once; the fetch runs in the background. Follow it with \
        `GET /api/whatsapp/contacts/progress`.",
    request_body = PairRequest,
    responses(
        (status = 200, description = "The fetch started", body = FetchStartedResponse),
        (status = 400, description = "Bad `user_id`/`place_id`, or the session is neither `ready` nor `fetching_contacts`", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
        (status = 409, description = "A fetch is already running for the session", body = ErrorEnvelope),
        (status = 503, description = "The session's WhatsApp client is gone; the session is now `disconnected`. Restart it.", body = ErrorEnvelope),
    )
)]
pub async fn start_contact_fetch(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<PairRequest>,
) -> AppResult<FetchStartedResponse> {
    let started = st.manager.start_contact_fetch(b.pair(caller)?).await?;
    Ok(FetchStartedResponse::new(
        started.into(),
        "Background contact fetch started successfully",
    ))
}

/// # `POST /api/whatsapp/restart`
#[utoipa::path(
    post,
    path = "/restart",
    tag = tags::SESSIONS,
    summary = "Tear the session's client down and start it again",
    description = "Same credentials while the number is still linked, so no new QR code.",
    request_body = PairRequest,
    responses(
        (status = 200, description = "The restarting session", body = SessionStartedResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
        (status = 429, description = "The session was logged out and the user already holds the most sessions allowed; or the key's rate limit", body = ErrorEnvelope),
    )
)]
pub async fn restart(
    State(st): State<AppState>,
    caller: Caller,
    SessionLimit(limit): SessionLimit,
    Body(b): Body<PairRequest>,
) -> AppResult<SessionStartedResponse> {
    let s = st.manager.restart(b.pair(caller)?, limit).await?;
    let message = "Session restart initiated";
    Ok(SessionStartedResponse::new(
        SessionStarted::new(&s, message),
        message,
    ))
}

/// # `POST /api/whatsapp/logout`
#[utoipa::path(
    post,
    path = "/logout",
    tag = tags::SESSIONS,
    summary = "Unlink the number and forget its credentials",
    description = "The session ends `logged_out`; linking again takes `init` and a new QR code.",
    request_body = PairRequest,
    responses(
        (status = 200, description = "The logged-out session", body = SessionResponse),
        (status = 400, description = "`user_id` or `place_id` is missing or not a positive integer", body = ErrorEnvelope),
        (status = 404, description = "The pair has no session", body = ErrorEnvelope),
    )
)]
pub async fn logout(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<PairRequest>,
) -> AppResult<SessionResponse> {
    let out = st.manager.logout(b.pair(caller)?).await?;
    let message = if out.already_logged_out {
        "Session already logged out"
    } else {
        "Logged out successfully"
    };
    Ok(SessionResponse::new(
        SessionState::of(&out.snapshot),
        message,
    ))
}

/// # `GET /api/whatsapp/stats`
#[utoipa::path(
    get,
    path = "/stats",
    tag = tags::SESSIONS,
    summary = "Service-wide numbers: live clients, sessions by status, memory, uptime",
    responses(
        (status = 200, description = "The numbers", body = StatsResponse),
    )
)]
pub async fn stats(State(st): State<AppState>, caller: Caller) -> AppResult<StatsResponse> {
    // Counts across every tenant are the operator's to see.
    caller.require_admin("read service-wide statistics")?;
    let mut by_status: BTreeMap<&'static str, u64> =
        SessionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let sessions = st.store.latest_sessions().await?;
    for rec in &sessions {
        *by_status.entry(rec.status.as_str()).or_default() += 1;
    }
    let data = ServiceStats {
        live_clients: st.manager.live_count() as u64,
        total_sessions: sessions.len() as u64,
        sessions_by_status: by_status,
        memory: MemoryUsage::of(resident_memory_bytes()),
        uptime_seconds: st.started.elapsed().as_secs(),
        engine: EngineName::of(st.engine),
    };
    Ok(StatsResponse::new(data, "Service statistics retrieved"))
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
