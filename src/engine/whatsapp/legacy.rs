//! Upgrading loses nobody: earlier versions kept each session's device in its own SQLite
//! file, `<data-dir>/whatsapp/<session_id>/device.db` (the library's own store), beside a
//! `linked` marker. At start each linked one is copied into the service's database once,
//! then renamed `device.db.imported`; the session reconnects with its old keys, no new scan.
//!
//! The file is read with the library's own store, which decodes its encodings (sync keys,
//! app-state versions, device lists); the keys to ask it for are listed with plain read-only
//! SQL on the same file. Everything is written through the new store's `Backend` methods,
//! and the session is marked linked last: a crash mid-copy leaves it unmarked, and the next
//! start forgets the half copy (`forget_unlinked_devices`) and copies again. A file that
//! cannot be read is kept and logged, never deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::SqliteStore as FileStore;
use whatsapp_rust::store::traits::{
    AppSyncStore, Backend, DeviceStore, MsgSecretEntry, PendingInboundRow, ProtocolStore,
    SignalStore,
};
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;

use crate::domain::SessionId;
use crate::store::device::CredentialStore;

const STORE_FILE: &str = "device.db";
const LINKED_MARKER: &str = "linked";
const IMPORTED_SUFFIX: &str = ".imported";
/// Files imported at once: each opens the library's store (and runs its migrations), which
/// is mostly waiting on the disk; a few at a time keep 1,000 sessions to seconds.
const AT_ONCE: usize = 4;

/// What happened to one session's folder.
enum Outcome {
    Imported,
    /// Already in the database, or nothing to import.
    Skipped,
    /// Never linked: deleted, as earlier versions did at start.
    Removed,
    Failed,
}

/// Imports every linked device file under `<data_dir>/whatsapp/`; logs one line per
/// session and a total. Never fails the start: a session whose file could not be imported
/// stays unlinked in the database (its status says it must be linked again) and keeps its
/// file for another try.
pub(super) async fn import_device_files(data_dir: &Path, creds: &dyn CredentialStore, now_ms: i64) {
    let root = data_dir.join("whatsapp");
    let dirs: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::error!(
                "❌ Cannot read the device files of an earlier version in {}: {e}",
                root.display()
            );
            return;
        }
    };
    let outcomes: Vec<Outcome> = futures::stream::iter(dirs)
        .map(|dir| import_dir(dir, creds, now_ms))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let count = |want: fn(&Outcome) -> bool| outcomes.iter().filter(|o| want(o)).count();
    let imported = count(|o| matches!(o, Outcome::Imported));
    let failed = count(|o| matches!(o, Outcome::Failed));
    let removed = count(|o| matches!(o, Outcome::Removed));
    if imported + failed + removed > 0 {
        tracing::info!(
            "ℹ️ Device files of an earlier version: {imported} imported into the database, \
             {failed} kept after a failure, {removed} never-linked removed"
        );
    }
}

async fn import_dir(dir: PathBuf, creds: &dyn CredentialStore, now_ms: i64) -> Outcome {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
        return Outcome::Skipped;
    };
    if !dir.join(LINKED_MARKER).exists() {
        return match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Outcome::Removed,
            Err(e) => {
                tracing::warn!(
                    "⚠️ Cannot remove unlinked device files {}: {e}",
                    dir.display()
                );
                Outcome::Skipped
            }
        };
    }
    let file = dir.join(STORE_FILE);
    if !file.exists() {
        return Outcome::Skipped;
    }
    let id = SessionId::from_db(name);
    match creds.is_linked(&id).await {
        Ok(false) => {}
        Ok(true) => {
            // Imported by a start that died before the rename: the database copy counts.
            tracing::info!("ℹ️ Session {id}: its device file was imported before");
            return match rename_imported(&file).await {
                Ok(()) => Outcome::Skipped,
                Err(e) => {
                    tracing::warn!("⚠️ Session {id}: {e}");
                    Outcome::Skipped
                }
            };
        }
        Err(e) => {
            tracing::error!("❌ Session {id}: cannot tell whether it is imported: {e:#}");
            return Outcome::Failed;
        }
    }
    match import_file(&id, &file, creds, now_ms).await {
        Ok(rows) => {
            tracing::info!("ℹ️ Session {id}: device file imported ({rows} rows)");
            if let Err(e) = rename_imported(&file).await {
                tracing::warn!("⚠️ Session {id}: {e}");
            }
            Outcome::Imported
        }
        Err(e) => {
            tracing::error!(
                "❌ Session {id}: cannot import its device file {} ({e}); the file is kept and \
                 the session must be linked again unless a later start imports it",
                file.display()
            );
            // The half copy goes now rather than at the next start; the file stays.
            if let Err(e) = creds.forget_device(&id).await {
                tracing::warn!("⚠️ Session {id}: cannot remove the half-imported copy: {e:#}");
            }
            Outcome::Failed
        }
    }
}

/// `device.db` (and whatever of its journal is left) → `device.db.imported`, so the next
/// start does not import it again and an operator still has it.
async fn rename_imported(file: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", file.display()));
        let to = PathBuf::from(format!("{}{IMPORTED_SUFFIX}{suffix}", file.display()));
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(e) => return Err(format!("cannot rename {}: {e}", from.display())),
        }
    }
    Ok(())
}

/// Copies one device file; returns how many rows it copied.
async fn import_file(
    id: &SessionId,
    file: &Path,
    creds: &dyn CredentialStore,
    now_ms: i64,
) -> Result<usize, String> {
    let path = file
        .to_str()
        .ok_or_else(|| "its path is not UTF-8".to_string())?;
    // Looked at first with plain SQL: the library's pool retries a file it cannot open for
    // half a minute, which a damaged file must not cost each start.
    let mut keys = SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .connect()
        .await
        .map_err(|e| format!("cannot read it: {e}"))?;
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM device")
        .fetch_one(&mut keys)
        .await
        .map_err(|e| format!("it is not a device store: {e}"))?;
    if devices == 0 {
        return Err("it holds no device".into());
    }
    let from = FileStore::new(path)
        .await
        .map_err(|e| format!("the library cannot open it: {e}"))?;
    // Any failure before `mark_linked` leaves the session unmarked, so nothing half-copied
    // is ever taken for a device.
    creds
        .forget_device(id)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let to = creds
        .device_backend(id)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let copied = copy_device(&from, &mut keys, to.as_ref(), from.device_id()).await;
    // Closed before the rename, so SQLite folds the journal back into the file.
    drop(keys);
    drop(from);
    let copied = copied.map_err(|e| e.to_string())?;
    creds
        .set_imported_from(id, path)
        .await
        .map_err(|e| format!("{e:#}"))?;
    creds
        .mark_linked(id, now_ms)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(copied)
}

/// One failed step of a copy.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("reading {0}: {1}")]
    Read(&'static str, String),
    #[error("writing {0}: {1}")]
    Write(&'static str, String),
    #[error("{0}")]
    Invalid(String),
}

fn read(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> CopyError {
    move |e| CopyError::Read(what, e.to_string())
}

fn write(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> CopyError {
    move |e| CopyError::Write(what, e.to_string())
}

/// Every kind of row the library keeps, through its getters where it encodes the value,
/// straight from the columns where it has none (MACs with their versions, base keys, sent
/// messages, message secrets, pending inbound messages).
async fn copy_device(
    from: &FileStore,
    keys: &mut SqliteConnection,
    to: &dyn Backend,
    device: i32,
) -> Result<usize, CopyError> {
    let device = i64::from(device);
    let mut rows = 0;
    let Some(dev) = from.load().await.map_err(|e| read("device")(&e))? else {
        return Err(CopyError::Invalid("the file holds no device".into()));
    };
    to.save(&dev).await.map_err(|e| write("device")(&e))?;
    rows += 1;

    let mut identities = Vec::new();
    for address in list(
        keys,
        "SELECT address FROM identities WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("identities")(&e))?
    {
        if let Some(key) = from
            .load_identity(&address)
            .await
            .map_err(|e| read("identities")(&e))?
        {
            identities.push((Arc::<str>::from(address), key));
        }
    }
    to.put_identities_batch(&identities)
        .await
        .map_err(|e| write("identities")(&e))?;
    rows += identities.len();

    let mut sessions = Vec::new();
    for address in list(
        keys,
        "SELECT address FROM sessions WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("sessions")(&e))?
    {
        if let Some(record) = from
            .get_session(&address)
            .await
            .map_err(|e| read("sessions")(&e))?
        {
            sessions.push((Arc::<str>::from(address), record));
        }
    }
    to.put_sessions_batch(&sessions)
        .await
        .map_err(|e| write("sessions")(&e))?;
    rows += sessions.len();

    let prekeys: Vec<(i64, bool)> =
        sqlx::query_as("SELECT id, uploaded FROM prekeys WHERE device_id = ? ORDER BY id")
            .bind(device)
            .fetch_all(&mut *keys)
            .await
            .map_err(|e| read("prekeys")(&e))?;
    for uploaded in [false, true] {
        let ids = prekeys
            .iter()
            .filter(|(_, u)| *u == uploaded)
            .map(|(id, _)| {
                u32::try_from(*id).map_err(|_| CopyError::Invalid(format!("prekey id {id}")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        if ids.is_empty() {
            continue;
        }
        let records = from
            .load_prekeys_batch(&ids)
            .await
            .map_err(|e| read("prekeys")(&e))?;
        to.store_prekeys_batch(&records, uploaded)
            .await
            .map_err(|e| write("prekeys")(&e))?;
        rows += records.len();
    }

    for (id, record) in from
        .load_all_signed_prekeys()
        .await
        .map_err(|e| read("signed prekeys")(&e))?
    {
        to.store_signed_prekey(id, &record)
            .await
            .map_err(|e| write("signed prekeys")(&e))?;
        rows += 1;
    }

    let mut sender_keys = Vec::new();
    for address in list(
        keys,
        "SELECT address FROM sender_keys WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("sender keys")(&e))?
    {
        if let Some(record) = from
            .get_sender_key(&address)
            .await
            .map_err(|e| read("sender keys")(&e))?
        {
            sender_keys.push((Arc::<str>::from(address), Bytes::from(record)));
        }
    }
    to.put_sender_keys_batch(&sender_keys)
        .await
        .map_err(|e| write("sender keys")(&e))?;
    rows += sender_keys.len();

    let sync_key_ids: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key_id FROM app_state_keys WHERE device_id = ?")
            .bind(device)
            .fetch_all(&mut *keys)
            .await
            .map_err(|e| read("app state keys")(&e))?;
    for key_id in sync_key_ids {
        if let Some(key) = from
            .get_sync_key(&key_id)
            .await
            .map_err(|e| read("app state keys")(&e))?
        {
            to.set_sync_key(&key_id, key)
                .await
                .map_err(|e| write("app state keys")(&e))?;
            rows += 1;
        }
    }

    for name in list(
        keys,
        "SELECT name FROM app_state_versions WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("app state versions")(&e))?
    {
        let state = from
            .get_version(&name)
            .await
            .map_err(|e| read("app state versions")(&e))?;
        to.set_version(&name, state)
            .await
            .map_err(|e| write("app state versions")(&e))?;
        rows += 1;
    }

    let macs: Vec<(String, i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, index_mac, value_mac FROM app_state_mutation_macs \
         WHERE device_id = ?",
    )
    .bind(device)
    .fetch_all(&mut *keys)
    .await
    .map_err(|e| read("mutation MACs")(&e))?;
    rows += macs.len();
    let mut by_version: BTreeMap<(String, i64), Vec<AppStateMutationMAC>> = BTreeMap::new();
    for (name, version, index_mac, value_mac) in macs {
        by_version
            .entry((name, version))
            .or_default()
            .push(AppStateMutationMAC {
                index_mac,
                value_mac,
            });
    }
    for ((name, version), macs) in by_version {
        let version = u64::try_from(version)
            .map_err(|_| CopyError::Invalid(format!("mutation MAC version {version}")))?;
        to.put_mutation_macs(&name, version, &macs)
            .await
            .map_err(|e| write("mutation MACs")(&e))?;
    }

    let mappings = from
        .get_all_lid_mappings()
        .await
        .map_err(|e| read("LID mappings")(&e))?;
    to.put_lid_mappings(&mappings)
        .await
        .map_err(|e| write("LID mappings")(&e))?;
    rows += mappings.len();

    for group in list(
        keys,
        "SELECT DISTINCT group_jid FROM sender_key_devices WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("sender key devices")(&e))?
    {
        let devices = from
            .get_sender_key_devices(&group)
            .await
            .map_err(|e| read("sender key devices")(&e))?;
        let entries: Vec<(&str, bool)> = devices.iter().map(|(d, k)| (d.as_str(), *k)).collect();
        to.set_sender_key_status(&group, &entries)
            .await
            .map_err(|e| write("sender key devices")(&e))?;
        rows += entries.len();
    }

    let base_keys: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT address, message_id, base_key FROM base_keys WHERE device_id = ?")
            .bind(device)
            .fetch_all(&mut *keys)
            .await
            .map_err(|e| read("base keys")(&e))?;
    for (address, message_id, base_key) in &base_keys {
        to.save_base_key(address, message_id, base_key)
            .await
            .map_err(|e| write("base keys")(&e))?;
    }
    rows += base_keys.len();

    let mut device_lists = Vec::new();
    for user in list(
        keys,
        "SELECT user_id FROM device_registry WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("device lists")(&e))?
    {
        if let Some(record) = from
            .get_devices(&user)
            .await
            .map_err(|e| read("device lists")(&e))?
        {
            device_lists.push(record);
        }
    }
    rows += device_lists.len();
    to.update_device_lists(device_lists)
        .await
        .map_err(|e| write("device lists")(&e))?;

    for jid in from
        .get_all_tc_token_jids()
        .await
        .map_err(|e| read("tc tokens")(&e))?
    {
        if let Some(token) = from
            .get_tc_token(&jid)
            .await
            .map_err(|e| read("tc tokens")(&e))?
        {
            to.put_tc_token(&jid, &token)
                .await
                .map_err(|e| write("tc tokens")(&e))?;
            rows += 1;
        }
    }

    let sent: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT chat_jid, message_id, payload FROM sent_messages WHERE device_id = ?",
    )
    .bind(device)
    .fetch_all(&mut *keys)
    .await
    .map_err(|e| read("sent messages")(&e))?;
    for (chat, message_id, payload) in &sent {
        to.store_sent_message(chat, message_id, payload)
            .await
            .map_err(|e| write("sent messages")(&e))?;
    }
    rows += sent.len();

    let secrets: Vec<(String, String, String, Vec<u8>, i64, i64)> = sqlx::query_as(
        "SELECT chat, sender, msg_id, secret, expires_at, message_ts FROM msg_secrets \
         WHERE device_id = ?",
    )
    .bind(device)
    .fetch_all(&mut *keys)
    .await
    .map_err(|e| read("message secrets")(&e))?;
    let secrets = secrets
        .into_iter()
        .map(|(chat, sender, msg_id, secret, expires_at, message_ts)| {
            let secret = secret.try_into().map_err(|s: Vec<u8>| {
                CopyError::Invalid(format!("a message secret of {} bytes", s.len()))
            })?;
            Ok(MsgSecretEntry {
                chat: chat.into(),
                sender: sender.into(),
                msg_id: msg_id.into(),
                secret,
                expires_at,
                message_ts,
            })
        })
        .collect::<Result<Vec<_>, CopyError>>()?;
    rows += secrets.len();
    if !secrets.is_empty() {
        to.put_msg_secrets(secrets)
            .await
            .map_err(|e| write("message secrets")(&e))?;
    }

    for group in list(
        keys,
        "SELECT group_jid FROM group_metadata WHERE device_id = ?",
        device,
    )
    .await
    .map_err(|e| read("group metadata")(&e))?
    {
        if let Some(info) = from
            .get_group_metadata(&group)
            .await
            .map_err(|e| read("group metadata")(&e))?
        {
            to.put_group_metadata(&group, &info)
                .await
                .map_err(|e| write("group metadata")(&e))?;
            rows += 1;
        }
    }

    let pending: Vec<(String, String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT chat, sender, id, message FROM pending_inbound_messages WHERE device_id = ?",
    )
    .bind(device)
    .fetch_all(&mut *keys)
    .await
    .map_err(|e| read("pending inbound messages")(&e))?;
    let pending_rows: Vec<PendingInboundRow<'_>> = pending
        .iter()
        .map(|(chat, sender, id, message)| PendingInboundRow {
            chat,
            sender,
            id,
            message,
        })
        .collect();
    if !pending_rows.is_empty() {
        to.store_pending_inbound_batch(&pending_rows)
            .await
            .map_err(|e| write("pending inbound messages")(&e))?;
    }
    rows += pending_rows.len();
    Ok(rows)
}

/// One text column of a device's rows.
async fn list(
    keys: &mut SqliteConnection,
    sql: &'static str,
    device: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(sql).bind(device).fetch_all(keys).await
}
