//! SQLite backend: WAL, one file, multi-row upserts inside transactions.

mod group_names;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::busy::{BUSY_LIMIT, WriteGate, write_tx};
use super::{
    ApiKeyRecord, AutoRule, BatchProgress, CachedContact, ContactFilter, ContactPatch,
    ContactQuery, ContactRecord, ContactStats, DefaultGroupsOutcome, FetchState, GroupChange,
    GroupRecord, ImportContact, KeyQuotas, KeyStore, NewApiKey, SearchType, SessionRecord, Store,
    StoreResult,
};
use crate::domain::text::name_key;
use crate::domain::{Pair, PhoneNumber, PlaceId, SessionId, SessionStatus, UserId};
use crate::engine::RawContact;
use crate::files;

/// One active contact of a pair, with everything the API shows of it.
fn one_contact(
    pair: Pair,
    contact_id: i64,
) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(
        "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, c.last_message_at, \
         c.tags, c.custom_fields FROM contacts c \
         WHERE c.id = ? AND c.user_id = ? AND c.place_id = ? AND c.is_active = 1",
    )
    .bind(contact_id)
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
}
/// Group members written or checked per statement (3 parameters each).
const MEMBERS_PER_STATEMENT: usize = 1_000;
/// SQLite allows 32,766 bound parameters per statement; 13 per contact row.
const UPSERT_ROWS_PER_STATEMENT: usize = 2_000;

/// Upper bound of the database mapped into memory; only pages read are resident.
const MMAP_BYTES: u64 = 1 << 30;

#[derive(Clone)]
pub struct SqliteStore {
    /// Reads; a transaction that writes goes through `writer` instead.
    pub(super) pool: SqlitePool,
    /// The one connection of writes (the same pool as `pool` for an in-memory database,
    /// which lives in one connection).
    pub(super) writer: SqlitePool,
    /// Writers queue here for their turn; see [`super::busy`].
    pub(super) gate: WriteGate,
    pub(super) busy_limit: Duration,
}

impl SqliteStore {
    /// Opens (creating file and folder if missing) and migrates the database.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, BUSY_LIMIT).await
    }

    /// [`Self::connect`], with writes that wait at most `busy_limit` for their turn before
    /// they fail with [`super::StoreBusy`].
    pub async fn connect_with(url: &str, busy_limit: Duration) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid database URL {url:?}"))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            private_database_file(opts.get_filename())?;
        }
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // A share of the limit, so a lock held by another process is retried a few times
            // (see `busy::write_tx!`) before the limit is reached.
            .busy_timeout(busy_limit / 4)
            .foreign_keys(true)
            // Each pooled connection's page cache is emptied whenever another connection
            // commits, so without a mapping every transaction re-reads its pages with pread
            // (most of a 100k-contact fetch's time). Mapped pages are the OS page cache, shared
            // by every connection and never copied.
            .pragma("mmap_size", MMAP_BYTES.to_string());
        // Writes take turns (see `busy`), so one connection serves them all, and readers
        // never wait for a connection that a queued writer holds.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .with_context(|| format!("cannot open database {url}"))?;
        let writer = if in_memory {
            pool.clone()
        } else {
            writer
                .connect_with(opts)
                .await
                .with_context(|| format!("cannot open database {url}"))?
        };
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("database migration failed")?;
        group_names::backfill(&writer).await;
        Ok(Self {
            pool,
            writer,
            gate: WriteGate::default(),
            busy_limit,
        })
    }
}

/// The database holds every tenant's contacts: its folder (when we create it) is 0700, and
/// the file 0600 before SQLite opens it. A file we may not chmod (another owner's) is used
/// as it is, with a warning.
fn private_database_file(file: &Path) -> anyhow::Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        files::create_private_dir_all(dir)
            .with_context(|| format!("cannot create database folder {}", dir.display()))?;
    }
    if let Err(e) = files::private_sqlite_file(file) {
        if !file.exists() {
            return Err(e).with_context(|| format!("cannot create database {}", file.display()));
        }
        tracing::warn!(
            "⚠️ Cannot make the database {} readable by this user only: {e}",
            file.display()
        );
    }
    Ok(())
}

fn session_from_row(row: &SqliteRow) -> StoreResult<SessionRecord> {
    let status: String = row.try_get("status")?;
    let summary: Option<String> = row.try_get("fetch_summary")?;
    Ok(SessionRecord {
        session_id: SessionId::from_db(row.try_get("session_id")?),
        pair: Pair::new(
            UserId::new_unchecked(row.try_get("user_id")?),
            PlaceId::new_unchecked(row.try_get("place_id")?),
        ),
        status: SessionStatus::parse(&status)
            .with_context(|| format!("unknown session status {status:?} in database"))?,
        phone_number: row
            .try_get::<Option<String>, _>("phone_number")?
            .map(PhoneNumber::from_db),
        name: row.try_get("name")?,
        error_message: row.try_get("error_message")?,
        connected_at: row.try_get("connected_at")?,
        last_activity: row.try_get("last_activity")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        fetch: FetchState {
            progress: row.try_get("fetch_progress")?,
            processed: row.try_get("fetch_processed")?,
            total: row.try_get("fetch_total")?,
            completed: row.try_get("fetch_completed")?,
            error: row.try_get("fetch_error")?,
            summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
            last_sync: row.try_get("last_contacts_sync")?,
        },
    })
}

fn group_from_row(row: &SqliteRow) -> StoreResult<GroupRecord> {
    let rule: Option<String> = row.try_get("auto_rule")?;
    Ok(GroupRecord {
        id: row.try_get("id")?,
        pair: Pair::new(
            UserId::new_unchecked(row.try_get("user_id")?),
            PlaceId::new_unchecked(row.try_get("place_id")?),
        ),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        auto_rule: rule.as_deref().and_then(AutoRule::parse),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        contact_count: row.try_get("contact_count")?,
    })
}

/// The FROM and WHERE of every contact listing: one pair's active contacts, narrowed by a
/// group's rule or members and by the filter. Every value is bound, and text is matched with
/// instr(), so user input is never SQL nor a pattern.
fn push_contact_filter(
    q: &mut QueryBuilder<Sqlite>,
    pair: Pair,
    group: Option<&GroupRecord>,
    filter: &ContactFilter,
    recent_since_s: i64,
) {
    q.push(" FROM contacts c WHERE c.user_id = ")
        .push_bind(pair.user_id.get())
        .push(" AND c.place_id = ")
        .push_bind(pair.place_id.get())
        .push(" AND c.is_active = 1");
    match group.map(|g| (g.id, g.auto_rule)) {
        None | Some((_, Some(AutoRule::All))) => {}
        Some((_, Some(AutoRule::Recent90Days))) => {
            q.push(" AND c.last_message_at >= ")
                .push_bind(recent_since_s);
        }
        Some((id, None)) => {
            q.push(" AND c.id IN (SELECT contact_id FROM contact_group_members WHERE group_id = ")
                .push_bind(id)
                .push(")");
        }
    }
    if let Some(text) = filter.search.as_deref() {
        let lowered = text.to_lowercase();
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let by_name = |q: &mut QueryBuilder<Sqlite>| {
            q.push("(instr(COALESCE(c.name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0 OR instr(COALESCE(c.push_name_lc, ''), ")
                .push_bind(lowered.clone())
                .push(") > 0)");
        };
        let by_phone = |q: &mut QueryBuilder<Sqlite>| {
            if digits.is_empty() {
                q.push("0");
            } else {
                q.push("instr(c.phone_number, ")
                    .push_bind(digits.clone())
                    .push(") > 0");
            }
        };
        q.push(" AND (");
        match filter.search_type {
            SearchType::Name => by_name(q),
            SearchType::Phone => by_phone(q),
            SearchType::All => {
                by_name(q);
                q.push(" OR ");
                by_phone(q);
            }
        }
        q.push(")");
    }
    if let Some(b) = filter.is_business {
        q.push(" AND c.is_business = ").push_bind(b);
    }
    if let Some(since) = filter.active_since {
        q.push(" AND c.last_message_at >= ").push_bind(since);
    }
    if let Some(since) = filter.inactive_since {
        q.push(" AND (c.last_message_at IS NULL OR c.last_message_at < ")
            .push_bind(since)
            .push(")");
    }
    for tag in &filter.tags {
        q.push(" AND EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE t.value = ")
            .push_bind(tag.clone())
            .push(")");
    }
}

fn contact_from_row(row: &SqliteRow) -> StoreResult<ContactRecord> {
    let tags: String = row.try_get("tags")?;
    Ok(ContactRecord {
        id: row.try_get("id")?,
        phone_number: row.try_get("phone_number")?,
        name: row.try_get("name")?,
        push_name: row.try_get("push_name")?,
        is_business: row.try_get("is_business")?,
        last_message_at: row.try_get("last_message_at")?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        custom_fields: row
            .try_get::<String, _>("custom_fields")
            .ok()
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
    })
}

/// `contact_count` of a group, evaluated now: automatic groups are rules, not lists, so the
/// 90-day group stays right as time passes. `?1` is the 90-day cut-off in unix seconds.
const GROUP_COLUMNS: &str = "g.id, g.user_id, g.place_id, g.name, g.description, g.auto_rule, \
    g.created_at, g.updated_at, CASE g.auto_rule \
      WHEN 'all' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
            AND c.place_id = g.place_id AND c.is_active = 1) \
      WHEN 'recent_90d' THEN (SELECT COUNT(*) FROM contacts c WHERE c.user_id = g.user_id \
            AND c.place_id = g.place_id AND c.is_active = 1 AND c.last_message_at >= ?1) \
      ELSE (SELECT COUNT(*) FROM contact_group_members m JOIN contacts c ON c.id = m.contact_id \
            WHERE m.group_id = g.id AND c.is_active = 1) END AS contact_count";

const SESSION_COLUMNS: &str = "session_id, user_id, place_id, status, phone_number, name, \
    error_message, connected_at, last_activity, created_at, updated_at, fetch_progress, \
    fetch_processed, fetch_total, fetch_completed, fetch_error, fetch_summary, last_contacts_sync";

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()> {
        write_tx!(self, "save a session", |conn| {
            sqlx::query(
                "INSERT INTO sessions (session_id, user_id, place_id, status, phone_number, name, \
                 error_message, connected_at, last_activity, created_at, updated_at, \
                 fetch_progress, fetch_processed, fetch_total, fetch_completed, fetch_error, \
                 fetch_summary, last_contacts_sync) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
                 ON CONFLICT (session_id) DO UPDATE SET status = excluded.status, \
                 phone_number = excluded.phone_number, name = excluded.name, \
                 error_message = excluded.error_message, connected_at = excluded.connected_at, \
                 last_activity = excluded.last_activity, updated_at = excluded.updated_at, \
                 fetch_progress = excluded.fetch_progress, \
                 fetch_processed = excluded.fetch_processed, \
                 fetch_total = excluded.fetch_total, fetch_completed = excluded.fetch_completed, \
                 fetch_error = excluded.fetch_error, fetch_summary = excluded.fetch_summary, \
                 last_contacts_sync = excluded.last_contacts_sync",
            )
            .bind(rec.session_id.as_str())
            .bind(rec.pair.user_id.get())
            .bind(rec.pair.place_id.get())
            .bind(rec.status.as_str())
            .bind(rec.phone_number.as_ref().map(PhoneNumber::as_str))
            .bind(rec.name.as_deref())
            .bind(rec.error_message.as_deref())
            .bind(rec.connected_at)
            .bind(rec.last_activity)
            .bind(rec.created_at)
            .bind(rec.updated_at)
            .bind(rec.fetch.progress)
            .bind(rec.fetch.processed)
            .bind(rec.fetch.total)
            .bind(rec.fetch.completed)
            .bind(rec.fetch.error.as_deref())
            .bind(summary_json(rec))
            .bind(rec.fetch.last_sync)
            .execute(conn)
            .await
            .context("save session")?;
            Ok(())
        })
    }

    async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(SESSION_COLUMNS)
            .push(" FROM sessions WHERE user_id = ")
            .push_bind(pair.user_id.get())
            .push(" AND place_id = ")
            .push_bind(pair.place_id.get())
            .push(" ORDER BY created_at DESC, rowid DESC LIMIT 1");
        let row = q.build().fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(SESSION_COLUMNS).push(
            " FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id, place_id \
             ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions) WHERE rn = 1",
        );
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn counted_sessions(&self, user: UserId) -> StoreResult<i64> {
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT status, ROW_NUMBER() OVER (PARTITION BY place_id \
             ORDER BY created_at DESC, rowid DESC) AS rn FROM sessions WHERE user_id = ?) \
             WHERE rn = 1 AND status <> ?",
        )
        .bind(user.get())
        .bind(SessionStatus::LoggedOut.as_str())
        .fetch_one(&self.pool)
        .await
        .context("count the user's sessions")?;
        Ok(n)
    }

    async fn ensure_default_groups(
        &self,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<DefaultGroupsOutcome> {
        let rules = [AutoRule::All, AutoRule::Recent90Days];
        write_tx!(self, "create the default groups", |conn| {
            let existing: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM contact_groups WHERE user_id = ? AND place_id = ? \
                 AND auto_rule IS NOT NULL ORDER BY id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_all(&mut *conn)
            .await?;
            // ON CONFLICT DO NOTHING: concurrent ready events, reconnects and other server
            // instances all race here, and the unique constraints decide.
            let insert = || {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, \
                     kind, auto_rule, created_at, updated_at) ",
                );
                q.push_values(rules, |mut b, rule| {
                    b.push_bind(pair.user_id.get())
                        .push_bind(pair.place_id.get())
                        .push_bind(rule.group_name())
                        .push_bind(name_key(rule.group_name()))
                        .push_bind(rule.description())
                        .push_bind("auto")
                        .push_bind(rule.as_str())
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                q.push(" ON CONFLICT DO NOTHING");
                q
            };
            let mut created = insert().build().execute(&mut *conn).await?.rows_affected();
            if existing.len() as u64 + created < rules.len() as u64
                && group_names::yield_default_names(&mut *conn, pair).await? > 0
            {
                created += insert().build().execute(&mut *conn).await?.rows_affected();
            }
            Ok(DefaultGroupsOutcome { existing, created })
        })
    }

    async fn import_contacts(
        &self,
        pair: Pair,
        batch: &[ImportContact],
        progress: BatchProgress<'_>,
        now_ms: i64,
    ) -> StoreResult<()> {
        write_tx!(self, "save a batch of contacts", |tx| {
            for chunk in batch.chunks(UPSERT_ROWS_PER_STATEMENT) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "INSERT INTO contacts (user_id, place_id, phone_number, jid, name, push_name, \
                 name_lc, push_name_lc, is_business, last_message_at, created_at, updated_at, \
                 last_synced_at) ",
                );
                q.push_values(chunk, |mut b, c| {
                    b.push_bind(pair.user_id.get())
                        .push_bind(pair.place_id.get())
                        .push_bind(c.phone.as_str())
                        .push_bind(c.jid.as_str())
                        .push_bind(c.name.as_deref())
                        .push_bind(c.push_name.as_deref())
                        .push_bind(c.name.as_deref().map(str::to_lowercase))
                        .push_bind(c.push_name.as_deref().map(str::to_lowercase))
                        .push_bind(c.is_business)
                        .push_bind(c.last_message_at)
                        // Bound, not written into the SQL: a statement whose text changes with the
                        // time is parsed and planned anew for every chunk (a 2,000-row VALUES list
                        // costs more to prepare than to run) and fills the statement cache.
                        .push_bind(now_ms)
                        .push_bind(now_ms)
                        .push_bind(now_ms);
                });
                // Never lose what we knew: a name is not replaced by an empty one, activity only
                // moves forward, tags and custom fields are not touched.
                q.push(
                    " ON CONFLICT (user_id, place_id, phone_number) DO UPDATE SET \
                 jid = excluded.jid, \
                 name = COALESCE(excluded.name, contacts.name), \
                 push_name = COALESCE(excluded.push_name, contacts.push_name), \
                 name_lc = COALESCE(excluded.name_lc, contacts.name_lc), \
                 push_name_lc = COALESCE(excluded.push_name_lc, contacts.push_name_lc), \
                 is_business = excluded.is_business, \
                 last_message_at = CASE \
                   WHEN excluded.last_message_at IS NULL THEN contacts.last_message_at \
                   WHEN contacts.last_message_at IS NULL THEN excluded.last_message_at \
                   ELSE MAX(contacts.last_message_at, excluded.last_message_at) END, \
                 is_active = 1, \
                 updated_at = excluded.updated_at, \
                 last_synced_at = excluded.last_synced_at",
                );
                q.build()
                    .execute(&mut *tx)
                    .await
                    .context("upsert contacts")?;
            }
            sqlx::query(
                "UPDATE sessions SET fetch_processed = ?, fetch_total = ?, fetch_progress = ?, \
                 updated_at = ? WHERE session_id = ?",
            )
            .bind(progress.processed)
            .bind(progress.total)
            .bind(progress.percent)
            .bind(now_ms)
            .bind(progress.session_id.as_str())
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }

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
        let rows = sqlx::query(
            "SELECT c.jid, COALESCE(c.pn_jid, m.pn_jid) AS pn, c.name, c.push_name, \
               c.is_business, c.last_message_at \
             FROM engine_contact_cache c \
             LEFT JOIN engine_lid_map m \
               ON m.session_id = c.session_id AND m.lid_jid = COALESCE(c.lid_jid, c.jid) \
             WHERE c.session_id = ?1 ORDER BY c.jid",
        )
        .bind(session.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RawContact {
                    jid: r.try_get("jid")?,
                    pn_jid: r.try_get("pn")?,
                    name: r.try_get("name")?,
                    push_name: r.try_get("push_name")?,
                    is_business: r
                        .try_get::<Option<bool>, _>("is_business")?
                        .unwrap_or(false),
                    last_message_at: r.try_get("last_message_at")?,
                })
            })
            .collect()
    }

    async fn pair_counts(&self, pair: Pair) -> StoreResult<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM contacts WHERE user_id = ?1 AND place_id = ?2 \
               AND is_active = 1) AS contacts, \
             (SELECT COUNT(*) FROM contact_groups WHERE user_id = ?1 AND place_id = ?2) AS groups",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("contacts")?, row.try_get("groups")?))
    }

    async fn contact_stats(&self, pair: Pair, recent_since_s: i64) -> StoreResult<ContactStats> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
               COALESCE(SUM(name IS NOT NULL), 0) AS named, \
               COALESCE(SUM(push_name IS NOT NULL), 0) AS pushed, \
               COALESCE(SUM(name IS NULL AND push_name IS NULL), 0) AS nameless, \
               COALESCE(SUM(is_business), 0) AS business, \
               COALESCE(SUM(last_message_at >= ?3), 0) AS recent, \
               COALESCE(SUM(last_message_at IS NOT NULL), 0) AS known \
             FROM contacts WHERE user_id = ?1 AND place_id = ?2 AND is_active = 1",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .bind(recent_since_s)
        .fetch_one(&self.pool)
        .await?;
        Ok(ContactStats {
            total_contacts: row.try_get("total")?,
            with_saved_name: row.try_get("named")?,
            with_push_name: row.try_get("pushed")?,
            without_any_name: row.try_get("nameless")?,
            business: row.try_get("business")?,
            active_last_90_days: row.try_get("recent")?,
            with_known_activity: row.try_get("known")?,
        })
    }

    async fn list_groups(
        &self,
        pair: Pair,
        page: i64,
        limit: i64,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<GroupRecord>, i64)> {
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM contact_groups WHERE user_id = ? AND place_id = ?",
        )
        .bind(pair.user_id.get())
        .bind(pair.place_id.get())
        .fetch_one(&self.pool)
        .await?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(GROUP_COLUMNS);
        q.push(" FROM contact_groups g WHERE g.user_id = ?2 AND g.place_id = ?3");
        // Automatic groups first, "all" before "90 days", then manual ones by age.
        q.push(
            " ORDER BY g.auto_rule IS NULL, g.auto_rule = 'recent_90d', g.id \
             LIMIT ?4 OFFSET ?5",
        );
        let rows = q
            .build()
            .bind(recent_since_s)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(limit)
            .bind((page - 1).saturating_mul(limit))
            .fetch_all(&self.pool)
            .await?;
        let groups = rows
            .iter()
            .map(group_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((groups, total))
    }

    async fn group(
        &self,
        pair: Pair,
        group_id: i64,
        recent_since_s: i64,
    ) -> StoreResult<Option<GroupRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(GROUP_COLUMNS);
        q.push(" FROM contact_groups g WHERE g.id = ?2 AND g.user_id = ?3 AND g.place_id = ?4");
        let row = q
            .build()
            .bind(recent_since_s)
            .bind(group_id)
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(group_from_row).transpose()
    }

    async fn search_contacts(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        query: &ContactQuery,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<ContactRecord>, i64)> {
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        push_contact_filter(&mut count, pair, group, &query.filter, recent_since_s);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;

        let mut page = QueryBuilder::<Sqlite>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags",
        );
        push_contact_filter(&mut page, pair, group, &query.filter, recent_since_s);
        page.push(" ORDER BY c.last_message_at IS NULL, c.last_message_at DESC, c.id LIMIT ")
            .push_bind(query.limit)
            .push(" OFFSET ")
            .push_bind((query.page - 1).saturating_mul(query.limit));
        let rows = page.build().fetch_all(&self.pool).await?;
        let contacts = rows
            .iter()
            .map(contact_from_row)
            .collect::<StoreResult<_>>()?;
        Ok((contacts, total))
    }

    async fn contacts_after(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        filter: &ContactFilter,
        recent_since_s: i64,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<ContactRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT c.id, c.phone_number, c.name, c.push_name, c.is_business, \
             c.last_message_at, c.tags, c.custom_fields",
        );
        push_contact_filter(&mut q, pair, group, filter, recent_since_s);
        q.push(" AND c.id > ")
            .push_bind(after_id)
            .push(" ORDER BY c.id LIMIT ")
            .push_bind(limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(contact_from_row).collect()
    }

    async fn create_manual_group(
        &self,
        pair: Pair,
        name: &str,
        description: Option<&str>,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange> {
        write_tx!(self, "create a group", |tx| {
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            // The database keeps names unique per pair, whatever races: the name itself, and
            // its key, so a lookalike of another group (an automatic one included) is refused.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO contact_groups (user_id, place_id, name, name_key, description, \
                 kind, auto_rule, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'manual', NULL, ?, ?) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(pair.user_id.get())
            .bind(pair.place_id.get())
            .bind(name)
            .bind(name_key(name))
            .bind(description)
            .bind(now_ms)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else {
                return Ok(GroupChange::NameTaken);
            };
            insert_members(tx, id, contact_ids, now_ms).await?;
            Ok(GroupChange::Done(id))
        })
    }

    async fn replace_group_members(
        &self,
        pair: Pair,
        group_id: i64,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange> {
        write_tx!(self, "replace a group's members", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
                return Ok(refused);
            }
            let unknown = unknown_contacts(tx, pair, contact_ids).await?;
            if !unknown.is_empty() {
                return Ok(GroupChange::UnknownContacts(unknown));
            }
            sqlx::query("DELETE FROM contact_group_members WHERE group_id = ?")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            insert_members(tx, group_id, contact_ids, now_ms).await?;
            sqlx::query("UPDATE contact_groups SET updated_at = ? WHERE id = ?")
                .bind(now_ms)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            Ok(GroupChange::Done(group_id))
        })
    }

    async fn delete_manual_group(&self, pair: Pair, group_id: i64) -> StoreResult<GroupChange> {
        write_tx!(self, "delete a group", |tx| {
            if let Some(refused) = manual_group_of(tx, pair, group_id).await? {
                return Ok(refused);
            }
            // Memberships go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM contact_groups WHERE id = ?")
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
            Ok(GroupChange::Done(group_id))
        })
    }

    async fn contact(&self, pair: Pair, contact_id: i64) -> StoreResult<Option<ContactRecord>> {
        let row = one_contact(pair, contact_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(contact_from_row).transpose()
    }

    async fn update_contact(
        &self,
        pair: Pair,
        contact_id: i64,
        patch: &ContactPatch,
        now_ms: i64,
    ) -> StoreResult<Option<ContactRecord>> {
        write_tx!(self, "update a contact", |tx| {
            let Some(row) = one_contact(pair, contact_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let mut contact = contact_from_row(&row)?;
            if let Some(tags) = &patch.tags {
                contact.tags = tags.clone();
            }
            if let Some(fields) = &patch.custom_fields {
                for (k, v) in fields {
                    if v.is_null() {
                        contact.custom_fields.remove(k);
                    } else {
                        contact.custom_fields.insert(k.clone(), v.clone());
                    }
                }
            }
            sqlx::query(
                "UPDATE contacts SET tags = ?, custom_fields = ?, updated_at = ? WHERE id = ?",
            )
            .bind(serde_json::to_string(&contact.tags).context("encode tags")?)
            .bind(serde_json::to_string(&contact.custom_fields).context("encode custom fields")?)
            .bind(now_ms)
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
            Ok(Some(contact))
        })
    }
}

/// `None` when the pair has this group and it is manual; otherwise why it cannot change.
async fn manual_group_of(
    tx: &mut SqliteConnection,
    pair: Pair,
    group_id: i64,
) -> StoreResult<Option<GroupChange>> {
    let kind: Option<String> = sqlx::query_scalar(
        "SELECT kind FROM contact_groups WHERE id = ? AND user_id = ? AND place_id = ?",
    )
    .bind(group_id)
    .bind(pair.user_id.get())
    .bind(pair.place_id.get())
    .fetch_optional(&mut *tx)
    .await?;
    Ok(match kind.as_deref() {
        None => Some(GroupChange::NotFound),
        Some("manual") => None,
        Some(_) => Some(GroupChange::Automatic),
    })
}

/// The ids, in the order given, that are not active contacts of the pair.
async fn unknown_contacts(
    tx: &mut SqliteConnection,
    pair: Pair,
    ids: &[i64],
) -> StoreResult<Vec<i64>> {
    let mut found = std::collections::HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(MEMBERS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT id FROM contacts WHERE user_id = ");
        q.push_bind(pair.user_id.get())
            .push(" AND place_id = ")
            .push_bind(pair.place_id.get())
            .push(" AND is_active = 1 AND id IN (");
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<i64> = q.build_query_scalar().fetch_all(&mut *tx).await?;
        found.extend(rows);
    }
    Ok(ids
        .iter()
        .copied()
        .filter(|id| !found.contains(id))
        .collect())
}

async fn insert_members(
    tx: &mut SqliteConnection,
    group_id: i64,
    ids: &[i64],
    now_ms: i64,
) -> StoreResult<()> {
    for chunk in ids.chunks(MEMBERS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO contact_group_members (group_id, contact_id, added_at) ",
        );
        q.push_values(chunk, |mut b, id| {
            b.push_bind(group_id).push_bind(*id).push_bind(now_ms);
        });
        q.push(" ON CONFLICT (group_id, contact_id) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// A macro, not a const: statements must be `&'static str` literals, and `concat!` only
/// takes literals.
macro_rules! key_columns {
    () => {
        "id, public_id, user_id, name, key_hash, created_at, last_used_at, max_sessions, \
         rate_limit, rate_limit_burst"
    };
}

fn key_from_row(row: &SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        public_id: row.try_get("public_id")?,
        user_id: UserId::new_unchecked(row.try_get("user_id")?),
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        quotas: KeyQuotas {
            max_sessions: row.try_get("max_sessions")?,
            rate_limit: row.try_get("rate_limit")?,
            rate_limit_burst: row.try_get("rate_limit_burst")?,
        },
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
        write_tx!(self, "create an API key", |conn| {
            let row = sqlx::query(concat!(
                "INSERT INTO api_keys (public_id, user_id, name, key_hash, created_at, \
                 max_sessions, rate_limit, rate_limit_burst) VALUES (?,?,?,?,?,?,?,?) RETURNING ",
                key_columns!()
            ))
            .bind(key.public_id)
            .bind(key.user_id.get())
            .bind(key.name)
            .bind(key.key_hash)
            .bind(key.now_ms)
            .bind(key.quotas.max_sessions)
            .bind(key.quotas.rate_limit)
            .bind(key.quotas.rate_limit_burst)
            .fetch_one(conn)
            .await
            .context("insert API key")?;
            key_from_row(&row)
        })
    }

    async fn active_api_key(&self, public_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE public_id = ? AND revoked_at IS NULL"
        ))
        .bind(public_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_api_keys(
        &self,
        user: Option<UserId>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<ApiKeyRecord>, i64)> {
        let filter = |q: &mut QueryBuilder<Sqlite>| {
            q.push(" FROM api_keys WHERE revoked_at IS NULL");
            if let Some(u) = user {
                q.push(" AND user_id = ").push_bind(u.get());
            }
        };
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*)");
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        q.push(key_columns!());
        filter(&mut q);
        q.push(" ORDER BY id LIMIT ")
            .push_bind(limit)
            .push(" OFFSET ")
            .push_bind(page.saturating_sub(1).saturating_mul(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        let keys = rows.iter().map(key_from_row).collect::<StoreResult<_>>()?;
        Ok((keys, total))
    }

    async fn revoke_api_key(&self, id: i64, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>> {
        write_tx!(self, "revoke an API key", |conn| {
            let row = sqlx::query(concat!(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING ",
                key_columns!()
            ))
            .bind(now_ms)
            .bind(id)
            .fetch_optional(conn)
            .await
            .context("revoke API key")?;
            row.as_ref().map(key_from_row).transpose()
        })
    }

    async fn touch_api_key(&self, id: i64, now_ms: i64) -> StoreResult<()> {
        write_tx!(self, "stamp an API key's use", |conn| {
            sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(now_ms)
                .bind(id)
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}

fn summary_json(rec: &SessionRecord) -> Option<String> {
    rec.fetch
        .summary
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_groups_stay_unique_under_racing_servers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        // Two "server instances" on one database, each racing itself.
        let a = SqliteStore::connect(&url).await.unwrap();
        let b = SqliteStore::connect(&url).await.unwrap();
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.spawn(async move { s.ensure_default_groups(pair, i).await.unwrap().created });
        }
        let mut created = 0;
        while let Some(n) = tasks.join_next().await {
            created += n.unwrap();
        }
        assert_eq!(created, 2);
        let (groups, total) = a.list_groups(pair, 1, 100, 0).await.unwrap();
        assert_eq!(total, 2);
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec!["جميع الارقام", "اخر الارقام (90 يوم)"]);
        let again = a.ensure_default_groups(pair, 99).await.unwrap();
        assert_eq!(again.created, 0);
        assert_eq!(again.existing.len(), 2);
    }

    #[tokio::test]
    async fn the_schema_refuses_a_second_group_of_a_default_name() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
        store.ensure_default_groups(pair, 1).await.unwrap();
        let dup = sqlx::query(
            "INSERT INTO contact_groups (user_id, place_id, name, kind, created_at, updated_at) \
             VALUES (1, 2, 'جميع الارقام', 'manual', 1, 1)",
        )
        .execute(&store.pool)
        .await;
        assert!(dup.is_err(), "the database must enforce the unique name");
    }
    #[tokio::test]
    async fn the_contact_cache_merges_facts_and_resolves_lids() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let id = SessionId::from_db("session_1_2_3".into());
        let lid = "111122223333444@lid".to_string();
        let pn = "966501112222@s.whatsapp.net".to_string();
        let fact = |jid: &str| CachedContact {
            jid: jid.into(),
            ..Default::default()
        };
        store
            .cache_contacts(
                &id,
                &[
                    CachedContact {
                        name: Some("Ali".into()),
                        last_message_at: Some(100),
                        ..fact(&pn)
                    },
                    CachedContact {
                        last_message_at: Some(50),
                        ..fact(&lid)
                    },
                ],
                1,
            )
            .await
            .unwrap();
        // Later facts: an empty name and older activity change nothing; a push name adds.
        store
            .cache_contacts(
                &id,
                &[CachedContact {
                    name: Some(" ".into()),
                    push_name: Some("Ali P".into()),
                    last_message_at: Some(90),
                    ..fact(&pn)
                }],
                2,
            )
            .await
            .unwrap();
        let before = store.cached_contacts(&id).await.unwrap();
        let lid_row = before.iter().find(|c| c.jid == lid).unwrap();
        assert_eq!(lid_row.pn_jid, None, "unresolved until a mapping comes");
        store
            .cache_lid_mappings(&id, &[(lid.clone(), pn.clone())])
            .await
            .unwrap();
        let all = store.cached_contacts(&id).await.unwrap();
        let p = all.iter().find(|c| c.jid == pn).unwrap();
        assert_eq!(p.name.as_deref(), Some("Ali"));
        assert_eq!(p.push_name.as_deref(), Some("Ali P"));
        assert_eq!(p.last_message_at, Some(100));
        let l = all.iter().find(|c| c.jid == lid).unwrap();
        assert_eq!(l.pn_jid.as_deref(), Some(pn.as_str()));
        // Another session sees none of it.
        let other = SessionId::from_db("session_9_9_9".into());
        assert!(store.cached_contacts(&other).await.unwrap().is_empty());
    }
}
