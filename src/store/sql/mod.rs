//! The service store written once where SQLite and PostgreSQL agree: row mappers, the SQL
//! text both accept (`$N` placeholders, which SQLite takes too), the filters and page
//! clauses, and one macro per aggregate that implements its trait for both stores (the way
//! `store/sim.rs` and `store/device/creds.rs` do), so a fix lands in both at once.
//!
//! What truly differs stays in `store/sqlite/` and `store/postgres/`, each saying why: bulk
//! writes (multi-row `VALUES` in chunks against one `UNNEST` over arrays), JSON (`json_each`
//! against JSONB), the per-tenant lock of the event log, which row of a pair is the newest.
//! The macros reach them through [`Dialect`] (small differences of SQL text and binds) and
//! through associated functions of the store named in each macro's head.

pub(super) mod contact_cache;
pub(super) mod contacts;
pub(super) mod events;
pub(super) mod groups;
pub(super) mod inbox;
pub(super) mod keys;
pub(super) mod media;
pub(super) mod number_checks;
pub(super) mod outbox;
pub(super) mod sessions;

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Decode, Encode, Postgres, QueryBuilder, Row, Sqlite, Type};

use crate::domain::{Pair, PlaceId, UserId};
use crate::store::StoreResult;

/// A type both backends decode from a column.
pub(crate) trait Value:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Value for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A row of either backend, read by name: what the shared mappers take.
pub(crate) trait StoreRow {
    fn col<T: Value>(&self, name: &str) -> StoreResult<T>;
}

impl StoreRow for SqliteRow {
    fn col<T: Value>(&self, name: &str) -> StoreResult<T> {
        Ok(self.try_get(name)?)
    }
}

impl StoreRow for PgRow {
    fn col<T: Value>(&self, name: &str) -> StoreResult<T> {
        Ok(self.try_get(name)?)
    }
}

/// A value both backends bind.
pub(crate) trait Arg<'t>:
    Encode<'t, Sqlite> + Type<Sqlite> + Encode<'t, Postgres> + Type<Postgres>
{
}

impl<'t, T> Arg<'t> for T where
    T: Encode<'t, Sqlite> + Type<Sqlite> + Encode<'t, Postgres> + Type<Postgres>
{
}

/// Where the SQL of the two databases differs by a word, and the binds that need the concrete
/// database. Implemented by `sqlx::Sqlite` (in `store/sqlite/mod.rs`) and `sqlx::Postgres`
/// (in `store/postgres/mod.rs`).
pub(crate) trait Dialect: sqlx::Database {
    /// The function giving where a text occurs in another, 0 when it does not (`instr` on
    /// SQLite, `strpos` on PostgreSQL; both take the haystack first). Matching with it, not
    /// `LIKE`, keeps user input from ever being a pattern.
    const POSITION: &'static str;

    fn bind<'t, T: Arg<'t>>(q: &mut QueryBuilder<Self>, value: T);

    /// The value bound to `LIMIT` for `limit`: a negative one means no limit, which is
    /// SQLite's own reading of it and PostgreSQL's `NULL`.
    fn limit(limit: i64) -> Option<i64>;

    /// Text as the database can keep it (PostgreSQL refuses NUL in `TEXT`).
    fn text(s: Option<&str>) -> Option<String>;

    /// ` AND <the JSON array in column `array` holds the string `value`>` (`json_each` on
    /// SQLite, JSONB's `?` on PostgreSQL).
    fn push_and_json_holds(q: &mut QueryBuilder<Self>, array: &str, value: String);

    fn push_limit(q: &mut QueryBuilder<Self>, limit: i64) {
        q.push(" LIMIT ");
        Self::bind(q, Self::limit(limit));
    }

    /// `LIMIT`/`OFFSET` of page `page` (from 1).
    fn push_page(q: &mut QueryBuilder<Self>, page: i64, limit: i64) {
        Self::push_limit(q, limit);
        q.push(" OFFSET ");
        Self::bind(q, page_offset(page, limit));
    }

    /// `<alias>user_id = … AND <alias>place_id = … AND <alias>id IN (…)`: the pair's rows
    /// among `ids` (not empty). `alias` is a table's name with its dot, or empty.
    fn push_pair_ids(q: &mut QueryBuilder<Self>, alias: &str, pair: Pair, ids: &[i64]) {
        q.push(format_args!("{alias}user_id = "));
        Self::bind(q, pair.user_id.get());
        q.push(format_args!(" AND {alias}place_id = "));
        Self::bind(q, pair.place_id.get());
        q.push(format_args!(" AND {alias}id IN ("));
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            Self::bind(q, *id);
        }
        q.push(")");
    }
}

/// The `OFFSET` of page `page` (from 1) of `limit` rows. A page before the first is the
/// first: SQLite takes a negative offset as none where PostgreSQL refuses it.
pub(crate) fn page_offset(page: i64, limit: i64) -> i64 {
    (page - 1).saturating_mul(limit).max(0)
}

/// The pair of a row with `user_id` and `place_id` columns.
pub(crate) fn pair_of(row: &impl StoreRow) -> StoreResult<Pair> {
    Ok(Pair::new(
        UserId::new_unchecked(row.col("user_id")?),
        PlaceId::new_unchecked(row.col("place_id")?),
    ))
}
