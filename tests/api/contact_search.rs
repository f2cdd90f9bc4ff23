//! Contact search across a pair (every filter narrows) and CSV export of all contacts or of
//! one group: UTF-8 with a BOM, quoted where needed, formulas defused, tenant-scoped.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const ME: &str = "966500000009@s.whatsapp.net";

/// Five contacts of (1, 2) with known names, business flags and activity.
async fn known_book(app: &TestApp) {
    let book = json!([
        {"jid": "966510000001@s.whatsapp.net", "name": "Ahmed Ali", "is_business": false,
         "last_message_at": days_ago(app, 1)},
        {"jid": "966510000002@s.whatsapp.net", "name": "أحمد التاجر", "is_business": true,
         "last_message_at": days_ago(app, 10)},
        {"jid": "966510000003@s.whatsapp.net", "name": "=cmd|' /C calc'!A0", "push_name": "Sara, \"the boss\"",
         "is_business": false, "last_message_at": days_ago(app, 100)},
        {"jid": "966510000004@s.whatsapp.net", "name": null, "push_name": "Bob",
         "is_business": true, "last_message_at": null},
        {"jid": "966510000005@s.whatsapp.net", "name": "Layla", "is_business": false,
         "last_message_at": days_ago(app, 40)},
    ]);
    app.set_phonebook(1, 2, ME, book).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["total_contacts"], 5, "{p}");
}

async fn search(app: &TestApp, query: &str) -> Vec<String> {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/search?user_id=1&place_id=2&{query}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    let contacts = body["data"]["contacts"].as_array().unwrap();
    assert!(body["data"]["pagination"]["total"].as_u64().unwrap() as usize >= contacts.len());
    contacts
        .iter()
        .map(|c| c["phone_number"].as_str().unwrap().to_string())
        .collect()
}

fn n(last: u8) -> String {
    format!("+96651000000{last}")
}

#[tokio::test]
async fn search_filters_by_text_business_activity_and_tags_and_every_filter_narrows() {
    let app = spawn_app().await;
    known_book(&app).await;
    // Most recently active first; never-active last.
    assert_eq!(search(&app, "").await, [n(1), n(2), n(5), n(3), n(4)]);
    assert_eq!(search(&app, "search=ahmed").await, [n(1)]);
    assert_eq!(
        search(&app, "search=%D8%A3%D8%AD%D9%85%D8%AF").await,
        [n(2)],
        "Arabic name"
    );
    assert_eq!(
        search(&app, "search=0000004&search_type=phone").await,
        [n(4)]
    );
    assert_eq!(
        search(&app, "search=bob&search_type=phone").await,
        Vec::<String>::new()
    );
    assert_eq!(
        search(&app, "search=.*").await,
        Vec::<String>::new(),
        "no regex"
    );
    assert_eq!(search(&app, "is_business=true").await, [n(2), n(4)]);
    assert_eq!(search(&app, "is_business=false").await, [n(1), n(5), n(3)]);
    assert_eq!(search(&app, "last_interaction_days=30").await, [n(1), n(2)]);
    assert_eq!(search(&app, "inactive_days=30").await, [n(5), n(3), n(4)]);
    assert_eq!(
        search(&app, "inactive_days=30&is_business=true").await,
        [n(4)]
    );

    // Tags: set on two contacts, then every tag named must be carried.
    let all = search(&app, "limit=10").await;
    assert_eq!(all.len(), 5);
    let (_, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&search=0000001&search_type=phone")
        .await;
    let first = body["data"]["contacts"][0]["id"].as_i64().unwrap();
    let (_, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&search=0000005&search_type=phone")
        .await;
    let fifth = body["data"]["contacts"][0]["id"].as_i64().unwrap();
    for (id, tags) in [(first, json!(["vip", "riyadh"])), (fifth, json!(["vip"]))] {
        let (status, body) = app
            .request(
                reqwest::Method::PATCH,
                &format!("/api/whatsapp/contacts/{id}"),
                Some(json!({"user_id": 1, "place_id": 2, "tags": tags})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(search(&app, "tags=vip").await, [n(1), n(5)]);
    assert_eq!(search(&app, "tags=vip,%20riyadh").await, [n(1)]);
    assert_eq!(search(&app, "tags=nobody").await, Vec::<String>::new());

    // Pagination.
    let (_, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&limit=2&page=2")
        .await;
    assert_eq!(
        body["data"]["pagination"],
        json!({"page": 2, "limit": 2, "total": 5, "pages": 3, "has_next": true, "has_prev": true})
    );
    assert_eq!(body["data"]["contacts"][0]["phone_number"], n(5));

    // Another tenant sees none of them.
    let (status, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=3")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["pagination"]["total"], 0, "{body}");
}

#[tokio::test]
async fn bad_search_parameters_are_named() {
    let app = spawn_app().await;
    for (query, field) in [
        ("is_business=yes", "is_business"),
        ("last_interaction_days=0", "last_interaction_days"),
        ("last_interaction_days=abc", "last_interaction_days"),
        ("inactive_days=-3", "inactive_days"),
        ("inactive_days=99999", "inactive_days"),
        ("search_type=regex", "search_type"),
        ("limit=0", "limit"),
        ("place_id=0", "place_id"),
    ] {
        let q = if query.starts_with("place_id") {
            format!("user_id=1&{query}")
        } else {
            format!("user_id=1&place_id=2&{query}")
        };
        let (status, body) = app.get(&format!("/api/whatsapp/contacts/search?{q}")).await;
        let msg = assert_error(status, &body, 400);
        assert!(msg.contains(field), "{query}: {msg}");
        if field != "limit" {
            let (status, body) = app
                .get(&format!("/api/whatsapp/contacts/export.csv?{q}"))
                .await;
            let msg = assert_error(status, &body, 400);
            assert!(msg.contains(field), "export {query}: {msg}");
        }
    }
    let long = "a".repeat(51);
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/search?user_id=1&place_id=2&tags={long}"
        ))
        .await;
    assert!(assert_error(status, &body, 400).contains("tags"));
}

async fn csv(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let resp = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let headers = resp.headers().clone();
    (headers, resp.bytes().await.unwrap().to_vec())
}

fn rows(body: &[u8]) -> Vec<Vec<String>> {
    assert!(body.starts_with(b"\xEF\xBB\xBF"), "UTF-8 BOM first");
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(&body[3..]);
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn csv_export_streams_every_contact_with_a_bom_quoting_and_defused_formulas() {
    let app = spawn_app().await;
    known_book(&app).await;
    let (headers, body) = csv(
        &app,
        "/api/whatsapp/contacts/export.csv?user_id=1&place_id=2",
    )
    .await;
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=")
    );
    let table = rows(&body);
    assert_eq!(
        table[0],
        [
            "id",
            "phone_number",
            "name",
            "push_name",
            "is_business",
            "last_interaction",
            "tags",
            "custom_fields",
            "opted_out",
            "opted_out_at"
        ]
    );
    assert_eq!(table.len(), 6);
    let by_phone = |p: &str| table.iter().find(|r| r[1] == p).unwrap().clone();
    assert_eq!(by_phone(&n(2))[2], "أحمد التاجر");
    assert_eq!(by_phone(&n(2))[4], "true");
    // A name that is a formula is kept, but cannot run; commas and quotes survive quoting.
    assert_eq!(by_phone(&n(3))[2], "'=cmd|' /C calc'!A0");
    assert_eq!(by_phone(&n(3))[3], "Sara, \"the boss\"");
    assert_eq!(by_phone(&n(4))[5], "", "never active");
    assert!(by_phone(&n(1))[5].ends_with('Z'));

    // Filters narrow the export as they narrow the search.
    let (_, body) = csv(
        &app,
        "/api/whatsapp/contacts/export.csv?user_id=1&place_id=2&is_business=true",
    )
    .await;
    assert_eq!(rows_len(&body), 3);

    // One group's members: the 90-day group holds the three active within 90 days.
    let recent = app.group_id(1, 2, RECENT_GROUP).await;
    let (_, body) = csv(
        &app,
        &format!("/api/whatsapp/groups/{recent}/export.csv?user_id=1&place_id=2"),
    )
    .await;
    let got: Vec<String> = rows(&body)
        .into_iter()
        .skip(1)
        .map(|r| r[1].clone())
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    for p in [n(1), n(2), n(5)] {
        assert!(got.contains(&p), "{got:?}");
    }

    // Another tenant's group is not found; an unknown group neither.
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{recent}/export.csv?user_id=1&place_id=3"
        ))
        .await;
    assert_error(status, &body, 404);
    let (status, body) = app
        .get("/api/whatsapp/groups/abc/export.csv?user_id=1&place_id=2")
        .await;
    assert!(assert_error(status, &body, 400).contains("group_id"));
}

fn rows_len(body: &[u8]) -> usize {
    rows(body).len()
}

#[tokio::test]
async fn a_large_export_is_complete_and_in_id_order() {
    let app = spawn_app().await;
    let now = chrono::Utc::now().timestamp();
    let book: Vec<Value> = (0..2_500)
        .map(|i| {
            json!({"jid": format!("9665{:08}@s.whatsapp.net", 10_000_000 + i),
                        "name": format!("P{i}"), "last_message_at": now - i})
        })
        .collect();
    app.set_phonebook(4, 5, ME, json!(book)).await;
    app.ready_session(4, 5).await;
    app.fetch_and_wait(4, 5).await;
    let (_, body) = csv(
        &app,
        "/api/whatsapp/contacts/export.csv?user_id=4&place_id=5",
    )
    .await;
    let rows = rows(&body);
    assert_eq!(rows.len(), 2_501);
    let ids: Vec<i64> = rows[1..].iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
}
