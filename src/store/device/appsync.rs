//! `AppSyncStore` once for both engines: `impl_app_sync_store!(Backend, Db, write_macro)`
//! (see `signal.rs` for what the backend provides).

macro_rules! impl_app_sync_store {
    ($backend:ty, $db:ty, $write:ident) => {
        #[async_trait::async_trait]
        impl AppSyncStore for $backend {
            async fn get_sync_key(&self, key_id: &[u8]) -> LibResult<Option<AppStateSyncKey>> {
                let row: Option<(Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(sql::SYNC_KEY_GET)
                    .bind(self.device_id)
                    .bind(key_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)?;
                Ok(
                    row.map(|(key_data, fingerprint, timestamp)| AppStateSyncKey {
                        key_data,
                        fingerprint,
                        timestamp,
                    }),
                )
            }

            async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> LibResult<()> {
                $write!(self, "save an app-state key", |tx| {
                    sqlx::query(sql::SYNC_KEY_UPSERT)
                        .bind(self.device_id)
                        .bind(key_id)
                        .bind(&key.key_data)
                        .bind(&key.fingerprint)
                        .bind(key.timestamp)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn get_version(&self, name: &str) -> LibResult<HashState> {
                let Some(bytes) = self.blob_by_key(sql::VERSION_GET, name).await? else {
                    return Ok(HashState::default());
                };
                // As the library's store: a state that cannot be read restarts the collection
                // from version 0 (a full re-sync) rather than blocking app-state sync forever.
                Ok(codec::decode_hash_state(&bytes).unwrap_or_else(|e| {
                    tracing::warn!(
                        "⚠️ app-state version {name:?} of device {} is unreadable ({e}); \
                         the collection will sync again from the start",
                        self.device_id
                    );
                    HashState::default()
                }))
            }

            async fn set_version(&self, name: &str, state: HashState) -> LibResult<()> {
                let bytes = codec::encode_hash_state(&state);
                $write!(self, "save an app-state version", |tx| {
                    sqlx::query(sql::VERSION_UPSERT)
                        .bind(self.device_id)
                        .bind(name)
                        .bind(&bytes)
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn put_mutation_macs(
                &self,
                name: &str,
                version: u64,
                mutations: &[AppStateMutationMAC],
            ) -> LibResult<()> {
                let rows = last_by_key(mutations.iter(), |m| m.index_mac.as_slice());
                if rows.is_empty() {
                    return Ok(());
                }
                let version = i64::try_from(version).map_err(|_| {
                    LibError::Validation(format!("app-state version {version} out of range"))
                })?;
                $write!(self, "save mutation MACs", |tx| {
                    for chunk in rows.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(sql::MAC_INSERT);
                        q.push_values(chunk, |mut b, m| {
                            b.push_bind(self.device_id)
                                .push_bind(name)
                                .push_bind(m.index_mac.as_slice())
                                .push_bind(version)
                                .push_bind(m.value_mac.as_slice());
                        });
                        q.push(sql::MAC_UPSERT);
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn get_mutation_mac(
                &self,
                name: &str,
                index_mac: &[u8],
            ) -> LibResult<Option<Vec<u8>>> {
                sqlx::query_scalar(sql::MAC_GET)
                    .bind(self.device_id)
                    .bind(name)
                    .bind(index_mac)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }

            async fn get_mutation_macs(
                &self,
                name: &str,
                index_macs: &[[u8; 32]],
            ) -> LibResult<HashMap<[u8; 32], Vec<u8>>> {
                let mut out = HashMap::with_capacity(index_macs.len());
                for chunk in index_macs.chunks(CHUNK_ROWS) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT index_mac, value_mac FROM ");
                    q.push(sql::MACS_HEAD);
                    q.push_bind(self.device_id);
                    q.push(" AND name = ");
                    q.push_bind(name);
                    q.push(" AND index_mac IN (");
                    let mut list = q.separated(", ");
                    for mac in chunk {
                        list.push_bind(mac.as_slice());
                    }
                    q.push(")");
                    let rows: Vec<(Vec<u8>, Vec<u8>)> = q
                        .build_query_as()
                        .fetch_all(self.reads())
                        .await
                        .map_err(lib_sqlx)?;
                    // Only the 32-byte keys asked for can match.
                    out.extend(rows.into_iter().filter_map(|(k, v)| {
                        <[u8; 32]>::try_from(k.as_slice()).ok().map(|k| (k, v))
                    }));
                }
                Ok(out)
            }

            async fn delete_mutation_macs(
                &self,
                name: &str,
                index_macs: &[Vec<u8>],
            ) -> LibResult<()> {
                if index_macs.is_empty() {
                    return Ok(());
                }
                $write!(self, "delete mutation MACs", |tx| {
                    for chunk in index_macs.chunks(CHUNK_ROWS) {
                        let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM ");
                        q.push(sql::MACS_HEAD);
                        q.push_bind(self.device_id);
                        q.push(" AND name = ");
                        q.push_bind(name);
                        q.push(" AND index_mac IN (");
                        let mut list = q.separated(", ");
                        for mac in chunk {
                            list.push_bind(mac.as_slice());
                        }
                        q.push(")");
                        q.build().execute(&mut *tx).await?;
                    }
                    Ok(())
                })
                .map_err(lib_err)
            }

            async fn clear_mutation_macs(&self, name: &str) -> LibResult<()> {
                self.delete_by_key(sql::MAC_CLEAR, name).await
            }

            async fn get_latest_sync_key_id(&self) -> LibResult<Option<Vec<u8>>> {
                sqlx::query_scalar(sql::SYNC_KEY_LATEST)
                    .bind(self.device_id)
                    .fetch_optional(self.reads())
                    .await
                    .map_err(lib_sqlx)
            }
        }
    };
}
pub(super) use impl_app_sync_store;
