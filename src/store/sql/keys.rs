//! Tenant API keys, written once: the statements are the same on both databases.

use crate::domain::UserId;
use crate::store::error::StoreContext;
use crate::store::sql::StoreRow;
use crate::store::{ApiKeyRecord, KeyQuotas, StoreResult};

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! key_columns {
    () => {
        "id, public_id, user_id, name, key_hash, created_at, last_used_at, max_sessions, \
         rate_limit, rate_limit_burst"
    };
}
pub(crate) use key_columns;

/// A count kept as a 64-bit integer (PostgreSQL has no unsigned type) back to the `u32` it
/// was.
fn count(row: &impl StoreRow, column: &str) -> StoreResult<Option<u32>> {
    row.col::<Option<i64>>(column)?
        .map(|n| {
            u32::try_from(n)
                .ok()
                .with_context(|| format!("{column} {n} out of range in database"))
        })
        .transpose()
}

pub(crate) fn key_from_row(row: &impl StoreRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.col("id")?,
        public_id: row.col("public_id")?,
        user_id: UserId::new_unchecked(row.col("user_id")?),
        name: row.col("name")?,
        key_hash: row.col("key_hash")?,
        created_at: row.col("created_at")?,
        last_used_at: row.col("last_used_at")?,
        quotas: KeyQuotas {
            max_sessions: count(row, "max_sessions")?,
            rate_limit: row.col("rate_limit")?,
            rate_limit_burst: count(row, "rate_limit_burst")?,
        },
    })
}

/// `impl KeyStore for $store` (of database `$db`), whose writes go through `$write!` and
/// reads through `self.pool`.
macro_rules! impl_key_store {
    ($store:ty, $db:ty, $write:ident) => {
        const _: () = {
            use sqlx::QueryBuilder;

            use $crate::domain::UserId;
            use $crate::store::error::StoreContext;
            use $crate::store::sql::Dialect;
            use $crate::store::sql::keys::{key_columns, key_from_row};
            use $crate::store::{ApiKeyRecord, NewApiKey, StoreResult};

            #[async_trait::async_trait]
            impl $crate::store::traits::KeyStore for $store {
                async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
                    $write!(self, "create an API key", |conn| {
                        let row = sqlx::query(concat!(
                            "INSERT INTO api_keys (public_id, user_id, name, key_hash, \
                             created_at, max_sessions, rate_limit, rate_limit_burst) \
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

                async fn active_api_key(
                    &self,
                    public_id: &str,
                ) -> StoreResult<Option<ApiKeyRecord>> {
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
                    let filter = |q: &mut QueryBuilder<$db>| {
                        q.push(" FROM api_keys WHERE revoked_at IS NULL");
                        if let Some(u) = user {
                            q.push(" AND user_id = ").push_bind(u.get());
                        }
                    };
                    let mut count = QueryBuilder::<$db>::new("SELECT COUNT(*)");
                    filter(&mut count);
                    let total: i64 = count.build_query_scalar().fetch_one(&self.pool).await?;
                    let mut q = QueryBuilder::<$db>::new(concat!("SELECT ", key_columns!()));
                    filter(&mut q);
                    q.push(" ORDER BY id");
                    <$db as Dialect>::push_page(&mut q, page, limit);
                    let rows = q.build().fetch_all(&self.pool).await?;
                    let keys = rows.iter().map(key_from_row).collect::<StoreResult<_>>()?;
                    Ok((keys, total))
                }

                async fn revoke_api_key(
                    &self,
                    id: i64,
                    now_ms: i64,
                ) -> StoreResult<Option<ApiKeyRecord>> {
                    $write!(self, "revoke an API key", |conn| {
                        let row = sqlx::query(concat!(
                            "UPDATE api_keys SET revoked_at = $1 \
                             WHERE id = $2 AND revoked_at IS NULL RETURNING ",
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
                    $write!(self, "stamp an API key's use", |conn| {
                        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                            .bind(now_ms)
                            .bind(id)
                            .execute(conn)
                            .await?;
                        Ok(())
                    })
                }
            }
        };
    };
}
pub(crate) use impl_key_store;
