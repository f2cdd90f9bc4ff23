//! The inbox, written once for both stores: an incoming message is one insert that a repeat
//! skips (the partial UNIQUE index on incoming WhatsApp ids), its sender one contact upsert.

/// `impl InboxStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`.
macro_rules! impl_inbox_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use std::collections::HashMap;

            use sqlx::QueryBuilder;

            use $crate::domain::Pair;
            use $crate::store::inbox::*;
            use $crate::store::messaging::*;
            use $crate::store::sql::contacts::{contact_columns, contact_from_row, one_contact};
            use $crate::store::sql::outbox::{message_columns, message_from_row};
            use $crate::store::sql::{Dialect, StoreRow, page_offset};
            use $crate::store::{ContactRecord, StoreContext, StoreResult};

            impl $store {
                /// The pair's messages with these ids, by id.
                async fn messages_by_id(
                    &self,
                    pair: Pair,
                    ids: &[i64],
                ) -> StoreResult<HashMap<i64, MessageRecord>> {
                    let mut q = QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages WHERE "
                    ));
                    <$db as Dialect>::push_pair_ids(&mut q, "", pair, ids);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter()
                        .map(|r| message_from_row(r).map(|m| (m.id, m)))
                        .collect()
                }

                /// The pair's active contacts with these ids, by id.
                async fn contacts_by_id(
                    &self,
                    pair: Pair,
                    ids: &[i64],
                ) -> StoreResult<HashMap<i64, ContactRecord>> {
                    let mut q = QueryBuilder::<$db>::new(concat!(
                        "SELECT ",
                        contact_columns!(),
                        " FROM contacts c WHERE c.is_active AND "
                    ));
                    <$db as Dialect>::push_pair_ids(&mut q, "c.", pair, ids);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    rows.iter()
                        .map(|r| contact_from_row(r).map(|c| (c.id, c)))
                        .collect()
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::inbox::InboxStore for $store {
                async fn record_incoming(
                    &self,
                    pair: Pair,
                    m: &NewIncoming,
                    now_ms: i64,
                ) -> StoreResult<Recorded> {
                    let push_name = <$db as Dialect>::text(m.push_name.as_deref());
                    let push_name_lc = push_name.as_deref().map(str::to_lowercase);
                    let jid = format!("{}@s.whatsapp.net", m.from.digits());
                    let sent_at_s = m.sent_at_ms.div_euclid(1000);
                    $write!(self, "record an incoming message", |tx| {
                        // Someone who writes is a contact: a new one is named by its push
                        // name; activity only moves forward (messages arrive out of order).
                        let contact_id: i64 = sqlx::query_scalar(
                            "INSERT INTO contacts (user_id, place_id, phone_number, jid, name, \
                             push_name, name_lc, push_name_lc, is_business, last_message_at, \
                             created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $5, $6, $6, FALSE, $7, $8, $8) \
                             ON CONFLICT (user_id, place_id, phone_number) DO UPDATE SET \
                             push_name = COALESCE(excluded.push_name, contacts.push_name), \
                             push_name_lc = COALESCE(excluded.push_name_lc, contacts.push_name_lc), \
                             is_active = TRUE, \
                             last_message_at = CASE WHEN contacts.last_message_at IS NULL \
                               OR contacts.last_message_at < excluded.last_message_at \
                               THEN excluded.last_message_at ELSE contacts.last_message_at END, \
                             updated_at = excluded.updated_at \
                             RETURNING id",
                        )
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .bind(m.from.as_str())
                        .bind(jid.as_str())
                        .bind(push_name.as_deref())
                        .bind(push_name_lc.as_deref())
                        .bind(sent_at_s)
                        .bind(now_ms)
                        .fetch_one(&mut *tx)
                        .await?;
                        let inserted = sqlx::query(concat!(
                            "INSERT INTO messages (user_id, place_id, contact_id, direction, \
                             recipient, recipient_name, kind, body, status, wa_message_id, \
                             created_at, updated_at, sent_at, media_mime, media_size, \
                             media_file_name, voice_note, media_ref) \
                             VALUES ($1, $2, $3, 'in', $4, $5, $6, $7, 'received', $8, $9, $9, \
                             $10, $11, $12, $13, $14, $15) \
                             ON CONFLICT (user_id, place_id, wa_message_id) \
                             WHERE direction = 'in' DO NOTHING RETURNING ",
                            message_columns!()
                        ))
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .bind(contact_id)
                        .bind(m.from.as_str())
                        .bind(push_name.as_deref())
                        .bind(m.kind.as_str())
                        .bind(<$db as Dialect>::text(m.body.as_deref()))
                        .bind(m.wa_message_id.as_str())
                        .bind(now_ms)
                        .bind(m.sent_at_ms)
                        .bind(<$db as Dialect>::text(m.media.mime.as_deref()))
                        .bind(m.media.size)
                        .bind(<$db as Dialect>::text(m.media.file_name.as_deref()))
                        .bind(m.media.voice_note)
                        .bind(m.media_ref.as_deref())
                        .fetch_optional(&mut *tx)
                        .await?;
                        let (message, fresh) = match inserted {
                            Some(row) => (message_from_row(&row)?, true),
                            None => {
                                let row = sqlx::query(concat!(
                                    "SELECT ",
                                    message_columns!(),
                                    " FROM messages WHERE user_id = $1 AND place_id = $2 \
                                     AND wa_message_id = $3 AND direction = 'in'"
                                ))
                                .bind(pair.user_id.get())
                                .bind(pair.place_id.get())
                                .bind(m.wa_message_id.as_str())
                                .fetch_one(&mut *tx)
                                .await?;
                                (message_from_row(&row)?, false)
                            }
                        };
                        let row = sqlx::query(one_contact!())
                            .bind(contact_id)
                            .bind(pair.user_id.get())
                            .bind(pair.place_id.get())
                            .fetch_optional(&mut *tx)
                            .await?
                            .context("the contact just written is gone")?;
                        Ok(Recorded {
                            message,
                            contact: contact_from_row(&row)?,
                            fresh,
                        })
                    })
                }

                async fn conversations(
                    &self,
                    pair: Pair,
                    page: i64,
                    limit: i64,
                ) -> StoreResult<(Vec<Conversation>, i64)> {
                    // Every number messaged either way that is a contact; outgoing messages
                    // sent to the bare number count, matched by the number.
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM (SELECT DISTINCT recipient FROM messages \
                         WHERE user_id = $1 AND place_id = $2) l \
                         JOIN contacts c ON c.user_id = $1 AND c.place_id = $2 \
                         AND c.phone_number = l.recipient AND c.is_active",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .fetch_one(&self.pool)
                    .await?;
                    let rows = sqlx::query(
                        "SELECT l.last_id, c.id AS contact_id, \
                         (SELECT COUNT(*) FROM messages u WHERE u.user_id = $1 \
                          AND u.place_id = $2 AND u.recipient = l.recipient \
                          AND u.direction = 'in' AND u.status = 'received') AS unread \
                         FROM (SELECT recipient, MAX(id) AS last_id FROM messages \
                               WHERE user_id = $1 AND place_id = $2 GROUP BY recipient) l \
                         JOIN contacts c ON c.user_id = $1 AND c.place_id = $2 \
                         AND c.phone_number = l.recipient AND c.is_active \
                         ORDER BY l.last_id DESC LIMIT $3 OFFSET $4",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(<$db as Dialect>::limit(limit))
                    .bind(page_offset(page, limit))
                    .fetch_all(&self.pool)
                    .await?;
                    let mut heads = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let last_id: i64 = row.col("last_id")?;
                        let contact_id: i64 = row.col("contact_id")?;
                        let unread: i64 = row.col("unread")?;
                        heads.push((last_id, contact_id, unread));
                    }
                    if heads.is_empty() {
                        return Ok((Vec::new(), total));
                    }
                    let message_ids: Vec<i64> = heads.iter().map(|h| h.0).collect();
                    let contact_ids: Vec<i64> = heads.iter().map(|h| h.1).collect();
                    let mut messages = self.messages_by_id(pair, &message_ids).await?;
                    let mut contacts = self.contacts_by_id(pair, &contact_ids).await?;
                    // A contact or message gone between the two reads leaves its line out.
                    let list = heads
                        .into_iter()
                        .filter_map(|(last_id, contact_id, unread_count)| {
                            Some(Conversation {
                                last_message: messages.remove(&last_id)?,
                                contact: contacts.remove(&contact_id)?,
                                unread_count,
                            })
                        })
                        .collect();
                    Ok((list, total))
                }

                async fn peer_messages(
                    &self,
                    pair: Pair,
                    phone: &str,
                    page: i64,
                    limit: i64,
                ) -> StoreResult<(Vec<MessageRecord>, i64)> {
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM messages WHERE user_id = $1 AND place_id = $2 \
                         AND recipient = $3",
                    )
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(phone)
                    .fetch_one(&self.pool)
                    .await?;
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages WHERE user_id = $1 AND place_id = $2 \
                         AND recipient = $3 ORDER BY id DESC LIMIT $4 OFFSET $5"
                    ))
                    .bind(pair.user_id.get())
                    .bind(pair.place_id.get())
                    .bind(phone)
                    .bind(<$db as Dialect>::limit(limit))
                    .bind(page_offset(page, limit))
                    .fetch_all(&self.pool)
                    .await?;
                    let list = rows
                        .iter()
                        .map(message_from_row)
                        .collect::<StoreResult<_>>()?;
                    Ok((list, total))
                }

                async fn mark_conversation_read(
                    &self,
                    pair: Pair,
                    phone: &str,
                    now_ms: i64,
                ) -> StoreResult<Vec<MessageRecord>> {
                    $write!(self, "mark a conversation read", |conn| {
                        let rows = sqlx::query(concat!(
                            "UPDATE messages SET status = 'read', read_at = $1, updated_at = $1 \
                             WHERE user_id = $2 AND place_id = $3 AND recipient = $4 \
                             AND direction = 'in' AND status = 'received' RETURNING ",
                            message_columns!()
                        ))
                        .bind(now_ms)
                        .bind(pair.user_id.get())
                        .bind(pair.place_id.get())
                        .bind(phone)
                        .fetch_all(conn)
                        .await?;
                        let mut list = rows
                            .iter()
                            .map(message_from_row)
                            .collect::<StoreResult<Vec<_>>>()?;
                        list.sort_unstable_by_key(|m| m.id);
                        Ok(list)
                    })
                }
            }
        };
    };
}
pub(crate) use impl_inbox_store;
