//! The simulated engine's phones, written once for both backends: the statements are the
//! same on SQLite and PostgreSQL, only the write transaction differs (`write_tx!`/`pg_tx!`).

/// `impl SimStore for $store`, whose writes go through `$write!` and reads through
/// `self.pool`.
macro_rules! impl_sim_store {
    ($store:ty, $write:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::traits::SimStore for $store {
            async fn sim_device(&self, session: &$crate::domain::SessionId) -> $crate::store::StoreResult<Option<String>> {
                let row = sqlx::query("SELECT device FROM sim_devices WHERE session_id = $1")
                    .bind(session.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.try_get("device")).transpose()?)
            }

            async fn save_sim_device(
                &self,
                session: &$crate::domain::SessionId,
                device: &str,
                now_ms: i64,
            ) -> $crate::store::StoreResult<()> {
                $write!(self, "store a simulated device", |tx| {
                    sqlx::query(
                        "INSERT INTO sim_devices (session_id, device, updated_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (session_id) DO UPDATE SET device = excluded.device, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(session.as_str())
                    .bind(device)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    Ok(())
                })
            }

            async fn forget_sim_device(&self, session: &$crate::domain::SessionId) -> $crate::store::StoreResult<bool> {
                $write!(self, "forget a simulated device", |tx| {
                    let done = sqlx::query("DELETE FROM sim_devices WHERE session_id = $1")
                        .bind(session.as_str())
                        .execute(&mut *tx)
                        .await?;
                    Ok(done.rows_affected() > 0)
                })
            }

            async fn sim_phonebook(&self, pair: $crate::domain::Pair) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                let row =
                    sqlx::query("SELECT book FROM sim_phonebooks WHERE user_id = $1 AND place_id = $2")
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|r| r.try_get("book")).transpose()?)
            }

            async fn set_sim_phonebook(&self, pair: $crate::domain::Pair, book: &[u8], now_ms: i64) -> $crate::store::StoreResult<()> {
                $write!(self, "store a simulated phone book", |tx| {
                    sqlx::query(
                        "INSERT INTO sim_phonebooks (user_id, place_id, book, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, place_id) DO UPDATE SET \
                         book = excluded.book, updated_at = excluded.updated_at",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(book)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    Ok(())
                })
            }

            async fn record_sim_sent(&self, pair: $crate::domain::Pair, sent: &str, now_ms: i64) -> $crate::store::StoreResult<()> {
                $write!(self, "record a simulated send", |tx| {
                    sqlx::query(
                        "INSERT INTO sim_sent (user_id, place_id, sent, created_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(sent)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    Ok(())
                })
            }

            async fn sim_outbox(&self, pair: $crate::domain::Pair) -> $crate::store::StoreResult<Vec<String>> {
                let rows = sqlx::query(
                    "SELECT sent FROM sim_sent WHERE user_id = $1 AND place_id = $2 ORDER BY id",
                )
                .bind(pair.user_id.get())
                .bind(pair.place_id.get())
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| r.try_get("sent"))
                    .collect::<Result<_, _>>()?)
            }
        }
    };
}
pub(crate) use impl_sim_store;
