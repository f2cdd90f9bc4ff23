//! Persistence: small traits per aggregate (`traits.rs`), one implementation of each per
//! backend (`sqlite/`, `postgres/`), built in one place ([`open`]) and shared.

pub mod device;
mod error;
pub mod inbox;
pub mod media;
pub mod messaging;
pub mod number_checks;
mod postgres;
mod retry;
mod sim;
mod simulated;
mod sql;
mod sqlite;
pub mod traits;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Pair, PhoneNumber, SessionId, SessionStatus, UserId};

pub use error::{StoreContext, StoreError, StoreResult, Unavailable, is_busy};
pub use media::*;
pub use messaging::*;
pub use number_checks::{NumberCheckRecord, NumberCheckStore};
pub use postgres::{PgStore, redact};
pub use retry::{BACKGROUND_RETRY_FOR, keep_trying};
#[cfg(test)]
pub(crate) use sqlite::busy_error_for_tests;
pub use sqlite::{SqliteStore, StoreBusy};
pub use traits::Database;

/// Every trait of the store, for code that calls store methods.
pub mod prelude {
    pub use super::device::CredentialStore;
    pub use super::inbox::InboxStore;
    pub use super::number_checks::NumberCheckStore;
    pub use super::traits::{
        ClusterStore, ContactCacheStore, ContactStore, Database, EventStore, GroupStore, Health,
        KeyStore, MediaStore, OutboxStore, SessionStore, Signals, SimStore,
    };
}

/// The database every part of the server shares.
pub type Db = Arc<dyn Database>;

/// How the database is opened.
#[derive(Debug, Clone)]
pub struct DatabaseOptions {
    /// Connections of the pool (SQLite: the readers; writes take turns on one more).
    pub max_connections: u32,
    /// How long a write may wait for its turn before the caller is told "busy".
    pub busy_limit: Duration,
}

impl Default for DatabaseOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_limit: Duration::from_secs(10),
        }
    }
}

/// Opens and migrates the database the URL names: PostgreSQL for `postgres://` and
/// `postgresql://`, SQLite otherwise (the `--database` parser has refused other schemes).
/// Errors never carry the URL's password.
pub async fn open(url: &str, options: &DatabaseOptions) -> anyhow::Result<Db> {
    Ok(if is_postgres_url(url) {
        Arc::new(PgStore::connect(url, options).await?)
    } else {
        Arc::new(SqliteStore::connect_with_options(url, options).await?)
    })
}

/// Whether [`open`] makes this URL a PostgreSQL connection.
pub fn is_postgres_url(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("postgres" | "postgresql"))
}

/// A session as persisted; the actor owns the live copy and writes it through.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: SessionId,
    pub pair: Pair,
    pub status: SessionStatus,
    pub phone_number: Option<PhoneNumber>,
    pub name: Option<String>,
    pub error_message: Option<String>,
    pub connected_at: Option<i64>,
    pub last_activity: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub fetch: FetchState,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchState {
    pub progress: i64,
    pub processed: i64,
    pub total: i64,
    pub completed: bool,
    pub error: Option<String>,
    pub summary: Option<FetchSummary>,
    pub last_sync: Option<i64>,
}

impl SessionRecord {
    pub fn new(session_id: SessionId, pair: Pair, now_ms: i64) -> Self {
        Self {
            session_id,
            pair,
            status: SessionStatus::Initializing,
            phone_number: None,
            name: None,
            error_message: None,
            connected_at: None,
            last_activity: Some(now_ms),
            created_at: now_ms,
            updated_at: now_ms,
            fetch: FetchState::default(),
        }
    }
}

/// What a fetch read and what it kept; the skipped ids are reported, never silently lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchSummary {
    pub received: u64,
    pub imported: u64,
    pub skipped_groups: u64,
    pub skipped_broadcasts: u64,
    pub skipped_newsletters: u64,
    pub skipped_self: u64,
    pub skipped_unresolved_lids: u64,
    pub skipped_invalid: u64,
    pub merged_duplicates: u64,
}

/// One contact ready to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportContact {
    pub phone: PhoneNumber,
    pub jid: String,
    pub name: Option<String>,
    pub push_name: Option<String>,
    pub is_business: bool,
    /// Unix seconds of the last message in the chat.
    pub last_message_at: Option<i64>,
}

/// Progress written in the same transaction as the batch it describes.
#[derive(Debug, Clone, Copy)]
pub struct BatchProgress<'a> {
    pub session_id: &'a SessionId,
    pub processed: i64,
    pub total: i64,
    pub percent: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRule {
    All,
    Recent90Days,
}

impl AutoRule {
    pub const RECENT_DAYS: i64 = 90;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Recent90Days => "recent_90d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "all" => Some(Self::All),
            "recent_90d" => Some(Self::Recent90Days),
            _ => None,
        }
    }

    /// The exact names of the notes; changing them would orphan every existing pair's groups.
    pub fn group_name(self) -> &'static str {
        match self {
            Self::All => "جميع الارقام",
            Self::Recent90Days => "اخر الارقام (90 يوم)",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::All => "Every number of this WhatsApp account",
            Self::Recent90Days => "Numbers with chat activity in the last 90 days",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: i64,
    pub pair: Pair,
    pub name: String,
    pub description: Option<String>,
    pub auto_rule: Option<AutoRule>,
    pub created_at: i64,
    pub updated_at: i64,
    pub contact_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactRecord {
    pub id: i64,
    pub phone_number: String,
    pub name: Option<String>,
    pub push_name: Option<String>,
    pub is_business: bool,
    pub last_message_at: Option<i64>,
    pub tags: Vec<String>,
    /// Set by the back office; fetches never touch them. Empty where not selected.
    pub custom_fields: serde_json::Map<String, serde_json::Value>,
    /// Wrote an opt-out word: nothing is sent to them until it is cleared.
    pub opted_out: bool,
    pub opted_out_at: Option<i64>,
}

/// A change to a contact's own data: tags replaced, custom fields merged (`null` removes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// Sets (an opt-out word came in) or clears (the back office) the opt-out.
    pub opted_out: Option<bool>,
}

/// What a change to a manual group came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    /// Done; the group's id.
    Done(i64),
    /// These ids are not active contacts of the pair; nothing was changed.
    UnknownContacts(Vec<i64>),
    /// The pair already has a group of that name.
    NameTaken,
    /// No such group for the pair.
    NotFound,
    /// An automatic group: its members follow its rule and it is never deleted.
    Automatic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchType {
    Name,
    Phone,
    #[default]
    All,
}

/// Which contacts a listing, search or export reads; every filter narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactFilter {
    pub search: Option<String>,
    pub search_type: SearchType,
    pub is_business: Option<bool>,
    /// Last chat activity at or after this unix second.
    pub active_since: Option<i64>,
    /// No chat activity since this unix second (never active included).
    pub inactive_since: Option<i64>,
    /// Contacts carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only contacts who opted out (`true`), or only the others.
    pub opted_out: Option<bool>,
}

#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    pub filter: ContactFilter,
    pub page: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContactStats {
    pub total_contacts: i64,
    pub with_saved_name: i64,
    pub with_push_name: i64,
    pub without_any_name: i64,
    pub business: i64,
    pub active_last_90_days: i64,
    pub with_known_activity: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DefaultGroupsOutcome {
    pub existing: Vec<String>,
    pub created: u64,
}

/// One fact about a chat or contact of a linked account, as WhatsApp sent it. Missing
/// fields leave what is known alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachedContact {
    pub jid: String,
    pub pn_jid: Option<String>,
    pub lid_jid: Option<String>,
    pub name: Option<String>,
    pub push_name: Option<String>,
    pub is_business: Option<bool>,
    pub last_message_at: Option<i64>,
}

/// A tenant API key as stored: never the key, only its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: i64,
    /// The non-secret part of the key, by which a presented key is found.
    pub public_id: String,
    pub user_id: UserId,
    pub name: Option<String>,
    pub key_hash: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub quotas: KeyQuotas,
}

/// What the admin set on one tenant key; each `None` falls back to the server's flag.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeyQuotas {
    /// Sessions the key's user may hold; 0 means no limit.
    pub max_sessions: Option<u32>,
    /// Requests per second.
    pub rate_limit: Option<f64>,
    /// Requests that may arrive at once before the rate applies.
    pub rate_limit_burst: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub public_id: &'a str,
    pub user_id: UserId,
    pub name: Option<&'a str>,
    pub key_hash: &'a [u8],
    pub quotas: KeyQuotas,
    pub now_ms: i64,
}
