//! `SignalStore` once for both engines: `impl_signal_store!(Backend, Db, write_macro)`.
//! The backend type provides `reads()` (its read pool) and `device_id`; `write_macro!(self,
//! "what", |tx| { … })` runs the block as one committed transaction (a `StoreResult`).
//! Single-row writes go through their batch twin: one code path, one transaction each.

macro_rules! impl_signal_store {
    ($backend:ty, $db:ty, $write:ident) => {
        impl $backend {
            /// Upserts `(address, blob)` rows, last one per address winning, in chunks.
            async fn put_by_address(
                &self,
                rows: Vec<(&str, &[u8])>,
                head: &'static str,
                tail: &'static str,
            ) -> LibResult<()> {
                let rows = last_by_key(rows, |(address, _)| *address);
                if rows.is_empty() {
                    return Ok(());
                }
                $write!(self, "save signal keys", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(head);
                        q.push_values(chunk, |mut b, (address, blob)| {
                            b.push_bind(self.device_id)
                                .push_bind(*address)
                                .push_bind(*blob);
                        });
                        q.push(tail);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn delete_by_key(&self, statement: &'static str, key: &str) -> LibResult<()> {
                $write!(self, "delete a signal key", |tx| {
                    sqlx::query(statement)
                        .bind(self.device_id)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn blob_by_key(
                &self,
                statement: &'static str,
                key: &str,
            ) -> LibResult<Option<Vec<u8>>> {
                sqlx::query_scalar(statement)
                    .bind(self.device_id)
                    .bind(key)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn blob_by_id(
                &self,
                statement: &'static str,
                id: u32,
            ) -> LibResult<Option<Vec<u8>>> {
                sqlx::query_scalar(statement)
                    .bind(self.device_id)
                    .bind(i64::from(id))
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            /// Deletes this device's (signed) prekey `id` with `statement`.
            async fn delete_by_id(&self, statement: &'static str, id: u32) -> LibResult<()> {
                $write!(self, "remove a prekey", |tx| {
                    sqlx::query(statement)
                        .bind(self.device_id)
                        .bind(i64::from(id))
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            /// Deletes this device's rows older than `cutoff` (unix seconds); how many.
            async fn delete_older(&self, statement: &'static str, cutoff: i64) -> LibResult<u32> {
                let n = $write!(self, "expire old rows", |tx| {
                    Ok(sqlx::query(statement)
                        .bind(self.device_id)
                        .bind(cutoff)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected())
                })
                .map_err(lib_err)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX))
            }

            async fn pending_rows(&self, rows: &[PendingInboundRow<'_>]) -> LibResult<()> {
                let rows = last_by_key(rows.iter(), |r| (r.chat, r.sender, r.id));
                if rows.is_empty() {
                    return Ok(());
                }
                let now = now_secs();
                $write!(self, "buffer inbound messages", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::PENDING_INSERT);
                        q.push_values(chunk, |mut b, r| {
                            b.push_bind(self.device_id)
                                .push_bind(r.chat)
                                .push_bind(r.sender)
                                .push_bind(r.id)
                                .push_bind(r.message)
                                .push_bind(now);
                        });
                        q.push(sql::PENDING_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn pending_deletes(&self, keys: &[PendingInboundKey<'_>]) -> LibResult<()> {
                if keys.is_empty() {
                    return Ok(());
                }
                $write!(self, "drop buffered inbound messages", |tx| {
                    for chunk in keys.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::PENDING_DELETE_HEAD);
                        q.push_bind(self.device_id);
                        q.push(" AND (chat, sender, id) IN (");
                        q.push_values(chunk, |mut b, k| {
                            b.push_bind(k.chat).push_bind(k.sender).push_bind(k.id);
                        });
                        q.push(")");
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }
        }

        #[async_trait::async_trait]
        impl SignalStore for $backend {
            async fn put_identity(&self, address: &str, key: [u8; 32]) -> LibResult<()> {
                self.put_by_address(
                    vec![(address, &key[..])],
                    sql::IDENTITY_INSERT,
                    sql::IDENTITY_UPSERT,
                )
                .await
            }

            async fn put_identities_batch(
                &self,
                identities: &[(Arc<str>, [u8; 32])],
            ) -> LibResult<()> {
                let rows = identities
                    .iter()
                    .map(|(a, k)| (a.as_ref(), &k[..]))
                    .collect();
                self.put_by_address(rows, sql::IDENTITY_INSERT, sql::IDENTITY_UPSERT)
                    .await
            }

            async fn load_identity(&self, address: &str) -> LibResult<Option<[u8; 32]>> {
                let Some(key) = self.blob_by_key(sql::IDENTITY_GET, address).await? else {
                    return Ok(None);
                };
                let len = key.len();
                key.try_into().map(Some).map_err(|_| {
                    LibError::Validation(format!(
                        "identity key for '{address}' has invalid length {len} (expected 32)"
                    ))
                })
            }

            async fn delete_identity(&self, address: &str) -> LibResult<()> {
                self.delete_by_key(sql::IDENTITY_DELETE, address).await
            }

            async fn get_session(&self, address: &str) -> LibResult<Option<Bytes>> {
                Ok(self
                    .blob_by_key(sql::SESSION_GET, address)
                    .await?
                    .map(Bytes::from))
            }

            async fn put_session(&self, address: &str, session: &[u8]) -> LibResult<()> {
                self.put_by_address(
                    vec![(address, session)],
                    sql::SESSION_INSERT,
                    sql::SESSION_UPSERT,
                )
                .await
            }

            async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> LibResult<()> {
                let rows = sessions
                    .iter()
                    .map(|(a, r)| (a.as_ref(), r.as_ref()))
                    .collect();
                self.put_by_address(rows, sql::SESSION_INSERT, sql::SESSION_UPSERT)
                    .await
            }

            async fn delete_session(&self, address: &str) -> LibResult<()> {
                self.delete_by_key(sql::SESSION_DELETE, address).await
            }

            async fn has_session(&self, address: &str) -> LibResult<bool> {
                Ok(sqlx::query(sql::SESSION_HAS)
                    .bind(self.device_id)
                    .bind(address)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?
                    .is_some())
            }

            async fn has_signal_state_for_user(&self, user: &str) -> LibResult<bool> {
                Ok(sqlx::query(sql::SIGNAL_STATE_FOR_USER)
                    .bind(self.device_id)
                    .bind(format!("{user}@"))
                    .bind(format!("{user}:"))
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?
                    .is_some())
            }

            async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> LibResult<()> {
                self.store_prekeys_batch(&[(id, Bytes::copy_from_slice(record))], uploaded)
                    .await
            }

            async fn store_prekeys_batch(
                &self,
                keys: &[(u32, Bytes)],
                uploaded: bool,
            ) -> LibResult<()> {
                let rows = last_by_key(keys.iter(), |(id, _)| *id);
                if rows.is_empty() {
                    return Ok(());
                }
                $write!(self, "save prekeys", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::PREKEY_INSERT);
                        q.push_values(chunk, |mut b, (id, record)| {
                            b.push_bind(self.device_id)
                                .push_bind(i64::from(*id))
                                .push_bind(record.as_ref())
                                .push_bind(uploaded);
                        });
                        q.push(sql::PREKEY_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn load_prekey(&self, id: u32) -> LibResult<Option<Bytes>> {
                Ok(self.blob_by_id(sql::PREKEY_GET, id).await?.map(Bytes::from))
            }

            async fn load_prekeys_batch(&self, ids: &[u32]) -> LibResult<Vec<(u32, Bytes)>> {
                let mut out = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK_ROWS) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(sql::PREKEYS_BY_ID);
                    q.push_bind(self.device_id);
                    q.push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(i64::from(*id));
                    }
                    q.push(") ORDER BY id");
                    let rows: Vec<(i64, Vec<u8>)> = q
                        .build_query_as()
                        .fetch_all(self.reads())
                        .await
                        .map_err(lib_sqlx)?;
                    for (id, record) in rows {
                        out.push((id_u32(id)?, Bytes::from(record)));
                    }
                }
                Ok(out)
            }

            async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> LibResult<()> {
                if ids.is_empty() {
                    return Ok(());
                }
                $write!(self, "mark prekeys uploaded", |tx| {
                    for chunk in ids.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::PREKEYS_MARK_UPLOADED);
                        q.push_bind(true);
                        q.push(" WHERE device_id = ");
                        q.push_bind(self.device_id);
                        q.push(" AND id IN (");
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(i64::from(*id));
                        }
                        q.push(")");
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn remove_prekey(&self, id: u32) -> LibResult<()> {
                self.delete_by_id(sql::PREKEY_DELETE, id).await
            }

            async fn get_max_prekey_id(&self) -> LibResult<u32> {
                let max: i64 = sqlx::query_scalar(sql::PREKEY_MAX_ID)
                    .bind(self.device_id)
                    .fetch_one(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                id_u32(max)
            }

            async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> LibResult<()> {
                $write!(self, "save a signed prekey", |tx| {
                    sqlx::query(sql::SIGNED_PREKEY_UPSERT)
                        .bind(self.device_id)
                        .bind(i64::from(id))
                        .bind(record)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn load_signed_prekey(&self, id: u32) -> LibResult<Option<Vec<u8>>> {
                self.blob_by_id(sql::SIGNED_PREKEY_GET, id).await
            }

            async fn load_all_signed_prekeys(&self) -> LibResult<Vec<(u32, Vec<u8>)>> {
                let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql::SIGNED_PREKEY_ALL)
                    .bind(self.device_id)
                    .fetch_all(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                rows.into_iter()
                    .map(|(id, record)| Ok((id_u32(id)?, record)))
                    .collect()
            }

            async fn remove_signed_prekey(&self, id: u32) -> LibResult<()> {
                self.delete_by_id(sql::SIGNED_PREKEY_DELETE, id).await
            }

            async fn put_sender_key(&self, address: &str, record: &[u8]) -> LibResult<()> {
                self.put_by_address(
                    vec![(address, record)],
                    sql::SENDER_KEY_INSERT,
                    sql::SENDER_KEY_UPSERT,
                )
                .await
            }

            async fn put_sender_keys_batch(
                &self,
                sender_keys: &[(Arc<str>, Bytes)],
            ) -> LibResult<()> {
                let rows = sender_keys
                    .iter()
                    .map(|(a, r)| (a.as_ref(), r.as_ref()))
                    .collect();
                self.put_by_address(rows, sql::SENDER_KEY_INSERT, sql::SENDER_KEY_UPSERT)
                    .await
            }

            async fn get_sender_key(&self, address: &str) -> LibResult<Option<Vec<u8>>> {
                self.blob_by_key(sql::SENDER_KEY_GET, address).await
            }

            async fn delete_sender_key(&self, address: &str) -> LibResult<()> {
                self.delete_by_key(sql::SENDER_KEY_DELETE, address).await
            }
        }
    };
}
pub(super) use impl_signal_store;
