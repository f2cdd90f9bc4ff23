//! Number checks, written once: the statements are the same on both databases (booleans
//! bind and read as `bool` on SQLite's INTEGER and PostgreSQL's BOOLEAN alike).

/// `impl NumberCheckStore for $store`, whose writes go through `$write!` and reads through
/// `self.pool`.
macro_rules! impl_number_check_store {
    ($store:ty, $write:ident) => {
        const _: () = {
            use $crate::store::StoreResult;
            use $crate::store::number_checks::NumberCheckRecord;
            use $crate::store::sql::StoreRow;

            /// Numbers per `IN (...)`: far below either database's limit on binds.
            const CHUNK: usize = 500;

            #[async_trait::async_trait]
            impl $crate::store::number_checks::NumberCheckStore for $store {
                async fn number_checks(
                    &self,
                    numbers: &[String],
                    since_ms: i64,
                ) -> StoreResult<Vec<NumberCheckRecord>> {
                    let mut out = Vec::new();
                    for chunk in numbers.chunks(CHUNK) {
                        let mut q = sqlx::QueryBuilder::new(
                            "SELECT phone_number, on_whatsapp, is_business, jid, checked_at \
                             FROM number_checks WHERE checked_at >= ",
                        );
                        q.push_bind(since_ms);
                        q.push(" AND phone_number IN (");
                        let mut list = q.separated(", ");
                        for n in chunk {
                            list.push_bind(n.as_str());
                        }
                        q.push(")");
                        for row in q.build().fetch_all(&self.pool).await? {
                            out.push(NumberCheckRecord {
                                phone_number: row.col("phone_number")?,
                                on_whatsapp: row.col("on_whatsapp")?,
                                is_business: row.col("is_business")?,
                                jid: row.col("jid")?,
                                checked_at: row.col("checked_at")?,
                            });
                        }
                    }
                    Ok(out)
                }

                async fn save_number_checks(
                    &self,
                    checks: &[NumberCheckRecord],
                ) -> StoreResult<()> {
                    if checks.is_empty() {
                        return Ok(());
                    }
                    // In one order whoever writes: two requests saving the same numbers
                    // in different orders would otherwise each wait for the other's rows
                    // (a deadlock on PostgreSQL).
                    let mut ordered: Vec<&NumberCheckRecord> = checks.iter().collect();
                    ordered.sort_by(|a, b| a.phone_number.cmp(&b.phone_number));
                    $write!(self, "store number checks", |tx| {
                        for c in &ordered {
                            sqlx::query(
                                "INSERT INTO number_checks (phone_number, on_whatsapp, \
                                 is_business, jid, checked_at) VALUES ($1, $2, $3, $4, $5) \
                                 ON CONFLICT (phone_number) DO UPDATE SET \
                                 on_whatsapp = excluded.on_whatsapp, \
                                 is_business = excluded.is_business, jid = excluded.jid, \
                                 checked_at = excluded.checked_at",
                            )
                            .bind(c.phone_number.as_str())
                            .bind(c.on_whatsapp)
                            .bind(c.is_business)
                            .bind(c.jid.as_deref())
                            .bind(c.checked_at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        Ok(())
                    })
                }

                async fn clear_number_checks(&self) -> StoreResult<u64> {
                    $write!(self, "forget number checks", |tx| {
                        let done = sqlx::query("DELETE FROM number_checks")
                            .execute(&mut *tx)
                            .await?;
                        Ok(done.rows_affected())
                    })
                }
            }
        };
    };
}
pub(crate) use impl_number_check_store;
