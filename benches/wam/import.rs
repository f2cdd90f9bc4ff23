//! import: the fetch's writes alone, through the server's own store in this process:
//! 100,000 contacts (`--import-contacts`) upserted in the fetch's batches of 20,000 and in
//! batches of 1,000, first as new rows, then again over themselves. Each batch carries its
//! progress in the same transaction, as a fetch's does. What the `fetch` scenario spends
//! beyond this is reading, parsing and merging.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use whatsapp_manager::domain::{Pair, PhoneNumber, PlaceId, SessionId, UserId};
use whatsapp_manager::store::{BatchProgress, DatabaseOptions, Db, ImportContact, SessionRecord};

use crate::Opts;
use crate::backend::Target;
use crate::report::Row;

/// The fetch's own batch (`contacts::fetch`), and a small one that shows the cost per
/// statement.
const BATCH_SIZES: [usize; 2] = [20_000, 1_000];

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let n = opts.import_contacts;
    ensure!(n > 0, "--import-contacts must be at least 1");
    let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
    let all: Vec<ImportContact> = (0..n as i64)
        .map(|i| ImportContact {
            phone: PhoneNumber::from_db(format!("+9665{i:08}")),
            jid: format!("9665{i:08}@s.whatsapp.net"),
            name: Some("Name".into()),
            push_name: Some("Push".into()),
            is_business: false,
            last_message_at: Some(i),
        })
        .collect();
    let dir = tempfile::tempdir()?;
    let mut row = Row::new("import", target);
    row.metric("contacts", n as f64, "");
    for batch in BATCH_SIZES {
        // A fresh database per batch size: the second size must not find the first's rows.
        let url = target
            .fresh(dir.path(), &format!("import-{batch}.db"))
            .await?;
        let db = whatsapp_manager::store::open(&url, &DatabaseOptions::default())
            .await
            .context("open the store")?;
        let sid = SessionId::new(pair, 1);
        db.save_session(&SessionRecord::new(sid.clone(), pair, 1))
            .await?;
        let new = import_all(&db, pair, &sid, &all, batch).await?;
        let again = import_all(&db, pair, &sid, &all, batch).await?;
        let (stored, _) = db.pair_counts(pair).await?;
        ensure!(
            stored == n as i64,
            "{stored} contacts stored of {n} imported"
        );
        db.close().await;
        let (insert, update) = match batch {
            20_000 => ("insert_batch_20000_seconds", "update_batch_20000_seconds"),
            _ => ("insert_batch_1000_seconds", "update_batch_1000_seconds"),
        };
        row.metric(insert, new.as_secs_f64(), "s")
            .metric(update, again.as_secs_f64(), "s");
    }
    row.target("insert_batch_20000_seconds", true, 3.0, "s")
        .note(
            "the store's import_contacts called in this process (no HTTP, no number parsing): \
             the upsert of each batch and its progress row in one transaction, new rows then \
             the same rows again; the pool as the server opens it",
        );
    Ok(row)
}

async fn import_all(
    db: &Db,
    pair: Pair,
    sid: &SessionId,
    all: &[ImportContact],
    batch: usize,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    for (i, chunk) in all.chunks(batch).enumerate() {
        let processed = (i * batch + chunk.len()) as i64;
        let progress = BatchProgress {
            session_id: sid,
            processed,
            total: all.len() as i64,
            percent: processed * 100 / all.len() as i64,
        };
        db.import_contacts(pair, chunk, progress, 5).await?;
    }
    Ok(t.elapsed())
}
