//! Persistence behind a small trait, so a Postgres backend can sit beside SQLite later.

pub(crate) mod busy;
pub mod device;
pub mod messaging;
mod sqlite;
mod sqlite_messaging;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Pair, PhoneNumber, SessionId, SessionStatus, UserId};
use crate::engine::RawContact;

#[cfg(test)]
pub(crate) use busy::busy_error_for_tests;
pub use busy::{BACKGROUND_RETRY_FOR, StoreBusy, is_busy, is_closed, keep_trying};
pub use messaging::*;
pub use sqlite::SqliteStore;

pub type StoreResult<T> = Result<T, anyhow::Error>;

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
}

/// A change to a contact's own data: tags replaced, custom fields merged (`null` removes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<serde_json::Map<String, serde_json::Value>>,
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

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);

    /// Creates or overwrites the session's row.
    async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()>;
    async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>>;
    /// The newest session of every pair.
    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Pairs of the user whose newest session is not `logged_out`: what the per-user
    /// session quota counts.
    async fn counted_sessions(&self, user: UserId) -> StoreResult<i64>;

    /// Creates the automatic groups that are missing; safe under any concurrency.
    async fn ensure_default_groups(
        &self,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<DefaultGroupsOutcome>;

    /// Upserts one batch and records the fetch's progress, atomically.
    async fn import_contacts(
        &self,
        pair: Pair,
        batch: &[ImportContact],
        progress: BatchProgress<'_>,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Merges what WhatsApp just said about contacts into the session's cache: a name is
    /// never replaced by none, activity only moves forward.
    async fn cache_contacts(
        &self,
        session: &SessionId,
        entries: &[CachedContact],
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Records LID → phone-number pairs (`lid_jid`, `pn_jid`).
    async fn cache_lid_mappings(
        &self,
        session: &SessionId,
        pairs: &[(String, String)],
    ) -> StoreResult<()>;
    /// Everything cached for the session, LID chats resolved to numbers where a mapping is
    /// known.
    async fn cached_contacts(&self, session: &SessionId) -> StoreResult<Vec<RawContact>>;

    /// (total active contacts, groups) of the pair.
    async fn pair_counts(&self, pair: Pair) -> StoreResult<(i64, i64)>;
    async fn contact_stats(&self, pair: Pair, recent_since_s: i64) -> StoreResult<ContactStats>;

    async fn list_groups(
        &self,
        pair: Pair,
        page: i64,
        limit: i64,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<GroupRecord>, i64)>;
    async fn group(
        &self,
        pair: Pair,
        group_id: i64,
        recent_since_s: i64,
    ) -> StoreResult<Option<GroupRecord>>;
    /// One page of the pair's active contacts (of one group when given), most recently
    /// active first, and how many match in all.
    async fn search_contacts(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        query: &ContactQuery,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<ContactRecord>, i64)>;
    /// Up to `limit` matching contacts with an id above `after_id`, by id, custom fields
    /// included: an export reads the whole set this way without holding a transaction.
    async fn contacts_after(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        filter: &ContactFilter,
        recent_since_s: i64,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<ContactRecord>>;

    /// A manual group with these members (ids of the pair's active contacts, deduplicated).
    async fn create_manual_group(
        &self,
        pair: Pair,
        name: &str,
        description: Option<&str>,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange>;
    /// The members of a manual group become exactly these, in one transaction.
    async fn replace_group_members(
        &self,
        pair: Pair,
        group_id: i64,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange>;
    /// Deletes a manual group and its memberships; the contacts stay.
    async fn delete_manual_group(&self, pair: Pair, group_id: i64) -> StoreResult<GroupChange>;
    /// One active contact of the pair.
    async fn contact(&self, pair: Pair, contact_id: i64) -> StoreResult<Option<ContactRecord>>;
    /// Applies the patch to one active contact of the pair; `None` when there is none.
    async fn update_contact(
        &self,
        pair: Pair,
        contact_id: i64,
        patch: &ContactPatch,
        now_ms: i64,
    ) -> StoreResult<Option<ContactRecord>>;
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

/// Tenant keys; apart from [`Store`] because they are the gate, not the data behind it.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRecord>;
    /// The key with this public id, unless revoked.
    async fn active_api_key(&self, public_id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// A page of the keys not revoked, oldest first, of one user when given; and their total.
    async fn list_api_keys(
        &self,
        user: Option<UserId>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<ApiKeyRecord>, i64)>;
    /// Revokes a key not yet revoked; `None` when there is no such key.
    async fn revoke_api_key(&self, id: i64, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>>;
    async fn touch_api_key(&self, id: i64, now_ms: i64) -> StoreResult<()>;
}
