//! What the session and linking routes read and answer. These types are serialized as they
//! are, and the OpenAPI document is generated from them.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::http::envelope::success;
use crate::http::error::{AppError, AppResult};
use crate::http::extract::pair_from;
use crate::http::health::EngineName;
use crate::http::schema::typed_phone_number;
use crate::http::schema::{always_false, always_true, int64, null, positive_id_in_body};
use crate::session::SessionSnapshot;
use crate::store;

// ----- Requests -----

#[derive(Deserialize, ToSchema)]
pub struct PairCodeRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = typed_phone_number, required = true)]
    phone_number: Option<Value>,
}

impl PairCodeRequest {
    pub fn pair(&self, caller: Caller) -> AppResult<Pair> {
        pair_from(caller, &self.user_id, &self.place_id)
    }

    /// The number to link, as a person typed it or as its digits in a JSON number.
    pub fn phone(&self) -> AppResult<PhoneNumber> {
        let raw = match &self.phone_number {
            None | Some(Value::Null) => {
                return Err(AppError::BadRequest("phone_number is required".into()));
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(AppError::BadRequest("phone_number is required".into()));
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => {
                return Err(AppError::BadRequest(
                    "phone_number must be a string such as \"+966501234567\"".into(),
                ));
            }
        };
        PhoneNumber::parse_typed(&raw).ok_or_else(|| {
            AppError::BadRequest(
                "phone_number must be an international phone number with its country code, \
                 such as +966501234567"
                    .into(),
            )
        })
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `png` (the default): the QR code as an image. `raw`: the text the QR code encodes,
    /// for a client that draws it itself. Empty means `png`.
    #[param(schema_with = qr_format)]
    format: Option<String>,
}

pub enum QrFormat {
    Png,
    Raw,
}

impl QrQuery {
    pub fn format(&self) -> AppResult<QrFormat> {
        match self.format.as_deref().map(str::trim) {
            None | Some("") | Some("png") => Ok(QrFormat::Png),
            Some("raw") => Ok(QrFormat::Raw),
            Some(_) => Err(AppError::BadRequest("format must be png or raw".into())),
        }
    }
}

fn qr_format() -> Object {
    crate::http::schema::string_enum(&["png", "raw", ""], "png")
}

// ----- Answers -----

/// The session's status, from the domain's list.
pub(crate) fn session_status() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(SessionStatus::ALL.map(SessionStatus::as_str)))
        .description(Some("The session's status."))
        .build()
}

fn constant_str(value: &'static str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([value]))
        .build()
}

fn not_initialized() -> Object {
    constant_str(NoSession::STATUS)
}

fn no_session_found() -> Object {
    constant_str(NoSession::MESSAGE)
}

success!(
    /// `data` is the session, or `status: not_initialized` when the pair never had one.
    StatusResponse,
    StatusData
);
success!(SessionResponse, SessionState);
success!(SessionStartedResponse, SessionStarted);
success!(InfoResponse, SessionInfo);
success!(ProgressResponse, FetchProgress);
success!(FetchStartedResponse, FetchStarted);
success!(StatsResponse, ServiceStats);

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatusData {
    Session(Box<SessionOnNode>),
    NoSession(NoSession),
}

/// The session, and the node that runs it.
#[derive(Serialize, ToSchema)]
pub struct SessionOnNode {
    #[serde(flatten)]
    session: SessionState,
    /// The node running the session now (`--node-id`); `null` when no node runs it (ended,
    /// or its node is gone and no other took it over yet).
    #[schema(required = true, examples("node-a"))]
    node_id: Option<String>,
}

impl SessionOnNode {
    pub fn of(s: &SessionSnapshot, node_id: Option<String>) -> Self {
        Self {
            session: SessionState::of(s),
            node_id,
        }
    }
}

/// A session of the pair: the latest one, live or as it was last saved.
#[derive(Serialize, ToSchema)]
pub struct SessionState {
    /// `session_<user_id>_<place_id>_<unix_ms>`.
    #[schema(value_type = String, examples("session_1_1_1700000000000"))]
    session_id: SessionId,
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(value_type = i64)]
    place_id: PlaceId,
    #[schema(schema_with = session_status)]
    status: SessionStatus,
    /// Linked, connected, and its client alive.
    client_ready: bool,
    /// A PNG data URL while the status is `qr_ready`.
    #[schema(required = true)]
    qr_code: Option<String>,
    /// The linked account's number, E.164.
    #[schema(value_type = Option<String>, required = true)]
    phone_number: Option<PhoneNumber>,
    /// The linked account's WhatsApp name.
    #[schema(required = true)]
    name: Option<String>,
    #[schema(required = true, format = DateTime)]
    connected_at: Option<String>,
    #[schema(schema_with = always_true)]
    session_exists: bool,
    /// Active contacts of the pair.
    total_contacts: i64,
    /// Contact groups of the pair.
    total_groups: i64,
    #[schema(required = true, format = DateTime)]
    last_contacts_sync: Option<String>,
    /// Percentage of the running or last contact fetch.
    #[schema(minimum = 0, maximum = 100)]
    contacts_fetch_progress: i64,
    contacts_fetch_completed: bool,
    /// Why the last contact fetch failed.
    #[schema(required = true)]
    contacts_fetch_error: Option<String>,
    is_fetching: bool,
    /// Why the session is disconnected or in error.
    #[schema(required = true)]
    error_message: Option<String>,
    #[schema(required = true, format = DateTime)]
    last_activity: Option<String>,
    // Never `null` for a record's own times; typed as they are read.
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Option<String>,
}

impl SessionState {
    pub fn of(s: &SessionSnapshot) -> Self {
        let r = &s.record;
        Self {
            session_id: r.session_id.clone(),
            user_id: r.pair.user_id,
            place_id: r.pair.place_id,
            status: r.status,
            client_ready: s.client_ready(),
            qr_code: s
                .qr
                .as_ref()
                .filter(|_| r.status == SessionStatus::QrReady)
                .map(|q| q.data_url.clone()),
            phone_number: r.phone_number.clone(),
            name: r.name.clone(),
            connected_at: r.connected_at.and_then(rfc3339_ms),
            session_exists: true,
            total_contacts: s.total_contacts,
            total_groups: s.total_groups,
            last_contacts_sync: r.fetch.last_sync.and_then(rfc3339_ms),
            contacts_fetch_progress: r.fetch.progress,
            contacts_fetch_completed: r.fetch.completed,
            contacts_fetch_error: r.fetch.error.clone(),
            is_fetching: s.fetch_running,
            error_message: r.error_message.clone(),
            last_activity: r.last_activity.and_then(rfc3339_ms),
            created_at: rfc3339_ms(r.created_at),
            updated_at: rfc3339_ms(r.updated_at),
        }
    }
}

/// The session that init or restart started (or found live), with the earlier service's
/// `success` and `message` beside its fields: its clients read `data.success`.
#[derive(Serialize, ToSchema)]
pub struct SessionStarted {
    #[serde(flatten)]
    session: SessionState,
    #[schema(schema_with = always_true)]
    success: bool,
    /// What happened, the same sentence as the envelope's message.
    #[schema(value_type = String, examples("Client initialization started"))]
    message: Cow<'static, str>,
}

impl SessionStarted {
    pub fn new(s: &SessionSnapshot, message: &'static str) -> Self {
        Self {
            session: SessionState::of(s),
            success: true,
            message: Cow::Borrowed(message),
        }
    }
}

/// The pair never had a session.
#[derive(Serialize, ToSchema)]
pub struct NoSession {
    #[schema(schema_with = null)]
    session_id: (),
    #[schema(value_type = i64)]
    user_id: UserId,
    #[schema(value_type = i64)]
    place_id: PlaceId,
    #[schema(schema_with = not_initialized)]
    status: &'static str,
    #[schema(schema_with = always_false)]
    client_ready: bool,
    #[schema(schema_with = null)]
    qr_code: (),
    #[schema(schema_with = always_false)]
    session_exists: bool,
    #[schema(minimum = 0, maximum = 0)]
    total_contacts: i64,
    #[schema(minimum = 0, maximum = 0)]
    total_groups: i64,
    #[schema(minimum = 0, maximum = 0)]
    contacts_fetch_progress: i64,
    #[schema(schema_with = always_false)]
    contacts_fetch_completed: bool,
    #[schema(schema_with = null)]
    contacts_fetch_error: (),
    /// The earlier service's sentence, kept for its clients.
    #[schema(schema_with = no_session_found)]
    message: &'static str,
    /// No node runs a session the pair does not have.
    #[schema(schema_with = null)]
    node_id: (),
}

impl NoSession {
    const STATUS: &'static str = "not_initialized";
    const MESSAGE: &'static str = "No session found";

    pub fn of(pair: Pair) -> Self {
        Self {
            session_id: (),
            user_id: pair.user_id,
            place_id: pair.place_id,
            status: Self::STATUS,
            client_ready: false,
            qr_code: (),
            session_exists: false,
            total_contacts: 0,
            total_groups: 0,
            contacts_fetch_progress: 0,
            contacts_fetch_completed: false,
            contacts_fetch_error: (),
            message: Self::MESSAGE,
            node_id: (),
        }
    }
}

/// The session, its contacts in numbers, a health score and what to do about it.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    #[serde(flatten)]
    pub session: SessionState,
    pub contact_statistics: ContactStatistics,
    pub health: SessionHealth,
    /// Plain sentences telling the user what to do.
    pub recommendations: Vec<String>,
    #[schema(required = true)]
    pub fetch_summary: Option<FetchSummary>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactStatistics {
    total_contacts: i64,
    with_saved_name: i64,
    with_push_name: i64,
    without_any_name: i64,
    business: i64,
    active_last_90_days: i64,
    with_known_activity: i64,
}

impl From<store::ContactStats> for ContactStatistics {
    fn from(s: store::ContactStats) -> Self {
        // Destructured whole, so a new statistic cannot be left out of the answer unseen.
        let store::ContactStats {
            total_contacts,
            with_saved_name,
            with_push_name,
            without_any_name,
            business,
            active_last_90_days,
            with_known_activity,
        } = s;
        Self {
            total_contacts,
            with_saved_name,
            with_push_name,
            without_any_name,
            business,
            active_last_90_days,
            with_known_activity,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionHealth {
    #[schema(minimum = 0, maximum = 100)]
    pub score: i64,
    pub issues: Vec<String>,
}

/// What the last fetch read and what it kept.
#[derive(Serialize, ToSchema)]
pub struct FetchSummary {
    received: u64,
    imported: u64,
    skipped_groups: u64,
    skipped_broadcasts: u64,
    skipped_newsletters: u64,
    skipped_self: u64,
    skipped_unresolved_lids: u64,
    skipped_invalid: u64,
    merged_duplicates: u64,
}

impl From<&store::FetchSummary> for FetchSummary {
    fn from(s: &store::FetchSummary) -> Self {
        let store::FetchSummary {
            received,
            imported,
            skipped_groups,
            skipped_broadcasts,
            skipped_newsletters,
            skipped_self,
            skipped_unresolved_lids,
            skipped_invalid,
            merged_duplicates,
        } = *s;
        Self {
            received,
            imported,
            skipped_groups,
            skipped_broadcasts,
            skipped_newsletters,
            skipped_self,
            skipped_unresolved_lids,
            skipped_invalid,
            merged_duplicates,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FetchProgress {
    #[schema(value_type = String)]
    session_id: SessionId,
    #[schema(schema_with = session_status)]
    status: SessionStatus,
    #[schema(minimum = 0, maximum = 100)]
    contacts_fetch_progress: i64,
    /// Contacts read so far by the running or last fetch.
    processed: i64,
    /// Contacts the running or last fetch has to read.
    total: i64,
    contacts_fetch_completed: bool,
    #[schema(required = true)]
    contacts_fetch_error: Option<String>,
    total_contacts: i64,
    total_groups: i64,
    #[schema(required = true, format = DateTime)]
    last_contacts_sync: Option<String>,
    is_fetching: bool,
    #[schema(required = true)]
    fetch_summary: Option<FetchSummary>,
}

impl FetchProgress {
    pub fn of(s: &SessionSnapshot) -> Self {
        let r = &s.record;
        Self {
            session_id: r.session_id.clone(),
            status: r.status,
            contacts_fetch_progress: r.fetch.progress,
            processed: r.fetch.processed,
            total: r.fetch.total,
            contacts_fetch_completed: r.fetch.completed,
            contacts_fetch_error: r.fetch.error.clone(),
            total_contacts: s.total_contacts,
            total_groups: s.total_groups,
            last_contacts_sync: r.fetch.last_sync.and_then(rfc3339_ms),
            is_fetching: s.fetch_running,
            fetch_summary: r.fetch.summary.as_ref().map(FetchSummary::from),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct FetchStarted {
    #[schema(schema_with = always_true)]
    success: bool,
    #[schema(examples("Background contact fetch started"))]
    message: &'static str,
    #[schema(value_type = String)]
    session_id: SessionId,
    /// The status the session had when the fetch was accepted.
    #[schema(schema_with = session_status)]
    current_status: SessionStatus,
}

impl From<crate::session::FetchStarted> for FetchStarted {
    fn from(f: crate::session::FetchStarted) -> Self {
        Self {
            success: true,
            message: "Background contact fetch started",
            session_id: f.session_id,
            current_status: f.current_status,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ServiceStats {
    /// Sessions with a live client in this process.
    pub live_clients: u64,
    /// Pairs with a session.
    pub total_sessions: u64,
    #[schema(schema_with = sessions_by_status)]
    pub sessions_by_status: BTreeMap<&'static str, u64>,
    pub memory: MemoryUsage,
    pub uptime_seconds: u64,
    pub engine: EngineName,
}

fn sessions_by_status() -> Object {
    SessionStatus::ALL
        .iter()
        .fold(
            ObjectBuilder::new().description(Some("Latest session of every pair, by status.")),
            |b, s| {
                b.property(
                    s.as_str(),
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(int64())
                        .minimum(Some(0)),
                )
                .required(s.as_str())
            },
        )
        .build()
}

/// Resident memory of the process; `null` where the system does not tell.
#[derive(Serialize, ToSchema)]
pub struct MemoryUsage {
    #[schema(required = true)]
    rss_bytes: Option<u64>,
    #[schema(required = true)]
    rss_mb: Option<f64>,
}

impl MemoryUsage {
    pub fn of(rss_bytes: Option<u64>) -> Self {
        Self {
            rss_bytes,
            rss_mb: rss_bytes.map(|b| (b as f64 / 1_048_576.0 * 10.0).round() / 10.0),
        }
    }
}
