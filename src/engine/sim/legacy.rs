//! Earlier versions kept the simulated phones in files under `<data-dir>/sim/`: a link per
//! session (`sessions/<id>.json`), a phone book per pair (`phonebooks/<user>_<place>.json`)
//! and what each pair sent (`outbox/<user>_<place>.jsonl`). At start they move into the
//! database once, and the folder is renamed `sim.imported`, so nobody has to scan again.

use std::path::Path;

use anyhow::Context;

use crate::domain::{Pair, PlaceId, SessionId, UserId};
use crate::store::traits::SimStore;

const FOLDER: &str = "sim";
const DONE: &str = "sim.imported";

pub(super) async fn import(
    store: &dyn SimStore,
    data_dir: &Path,
    now_ms: i64,
) -> anyhow::Result<()> {
    let dir = data_dir.join(FOLDER);
    if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
        return Ok(());
    }
    let mut counts = [0usize; 3];
    for (name, bytes) in files_in(&dir.join("sessions"), ".json").await? {
        // The file held exactly the JSON the store now keeps.
        let json = String::from_utf8(bytes).with_context(|| format!("sim link {name}"))?;
        store
            .save_sim_device(&SessionId::from_db(name), &json, now_ms)
            .await?;
        counts[0] += 1;
    }
    for (name, bytes) in files_in(&dir.join("phonebooks"), ".json").await? {
        let Some(pair) = pair_of(&name) else { continue };
        store.set_sim_phonebook(pair, &bytes, now_ms).await?;
        counts[1] += 1;
    }
    for (name, bytes) in files_in(&dir.join("outbox"), ".jsonl").await? {
        let Some(pair) = pair_of(&name) else { continue };
        // A start that stopped half-way imported this pair already: appending again would
        // make every message look sent twice.
        if !store.sim_outbox(pair).await?.is_empty() {
            continue;
        }
        let text = String::from_utf8(bytes).with_context(|| format!("sim outbox {name}"))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            store.record_sim_sent(pair, line, now_ms).await?;
        }
        counts[2] += 1;
    }
    let done = data_dir.join(DONE);
    tokio::fs::rename(&dir, &done)
        .await
        .with_context(|| format!("cannot rename {} to {}", dir.display(), done.display()))?;
    tracing::info!(
        "📦 Simulated engine: moved {} links, {} phone books and {} outboxes from {} into the \
         database (the folder is now {})",
        counts[0],
        counts[1],
        counts[2],
        dir.display(),
        done.display()
    );
    Ok(())
}

/// `(file stem, contents)` of the folder's files with this suffix; none when it is missing.
async fn files_in(dir: &Path, suffix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        let bytes = tokio::fs::read(entry.path())
            .await
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        out.push((stem.to_owned(), bytes));
    }
    out.sort();
    Ok(out)
}

/// `"12_34"` → user 12, place 34.
fn pair_of(stem: &str) -> Option<Pair> {
    let (user, place) = stem.split_once('_')?;
    let user: i64 = user.parse().ok().filter(|v| *v > 0)?;
    let place: i64 = place.parse().ok().filter(|v| *v > 0)?;
    Some(Pair::new(
        UserId::new_unchecked(user),
        PlaceId::new_unchecked(place),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_of_an_earlier_version_move_into_the_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join(FOLDER);
        for sub in ["sessions", "phonebooks", "outbox"] {
            std::fs::create_dir_all(sim.join(sub)).unwrap();
        }
        let link = r#"{"me":"966500000001","push_name":"Ali","linked_at_ms":5}"#;
        std::fs::write(sim.join("sessions/session_1_2_3.json"), link).unwrap();
        std::fs::write(sim.join("phonebooks/1_2.json"), b"{\"entries\":[]}").unwrap();
        std::fs::write(sim.join("outbox/1_2.jsonl"), "{\"a\":1}\n{\"a\":2}\n").unwrap();
        std::fs::write(sim.join("outbox/not_a_pair.jsonl"), "{}\n").unwrap();
        let db = crate::store::open("sqlite::memory:", &Default::default())
            .await
            .unwrap();

        import(db.as_ref(), dir.path(), 9).await.unwrap();

        let session = SessionId::from_db("session_1_2_3".into());
        assert_eq!(
            db.sim_device(&session).await.unwrap().as_deref(),
            Some(link)
        );
        let pair = pair_of("1_2").unwrap();
        assert_eq!(
            db.sim_phonebook(pair).await.unwrap().as_deref(),
            Some(&b"{\"entries\":[]}"[..])
        );
        assert_eq!(
            db.sim_outbox(pair).await.unwrap(),
            ["{\"a\":1}", "{\"a\":2}"]
        );
        assert!(!sim.exists());
        assert!(
            dir.path()
                .join(DONE)
                .join("sessions/session_1_2_3.json")
                .exists()
        );

        // Nothing left to import: a second start changes nothing.
        import(db.as_ref(), dir.path(), 10).await.unwrap();
        assert_eq!(db.sim_outbox(pair).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn an_outbox_imported_before_a_crash_is_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join(FOLDER);
        std::fs::create_dir_all(sim.join("outbox")).unwrap();
        std::fs::write(sim.join("outbox/1_2.jsonl"), "{\"a\":1}\n").unwrap();
        let db = crate::store::open("sqlite::memory:", &Default::default())
            .await
            .unwrap();
        let pair = pair_of("1_2").unwrap();
        db.record_sim_sent(pair, "{\"a\":1}", 1).await.unwrap();
        import(db.as_ref(), dir.path(), 9).await.unwrap();
        assert_eq!(db.sim_outbox(pair).await.unwrap().len(), 1);
    }
}
