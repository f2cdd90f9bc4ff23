//! Tenant API keys on PostgreSQL: only hashes are stored.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgStore, page_limit, page_offset, pg_tx};
use crate::domain::UserId;
use crate::store::error::StoreContext;
use crate::store::prelude::*;
use crate::store::*;

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! key_columns {
    () => {
        "id, public_id, user_id, name, key_hash, created_at, last_used_at, max_sessions, \
         rate_limit, rate_limit_burst"
    };
}

/// A count kept as BIGINT (PostgreSQL has no unsigned type) back to the `u32` it was.
fn count(row: &PgRow, column: &str) -> StoreResult<Option<u32>> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .with_context(|| format!("{column} {n} out of range in database"))
        })
        .transpose()
}

fn key_from_row(row: &PgRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        public_id: row.try_get("public_id")?,
        user_id: UserId::new_unchecked(row.try_get("user_id")?),
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        quotas: KeyQuotas {
            max_sessions: count(row, "max_sessions")?,
            rate_limit: row.try_get("rate_limit")?,
            rate_limit_burst: count(row, "rate_limit_burst")?,
        },
    })
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
        pg_tx!(self, "create an API key", |conn| {
            let row = sqlx::query(concat!(
                "INSERT INTO api_keys (public_id, user_id, name, key_hash, created_at, \
                 max_sessions, rate_limit, rate_limit_burst) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
                key_columns!()
            ))
            .bind(key.public_id)
            .bind(key.user_id.get())
            .bind(key.name)
            .bind(key.key_hash)
            .bind(key.now_ms)
            .bind(key.quotas.max_sessions.map(i64::from))
            .bind(key.quotas.rate_limit)
            .bind(key.quotas.rate_limit_burst.map(i64::from))
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
            " FROM api_keys WHERE public_id = $1 AND revoked_at IS NULL"
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
        let filter = |q: &mut QueryBuilder<Postgres>| {
            q.push(" FROM api_keys WHERE revoked_at IS NULL");
            if let Some(u) = user {
                q.push(" AND user_id = ").push_bind(u.get());
            }
        };
        let mut count = QueryBuilder::<Postgres>::new("SELECT COUNT(*)");
        filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
        let mut q = QueryBuilder::<Postgres>::new("SELECT ");
        q.push(key_columns!());
        filter(&mut q);
        q.push(" ORDER BY id LIMIT ")
            .push_bind(page_limit(limit))
            .push(" OFFSET ")
            .push_bind(page_offset(page, limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        let keys = rows.iter().map(key_from_row).collect::<StoreResult<_>>()?;
        Ok((keys, total))
    }

    async fn revoke_api_key(&self, id: i64, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>> {
        pg_tx!(self, "revoke an API key", |conn| {
            let row = sqlx::query(concat!(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                 RETURNING ",
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
        pg_tx!(self, "stamp an API key's use", |conn| {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(id)
                .execute(conn)
                .await?;
            Ok(())
        })
    }
}
