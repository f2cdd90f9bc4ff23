//! The WhatsApp engine's device store in the service's own database: whatsapp-rust's storage
//! [`Backend`] (its five traits, every method, the defaulted ones too) over our pool, keyed by
//! session, on SQLite and on PostgreSQL. Every session shares the one pool; no file per
//! linked number remains.
//!
//! **Durability** (the library's `agent_docs/signal_durability.md`): a method that returns
//! `Ok` has committed, a batch is one transaction, deletes are as durable as writes, and every
//! failure comes back as `Err` (`Connection` when the database could not be reached, else
//! `Database`, the cause kept as its source), so the library keeps its pre-wire gate shut.
//! There is no write-behind here: the library's own caches are the only buffer.
//!
//! **Semantics** follow the library's own SQLite store method by method, including where its
//! in-memory store differs: `get_latest_sync_key_id` is the highest id bytewise,
//! `get_pn_mapping` the newest mapping of the number, a LID mapping keeps its first
//! `created_at`, `create()` saves a fresh device (so `exists()` is true after it).
//!
//! **Reading every kind of row back** (for the import of today's `device.db` files, and for a
//! copy between backends). Through the traits, by key:
//! | table | getter | keys enumerated by |
//! |---|---|---|
//! | `wa_devices.device` | `load` | — |
//! | `wa_identities` | `load_identity` | [`DeviceRows::identities`] |
//! | `wa_signal_sessions` | `get_session` | [`DeviceRows::signal_sessions`] |
//! | `wa_prekeys` | `load_prekeys_batch` (no `uploaded` flag) | [`DeviceRows::prekeys`] |
//! | `wa_signed_prekeys` | `load_all_signed_prekeys` | itself |
//! | `wa_sender_keys` | `get_sender_key` | [`DeviceRows::sender_keys`] |
//! | `wa_app_state_keys` | `get_sync_key` | [`DeviceRows::app_state_keys`] |
//! | `wa_app_state_versions` | `get_version` | [`DeviceRows::app_state_versions`] |
//! | `wa_app_state_mutation_macs` | `get_mutation_mac` (no version) | [`DeviceRows::mutation_macs`] |
//! | `wa_lid_pn_mapping` | `get_all_lid_mappings` | itself |
//! | `wa_sender_key_devices` | `get_sender_key_devices` | [`DeviceRows::sender_key_devices`] |
//! | `wa_base_keys` | none (`has_same_base_key` compares) | [`DeviceRows::base_keys`] |
//! | `wa_device_registry` | `get_devices` | [`DeviceRows::device_registry`] |
//! | `wa_tc_tokens` | `get_tc_token` | `get_all_tc_token_jids` |
//! | `wa_sent_messages` | none (`take_sent_message` consumes) | [`DeviceRows::sent_messages`] |
//! | `wa_msg_secrets` | `get_msg_secret_with_ts` (no deadline) | [`DeviceRows::msg_secrets`] |
//! | `wa_group_metadata` | `get_group_metadata` | [`DeviceRows::group_metadata`] |
//! | `wa_pending_inbound` | `get_pending_inbound` | [`DeviceRows::pending_inbound`] |
//!
//! [`CredentialStore::device_rows`] returns every row of one session, whole, in one read.

mod appsync;
mod codec;
mod creds;
mod postgres;
mod protocol;
mod secrets;
mod signal;
mod sql;
mod sqlite;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::wacore::store::error::StoreError as LibError;

use crate::domain::SessionId;
use crate::store::{StoreError, StoreResult};

pub use postgres::PgCredentials;

#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync + 'static {
    /// The engine's storage for one session (creates its `wa_devices` row on first use).
    async fn device_backend(&self, session: &SessionId) -> StoreResult<Arc<dyn Backend>>;
    /// The phone accepted the link and the library has saved the device.
    async fn is_linked(&self, session: &SessionId) -> StoreResult<bool>;
    async fn linked_devices(&self) -> StoreResult<Vec<SessionId>>;
    async fn mark_linked(&self, session: &SessionId, now_ms: i64) -> StoreResult<()>;
    /// Removes exactly this session's rows: its `wa_devices` row and every `wa_*` row
    /// (cascade), and its rows in `engine_contact_cache` and `engine_lid_map`. One transaction.
    async fn forget_device(&self, session: &SessionId) -> StoreResult<()>;
    /// Forgets every device never marked linked (a start after a crash mid-link); how many.
    async fn forget_unlinked_devices(&self) -> StoreResult<u64>;

    /// Every row of this session's device, or `None` when it has no `wa_devices` row. For
    /// checking an import or copying a device to another backend.
    async fn device_rows(&self, session: &SessionId) -> StoreResult<Option<DeviceRows>>;
    /// Notes where this session's credentials were copied from (a `device.db` path); `NotFound`
    /// when the session has no device row.
    async fn set_imported_from(&self, session: &SessionId, source: &str) -> StoreResult<()>;
}

/// One device's rows, table by table, as stored (bytes as written, timestamps in unix seconds
/// unless said). Each list is sorted by its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRows {
    /// `wa_devices.device`: the library's `Device`, encoded (format byte + JSON).
    pub device: Option<Vec<u8>>,
    /// Unix ms.
    pub linked_at: Option<i64>,
    pub imported_from: Option<String>,
    /// `(address, key)`
    pub identities: Vec<(String, Vec<u8>)>,
    /// `(address, record)`
    pub signal_sessions: Vec<(String, Vec<u8>)>,
    /// `(id, record, uploaded)`
    pub prekeys: Vec<(i64, Vec<u8>, bool)>,
    /// `(id, record)`
    pub signed_prekeys: Vec<(i64, Vec<u8>)>,
    /// `(address, record)`
    pub sender_keys: Vec<(String, Vec<u8>)>,
    pub app_state_keys: Vec<AppStateKeyRow>,
    /// `(name, state)`: the state encoded (format byte + binary)
    pub app_state_versions: Vec<(String, Vec<u8>)>,
    /// `(name, index_mac, version, value_mac)`
    pub mutation_macs: Vec<(String, Vec<u8>, i64, Vec<u8>)>,
    /// `(lid, phone_number, created_at, learning_source, updated_at)`
    pub lid_pn_mapping: Vec<(String, String, i64, String, i64)>,
    /// `(group_jid, device_jid, has_key, updated_at)`
    pub sender_key_devices: Vec<(String, String, bool, i64)>,
    /// `(address, message_id, base_key, created_at)`
    pub base_keys: Vec<(String, String, Vec<u8>, i64)>,
    pub device_registry: Vec<DeviceRegistryRow>,
    pub tc_tokens: Vec<TcTokenRow>,
    /// `(chat_jid, message_id, payload, created_at)`
    pub sent_messages: Vec<(String, String, Vec<u8>, i64)>,
    pub msg_secrets: Vec<MsgSecretRow>,
    /// `(group_jid, info, updated_at)`
    pub group_metadata: Vec<(String, Vec<u8>, i64)>,
    /// `(chat, sender, id, message, inserted_at)`
    pub pending_inbound: Vec<(String, String, String, Vec<u8>, i64)>,
}

/// `(key_id, key_data, fingerprint, timestamp)`
pub type AppStateKeyRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64);
/// `(user_id, devices_json, timestamp, phash, raw_id, updated_at)`
pub type DeviceRegistryRow = (String, String, i64, Option<String>, Option<i64>, i64);
/// `(jid, token, token_timestamp, sender_timestamp, updated_at)`
pub type TcTokenRow = (String, Vec<u8>, i64, Option<i64>, i64);
/// `(chat, sender, msg_id, secret, expires_at, message_ts, created_at)`
pub type MsgSecretRow = (String, String, String, Vec<u8>, i64, i64, i64);

/// Rows per multi-row statement: at most 8 values each, well under SQLite's 32,766
/// parameters (and Postgres' 65,535).
const CHUNK_ROWS: usize = 1_000;

/// The library's error for a failed statement: `Connection` when the database could not be
/// reached (no connection in time, closed pool, I/O), else `Database`; the cause is kept.
fn lib_sqlx(e: sqlx::Error) -> LibError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => LibError::Connection(Box::new(e)),
        e => LibError::Database(Box::new(e)),
    }
}

/// The library's error for a failed write: from the driver directly (Postgres writes), or
/// from our store's error (SQLite writes, which take the writer gate), kept as the source.
trait IntoLibError {
    fn into_lib(self) -> LibError;
}

impl IntoLibError for sqlx::Error {
    fn into_lib(self) -> LibError {
        lib_sqlx(self)
    }
}

impl IntoLibError for StoreError {
    fn into_lib(self) -> LibError {
        match self {
            StoreError::Unavailable(_) => LibError::Connection(Box::new(self)),
            StoreError::Other(e) => match e.downcast::<sqlx::Error>() {
                Ok(e) => lib_sqlx(e),
                Err(e) => LibError::Database(e.into()),
            },
            e => LibError::Database(Box::new(e)),
        }
    }
}

fn lib_err(e: impl IntoLibError) -> LibError {
    e.into_lib()
}

fn no_device(session: &SessionId) -> StoreError {
    StoreError::NotFound(format!("session {session} has no device row"))
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A batch as one row per key, the last one given winning (what applying the batch row by row
/// leaves), sorted by key: one multi-row upsert may not touch a row twice on Postgres, and
/// writers that lock rows in the same order cannot deadlock each other.
fn last_by_key<T, K: Ord>(rows: impl IntoIterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut map = std::collections::BTreeMap::new();
    for row in rows {
        map.insert(key(&row), row);
    }
    map.into_values().collect()
}

fn id_u32(id: i64) -> Result<u32, LibError> {
    u32::try_from(id).map_err(|_| LibError::Validation(format!("key id {id} out of range")))
}

fn device_i32(id: i64) -> Result<i32, LibError> {
    i32::try_from(id).map_err(|_| LibError::Validation(format!("device id {id} out of range")))
}

/// What the macros that write the trait impls (`signal.rs`, `appsync.rs`, …) name; each
/// backend module brings these into scope where it expands them.
mod imports {
    pub(super) use std::collections::HashMap;
    pub(super) use std::sync::Arc;

    pub(super) use sqlx::Row;
    pub(super) use whatsapp_rust::bytes::Bytes;
    pub(super) use whatsapp_rust::store::traits::{
        AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
        MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
        SignalStore, TcTokenEntry,
    };
    pub(super) use whatsapp_rust::wacore::appstate::hash::HashState;
    pub(super) use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
    pub(super) use whatsapp_rust::wacore::stats::StorageResourceReport;
    pub(super) use whatsapp_rust::wacore::store::Device;
    pub(super) use whatsapp_rust::wacore::store::error::{
        Result as LibResult, StoreError as LibError,
    };

    pub(super) use super::{
        CHUNK_ROWS, DeviceRows, codec, device_i32, id_u32, last_by_key, lib_err, lib_sqlx,
        no_device, now_ms, now_secs, protocol::lid_entry, sql,
    };
}
