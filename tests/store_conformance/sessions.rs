//! Sessions: one row per session id, the newest per pair, and what the per-user quota counts.

use whatsapp_manager::domain::{PhoneNumber, SessionStatus};
use whatsapp_manager::store::{FetchState, FetchSummary, SessionRecord};

use crate::{Fixture, pair, session_id, user};

pub async fn saving_again_overwrites_the_row(f: Fixture) {
    let p = pair(1, 2);
    let mut rec = SessionRecord::new(session_id(p, 1_000), p, 1_000);
    f.db.save_session(&rec).await.unwrap();
    assert_eq!(f.db.latest_session(p).await.unwrap(), Some(rec.clone()));

    rec.status = SessionStatus::Ready;
    rec.phone_number = Some(PhoneNumber::from_db("+966501112222".into()));
    rec.name = Some("متجر".into());
    rec.error_message = Some("was down".into());
    rec.connected_at = Some(1_500);
    rec.last_activity = Some(1_600);
    rec.updated_at = 1_700;
    rec.fetch = FetchState {
        progress: 40,
        processed: 400,
        total: 1_000,
        completed: true,
        error: Some("partial".into()),
        summary: Some(FetchSummary {
            received: 1_000,
            imported: 990,
            skipped_groups: 3,
            skipped_broadcasts: 1,
            skipped_newsletters: 1,
            skipped_self: 1,
            skipped_unresolved_lids: 2,
            skipped_invalid: 1,
            merged_duplicates: 1,
        }),
        last_sync: Some(1_650),
    };
    f.db.save_session(&rec).await.unwrap();
    assert_eq!(f.db.latest_session(p).await.unwrap(), Some(rec.clone()));
    assert_eq!(f.db.latest_sessions().await.unwrap(), vec![rec]);
}

pub async fn the_latest_session_of_a_pair_is_the_newest_and_on_a_tie_the_last_saved(f: Fixture) {
    let p = pair(1, 2);
    assert_eq!(f.db.latest_session(p).await.unwrap(), None);
    let old = SessionRecord::new(session_id(p, 1_000), p, 1_000);
    let new = SessionRecord::new(session_id(p, 2_000), p, 2_000);
    // Saved newest first: the order of creation decides, not the order of saving.
    f.db.save_session(&new).await.unwrap();
    f.db.save_session(&old).await.unwrap();
    assert_eq!(f.db.latest_session(p).await.unwrap(), Some(new.clone()));

    // Two sessions created in the same millisecond: the one inserted last wins.
    let mut tie = SessionRecord::new(session_id(p, 2_001), p, 2_000);
    tie.status = SessionStatus::QrReady;
    f.db.save_session(&tie).await.unwrap();
    assert_eq!(f.db.latest_session(p).await.unwrap(), Some(tie.clone()));
    // Updating the older of the tie does not make it the latest.
    let mut again = new.clone();
    again.status = SessionStatus::Error;
    again.updated_at = 9_000;
    f.db.save_session(&again).await.unwrap();
    assert_eq!(f.db.latest_session(p).await.unwrap(), Some(tie));
    // Another pair of the same user is another pair.
    assert_eq!(f.db.latest_session(pair(1, 3)).await.unwrap(), None);
}

pub async fn latest_sessions_gives_the_newest_of_every_pair(f: Fixture) {
    let mut want = Vec::new();
    for (u, pl) in [(1, 1), (1, 2), (2, 1)] {
        let p = pair(u, pl);
        for ms in [100, 300, 200] {
            let rec = SessionRecord::new(session_id(p, ms + u * 10 + pl), p, ms);
            f.db.save_session(&rec).await.unwrap();
            if ms == 300 {
                want.push(rec);
            }
        }
    }
    let mut got = f.db.latest_sessions().await.unwrap();
    got.sort_by_key(|r| (r.pair.user_id.get(), r.pair.place_id.get()));
    assert_eq!(got, want);
}

pub async fn the_session_quota_counts_pairs_whose_newest_is_not_logged_out(f: Fixture) {
    let u = 7;
    assert_eq!(f.db.counted_sessions(user(u)).await.unwrap(), 0);
    // Place 1: ready. Place 2: logged out, then linked again (counts). Place 3: linked, then
    // logged out (does not count).
    let save = |p, ms, status| {
        let mut rec = SessionRecord::new(session_id(p, ms), p, ms);
        rec.status = status;
        rec
    };
    let recs = [
        save(pair(u, 1), 10, SessionStatus::Ready),
        save(pair(u, 2), 10, SessionStatus::LoggedOut),
        save(pair(u, 2), 20, SessionStatus::Initializing),
        save(pair(u, 3), 10, SessionStatus::Ready),
        save(pair(u, 3), 20, SessionStatus::LoggedOut),
        // Another user's sessions are not counted.
        save(pair(u + 1, 1), 10, SessionStatus::Ready),
    ];
    for rec in &recs {
        f.db.save_session(rec).await.unwrap();
    }
    assert_eq!(f.db.counted_sessions(user(u)).await.unwrap(), 2);
    assert_eq!(f.db.counted_sessions(user(u + 1)).await.unwrap(), 1);
    // Logging out place 1 frees its slot.
    let mut out = recs[0].clone();
    out.status = SessionStatus::LoggedOut;
    f.db.save_session(&out).await.unwrap();
    assert_eq!(f.db.counted_sessions(user(u)).await.unwrap(), 1);
}

pub async fn the_store_answers_a_ping_and_closes(f: Fixture) {
    f.db.ping().await.unwrap();
    f.db.close().await;
    assert!(f.db.ping().await.is_err(), "a closed store answers no ping");
}
