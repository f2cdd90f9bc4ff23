//! `MsgSecretStore` and `DeviceStore` once for both engines:
//! `impl_secret_and_device_store!(Backend, Db, write_macro)` (see `signal.rs`).

macro_rules! impl_secret_and_device_store {
    ($backend:ty, $db:ty, $write:ident) => {
        #[async_trait::async_trait]
        impl MsgSecretStore for $backend {
            async fn put_msg_secret(
                &self,
                chat: &str,
                sender: &str,
                msg_id: &str,
                secret: &[u8; 32],
            ) -> LibResult<()> {
                self.put_msg_secrets(vec![MsgSecretEntry {
                    chat: Arc::from(chat),
                    sender: Arc::from(sender),
                    msg_id: Arc::from(msg_id),
                    secret: *secret,
                    expires_at: 0,
                    message_ts: 0,
                }])
                .await
                .map(drop)
            }

            async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> LibResult<usize> {
                use whatsapp_rust::store::traits::{
                    merge_msg_secret_expiry, merge_msg_secret_message_ts,
                };
                let stored = entries.len();
                // A key given twice merges as if stored twice, by the library's own rules.
                let mut merged: std::collections::BTreeMap<
                    (Arc<str>, Arc<str>, Arc<str>),
                    MsgSecretEntry,
                > = std::collections::BTreeMap::new();
                for e in entries {
                    let key = (e.chat.clone(), e.sender.clone(), e.msg_id.clone());
                    match merged.get_mut(&key) {
                        Some(m) => {
                            m.secret = e.secret;
                            m.expires_at = merge_msg_secret_expiry(m.expires_at, e.expires_at);
                            m.message_ts = merge_msg_secret_message_ts(m.message_ts, e.message_ts);
                        }
                        None => {
                            merged.insert(key, e);
                        }
                    }
                }
                let rows: Vec<MsgSecretEntry> = merged.into_values().collect();
                if rows.is_empty() {
                    return Ok(0);
                }
                let now = now_secs();
                $write!(self, "save message secrets", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::SECRET_INSERT);
                        q.push_values(chunk, |mut b, e| {
                            b.push_bind(self.device_id)
                                .push_bind(e.chat.as_ref())
                                .push_bind(e.sender.as_ref())
                                .push_bind(e.msg_id.as_ref())
                                .push_bind(&e.secret[..])
                                .push_bind(e.expires_at)
                                .push_bind(e.message_ts)
                                .push_bind(now);
                        });
                        q.push(sql::SECRET_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)?;
                Ok(stored)
            }

            async fn get_msg_secret(
                &self,
                chat: &str,
                sender: &str,
                msg_id: &str,
            ) -> LibResult<Option<Vec<u8>>> {
                Ok(self
                    .get_msg_secret_with_ts(chat, sender, msg_id)
                    .await?
                    .map(|(secret, _)| secret))
            }

            async fn get_msg_secret_with_ts(
                &self,
                chat: &str,
                sender: &str,
                msg_id: &str,
            ) -> LibResult<Option<(Vec<u8>, i64)>> {
                sqlx::query_as(sql::SECRET_GET)
                    .bind(self.device_id)
                    .bind(chat)
                    .bind(sender)
                    .bind(msg_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> LibResult<u32> {
                self.delete_older(sql::SECRET_EXPIRE, cutoff_timestamp)
                    .await
            }
        }

        #[async_trait::async_trait]
        impl DeviceStore for $backend {
            async fn save(&self, device: &Device) -> LibResult<()> {
                let blob = codec::encode_device(device)?;
                let pn = device.pn.as_ref().map(|j| j.to_string());
                let lid = device.lid.as_ref().map(|j| j.to_string());
                let now = now_ms();
                let saved = $write!(self, "save the device", |tx| {
                    Ok(sqlx::query(sql::DEVICE_SAVE)
                        .bind(self.device_id)
                        .bind(&blob)
                        .bind(pn.as_deref())
                        .bind(lid.as_deref())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })
                .map_err(lib_err)?;
                if saved == 0 {
                    // The session was forgotten (logged out) under a client still running.
                    return Err(LibError::DeviceNotFound(device_i32(self.device_id)?));
                }
                Ok(())
            }

            async fn load(&self) -> LibResult<Option<Device>> {
                let blob: Option<Option<Vec<u8>>> = sqlx::query_scalar(sql::DEVICE_LOAD)
                    .bind(self.device_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                blob.flatten().map(|b| codec::decode_device(&b)).transpose()
            }

            async fn exists(&self) -> LibResult<bool> {
                Ok(sqlx::query(sql::DEVICE_EXISTS)
                    .bind(self.device_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?
                    .is_some())
            }

            /// Stores a fresh device, as the library's own stores do, so the keys a QR code
            /// shows are the ones a restart loads; one already there is kept.
            async fn create(&self) -> LibResult<i32> {
                let blob = codec::encode_device(&Device::new())?;
                let now = now_ms();
                let found = $write!(self, "create the device", |tx| {
                    sqlx::query(sql::DEVICE_CREATE)
                        .bind(self.device_id)
                        .bind(&blob)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(sqlx::query(sql::DEVICE_ID_EXISTS)
                        .bind(self.device_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some())
                })
                .map_err(lib_err)?;
                if !found {
                    return Err(LibError::DeviceNotFound(device_i32(self.device_id)?));
                }
                device_i32(self.device_id)
            }

            async fn resource_report(&self) -> StorageResourceReport {
                // The rows live in the shared database, not in memory kept for this session.
                StorageResourceReport {
                    memory_bytes: Some(0),
                    ..StorageResourceReport::default()
                }
            }
        }
    };
}
pub(super) use impl_secret_and_device_store;
