//! The simulated engine's phones, written once for both backends: the statements are the
//! same on SQLite and PostgreSQL, only the write transaction differs (`write_tx!`/`pg_tx!`),
//! and what a connection needs to know about the others of its device (`$live`, `$one_at_a_time`).

/// `impl SimStore for $store`, whose writes go through `$write!` and reads through
/// `self.pool`. `$live`: an SQL condition, true when the node of connection `c` is alive,
/// with `$2` this node's id. `$one_at_a_time`: a statement taking a per-device lock until
/// the transaction ends, with `$1` the session id (none where writes already take turns).
macro_rules! impl_sim_store {
    ($store:ty, $write:ident, live: $live:literal $(, one_at_a_time: $one_at_a_time:literal)?) => {
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

            async fn sim_network(&self) -> $crate::store::StoreResult<Option<Vec<u8>>> {
                // Pair (0, 0), which no session has (ids are positive): the network's list
                // lives beside the phone books, and every node of a cluster reads it.
                let row = sqlx::query(
                    "SELECT book FROM sim_phonebooks WHERE user_id = 0 AND place_id = 0",
                )
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|r| r.try_get("book")).transpose()?)
            }

            async fn set_sim_network(&self, book: &[u8], now_ms: i64) -> $crate::store::StoreResult<()> {
                $write!(self, "store the simulated network", |tx| {
                    sqlx::query(
                        "INSERT INTO sim_phonebooks (user_id, place_id, book, updated_at) \
                         VALUES (0, 0, $1, $2) ON CONFLICT (user_id, place_id) DO UPDATE SET \
                         book = excluded.book, updated_at = excluded.updated_at",
                    )
                    .bind(book)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                    Ok(())
                })
            }

            async fn all_sim_phonebooks(&self) -> $crate::store::StoreResult<Vec<Vec<u8>>> {
                let rows = sqlx::query("SELECT book FROM sim_phonebooks ORDER BY user_id, place_id")
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.iter().map(|r| r.try_get("book")).collect::<Result<_, _>>()?)
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

            async fn open_sim_connection(
                &self,
                pair: $crate::domain::Pair,
                session: &$crate::domain::SessionId,
                node_id: &str,
                now_ms: i64,
            ) -> $crate::store::StoreResult<$crate::store::traits::SimOpened> {
                use $crate::store::traits::{SimCloseReason, SimOpened};
                $write!(self, "open a simulated connection", |tx| {
                    $(
                        sqlx::query($one_at_a_time)
                            .bind(session.as_str())
                            .execute(&mut *tx)
                            .await?;
                    )?
                    let open = sqlx::query(concat!(
                        "SELECT c.id, c.node_id, ",
                        $live,
                        " AS live FROM sim_connections c \
                         WHERE c.session_id = $1 AND c.closed_at IS NULL ORDER BY c.id"
                    ))
                    .bind(session.as_str())
                    .bind(node_id)
                    .fetch_all(&mut *tx)
                    .await?;
                    let mut closed = Vec::with_capacity(open.len());
                    for row in open {
                        let id: i64 = row.try_get("id")?;
                        let reason = if row.try_get::<bool, _>("live")? {
                            SimCloseReason::Replaced
                        } else {
                            SimCloseReason::ConnectionLost
                        };
                        sqlx::query(
                            "UPDATE sim_connections SET closed_at = $1, reason = $2 WHERE id = $3",
                        )
                        .bind(now_ms)
                        .bind(reason.as_str())
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        closed.push((id, row.try_get("node_id")?, reason));
                    }
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO sim_connections (user_id, place_id, session_id, node_id, \
                         opened_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(session.as_str())
                    .bind(node_id)
                    .bind(now_ms)
                    .fetch_one(&mut *tx)
                    .await?;
                    Ok(SimOpened { id, closed })
                })
            }

            async fn close_sim_connection(
                &self,
                id: i64,
                reason: $crate::store::traits::SimCloseReason,
                now_ms: i64,
            ) -> $crate::store::StoreResult<bool> {
                $write!(self, "close a simulated connection", |tx| {
                    let done = sqlx::query(
                        "UPDATE sim_connections SET closed_at = $1, reason = $2 \
                         WHERE id = $3 AND closed_at IS NULL",
                    )
                    .bind(now_ms)
                    .bind(reason.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Ok(done.rows_affected() > 0)
                })
            }

            async fn close_sim_connections_of(
                &self,
                node_id: &str,
                reason: $crate::store::traits::SimCloseReason,
                now_ms: i64,
            ) -> $crate::store::StoreResult<u64> {
                $write!(self, "close a node's simulated connections", |tx| {
                    let done = sqlx::query(
                        "UPDATE sim_connections SET closed_at = $1, reason = $2 \
                         WHERE node_id = $3 AND closed_at IS NULL",
                    )
                    .bind(now_ms)
                    .bind(reason.as_str())
                    .bind(node_id)
                    .execute(&mut *tx)
                    .await?;
                    Ok(done.rows_affected())
                })
            }

            async fn sim_connection(
                &self,
                id: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::traits::SimConnection>> {
                let row = sqlx::query(concat!($crate::store::sim::connection_columns!(), " WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::store::sim::connection_of!()).transpose()
            }

            async fn open_sim_connections_of(&self, node_id: &str) -> $crate::store::StoreResult<Vec<i64>> {
                // The open ones are few (one per linked device): the partial index holds them.
                Ok(sqlx::query_scalar(
                    "SELECT id FROM sim_connections WHERE closed_at IS NULL AND node_id = $1",
                )
                .bind(node_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn sim_connections(
                &self,
                pair: $crate::domain::Pair,
            ) -> $crate::store::StoreResult<Vec<$crate::store::traits::SimConnection>> {
                let rows = sqlx::query(concat!(
                    $crate::store::sim::connection_columns!(),
                    " WHERE user_id = $1 AND place_id = $2 ORDER BY id"
                ))
                .bind(pair.user_id.get())
                .bind(pair.place_id.get())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map($crate::store::sim::connection_of!()).collect()
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

/// A `sim_connections` row read whole (its `WHERE` follows).
macro_rules! connection_columns {
    () => {
        "SELECT id, user_id, place_id, session_id, node_id, opened_at, closed_at, reason \
         FROM sim_connections"
    };
}
pub(crate) use connection_columns;

/// A closure reading a row of `connection_columns!()` on either backend.
macro_rules! connection_of {
    () => {
        |r| -> $crate::store::StoreResult<$crate::store::traits::SimConnection> {
            Ok($crate::store::traits::SimConnection {
                id: r.try_get("id")?,
                pair: $crate::domain::Pair::new(
                    $crate::domain::UserId::new_unchecked(r.try_get("user_id")?),
                    $crate::domain::PlaceId::new_unchecked(r.try_get("place_id")?),
                ),
                session_id: r.try_get("session_id")?,
                node_id: r.try_get("node_id")?,
                opened_at: r.try_get("opened_at")?,
                closed_at: r.try_get("closed_at")?,
                reason: r.try_get("reason")?,
            })
        }
    };
}
pub(crate) use connection_of;
