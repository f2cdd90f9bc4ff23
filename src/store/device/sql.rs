//! The device store's SQL, written once for both engines: `$N` placeholders (sqlx-sqlite reads
//! them too), `ON CONFLICT … DO UPDATE SET x = excluded.x`, `DELETE … RETURNING`, and `CASE`
//! where SQLite would say `MAX(a, b)` and Postgres `GREATEST(a, b)`. Every statement names
//! its device (`device_id`), so two sessions on one pool never see each other's rows.
//! Multi-row statements are built with `QueryBuilder` from a `*_INSERT` head (the builder adds
//! `VALUES …`) and an `*_UPSERT` tail.

// --- wa_devices (the session's row) ---
pub(super) const DEVICE_ROW_INSERT: &str = "INSERT INTO wa_devices (session_id, created_at, updated_at) \
     VALUES ($1, $2, $2) ON CONFLICT (session_id) DO NOTHING";
pub(super) const DEVICE_ROW_ID: &str = "SELECT id FROM wa_devices WHERE session_id = $1";
/// Linked: the phone accepted the link (`linked_at`) and the library has saved the device it
/// registered (`pn` is set by `save()` from the device's own number; `create()` stores an
/// unregistered one, without a number). A crash between the two leaves a session unlinked.
pub(super) const DEVICE_IS_LINKED: &str = "SELECT 1 FROM wa_devices \
     WHERE session_id = $1 AND linked_at IS NOT NULL AND device IS NOT NULL AND pn IS NOT NULL";
pub(super) const DEVICES_LINKED: &str = "SELECT session_id FROM wa_devices \
     WHERE linked_at IS NOT NULL AND device IS NOT NULL AND pn IS NOT NULL ORDER BY session_id";
pub(super) const DEVICE_MARK_LINKED: &str =
    "UPDATE wa_devices SET linked_at = $2, updated_at = $2 WHERE session_id = $1";
pub(super) const DEVICE_SET_IMPORTED: &str =
    "UPDATE wa_devices SET imported_from = $2, updated_at = $3 WHERE session_id = $1";
pub(super) const DEVICE_FORGET: [&str; 3] = [
    "DELETE FROM engine_contact_cache WHERE session_id = $1",
    "DELETE FROM engine_lid_map WHERE session_id = $1",
    // Last: its cascade removes every wa_* row of the device.
    "DELETE FROM wa_devices WHERE session_id = $1",
];
pub(super) const DEVICE_FORGET_UNLINKED: [&str; 3] = [
    "DELETE FROM engine_contact_cache WHERE session_id IN \
     (SELECT session_id FROM wa_devices WHERE linked_at IS NULL)",
    "DELETE FROM engine_lid_map WHERE session_id IN \
     (SELECT session_id FROM wa_devices WHERE linked_at IS NULL)",
    "DELETE FROM wa_devices WHERE linked_at IS NULL",
];
pub(super) const DEVICE_ROW: &str =
    "SELECT device, linked_at, imported_from FROM wa_devices WHERE session_id = $1";

// --- DeviceStore (the library's Device blob) ---
pub(super) const DEVICE_SAVE: &str =
    "UPDATE wa_devices SET device = $2, pn = $3, lid = $4, updated_at = $5 WHERE id = $1";
pub(super) const DEVICE_CREATE: &str =
    "UPDATE wa_devices SET device = $2, updated_at = $3 WHERE id = $1 AND device IS NULL";
pub(super) const DEVICE_LOAD: &str = "SELECT device FROM wa_devices WHERE id = $1";
pub(super) const DEVICE_EXISTS: &str =
    "SELECT 1 FROM wa_devices WHERE id = $1 AND device IS NOT NULL";
pub(super) const DEVICE_ID_EXISTS: &str = "SELECT 1 FROM wa_devices WHERE id = $1";

// --- SignalStore ---
pub(super) const IDENTITY_INSERT: &str = "INSERT INTO wa_identities (device_id, address, key) ";
pub(super) const IDENTITY_UPSERT: &str =
    " ON CONFLICT (device_id, address) DO UPDATE SET key = excluded.key";
pub(super) const IDENTITY_GET: &str =
    "SELECT key FROM wa_identities WHERE device_id = $1 AND address = $2";
pub(super) const IDENTITY_DELETE: &str =
    "DELETE FROM wa_identities WHERE device_id = $1 AND address = $2";

pub(super) const SESSION_INSERT: &str =
    "INSERT INTO wa_signal_sessions (device_id, address, record) ";
pub(super) const SESSION_UPSERT: &str =
    " ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record";
pub(super) const SESSION_GET: &str =
    "SELECT record FROM wa_signal_sessions WHERE device_id = $1 AND address = $2";
pub(super) const SESSION_HAS: &str =
    "SELECT 1 FROM wa_signal_sessions WHERE device_id = $1 AND address = $2";
pub(super) const SESSION_DELETE: &str =
    "DELETE FROM wa_signal_sessions WHERE device_id = $1 AND address = $2";
/// Addresses are `user@server` (device 0) or `user:device@server`: `$2` is `user@`, `$3` is
/// `user:`. A prefix compare, not `LIKE`: SQLite's `LIKE` ignores case and Postgres' does not,
/// and `_` in a user would be a wildcard.
pub(super) const SIGNAL_STATE_FOR_USER: &str = "SELECT 1 FROM wa_signal_sessions WHERE device_id = $1 \
       AND (substr(address, 1, length($2)) = $2 OR substr(address, 1, length($3)) = $3) \
     UNION ALL SELECT 1 FROM wa_identities WHERE device_id = $1 \
       AND (substr(address, 1, length($2)) = $2 OR substr(address, 1, length($3)) = $3) \
     LIMIT 1";

pub(super) const PREKEY_INSERT: &str = "INSERT INTO wa_prekeys (device_id, id, record, uploaded) ";
pub(super) const PREKEY_UPSERT: &str = " ON CONFLICT (device_id, id) DO UPDATE \
     SET record = excluded.record, uploaded = excluded.uploaded";
pub(super) const PREKEY_GET: &str =
    "SELECT record FROM wa_prekeys WHERE device_id = $1 AND id = $2";
pub(super) const PREKEYS_BY_ID: &str = "SELECT id, record FROM wa_prekeys WHERE device_id = ";
/// UPDATE, never an upsert: a key consumed between the upload and this mark stays consumed.
pub(super) const PREKEYS_MARK_UPLOADED: &str = "UPDATE wa_prekeys SET uploaded = ";
pub(super) const PREKEY_DELETE: &str = "DELETE FROM wa_prekeys WHERE device_id = $1 AND id = $2";
pub(super) const PREKEY_MAX_ID: &str =
    "SELECT COALESCE(MAX(id), 0) FROM wa_prekeys WHERE device_id = $1";

pub(super) const SIGNED_PREKEY_UPSERT: &str = "INSERT INTO wa_signed_prekeys (device_id, id, record) \
     VALUES ($1, $2, $3) ON CONFLICT (device_id, id) DO UPDATE SET record = excluded.record";
pub(super) const SIGNED_PREKEY_GET: &str =
    "SELECT record FROM wa_signed_prekeys WHERE device_id = $1 AND id = $2";
pub(super) const SIGNED_PREKEY_ALL: &str =
    "SELECT id, record FROM wa_signed_prekeys WHERE device_id = $1 ORDER BY id";
pub(super) const SIGNED_PREKEY_DELETE: &str =
    "DELETE FROM wa_signed_prekeys WHERE device_id = $1 AND id = $2";

pub(super) const SENDER_KEY_INSERT: &str =
    "INSERT INTO wa_sender_keys (device_id, address, record) ";
pub(super) const SENDER_KEY_UPSERT: &str =
    " ON CONFLICT (device_id, address) DO UPDATE SET record = excluded.record";
pub(super) const SENDER_KEY_GET: &str =
    "SELECT record FROM wa_sender_keys WHERE device_id = $1 AND address = $2";
pub(super) const SENDER_KEY_DELETE: &str =
    "DELETE FROM wa_sender_keys WHERE device_id = $1 AND address = $2";

pub(super) const PENDING_INSERT: &str =
    "INSERT INTO wa_pending_inbound (device_id, chat, sender, id, message, inserted_at) ";
/// A stored message stored again is replaced whole, its age included (the library's
/// `REPLACE INTO`).
pub(super) const PENDING_UPSERT: &str = " ON CONFLICT (device_id, chat, sender, id) DO UPDATE \
     SET message = excluded.message, inserted_at = excluded.inserted_at";
pub(super) const PENDING_GET: &str = "SELECT message FROM wa_pending_inbound \
     WHERE device_id = $1 AND chat = $2 AND sender = $3 AND id = $4";
pub(super) const PENDING_DELETE_HEAD: &str = "DELETE FROM wa_pending_inbound WHERE device_id = ";
pub(super) const PENDING_EXPIRE: &str =
    "DELETE FROM wa_pending_inbound WHERE device_id = $1 AND inserted_at < $2";

// --- AppSyncStore ---
pub(super) const SYNC_KEY_UPSERT: &str = "INSERT INTO wa_app_state_keys \
     (device_id, key_id, key_data, fingerprint, timestamp) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (device_id, key_id) DO UPDATE SET key_data = excluded.key_data, \
     fingerprint = excluded.fingerprint, timestamp = excluded.timestamp";
pub(super) const SYNC_KEY_GET: &str = "SELECT key_data, fingerprint, timestamp \
     FROM wa_app_state_keys WHERE device_id = $1 AND key_id = $2";
/// The highest id bytewise, as the library's store answers (both engines compare bytes).
pub(super) const SYNC_KEY_LATEST: &str = "SELECT key_id FROM wa_app_state_keys \
     WHERE device_id = $1 ORDER BY key_id DESC LIMIT 1";
pub(super) const VERSION_UPSERT: &str = "INSERT INTO wa_app_state_versions (device_id, name, state) \
     VALUES ($1, $2, $3) ON CONFLICT (device_id, name) DO UPDATE SET state = excluded.state";
pub(super) const VERSION_GET: &str =
    "SELECT state FROM wa_app_state_versions WHERE device_id = $1 AND name = $2";
pub(super) const MAC_INSERT: &str =
    "INSERT INTO wa_app_state_mutation_macs (device_id, name, index_mac, version, value_mac) ";
pub(super) const MAC_UPSERT: &str = " ON CONFLICT (device_id, name, index_mac) DO UPDATE \
     SET version = excluded.version, value_mac = excluded.value_mac";
pub(super) const MAC_GET: &str = "SELECT value_mac FROM wa_app_state_mutation_macs \
     WHERE device_id = $1 AND name = $2 AND index_mac = $3";
pub(super) const MACS_HEAD: &str = "wa_app_state_mutation_macs WHERE device_id = ";
pub(super) const MAC_CLEAR: &str =
    "DELETE FROM wa_app_state_mutation_macs WHERE device_id = $1 AND name = $2";

// --- ProtocolStore ---
pub(super) const SKD_GET: &str = "SELECT device_jid, has_key FROM wa_sender_key_devices \
     WHERE device_id = $1 AND group_jid = $2 ORDER BY device_jid";
pub(super) const SKD_INSERT: &str =
    "INSERT INTO wa_sender_key_devices (device_id, group_jid, device_jid, has_key, updated_at) ";
pub(super) const SKD_UPSERT: &str = " ON CONFLICT (device_id, group_jid, device_jid) DO UPDATE \
     SET has_key = excluded.has_key, updated_at = excluded.updated_at";
pub(super) const SKD_CLEAR_GROUP: &str =
    "DELETE FROM wa_sender_key_devices WHERE device_id = $1 AND group_jid = $2";
pub(super) const SKD_CLEAR_ALL: &str = "DELETE FROM wa_sender_key_devices WHERE device_id = $1";
pub(super) const SKD_DELETE_HEAD: &str = "DELETE FROM wa_sender_key_devices WHERE device_id = ";

macro_rules! lid_select {
    ($tail:literal) => {
        concat!(
            "SELECT lid, phone_number, created_at, learning_source, updated_at ",
            "FROM wa_lid_pn_mapping WHERE device_id = $1",
            $tail
        )
    };
}
pub(super) const LID_GET: &str = lid_select!(" AND lid = $2");
/// The newest mapping of the number (a number can move to another LID).
pub(super) const LID_BY_PN: &str =
    lid_select!(" AND phone_number = $2 ORDER BY updated_at DESC, lid DESC LIMIT 1");
pub(super) const LID_ALL: &str = lid_select!(" ORDER BY lid");
pub(super) const LID_INSERT: &str = "INSERT INTO wa_lid_pn_mapping \
     (device_id, lid, phone_number, created_at, learning_source, updated_at) ";
/// `created_at` is when the mapping was first learned: an update keeps it.
pub(super) const LID_UPSERT: &str = " ON CONFLICT (device_id, lid) DO UPDATE \
     SET phone_number = excluded.phone_number, learning_source = excluded.learning_source, \
     updated_at = excluded.updated_at";

pub(super) const BASE_KEY_UPSERT: &str = "INSERT INTO wa_base_keys \
     (device_id, address, message_id, base_key, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (device_id, address, message_id) DO UPDATE SET base_key = excluded.base_key";
pub(super) const BASE_KEY_GET: &str = "SELECT base_key FROM wa_base_keys \
     WHERE device_id = $1 AND address = $2 AND message_id = $3";
pub(super) const BASE_KEY_DELETE: &str =
    "DELETE FROM wa_base_keys WHERE device_id = $1 AND address = $2 AND message_id = $3";

pub(super) const REGISTRY_INSERT: &str = "INSERT INTO wa_device_registry \
     (device_id, user_id, devices_json, timestamp, phash, raw_id, updated_at) ";
pub(super) const REGISTRY_UPSERT: &str = " ON CONFLICT (device_id, user_id) DO UPDATE \
     SET devices_json = excluded.devices_json, timestamp = excluded.timestamp, \
     phash = excluded.phash, raw_id = excluded.raw_id, updated_at = excluded.updated_at";
pub(super) const REGISTRY_GET: &str = "SELECT devices_json, timestamp, phash, raw_id \
     FROM wa_device_registry WHERE device_id = $1 AND user_id = $2";
pub(super) const REGISTRY_DELETE: &str =
    "DELETE FROM wa_device_registry WHERE device_id = $1 AND user_id = $2";

pub(super) const GROUP_META_GET: &str =
    "SELECT info FROM wa_group_metadata WHERE device_id = $1 AND group_jid = $2";
pub(super) const GROUP_META_UPSERT: &str = "INSERT INTO wa_group_metadata \
     (device_id, group_jid, info, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (device_id, group_jid) DO UPDATE \
     SET info = excluded.info, updated_at = excluded.updated_at";
pub(super) const GROUP_META_DELETE: &str =
    "DELETE FROM wa_group_metadata WHERE device_id = $1 AND group_jid = $2";

pub(super) const TC_GET: &str = "SELECT token, token_timestamp, sender_timestamp \
     FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
pub(super) const TC_PUT: &str = "INSERT INTO wa_tc_tokens \
     (device_id, jid, token, token_timestamp, sender_timestamp, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, jid) DO UPDATE \
     SET token = excluded.token, token_timestamp = excluded.token_timestamp, \
     sender_timestamp = excluded.sender_timestamp, updated_at = excluded.updated_at";
pub(super) const TC_DELETE: &str = "DELETE FROM wa_tc_tokens WHERE device_id = $1 AND jid = $2";
pub(super) const TC_JIDS: &str = "SELECT jid FROM wa_tc_tokens WHERE device_id = $1 ORDER BY jid";
/// Gone only when both halves are stale: the received token expired or absent, and our sender
/// bucket expired or never set.
pub(super) const TC_EXPIRE: &str = "DELETE FROM wa_tc_tokens WHERE device_id = $1 \
     AND (length(token) = 0 OR token_timestamp < $2) \
     AND (sender_timestamp IS NULL OR sender_timestamp < $3)";
/// Our sender bucket only moves forward; a real token already there is kept. One statement:
/// atomic against `TC_RECEIVED` on both engines.
pub(super) const TC_TOUCH_SENDER: &str = "INSERT INTO wa_tc_tokens \
     (device_id, jid, token, token_timestamp, sender_timestamp, updated_at) \
     VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (device_id, jid) DO UPDATE \
     SET sender_timestamp = CASE WHEN wa_tc_tokens.sender_timestamp IS NULL \
       OR wa_tc_tokens.sender_timestamp < excluded.sender_timestamp \
       THEN excluded.sender_timestamp ELSE wa_tc_tokens.sender_timestamp END, \
     updated_at = excluded.updated_at";
/// Newer wins: a stored real token is replaced only by one at least as new; a placeholder
/// (no bytes) by any. The sender bucket is the other writer's and stays.
pub(super) const TC_RECEIVED: &str = "INSERT INTO wa_tc_tokens \
     (device_id, jid, token, token_timestamp, sender_timestamp, updated_at) \
     VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (device_id, jid) DO UPDATE \
     SET token = excluded.token, token_timestamp = excluded.token_timestamp, \
     updated_at = excluded.updated_at \
     WHERE length(wa_tc_tokens.token) = 0 \
       OR excluded.token_timestamp >= wa_tc_tokens.token_timestamp";

/// Stored again, a message is replaced with a fresh age (the library's `REPLACE INTO`).
pub(super) const SENT_PUT: &str = "INSERT INTO wa_sent_messages \
     (device_id, chat_jid, message_id, payload, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (device_id, chat_jid, message_id) DO UPDATE \
     SET payload = excluded.payload, created_at = excluded.created_at";
/// One statement, so two takers of one message cannot both get it.
pub(super) const SENT_TAKE: &str = "DELETE FROM wa_sent_messages \
     WHERE device_id = $1 AND chat_jid = $2 AND message_id = $3 RETURNING payload";
pub(super) const SENT_EXPIRE: &str =
    "DELETE FROM wa_sent_messages WHERE device_id = $1 AND created_at < $2";

// --- MsgSecretStore ---
pub(super) const SECRET_INSERT: &str = "INSERT INTO wa_msg_secrets \
     (device_id, chat, sender, msg_id, secret, expires_at, message_ts, created_at) ";
/// The library's merge rules (`merge_msg_secret_expiry`, `merge_msg_secret_message_ts`):
/// a deadline of 0 (never) wins, else the later one; the later parent time wins.
pub(super) const SECRET_UPSERT: &str = " ON CONFLICT (device_id, chat, sender, msg_id) DO UPDATE \
     SET secret = excluded.secret, created_at = excluded.created_at, \
     expires_at = CASE WHEN wa_msg_secrets.expires_at = 0 OR excluded.expires_at = 0 THEN 0 \
       WHEN wa_msg_secrets.expires_at > excluded.expires_at THEN wa_msg_secrets.expires_at \
       ELSE excluded.expires_at END, \
     message_ts = CASE WHEN wa_msg_secrets.message_ts > excluded.message_ts \
       THEN wa_msg_secrets.message_ts ELSE excluded.message_ts END";
pub(super) const SECRET_GET: &str = "SELECT secret, message_ts FROM wa_msg_secrets \
     WHERE device_id = $1 AND chat = $2 AND sender = $3 AND msg_id = $4";
pub(super) const SECRET_EXPIRE: &str = "DELETE FROM wa_msg_secrets \
     WHERE device_id = $1 AND expires_at <> 0 AND expires_at <= $2";
