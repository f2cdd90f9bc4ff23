//! Uploaded media, written once: the statements are the same on both databases (a blob binds
//! as `BLOB` on SQLite and `BYTEA` on PostgreSQL).

use crate::domain::UserId;
use crate::store::error::StoreContext;
use crate::store::sql::StoreRow;
use crate::store::{MessageKind, StoreResult, UploadInfo};

/// A macro, not a const: statements must be `&'static str`, and `concat!` takes literals.
macro_rules! upload_columns {
    () => {
        "id, user_id, kind, mime_type, file_name, size_bytes, created_at, expires_at"
    };
}
pub(crate) use upload_columns;

pub(crate) fn upload_from_row(row: &impl StoreRow) -> StoreResult<UploadInfo> {
    let kind: String = row.col("kind")?;
    Ok(UploadInfo {
        id: row.col("id")?,
        user: row
            .col::<Option<i64>>("user_id")?
            .map(UserId::new_unchecked),
        kind: MessageKind::parse(&kind)
            .with_context(|| format!("unknown upload kind {kind:?} in database"))?,
        mime: row.col("mime_type")?,
        file_name: row.col("file_name")?,
        size: row.col("size_bytes")?,
        created_at: row.col("created_at")?,
        expires_at: row.col("expires_at")?,
    })
}

/// `impl MediaStore for $store`, whose writes go through `$write!` and reads through
/// `self.pool`.
macro_rules! impl_media_store {
    ($store:ty, $write:ident) => {
        const _: () = {
            use $crate::store::sql::media::{upload_columns, upload_from_row};
            use $crate::store::{NewUpload, StoreResult, UploadInfo};

            #[async_trait::async_trait]
            impl $crate::store::traits::MediaStore for $store {
                async fn insert_upload(&self, up: &NewUpload) -> StoreResult<UploadInfo> {
                    $write!(self, "keep an upload", |conn| {
                        // Expired files go with each new one: no table grows without bound
                        // even when nothing else purges.
                        sqlx::query("DELETE FROM media_uploads WHERE expires_at <= $1")
                            .bind(up.created_at)
                            .execute(&mut *conn)
                            .await?;
                        let row = sqlx::query(concat!(
                            "INSERT INTO media_uploads (id, user_id, kind, mime_type, \
                             file_name, size_bytes, bytes, created_at, expires_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
                            upload_columns!()
                        ))
                        .bind(&up.id)
                        .bind(up.user.map(|u| u.get()))
                        .bind(up.kind.as_str())
                        .bind(&up.mime)
                        .bind(up.file_name.as_deref())
                        .bind(up.bytes.len() as i64)
                        .bind(up.bytes.as_slice())
                        .bind(up.created_at)
                        .bind(up.expires_at)
                        .fetch_one(&mut *conn)
                        .await?;
                        upload_from_row(&row)
                    })
                }

                async fn upload(&self, id: &str, now_ms: i64) -> StoreResult<Option<UploadInfo>> {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        upload_columns!(),
                        " FROM media_uploads WHERE id = $1 AND expires_at > $2"
                    ))
                    .bind(id)
                    .bind(now_ms)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(upload_from_row).transpose()
                }

                async fn upload_bytes(
                    &self,
                    id: &str,
                    now_ms: i64,
                ) -> StoreResult<Option<Vec<u8>>> {
                    Ok(sqlx::query_scalar(
                        "SELECT bytes FROM media_uploads WHERE id = $1 AND expires_at > $2",
                    )
                    .bind(id)
                    .bind(now_ms)
                    .fetch_optional(&self.pool)
                    .await?)
                }

                async fn purge_uploads(&self, now_ms: i64) -> StoreResult<u64> {
                    $write!(self, "purge expired uploads", |conn| {
                        let done = sqlx::query("DELETE FROM media_uploads WHERE expires_at <= $1")
                            .bind(now_ms)
                            .execute(conn)
                            .await?;
                        Ok(done.rows_affected())
                    })
                }
            }
        };
    };
}
pub(crate) use impl_media_store;
