//! "Contact fetch on demand".

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ME: &str = "966500000001@s.whatsapp.net";

#[tokio::test]
async fn start_contact_fetch_returns_404_without_a_session() {
    let app = spawn_app().await;
    let (s, v) = app.start_fetch(1, 2).await;
    let msg = assert_error(s, &v, 404);
    assert_eq!(
        msg,
        "No WhatsApp session found. Please initialize a session first."
    );
}

#[tokio::test]
async fn start_contact_fetch_returns_400_until_the_session_is_ready() {
    let app = spawn_app().await;
    app.init(1, 2).await;
    app.wait_status(1, 2, "qr_ready").await;
    let (s, v) = app.start_fetch(1, 2).await;
    let msg = assert_error(s, &v, 400);
    assert_eq!(
        msg,
        "Session is not ready for contact fetch. Current status: qr_ready. Please wait for \
         session to be ready or restart the session."
    );
}

#[tokio::test]
async fn a_vanished_client_gives_503_and_marks_the_session_disconnected() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    let (s, v) = app.fault(1, 2, "drop_client").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // No event announces it: the status still says ready until someone uses the client.
    assert_eq!(app.status(1, 2).await["status"], "ready");
    let (s, v) = app.start_fetch(1, 2).await;
    let msg = assert_error(s, &v, 503);
    assert_eq!(
        msg,
        "WhatsApp client is not available. Please restart the session and try again."
    );
    let st = app.status(1, 2).await;
    assert_eq!(st["status"], "disconnected");
    assert_eq!(st["client_ready"], false);
    // The next attempt is refused as not ready, naming the status.
    let (s, v) = app.start_fetch(1, 2).await;
    assert!(assert_error(s, &v, 400).contains("Current status: disconnected"));
    // init (or restart) brings the client back on the same credentials.
    let again = app.init(1, 2).await;
    assert_eq!(again["data"]["session_id"], st["session_id"]);
    app.wait_status(1, 2, "ready").await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["contacts_fetch_completed"], true, "{p}");
}

#[tokio::test]
async fn start_contact_fetch_answers_at_once_in_the_notes_shape() {
    let app = spawn_app_with(|c| c.sim.fetch_delay = Duration::from_millis(200)).await;
    app.set_phonebook(1, 2, ME, numbered_book(3_000, None))
        .await;
    let ready = app.ready_session(1, 2).await;
    let (s, v) = app.start_fetch(1, 2).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(
        v["message"],
        "Background contact fetch started successfully"
    );
    assert_eq!(
        v["data"],
        json!({
            "success": true,
            "message": "Background contact fetch started",
            "session_id": ready["session_id"],
            "current_status": "ready",
        })
    );
    // Non-blocking: the fetch is still running after the answer.
    let st = app.status(1, 2).await;
    assert_eq!(st["status"], "fetching_contacts", "{st}");
    app.wait_fetch_end(1, 2).await;
}

#[tokio::test]
async fn a_second_fetch_while_one_runs_gets_409() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    app.fault(1, 2, "slow_fetch").await;
    let (s, _) = app.start_fetch(1, 2).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app.start_fetch(1, 2).await;
    let msg = assert_error(s, &v, 409);
    assert!(msg.contains("already running"), "{msg}");
    let p = app.progress(1, 2).await;
    assert_eq!(p["is_fetching"], true);
    assert_eq!(p["status"], "fetching_contacts");
    let p = app.wait_fetch_end(1, 2).await;
    assert_eq!(p["status"], "ready");
    assert_eq!(p["contacts_fetch_completed"], true);
}

#[tokio::test]
async fn of_many_racing_fetch_requests_exactly_one_is_accepted() {
    let app = spawn_app().await;
    app.ready_session(1, 2).await;
    // Slow enough that no racer can arrive after it ended.
    app.fault(1, 2, "slow_fetch").await;
    let calls: Vec<_> = (0..200).map(|_| app.start_fetch(1, 2)).collect();
    let results = futures::future::join_all(calls).await;
    let accepted = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let conflicts = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!(accepted, 1, "{results:?}");
    assert_eq!(conflicts, 199);
    app.wait_fetch_end(1, 2).await;
}

/// `n` valid Saudi mobile numbers 9665000NNNNN with names and activity `age_days` ago.
pub(crate) fn numbered_book(n: usize, age_days: Option<i64>) -> Value {
    let now = chrono::Utc::now().timestamp();
    Value::Array(
        (0..n)
            .map(|i| {
                person(
                    &format!("9665{:08}", 10_000_000 + i),
                    Some(&format!("Contact {i}")),
                    age_days.map(|d| now - d * 86_400),
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn the_fetch_keeps_only_person_chats_with_a_phone_number() {
    let app = spawn_app().await;
    let recent = days_ago(&app, 3);
    let entries = json!([
        {"jid": "966512345001@s.whatsapp.net", "name": "Saved", "push_name": "Push", "is_business": false, "last_message_at": recent},
        {"jid": "201012345678@c.us", "name": null, "push_name": "Cairo", "is_business": true, "last_message_at": null},
        {"jid": "966512345002:7@s.whatsapp.net", "name": "Device suffix", "last_message_at": recent},
        {"jid": "120363012345678901@g.us", "name": "A group", "last_message_at": recent},
        {"jid": "status@broadcast", "name": null, "last_message_at": recent},
        {"jid": "1234567890@broadcast", "name": "List", "last_message_at": recent},
        {"jid": "120363400000000000@newsletter", "name": "Channel", "last_message_at": recent},
        {"jid": "123456789012345@lid", "push_name": "Unmapped", "last_message_at": recent},
        {"jid": "223456789012345@lid", "pn_jid": "971501234567@s.whatsapp.net", "push_name": "Mapped", "last_message_at": recent},
        {"jid": ME, "name": "Me myself", "last_message_at": recent},
        {"jid": "not-a-jid", "name": "junk"},
        {"jid": "abc@s.whatsapp.net", "name": "junk"},
        {"jid": "12@s.whatsapp.net", "name": "too short"},
        {"jid": "", "name": "empty"},
    ]);
    app.set_phonebook(1, 2, ME, entries).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["contacts_fetch_completed"], true, "{p}");
    assert_eq!(p["contacts_fetch_error"], json!(null));
    assert_eq!(
        app.group_numbers(1, 2, ALL_GROUP).await,
        vec![
            "+201012345678",
            "+966512345001",
            "+966512345002",
            "+971501234567"
        ]
    );
    let s = &p["fetch_summary"];
    assert_eq!(s["received"], 14, "{s}");
    assert_eq!(s["imported"], 4);
    assert_eq!(s["skipped_groups"], 1);
    assert_eq!(s["skipped_broadcasts"], 2);
    assert_eq!(s["skipped_newsletters"], 1);
    assert_eq!(s["skipped_unresolved_lids"], 1);
    assert_eq!(s["skipped_self"], 1);
    assert_eq!(s["skipped_invalid"], 4);
    assert_eq!(p["total_contacts"], 4);

    let id = app.group_id(1, 2, ALL_GROUP).await;
    let (_, v) = app
        .get(&format!(
            "/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2&search=Cairo"
        ))
        .await;
    let c = &v["data"]["contacts"][0];
    assert_eq!(c["phone_number"], "+201012345678");
    assert_eq!(c["push_name"], "Cairo");
    assert_eq!(c["is_business"], true);
    assert_eq!(c["last_interaction"], json!(null));
}

#[tokio::test]
async fn numbers_are_normalised_to_e164() {
    let app = spawn_app().await;
    let entries = json!([
        {"jid": "5491123456789@s.whatsapp.net", "is_business": null}, // Argentina mobile with 9
        {"jid": "390612345678@s.whatsapp.net"},    // Italy, leading zero kept
        {"jid": "447911123456.0:2@s.whatsapp.net"},// UK with agent and device
        {"jid": "14155552671@c.us"},               // NANP
        {"jid": "966512345678@s.whatsapp.net"},
        {"jid": "966512345678@c.us"},              // the same number again
        {"jid": "0966512345678@s.whatsapp.net"},   // not international
        {"jid": "99912345678@s.whatsapp.net"},     // no such country code
    ]);
    app.set_phonebook(1, 2, ME, entries).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(
        app.group_numbers(1, 2, ALL_GROUP).await,
        vec![
            "+14155552671",
            "+390612345678",
            "+447911123456",
            "+5491123456789",
            "+966512345678"
        ]
    );
    assert_eq!(p["fetch_summary"]["merged_duplicates"], 1, "{p}");
    assert_eq!(p["fetch_summary"]["skipped_invalid"], 2, "{p}");
}

#[tokio::test]
async fn a_second_fetch_updates_adds_and_never_duplicates_or_deletes() {
    let app = spawn_app().await;
    let old = days_ago(&app, 200);
    let recent = days_ago(&app, 5);
    app.set_phonebook(
        1,
        2,
        ME,
        json!([
            person("966512345001", Some("Amal"), Some(old)),
            person("966512345002", Some("Badr"), Some(old)),
            person("966512345003", Some("Chadi"), None),
        ]),
    )
    .await;
    app.ready_session(1, 2).await;
    app.fetch_and_wait(1, 2).await;
    assert!(app.group_numbers(1, 2, RECENT_GROUP).await.is_empty());

    // The phone now: Amal wrote recently, Badr lost his saved name, Chadi is gone, Dana is new.
    app.set_phonebook(
        1,
        2,
        ME,
        json!([
            person("966512345001", Some("Amal"), Some(recent)),
            {"jid": "966512345002@s.whatsapp.net", "name": "", "push_name": null, "last_message_at": old},
            person("966512345004", Some("Dana"), Some(recent)),
        ]),
    )
    .await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["contacts_fetch_completed"], true);
    assert_eq!(p["total_contacts"], 4);
    assert_eq!(
        app.group_numbers(1, 2, ALL_GROUP).await,
        vec![
            "+966512345001",
            "+966512345002",
            "+966512345003",
            "+966512345004"
        ]
    );
    assert_eq!(
        app.group_numbers(1, 2, RECENT_GROUP).await,
        vec!["+966512345001", "+966512345004"]
    );
    let id = app.group_id(1, 2, ALL_GROUP).await;
    let (_, v) = app
        .get(&format!(
            "/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2&search=512345002"
        ))
        .await;
    assert_eq!(
        v["data"]["contacts"][0]["name"], "Badr",
        "a known name survives an empty one"
    );

    // An older activity never moves a contact back in time.
    app.set_phonebook(1, 2, ME, json!([person("966512345001", None, Some(old))]))
        .await;
    app.fetch_and_wait(1, 2).await;
    assert!(
        app.group_numbers(1, 2, RECENT_GROUP)
            .await
            .contains(&"+966512345001".to_string())
    );
}

#[tokio::test]
async fn the_90_day_group_follows_real_activity_as_time_passes() {
    let app = spawn_app().await;
    app.set_phonebook(
        1,
        2,
        ME,
        json!([
            person("966512345001", Some("10 days"), Some(days_ago(&app, 10))),
            person("966512345002", Some("80 days"), Some(days_ago(&app, 80))),
            person("966512345003", Some("100 days"), Some(days_ago(&app, 100))),
            person("966512345004", Some("never"), None),
        ]),
    )
    .await;
    app.ready_session(1, 2).await;
    app.fetch_and_wait(1, 2).await;
    assert_eq!(
        app.group_numbers(1, 2, RECENT_GROUP).await,
        vec!["+966512345001", "+966512345002"]
    );
    // The sync time is not activity: a month later, without any fetch, 80 days became 110.
    app.clock.advance(chrono::Duration::days(30));
    assert_eq!(
        app.group_numbers(1, 2, RECENT_GROUP).await,
        vec!["+966512345001"]
    );
    let groups = app.groups(1, 2).await;
    assert_eq!(groups[0]["contact_count"], 4);
    assert_eq!(groups[1]["contact_count"], 1);
}

#[tokio::test]
async fn progress_is_reported_while_the_fetch_runs() {
    let app = spawn_app_with(|c| c.sim.fetch_delay = Duration::from_millis(150)).await;
    app.set_phonebook(1, 2, ME, numbered_book(5_000, Some(1)))
        .await;
    app.ready_session(1, 2).await;
    let (s, _) = app.start_fetch(1, 2).await;
    assert_eq!(s, StatusCode::OK);
    let mut seen_partial = false;
    let last = loop {
        let p = app.progress(1, 2).await;
        let pct = p["contacts_fetch_progress"].as_i64().unwrap();
        let processed = p["processed"].as_i64().unwrap();
        if p["is_fetching"] == true && (1..100).contains(&pct) {
            assert_eq!(p["total"], 5_000);
            assert!(processed > 0 && processed <= 5_000, "{p}");
            assert_eq!(p["status"], "fetching_contacts");
            // Read a moment later, so a batch may have landed in between; never behind.
            let later = app.status(1, 2).await["contacts_fetch_progress"]
                .as_i64()
                .unwrap();
            assert!(later >= pct, "status {later}% behind progress {pct}%");
            seen_partial = true;
        }
        if p["is_fetching"] == false {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(seen_partial, "no intermediate progress was visible");
    assert_eq!(last["contacts_fetch_progress"], 100);
    assert_eq!(last["processed"], 5_000);
    assert_eq!(last["total_contacts"], 5_000);
    assert_eq!(last["status"], "ready");
    assert!(last["last_contacts_sync"].is_string());
}

#[tokio::test]
async fn the_generated_phone_book_fills_both_groups() {
    let app = spawn_app_with(|c| c.sim.contacts = 400).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    let total = p["total_contacts"].as_i64().unwrap();
    assert!(total > 200 && total < 400, "{p}");
    let all = app.group_numbers(1, 2, ALL_GROUP).await;
    let recent = app.group_numbers(1, 2, RECENT_GROUP).await;
    assert_eq!(all.len() as i64, total);
    assert!(!recent.is_empty() && recent.len() < all.len());
    let all: HashSet<_> = all.into_iter().collect();
    assert!(recent.iter().all(|n| all.contains(n)));
    assert!(all.iter().all(|n| n.starts_with('+')));
}

#[tokio::test]
async fn one_number_in_chunks_far_apart_is_one_contact_with_what_each_chunk_knew() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let mut book = numbered_book(12_000, None);
    let entries = book.as_array_mut().unwrap();
    // Chunk 1 knows the name and that it is a business; chunk 12 (read while earlier ones
    // are written) brings later activity under the old `@c.us` form, without the flag.
    entries[5] = json!({"jid": "966599999999@s.whatsapp.net", "name": "Shop", "is_business": true, "last_message_at": now - 200 * 86_400});
    entries[11_500] = json!({"jid": "966599999999@c.us", "push_name": "Shop push", "is_business": false, "last_message_at": now - 86_400});
    app.set_phonebook(1, 2, ME, book).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["total_contacts"], 11_999, "{p}");
    let id = app.group_id(1, 2, ALL_GROUP).await;
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2&search=966599999999&search_type=phone"
        ))
        .await;
    let found = body["data"]["contacts"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["name"], "Shop");
    assert_eq!(found[0]["push_name"], "Shop push");
    assert_eq!(found[0]["is_business"], true);
    assert!(
        app.group_numbers(1, 2, RECENT_GROUP)
            .await
            .contains(&"+966599999999".to_string())
    );
}

#[tokio::test]
async fn a_later_fetch_can_clear_the_business_flag() {
    let app = spawn_app().await;
    let entry = |business: bool| json!([{"jid": "966512345001@s.whatsapp.net", "name": "Shop", "is_business": business}]);
    app.set_phonebook(1, 2, ME, entry(true)).await;
    app.ready_session(1, 2).await;
    app.fetch_and_wait(1, 2).await;
    let id = app.group_id(1, 2, ALL_GROUP).await;
    let path = format!("/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2");
    assert_eq!(
        app.get(&path).await.1["data"]["contacts"][0]["is_business"],
        true
    );
    app.set_phonebook(1, 2, ME, entry(false)).await;
    app.fetch_and_wait(1, 2).await;
    assert_eq!(
        app.get(&path).await.1["data"]["contacts"][0]["is_business"],
        false
    );
}

#[tokio::test]
async fn activity_stamped_in_the_future_does_not_pin_a_contact_in_the_90_day_group() {
    let app = spawn_app().await;
    app.set_phonebook(
        1,
        2,
        ME,
        json!([
            person("966512345001", Some("Broken clock"), Some(i64::MAX)),
            person(
                "966512345002",
                Some("Next year"),
                Some(days_ago(&app, -365))
            ),
            person("966512345003", Some("Today"), Some(days_ago(&app, 0))),
        ]),
    )
    .await;
    app.ready_session(1, 2).await;
    app.fetch_and_wait(1, 2).await;
    assert_eq!(
        app.group_numbers(1, 2, RECENT_GROUP).await,
        vec!["+966512345003"]
    );
    assert_eq!(app.group_numbers(1, 2, ALL_GROUP).await.len(), 3);
}

#[tokio::test]
async fn fetches_beyond_the_server_cap_wait_in_a_queue_and_all_complete() {
    let app = spawn_app_with(|c| c.max_concurrent_fetches = 1).await;
    app.ready_session(1, 1).await;
    app.ready_session(2, 1).await;
    app.fault(1, 1, "slow_fetch").await;
    let (s, v) = app.start_fetch(1, 1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Queued, not refused.
    let (s, v) = app.start_fetch(2, 1).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let waiting = app.progress(2, 1).await;
    assert_eq!(waiting["status"], "fetching_contacts", "{waiting}");
    assert_eq!(waiting["is_fetching"], true);
    assert_eq!(
        waiting["processed"], 0,
        "it waits for the running fetch: {waiting}"
    );
    // Its place in the queue is its own: a second request for it is still a conflict.
    let (s, _) = app.start_fetch(2, 1).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let first = app.wait_fetch_end(1, 1).await;
    let second = app.wait_fetch_end(2, 1).await;
    for done in [first, second] {
        assert_eq!(done["contacts_fetch_completed"], true, "{done}");
        assert!(done["total_contacts"].as_i64().unwrap() > 0, "{done}");
        assert_eq!(
            done["total_contacts"], done["fetch_summary"]["imported"],
            "{done}"
        );
    }
}
