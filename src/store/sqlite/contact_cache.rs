//! The engine's contact cache on SQLite: what WhatsApp told us, merged, per session.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::busy::write_tx;
use crate::domain::SessionId;
use crate::engine::RawContact;
use crate::store::prelude::*;
use crate::store::sql::contact_cache::{cached_contact_from_row, cached_contacts_select};
use crate::store::*;

#[async_trait]
impl ContactCacheStore for SqliteStore {
    async fn cache_contacts(
        &self,
        session: &SessionId,
        entries: &[CachedContact],
        now_ms: i64,
    ) -> StoreResult<()> {
        write_tx!(self, "cache contacts", |tx| {
            // 9 binds a row; SQLite allows 32,766 per statement.
            for chunk in entries.chunks(2000) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO engine_contact_cache (session_id, jid, pn_jid, lid_jid, name, \
                 push_name, is_business, last_message_at, updated_at) ",
                );
                qb.push_values(chunk, |mut b, c| {
                    b.push_bind(session.as_str())
                        .push_bind(&c.jid)
                        .push_bind(&c.pn_jid)
                        .push_bind(&c.lid_jid)
                        .push_bind(c.name.as_deref().filter(|n| !n.trim().is_empty()))
                        .push_bind(c.push_name.as_deref().filter(|n| !n.trim().is_empty()))
                        .push_bind(c.is_business)
                        .push_bind(c.last_message_at)
                        .push_bind(now_ms);
                });
                qb.push(
                    " ON CONFLICT (session_id, jid) DO UPDATE SET \
                 pn_jid = COALESCE(excluded.pn_jid, pn_jid), \
                 lid_jid = COALESCE(excluded.lid_jid, lid_jid), \
                 name = COALESCE(excluded.name, name), \
                 push_name = COALESCE(excluded.push_name, push_name), \
                 is_business = COALESCE(excluded.is_business, is_business), \
                 last_message_at = CASE \
                   WHEN excluded.last_message_at IS NULL THEN last_message_at \
                   WHEN last_message_at IS NULL THEN excluded.last_message_at \
                   ELSE MAX(last_message_at, excluded.last_message_at) END, \
                 updated_at = excluded.updated_at",
                );
                qb.build().execute(&mut *tx).await?;
            }
            Ok(())
        })
    }

    async fn cache_lid_mappings(
        &self,
        session: &SessionId,
        pairs: &[(String, String)],
    ) -> StoreResult<()> {
        write_tx!(self, "cache LID mappings", |tx| {
            for chunk in pairs.chunks(5000) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO engine_lid_map (session_id, lid_jid, pn_jid) ");
                qb.push_values(chunk, |mut b, (lid, pn)| {
                    b.push_bind(session.as_str()).push_bind(lid).push_bind(pn);
                });
                qb.push(
                    " ON CONFLICT (session_id, lid_jid) DO UPDATE SET pn_jid = excluded.pn_jid",
                );
                qb.build().execute(&mut *tx).await?;
            }
            Ok(())
        })
    }

    async fn cached_contacts(&self, session: &SessionId) -> StoreResult<Vec<RawContact>> {
        // SQLite's BINARY collation is byte order.
        let rows = sqlx::query(concat!(cached_contacts_select!(), " ORDER BY c.jid"))
            .bind(session.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(cached_contact_from_row).collect()
    }
}
