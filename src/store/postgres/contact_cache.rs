//! The engine's contact cache on PostgreSQL: what WhatsApp told us, merged, per session.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{PgStore, pg_text, pg_tx};
use crate::domain::SessionId;
use crate::engine::RawContact;
use crate::store::prelude::*;
use crate::store::sql::contact_cache::{cached_contact_from_row, cached_contacts_select};
use crate::store::*;

/// Facts as columns for `UNNEST`, one row per jid: PostgreSQL refuses to update a row twice
/// in one statement, so a jid met again is merged into its first row by the upsert's own
/// rules (later facts win unless missing, activity the later of both), as SQLite's
/// one-row-after-the-other would leave it.
#[derive(Default)]
struct Facts {
    jid: Vec<String>,
    pn_jid: Vec<Option<String>>,
    lid_jid: Vec<Option<String>>,
    name: Vec<Option<String>>,
    push_name: Vec<Option<String>>,
    is_business: Vec<Option<bool>>,
    last_message_at: Vec<Option<i64>>,
}

/// A name that says something: blank names are not facts.
fn said(name: Option<&str>) -> Option<String> {
    pg_text(name.filter(|n| !n.trim().is_empty()))
}

impl Facts {
    fn of(entries: &[CachedContact]) -> Self {
        let mut f = Self::default();
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
        for c in entries {
            let (pn, lid) = (pg_text(c.pn_jid.as_deref()), pg_text(c.lid_jid.as_deref()));
            let (name, push_name) = (said(c.name.as_deref()), said(c.push_name.as_deref()));
            if let Some(&i) = seen.get(c.jid.as_str()) {
                f.pn_jid[i] = pn.or(f.pn_jid[i].take());
                f.lid_jid[i] = lid.or(f.lid_jid[i].take());
                f.name[i] = name.or(f.name[i].take());
                f.push_name[i] = push_name.or(f.push_name[i].take());
                f.is_business[i] = c.is_business.or(f.is_business[i]);
                f.last_message_at[i] = f.last_message_at[i].max(c.last_message_at);
                continue;
            }
            seen.insert(c.jid.as_str(), f.jid.len());
            f.jid.push(pg_text(Some(&c.jid)).unwrap_or_default());
            f.pn_jid.push(pn);
            f.lid_jid.push(lid);
            f.name.push(name);
            f.push_name.push(push_name);
            f.is_business.push(c.is_business);
            f.last_message_at.push(c.last_message_at);
        }
        f
    }
}

#[async_trait]
impl ContactCacheStore for PgStore {
    async fn cache_contacts(
        &self,
        session: &SessionId,
        entries: &[CachedContact],
        now_ms: i64,
    ) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let f = Facts::of(entries);
        pg_tx!(self, "cache contacts", |tx| {
            sqlx::query(
                "INSERT INTO engine_contact_cache AS c (session_id, jid, pn_jid, lid_jid, name, \
                 push_name, is_business, last_message_at, updated_at) \
                 SELECT $1, u.jid, u.pn_jid, u.lid_jid, u.name, u.push_name, u.is_business, \
                   u.last_message_at, $2 \
                 FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
                   $8::bool[], $9::bigint[]) \
                   AS u(jid, pn_jid, lid_jid, name, push_name, is_business, last_message_at) \
                 ON CONFLICT (session_id, jid) DO UPDATE SET \
                 pn_jid = COALESCE(excluded.pn_jid, c.pn_jid), \
                 lid_jid = COALESCE(excluded.lid_jid, c.lid_jid), \
                 name = COALESCE(excluded.name, c.name), \
                 push_name = COALESCE(excluded.push_name, c.push_name), \
                 is_business = COALESCE(excluded.is_business, c.is_business), \
                 last_message_at = GREATEST(c.last_message_at, excluded.last_message_at), \
                 updated_at = excluded.updated_at",
            )
            .bind(session.as_str())
            .bind(now_ms)
            .bind(&f.jid)
            .bind(&f.pn_jid)
            .bind(&f.lid_jid)
            .bind(&f.name)
            .bind(&f.push_name)
            .bind(&f.is_business)
            .bind(&f.last_message_at)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    async fn cache_lid_mappings(
        &self,
        session: &SessionId,
        pairs: &[(String, String)],
    ) -> StoreResult<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        // The last mapping of a LID wins, as SQLite's row-by-row upsert leaves it.
        let mut at: HashMap<&str, usize> = HashMap::with_capacity(pairs.len());
        let (mut lids, mut pns): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for (lid, pn) in pairs {
            let pn = pg_text(Some(pn)).unwrap_or_default();
            match at.get(lid.as_str()) {
                Some(&i) => pns[i] = pn,
                None => {
                    at.insert(lid.as_str(), lids.len());
                    lids.push(pg_text(Some(lid)).unwrap_or_default());
                    pns.push(pn);
                }
            }
        }
        pg_tx!(self, "cache LID mappings", |tx| {
            sqlx::query(
                "INSERT INTO engine_lid_map (session_id, lid_jid, pn_jid) \
                 SELECT $1, u.lid, u.pn FROM UNNEST($2::text[], $3::text[]) AS u(lid, pn) \
                 ON CONFLICT (session_id, lid_jid) DO UPDATE SET pn_jid = excluded.pn_jid",
            )
            .bind(session.as_str())
            .bind(&lids)
            .bind(&pns)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

    async fn cached_contacts(&self, session: &SessionId) -> StoreResult<Vec<RawContact>> {
        // Byte order, as SQLite's BINARY collation sorts, whatever the database's locale
        // (SQLite knows no collation "C").
        let rows = sqlx::query(concat!(
            cached_contacts_select!(),
            " ORDER BY c.jid COLLATE \"C\""
        ))
        .bind(session.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cached_contact_from_row).collect()
    }
}
