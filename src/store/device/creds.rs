//! [`super::CredentialStore`] once for both engines: `impl_credential_store!(Store, Db,
//! write_macro)` expands in `sqlite.rs` and `postgres.rs`. The store type provides
//! `device_reads()` (its read pool) and `new_device_backend(device_id, session)`.

macro_rules! impl_credential_store {
    ($store:ty, $db:ty, $write:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::device::CredentialStore for $store {
            async fn device_backend(
                &self,
                session: &$crate::domain::SessionId,
            ) -> $crate::store::StoreResult<Arc<dyn whatsapp_rust::store::traits::Backend>> {
                let now = now_ms();
                let id: i64 = $write!(self, "create a device row", |tx| {
                    sqlx::query(sql::DEVICE_ROW_INSERT)
                        .bind(session.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let id: i64 = sqlx::query_scalar(sql::DEVICE_ROW_ID)
                        .bind(session.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                    Ok(id)
                })?;
                Ok(self.new_device_backend(id, session.clone()))
            }

            async fn is_linked(
                &self,
                session: &$crate::domain::SessionId,
            ) -> $crate::store::StoreResult<bool> {
                Ok(sqlx::query(sql::DEVICE_IS_LINKED)
                    .bind(session.as_str())
                    .fetch_optional(self.device_reads())
                    .await?
                    .is_some())
            }

            async fn linked_devices(
                &self,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::SessionId>> {
                let ids: Vec<String> = sqlx::query_scalar(sql::DEVICES_LINKED)
                    .fetch_all(self.device_reads())
                    .await?;
                Ok(ids
                    .into_iter()
                    .map($crate::domain::SessionId::from_db)
                    .collect())
            }

            async fn mark_linked(
                &self,
                session: &$crate::domain::SessionId,
                now_ms: i64,
            ) -> $crate::store::StoreResult<()> {
                let marked = $write!(self, "mark a device linked", |tx| {
                    Ok(sqlx::query(sql::DEVICE_MARK_LINKED)
                        .bind(session.as_str())
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })?;
                if marked == 0 {
                    // Forgotten meanwhile (a logout racing the link): nothing may revive it.
                    return Err(no_device(session));
                }
                Ok(())
            }

            async fn forget_device(
                &self,
                session: &$crate::domain::SessionId,
            ) -> $crate::store::StoreResult<()> {
                $write!(self, "forget a device", |tx| {
                    for statement in sql::DEVICE_FORGET {
                        sqlx::query(statement)
                            .bind(session.as_str())
                            .execute(&mut *tx)
                            .await?;
                    }
                    Ok(())
                })?;
                Ok(())
            }

            async fn forget_unlinked_devices(&self) -> $crate::store::StoreResult<u64> {
                let forgotten = $write!(self, "forget unlinked devices", |tx| {
                    let mut forgotten = 0;
                    for statement in sql::DEVICE_FORGET_UNLINKED {
                        forgotten = sqlx::query(statement)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                    Ok(forgotten)
                })?;
                Ok(forgotten)
            }

            async fn device_rows(
                &self,
                session: &$crate::domain::SessionId,
            ) -> $crate::store::StoreResult<Option<DeviceRows>> {
                // One transaction: on SQLite a snapshot; on Postgres (read committed) each table as
                // committed when it is read: take it while the session's engine is stopped.
                let mut tx = self.device_reads().begin().await?;
                let Some(head) = sqlx::query(sql::DEVICE_ROW)
                    .bind(session.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                else {
                    return Ok(None);
                };
                let id: i64 = sqlx::query_scalar(sql::DEVICE_ROW_ID)
                    .bind(session.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                macro_rules! rows {
                    ($table:literal, $cols:literal, $order:literal) => {
                        sqlx::query_as(concat!(
                            "SELECT ",
                            $cols,
                            " FROM ",
                            $table,
                            " WHERE device_id = $1 ORDER BY ",
                            $order
                        ))
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?
                    };
                }
                Ok(Some(DeviceRows {
                    device: head.try_get(0)?,
                    linked_at: head.try_get(1)?,
                    imported_from: head.try_get(2)?,
                    identities: rows!("wa_identities", "address, key", "address"),
                    signal_sessions: rows!("wa_signal_sessions", "address, record", "address"),
                    prekeys: rows!("wa_prekeys", "id, record, uploaded", "id"),
                    signed_prekeys: rows!("wa_signed_prekeys", "id, record", "id"),
                    sender_keys: rows!("wa_sender_keys", "address, record", "address"),
                    app_state_keys: rows!(
                        "wa_app_state_keys",
                        "key_id, key_data, fingerprint, timestamp",
                        "key_id"
                    ),
                    app_state_versions: rows!("wa_app_state_versions", "name, state", "name"),
                    mutation_macs: rows!(
                        "wa_app_state_mutation_macs",
                        "name, index_mac, version, value_mac",
                        "name, index_mac"
                    ),
                    lid_pn_mapping: rows!(
                        "wa_lid_pn_mapping",
                        "lid, phone_number, created_at, learning_source, updated_at",
                        "lid"
                    ),
                    sender_key_devices: rows!(
                        "wa_sender_key_devices",
                        "group_jid, device_jid, has_key, updated_at",
                        "group_jid, device_jid"
                    ),
                    base_keys: rows!(
                        "wa_base_keys",
                        "address, message_id, base_key, created_at",
                        "address, message_id"
                    ),
                    device_registry: rows!(
                        "wa_device_registry",
                        "user_id, devices_json, timestamp, phash, raw_id, updated_at",
                        "user_id"
                    ),
                    tc_tokens: rows!(
                        "wa_tc_tokens",
                        "jid, token, token_timestamp, sender_timestamp, updated_at",
                        "jid"
                    ),
                    sent_messages: rows!(
                        "wa_sent_messages",
                        "chat_jid, message_id, payload, created_at",
                        "chat_jid, message_id"
                    ),
                    msg_secrets: rows!(
                        "wa_msg_secrets",
                        "chat, sender, msg_id, secret, expires_at, message_ts, created_at",
                        "chat, sender, msg_id"
                    ),
                    group_metadata: rows!(
                        "wa_group_metadata",
                        "group_jid, info, updated_at",
                        "group_jid"
                    ),
                    pending_inbound: rows!(
                        "wa_pending_inbound",
                        "chat, sender, id, message, inserted_at",
                        "chat, sender, id"
                    ),
                }))
            }

            async fn set_imported_from(
                &self,
                session: &$crate::domain::SessionId,
                source: &str,
            ) -> $crate::store::StoreResult<()> {
                let now = now_ms();
                let marked = $write!(self, "note a device's import", |tx| {
                    Ok(sqlx::query(sql::DEVICE_SET_IMPORTED)
                        .bind(session.as_str())
                        .bind(source)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })?;
                if marked == 0 {
                    return Err(no_device(session));
                }
                Ok(())
            }
        }
    };
}
pub(super) use impl_credential_store;
