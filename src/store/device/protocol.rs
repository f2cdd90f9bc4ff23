//! `ProtocolStore` once for both engines: `impl_protocol_store!(Backend, Db, write_macro)`
//! (see `signal.rs` for what the backend provides).

macro_rules! impl_protocol_store {
    ($backend:ty, $db:ty, $write:ident) => {
        impl $backend {
            /// Runs one statement binding the device and then `keys`, as one write.
            async fn write_keys(&self, statement: &'static str, keys: &[&str]) -> LibResult<u64> {
                $write!(self, "write device rows", |tx| {
                    let mut q = sqlx::query(statement).bind(self.device_id);
                    for key in keys {
                        q = q.bind(*key);
                    }
                    Ok(q.execute(&mut *tx).await?.rows_affected())
                })
                .map_err(lib_err)
            }

            async fn lid_row(
                &self,
                statement: &'static str,
                key: &str,
            ) -> LibResult<Option<LidPnMappingEntry>> {
                let row: Option<(String, String, i64, String, i64)> = sqlx::query_as(statement)
                    .bind(self.device_id)
                    .bind(key)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                Ok(row.map(lid_entry))
            }
        }

        #[async_trait::async_trait]
        impl ProtocolStore for $backend {
            async fn get_sender_key_devices(
                &self,
                group_jid: &str,
            ) -> LibResult<Vec<(String, bool)>> {
                sqlx::query_as(sql::SKD_GET)
                    .bind(self.device_id)
                    .bind(group_jid)
                    .fetch_all(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn set_sender_key_status(
                &self,
                group_jid: &str,
                entries: &[(&str, bool)],
            ) -> LibResult<()> {
                let rows = last_by_key(entries.iter(), |(jid, _)| *jid);
                if rows.is_empty() {
                    return Ok(());
                }
                let now = now_secs();
                $write!(self, "save sender-key status", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::SKD_INSERT);
                        q.push_values(chunk, |mut b, (device_jid, has_key)| {
                            b.push_bind(self.device_id)
                                .push_bind(group_jid)
                                .push_bind(*device_jid)
                                .push_bind(*has_key)
                                .push_bind(now);
                        });
                        q.push(sql::SKD_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn clear_sender_key_devices(&self, group_jid: &str) -> LibResult<()> {
                self.delete_by_key(sql::SKD_CLEAR_GROUP, group_jid).await
            }

            async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> LibResult<()> {
                if device_jids.is_empty() {
                    return Ok(());
                }
                $write!(self, "delete sender-key devices", |tx| {
                    for chunk in device_jids.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::SKD_DELETE_HEAD);
                        q.push_bind(self.device_id);
                        q.push(" AND device_jid IN (");
                        let mut list = q.separated(", ");
                        for jid in chunk {
                            list.push_bind(*jid);
                        }
                        q.push(")");
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn clear_all_sender_key_devices(&self) -> LibResult<()> {
                self.write_keys(sql::SKD_CLEAR_ALL, &[]).await.map(drop)
            }

            async fn get_lid_mapping(&self, lid: &str) -> LibResult<Option<LidPnMappingEntry>> {
                self.lid_row(sql::LID_GET, lid).await
            }

            async fn get_pn_mapping(&self, phone: &str) -> LibResult<Option<LidPnMappingEntry>> {
                self.lid_row(sql::LID_BY_PN, phone).await
            }

            async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> LibResult<()> {
                self.put_lid_mappings(std::slice::from_ref(entry)).await
            }

            async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> LibResult<()> {
                // Row by row, a LID seen twice keeps the first `created_at` and the rest of
                // the last entry: the same in one row.
                let mut merged: std::collections::BTreeMap<&str, LidPnMappingEntry> =
                    std::collections::BTreeMap::new();
                for e in entries {
                    let created_at = merged
                        .get(e.lid.as_str())
                        .map_or(e.created_at, |m| m.created_at);
                    merged.insert(
                        e.lid.as_str(),
                        LidPnMappingEntry {
                            created_at,
                            ..e.clone()
                        },
                    );
                }
                let rows: Vec<LidPnMappingEntry> = merged.into_values().collect();
                if rows.is_empty() {
                    return Ok(());
                }
                $write!(self, "save LID mappings", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::LID_INSERT);
                        q.push_values(chunk, |mut b, e| {
                            b.push_bind(self.device_id)
                                .push_bind(e.lid.as_str())
                                .push_bind(e.phone_number.as_str())
                                .push_bind(e.created_at)
                                .push_bind(e.learning_source.as_str())
                                .push_bind(e.updated_at);
                        });
                        q.push(sql::LID_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn get_all_lid_mappings(&self) -> LibResult<Vec<LidPnMappingEntry>> {
                let rows: Vec<(String, String, i64, String, i64)> = sqlx::query_as(sql::LID_ALL)
                    .bind(self.device_id)
                    .fetch_all(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                Ok(rows.into_iter().map(lid_entry).collect())
            }

            async fn save_base_key(
                &self,
                address: &str,
                message_id: &str,
                base_key: &[u8],
            ) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "save a base key", |tx| {
                    sqlx::query(sql::BASE_KEY_UPSERT)
                        .bind(self.device_id)
                        .bind(address)
                        .bind(message_id)
                        .bind(base_key)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn has_same_base_key(
                &self,
                address: &str,
                message_id: &str,
                current_base_key: &[u8],
            ) -> LibResult<bool> {
                let stored: Option<Vec<u8>> = sqlx::query_scalar(sql::BASE_KEY_GET)
                    .bind(self.device_id)
                    .bind(address)
                    .bind(message_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                Ok(stored.as_deref() == Some(current_base_key))
            }

            async fn delete_base_key(&self, address: &str, message_id: &str) -> LibResult<()> {
                self.write_keys(sql::BASE_KEY_DELETE, &[address, message_id])
                    .await
                    .map(drop)
            }

            async fn update_device_list(&self, record: DeviceListRecord) -> LibResult<()> {
                self.update_device_lists(vec![record]).await
            }

            async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> LibResult<()> {
                let mut rows = Vec::with_capacity(records.len());
                for r in last_by_key(records, |r| r.user.clone()) {
                    let json = serde_json::to_string(&r.devices)
                        .map_err(|e| LibError::Serialization(Box::new(e)))?;
                    rows.push((r, json));
                }
                if rows.is_empty() {
                    return Ok(());
                }
                let now = now_secs();
                $write!(self, "save device lists", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::REGISTRY_INSERT);
                        q.push_values(chunk, |mut b, (r, json)| {
                            b.push_bind(self.device_id)
                                .push_bind(r.user.as_str())
                                .push_bind(json.as_str())
                                .push_bind(r.timestamp)
                                .push_bind(r.phash.as_deref())
                                .push_bind(r.raw_id.map(i64::from))
                                .push_bind(now);
                        });
                        q.push(sql::REGISTRY_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn get_devices(&self, user: &str) -> LibResult<Option<DeviceListRecord>> {
                let row: Option<(String, i64, Option<String>, Option<i64>)> =
                    sqlx::query_as(sql::REGISTRY_GET)
                        .bind(self.device_id)
                        .bind(user)
                        .fetch_optional(self.reads())
                        .await
                        .map_err(lib_sqlx)?;
                let Some((json, timestamp, phash, raw_id)) = row else {
                    return Ok(None);
                };
                Ok(Some(DeviceListRecord {
                    user: user.to_owned(),
                    devices: serde_json::from_str(&json)
                        .map_err(|e| LibError::Serialization(Box::new(e)))?,
                    timestamp,
                    phash,
                    raw_id: raw_id.map(id_u32).transpose()?,
                }))
            }

            async fn delete_devices(&self, user: &str) -> LibResult<()> {
                self.delete_by_key(sql::REGISTRY_DELETE, user).await
            }

            async fn get_group_metadata(&self, group_jid: &str) -> LibResult<Option<Vec<u8>>> {
                self.blob_by_key(sql::GROUP_META_GET, group_jid).await
            }

            async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "save group metadata", |tx| {
                    sqlx::query(sql::GROUP_META_UPSERT)
                        .bind(self.device_id)
                        .bind(group_jid)
                        .bind(blob)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn delete_group_metadata(&self, group_jid: &str) -> LibResult<()> {
                self.delete_by_key(sql::GROUP_META_DELETE, group_jid).await
            }

            async fn get_tc_token(&self, jid: &str) -> LibResult<Option<TcTokenEntry>> {
                let row: Option<(Vec<u8>, i64, Option<i64>)> = sqlx::query_as(sql::TC_GET)
                    .bind(self.device_id)
                    .bind(jid)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                Ok(
                    row.map(|(token, token_timestamp, sender_timestamp)| TcTokenEntry {
                        token,
                        token_timestamp,
                        sender_timestamp,
                    }),
                )
            }

            async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "save a tc token", |tx| {
                    sqlx::query(sql::TC_PUT)
                        .bind(self.device_id)
                        .bind(jid)
                        .bind(entry.token.as_slice())
                        .bind(entry.token_timestamp)
                        .bind(entry.sender_timestamp)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn delete_tc_token(&self, jid: &str) -> LibResult<()> {
                self.delete_by_key(sql::TC_DELETE, jid).await
            }

            async fn get_all_tc_token_jids(&self) -> LibResult<Vec<String>> {
                sqlx::query_scalar(sql::TC_JIDS)
                    .bind(self.device_id)
                    .fetch_all(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn delete_expired_tc_tokens(
                &self,
                token_cutoff: i64,
                sender_cutoff: i64,
            ) -> LibResult<u32> {
                let n = $write!(self, "expire tc tokens", |tx| {
                    Ok(sqlx::query(sql::TC_EXPIRE)
                        .bind(self.device_id)
                        .bind(token_cutoff)
                        .bind(sender_cutoff)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })
                .map_err(lib_err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            async fn touch_tc_token_sender_timestamp(
                &self,
                jid: &str,
                sender_timestamp: i64,
            ) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "advance a tc token's sender time", |tx| {
                    sqlx::query(sql::TC_TOUCH_SENDER)
                        .bind(self.device_id)
                        .bind(jid)
                        .bind(&[][..] as &[u8])
                        .bind(sender_timestamp)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn store_received_tc_token(
                &self,
                jid: &str,
                token: &[u8],
                token_timestamp: i64,
            ) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "save a received tc token", |tx| {
                    sqlx::query(sql::TC_RECEIVED)
                        .bind(self.device_id)
                        .bind(jid)
                        .bind(token)
                        .bind(token_timestamp)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn store_sent_message(
                &self,
                chat_jid: &str,
                message_id: &str,
                payload: &[u8],
            ) -> LibResult<()> {
                let now = now_secs();
                $write!(self, "keep a sent message", |tx| {
                    sqlx::query(sql::SENT_PUT)
                        .bind(self.device_id)
                        .bind(chat_jid)
                        .bind(message_id)
                        .bind(payload)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn take_sent_message(
                &self,
                chat_jid: &str,
                message_id: &str,
            ) -> LibResult<Option<Vec<u8>>> {
                $write!(self, "take a sent message", |tx| {
                    let payload: Option<Vec<u8>> = sqlx::query_scalar(sql::SENT_TAKE)
                        .bind(self.device_id)
                        .bind(chat_jid)
                        .bind(message_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    Ok(payload)
                })
                .map_err(lib_err)
            }

            async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> LibResult<u32> {
                self.delete_older(sql::SENT_EXPIRE, cutoff_timestamp).await
            }

            async fn store_pending_inbound(
                &self,
                chat: &str,
                sender: &str,
                id: &str,
                message: &[u8],
            ) -> LibResult<()> {
                self.pending_rows(&[PendingInboundRow {
                    chat,
                    sender,
                    id,
                    message,
                }])
                .await
            }

            async fn get_pending_inbound(
                &self,
                chat: &str,
                sender: &str,
                id: &str,
            ) -> LibResult<Option<Vec<u8>>> {
                sqlx::query_scalar(sql::PENDING_GET)
                    .bind(self.device_id)
                    .bind(chat)
                    .bind(sender)
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn delete_pending_inbound(
                &self,
                chat: &str,
                sender: &str,
                id: &str,
            ) -> LibResult<()> {
                self.pending_deletes(&[PendingInboundKey { chat, sender, id }])
                    .await
            }

            async fn delete_expired_pending_inbound(
                &self,
                cutoff_timestamp: i64,
            ) -> LibResult<u32> {
                self.delete_older(sql::PENDING_EXPIRE, cutoff_timestamp)
                    .await
            }

            async fn store_pending_inbound_batch(
                &self,
                rows: &[PendingInboundRow<'_>],
            ) -> LibResult<()> {
                self.pending_rows(rows).await
            }

            async fn delete_pending_inbound_batch(
                &self,
                keys: &[PendingInboundKey<'_>],
            ) -> LibResult<()> {
                self.pending_deletes(keys).await
            }
        }
    };
}
pub(super) use impl_protocol_store;

/// A `wa_lid_pn_mapping` row as the library's entry.
pub(super) fn lid_entry(
    (lid, phone_number, created_at, learning_source, updated_at): (
        String,
        String,
        i64,
        String,
        i64,
    ),
) -> whatsapp_rust::store::traits::LidPnMappingEntry {
    whatsapp_rust::store::traits::LidPnMappingEntry {
        lid,
        phone_number,
        created_at,
        updated_at,
        learning_source,
    }
}
