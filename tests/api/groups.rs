//! Contact groups: the two automatic groups created on ready, the group listing, and a
//! group's contacts (pagination, search, validation, tenant isolation, fields, order).

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The simulated account's own number (never one of its contacts).
const ME: &str = "966500000009@s.whatsapp.net";

/// Sets the pair's phone book, links the session and runs one contact fetch to its end.
async fn ready_with_book(app: &TestApp, user: i64, place: i64, entries: Vec<Value>) {
    app.set_phonebook(user, place, ME, json!(entries)).await;
    app.ready_session(user, place).await;
    let p = app.fetch_and_wait(user, place).await;
    assert_eq!(
        p["contacts_fetch_completed"], true,
        "fetch did not complete: {p}"
    );
}

/// A phone book entry with every field chosen by the test.
fn entry(
    digits: &str,
    name: Option<&str>,
    push_name: Option<&str>,
    is_business: bool,
    last_message_at: Option<i64>,
) -> Value {
    json!({"jid": format!("{digits}@s.whatsapp.net"), "name": name, "push_name": push_name,
           "is_business": is_business, "last_message_at": last_message_at})
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /api/whatsapp/groups/{group_id}/contacts?user_id&place_id<extra>`.
async fn group_contacts(
    app: &TestApp,
    user: i64,
    place: i64,
    group_id: &str,
    extra: &str,
) -> (StatusCode, Value) {
    app.get(&format!(
        "/api/whatsapp/groups/{group_id}/contacts?user_id={user}&place_id={place}{extra}"
    ))
    .await
}

/// The contacts of a successful group-contacts answer.
fn contacts_of(status: StatusCode, body: &Value) -> Vec<Value> {
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    body["data"]["contacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no contacts array: {body}"))
        .clone()
}

fn phones(contacts: &[Value]) -> Vec<String> {
    contacts
        .iter()
        .map(|c| {
            c["phone_number"]
                .as_str()
                .unwrap_or_else(|| panic!("phone_number not a string: {c}"))
                .to_string()
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Searches the "all numbers" group and returns the sorted phone numbers found.
async fn search_all_group(app: &TestApp, user: i64, place: i64, query: &str) -> Vec<String> {
    let id = app.group_id(user, place, ALL_GROUP).await;
    let (s, v) = group_contacts(app, user, place, &id.to_string(), query).await;
    let contacts = contacts_of(s, &v);
    assert_eq!(
        v["data"]["pagination"]["total"].as_i64(),
        Some(contacts.len() as i64),
        "total must count the matches only ({query}): {v}"
    );
    sorted(phones(&contacts))
}

fn unix_of(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {rfc3339}"))
        .timestamp()
}

// ---------------------------------------------------------------------------------------
// On ready: the two automatic groups
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn both_automatic_groups_exist_empty_with_exact_names_right_after_ready() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;

    let groups = app.groups(1, 1).await;
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["name"], ALL_GROUP, "{groups:?}");
    assert_eq!(groups[1]["name"], RECENT_GROUP, "{groups:?}");
    assert_eq!(ALL_GROUP, "جميع الارقام");
    assert_eq!(RECENT_GROUP, "اخر الارقام (90 يوم)");
    for g in &groups {
        assert_eq!(g["type"], "auto", "{g}");
        assert_eq!(g["contact_count"], 0, "{g}");
        assert!(g["id"].as_i64().is_some_and(|id| id > 0), "{g}");
        for key in ["description", "filter_applied"] {
            assert!(g.get(key).is_some(), "missing {key}: {g}");
        }
        for key in ["created_at", "updated_at"] {
            unix_of(g[key].as_str().unwrap_or_else(|| panic!("{key}: {g}")));
        }
    }
    assert_ne!(groups[0]["id"], groups[1]["id"]);

    // No fetch ran: both groups are empty when read, too.
    for g in &groups {
        let id = g["id"].as_i64().unwrap().to_string();
        let (s, v) = group_contacts(&app, 1, 1, &id, "").await;
        assert!(contacts_of(s, &v).is_empty(), "{v}");
        assert_eq!(v["data"]["pagination"]["total"], 0, "{v}");
        assert_eq!(v["data"]["group"]["name"], g["name"], "{v}");
        assert_eq!(v["data"]["group"]["type"], "auto", "{v}");
        assert_eq!(v["data"]["group"]["contact_count"], 0, "{v}");
    }
}

// ---------------------------------------------------------------------------------------
// Group listing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn group_listing_paginates_with_page_limit_total_and_pages() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;

    let (s, v) = app.get("/api/whatsapp/groups?user_id=1&place_id=1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["pagination"],
        json!({"page": 1, "limit": 50, "total": 2, "pages": 1, "has_next": false, "has_prev": false}),
        "{v}"
    );

    let (s, v) = app
        .get("/api/whatsapp/groups?user_id=1&place_id=1&limit=1&page=1")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let groups = v["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], ALL_GROUP, "{v}");
    assert_eq!(
        v["data"]["pagination"],
        json!({"page": 1, "limit": 1, "total": 2, "pages": 2, "has_next": true, "has_prev": false}),
        "{v}"
    );

    let (s, v) = app
        .get("/api/whatsapp/groups?user_id=1&place_id=1&limit=1&page=2")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let groups = v["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{v}");
    assert_eq!(groups[0]["name"], RECENT_GROUP, "{v}");
    assert_eq!(
        v["data"]["pagination"],
        json!({"page": 2, "limit": 1, "total": 2, "pages": 2, "has_next": false, "has_prev": true}),
        "{v}"
    );

    let (s, v) = app
        .get("/api/whatsapp/groups?user_id=1&place_id=1&limit=1&page=3")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["groups"], json!([]), "{v}");
    assert_eq!(v["data"]["pagination"]["total"], 2, "{v}");
}

#[tokio::test]
async fn group_listing_rejects_bad_page_and_limit_naming_the_field() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=-1", "page"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
    ] {
        let (s, v) = app
            .get(&format!(
                "/api/whatsapp/groups?user_id=1&place_id=1&{query}"
            ))
            .await;
        let msg = assert_error(s, &v, 400);
        assert!(
            msg.contains(field),
            "{query}: message must name {field}: {msg}"
        );
    }
    // The bounds themselves are accepted.
    for query in ["limit=1", "limit=1000", "page=1"] {
        let (s, v) = app
            .get(&format!(
                "/api/whatsapp/groups?user_id=1&place_id=1&{query}"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{query}: {v}");
    }
}

#[tokio::test]
async fn group_listing_shows_only_the_pairs_own_groups() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    app.ready_session(2, 1).await;
    app.ready_session(1, 2).await;

    let ids = |gs: Vec<Value>| -> HashSet<i64> {
        gs.iter().map(|g| g["id"].as_i64().expect("id")).collect()
    };
    let a = ids(app.groups(1, 1).await);
    let b = ids(app.groups(2, 1).await);
    let c = ids(app.groups(1, 2).await);
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    assert_eq!(c.len(), 2);
    assert!(a.is_disjoint(&b), "{a:?} {b:?}");
    assert!(a.is_disjoint(&c), "{a:?} {c:?}");
    assert!(b.is_disjoint(&c), "{b:?} {c:?}");
}

// ---------------------------------------------------------------------------------------
// Group contacts: pagination, counts, order, fields
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn group_contacts_paginate_over_25_contacts_in_3_pages_without_overlap() {
    let app = spawn_app().await;
    let book: Vec<Value> = (1..=25)
        .map(|i| {
            person(
                &format!("9665123450{i:02}"),
                Some(&format!("Customer {i}")),
                Some(days_ago(&app, i)),
            )
        })
        .collect();
    ready_with_book(&app, 1, 1, book).await;
    let id = app.group_id(1, 1, ALL_GROUP).await.to_string();

    let mut seen: Vec<String> = Vec::new();
    for (page, want_len) in [(1, 10), (2, 10), (3, 5)] {
        let (s, v) = group_contacts(&app, 1, 1, &id, &format!("&limit=10&page={page}")).await;
        let contacts = contacts_of(s, &v);
        assert_eq!(contacts.len(), want_len, "page {page}: {v}");
        assert_eq!(
            v["data"]["pagination"],
            json!({"page": page, "limit": 10, "total": 25, "pages": 3,
                "has_next": page < 3, "has_prev": page > 1}),
            "{v}"
        );
        seen.extend(phones(&contacts));
    }
    let (s, v) = group_contacts(&app, 1, 1, &id, "&limit=10&page=4").await;
    assert!(contacts_of(s, &v).is_empty(), "page 4 must be empty: {v}");

    // Newest first across pages: customer 1 (1 day ago) … customer 25 (25 days ago).
    let want: Vec<String> = (1..=25).map(|i| format!("+9665123450{i:02}")).collect();
    assert_eq!(
        seen, want,
        "pages overlap, miss contacts or are out of order"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 25);

    // Default page and limit.
    let (s, v) = group_contacts(&app, 1, 1, &id, "").await;
    assert_eq!(contacts_of(s, &v).len(), 25, "{v}");
    assert_eq!(
        v["data"]["pagination"],
        json!({"page": 1, "limit": 50, "total": 25, "pages": 1, "has_next": false, "has_prev": false}),
        "{v}"
    );
}

#[tokio::test]
async fn group_contacts_reject_bad_page_limit_and_search_type_naming_the_field() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let id = app.group_id(1, 1, ALL_GROUP).await.to_string();
    for (query, field) in [
        ("&page=0", "page"),
        ("&page=abc", "page"),
        ("&page=-2", "page"),
        ("&page=1.5", "page"),
        ("&limit=0", "limit"),
        ("&limit=1001", "limit"),
        ("&limit=abc", "limit"),
        ("&search_type=xyz", "search_type"),
        ("&search_type=regex&search=a", "search_type"),
    ] {
        let (s, v) = group_contacts(&app, 1, 1, &id, query).await;
        let msg = assert_error(s, &v, 400);
        assert!(
            msg.contains(field),
            "{query}: message must name {field}: {msg}"
        );
    }
    for query in [
        "&search_type=name",
        "&search_type=phone",
        "&search_type=all",
    ] {
        let (s, v) = group_contacts(&app, 1, 1, &id, query).await;
        assert_eq!(s, StatusCode::OK, "{query}: {v}");
    }
}

#[tokio::test]
async fn group_id_that_is_not_a_positive_integer_is_rejected_naming_group_id() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    for bad in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        let (s, v) = group_contacts(&app, 1, 1, bad, "").await;
        let msg = assert_error(s, &v, 400);
        assert!(
            msg.contains("group_id"),
            "{bad}: message must name group_id: {msg}"
        );
    }
}

#[tokio::test]
async fn unknown_group_is_not_found() {
    let app = spawn_app().await;
    app.ready_session(1, 1).await;
    let (s, v) = group_contacts(&app, 1, 1, "999999", "").await;
    assert_error(s, &v, 404);
}

#[tokio::test]
async fn another_tenants_group_is_not_found_for_another_user_or_another_place() {
    let app = spawn_app().await;
    ready_with_book(
        &app,
        1,
        1,
        vec![person(
            "966512345001",
            Some("Secret Customer"),
            Some(days_ago(&app, 1)),
        )],
    )
    .await;
    app.ready_session(2, 1).await;
    app.ready_session(1, 2).await;

    for name in [ALL_GROUP, RECENT_GROUP] {
        let id = app.group_id(1, 1, name).await.to_string();
        // The owner sees it.
        let (s, v) = group_contacts(&app, 1, 1, &id, "").await;
        assert_eq!(contacts_of(s, &v).len(), 1, "{v}");

        for (user, place) in [(2, 1), (1, 2), (3, 3)] {
            let (s, v) = group_contacts(&app, user, place, &id, "").await;
            assert_error(s, &v, 404);
            assert!(
                !v.to_string().contains("966512345001"),
                "({user},{place}) leaked a contact: {v}"
            );
        }
    }
}

#[tokio::test]
async fn contacts_carry_every_field_with_e164_phone_numbers() {
    let app = spawn_app().await;
    let t1 = days_ago(&app, 3);
    let t2 = days_ago(&app, 5);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            entry(
                "966512345001",
                Some("محمد العتيبي"),
                Some("Mohammed"),
                true,
                Some(t1),
            ),
            entry("201012345678", None, Some("Ahmed Farouk"), false, Some(t2)),
        ],
    )
    .await;
    let id = app.group_id(1, 1, ALL_GROUP).await.to_string();
    let (s, v) = group_contacts(&app, 1, 1, &id, "").await;
    let contacts = contacts_of(s, &v);
    assert_eq!(contacts.len(), 2, "{v}");

    let saudi = &contacts[0];
    assert!(saudi["id"].as_i64().is_some_and(|id| id > 0), "{saudi}");
    assert_eq!(saudi["phone_number"], "+966512345001", "{saudi}");
    assert_eq!(saudi["name"], "محمد العتيبي", "{saudi}");
    assert_eq!(saudi["push_name"], "Mohammed", "{saudi}");
    assert_eq!(saudi["is_business"], true, "{saudi}");
    assert_eq!(
        unix_of(
            saudi["last_interaction"]
                .as_str()
                .expect("last_interaction")
        ),
        t1,
        "{saudi}"
    );
    assert!(saudi["tags"].is_array(), "{saudi}");

    let egyptian = &contacts[1];
    assert!(
        egyptian["id"].as_i64().is_some_and(|id| id > 0),
        "{egyptian}"
    );
    assert_ne!(egyptian["id"], saudi["id"]);
    assert_eq!(egyptian["phone_number"], "+201012345678", "{egyptian}");
    assert_eq!(egyptian["push_name"], "Ahmed Farouk", "{egyptian}");
    assert_eq!(egyptian["is_business"], false, "{egyptian}");
    assert_eq!(
        unix_of(
            egyptian["last_interaction"]
                .as_str()
                .expect("last_interaction")
        ),
        t2,
        "{egyptian}"
    );
    assert!(egyptian["tags"].is_array(), "{egyptian}");

    // The group object of the answer is the listed group.
    let group = &v["data"]["group"];
    let listed = app
        .groups(1, 1)
        .await
        .into_iter()
        .find(|g| g["name"] == ALL_GROUP)
        .expect("listed");
    for key in [
        "id",
        "name",
        "description",
        "type",
        "contact_count",
        "filter_applied",
        "created_at",
    ] {
        assert_eq!(group[key], listed[key], "{key}: {group} vs {listed}");
    }
    assert!(group["updated_at"].is_string(), "{group}");
    assert_eq!(group["contact_count"], 2, "{group}");
}

#[tokio::test]
async fn last_interaction_is_null_for_a_contact_without_activity() {
    let app = spawn_app().await;
    ready_with_book(
        &app,
        1,
        1,
        vec![
            person("966512345001", Some("Silent"), None),
            person("966512345002", Some("Talker"), Some(days_ago(&app, 2))),
        ],
    )
    .await;
    let id = app.group_id(1, 1, ALL_GROUP).await.to_string();
    let (s, v) = group_contacts(&app, 1, 1, &id, "").await;
    let contacts = contacts_of(s, &v);
    let silent = contacts
        .iter()
        .find(|c| c["phone_number"] == "+966512345001")
        .unwrap_or_else(|| panic!("silent contact missing: {v}"));
    assert!(silent["last_interaction"].is_null(), "{silent}");
    let talker = contacts
        .iter()
        .find(|c| c["phone_number"] == "+966512345002")
        .unwrap_or_else(|| panic!("talker missing: {v}"));
    assert!(talker["last_interaction"].is_string(), "{talker}");

    // Without activity there is no "last 90 days".
    assert_eq!(
        app.group_numbers(1, 1, RECENT_GROUP).await,
        vec!["+966512345002".to_string()]
    );
}

#[tokio::test]
async fn contacts_are_ordered_by_last_activity_newest_first() {
    let app = spawn_app().await;
    // Deliberately not in activity order, nor in number order.
    ready_with_book(
        &app,
        1,
        1,
        vec![
            person("966512345003", Some("Thirty"), Some(days_ago(&app, 30))),
            person("966512345005", Some("Two"), Some(days_ago(&app, 2))),
            person("966512345001", Some("Sixty"), Some(days_ago(&app, 60))),
            person("966512345004", Some("Never"), None),
            person("966512345002", Some("Ten"), Some(days_ago(&app, 10))),
            person("966512345006", Some("Old"), Some(days_ago(&app, 200))),
        ],
    )
    .await;
    let all = app.group_id(1, 1, ALL_GROUP).await.to_string();
    let (s, v) = group_contacts(&app, 1, 1, &all, "").await;
    let names: Vec<Value> = contacts_of(s, &v)
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("Two"),
            json!("Ten"),
            json!("Thirty"),
            json!("Sixty"),
            json!("Old"),
            json!("Never")
        ],
        "{v}"
    );

    let recent = app.group_id(1, 1, RECENT_GROUP).await.to_string();
    let (s, v) = group_contacts(&app, 1, 1, &recent, "").await;
    let names: Vec<Value> = contacts_of(s, &v)
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("Two"), json!("Ten"), json!("Thirty"), json!("Sixty")],
        "{v}"
    );
}

#[tokio::test]
async fn contact_count_of_both_groups_matches_the_contacts_returned() {
    let app = spawn_app().await;
    ready_with_book(
        &app,
        1,
        1,
        vec![
            person("966512345001", Some("A"), Some(days_ago(&app, 1))),
            person("966512345002", Some("B"), Some(days_ago(&app, 45))),
            person("201012345003", Some("C"), Some(days_ago(&app, 89))),
            person("966512345004", Some("D"), Some(days_ago(&app, 91))),
            person("201012345005", Some("E"), Some(days_ago(&app, 200))),
            person("966512345006", Some("F"), None),
        ],
    )
    .await;

    let groups = app.groups(1, 1).await;
    assert_eq!(groups.len(), 2, "a fetch must not add groups: {groups:?}");
    let count = |name: &str| {
        groups
            .iter()
            .find(|g| g["name"] == name)
            .and_then(|g| g["contact_count"].as_i64())
            .unwrap_or_else(|| panic!("no count for {name}: {groups:?}"))
    };

    let all = app.group_numbers(1, 1, ALL_GROUP).await;
    assert_eq!(
        all,
        sorted(
            [
                "+966512345001",
                "+966512345002",
                "+201012345003",
                "+966512345004",
                "+201012345005",
                "+966512345006"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(count(ALL_GROUP), all.len() as i64);

    let recent = app.group_numbers(1, 1, RECENT_GROUP).await;
    assert_eq!(
        recent,
        sorted(
            ["+966512345001", "+966512345002", "+201012345003"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(count(RECENT_GROUP), recent.len() as i64);

    // The group object and the pagination of the contacts answer agree, too.
    for (name, n) in [(ALL_GROUP, 6), (RECENT_GROUP, 3)] {
        let id = app.group_id(1, 1, name).await.to_string();
        let (s, v) = group_contacts(&app, 1, 1, &id, "&limit=2").await;
        assert_eq!(contacts_of(s, &v).len(), 2, "{v}");
        assert_eq!(v["data"]["group"]["contact_count"], n, "{name}: {v}");
        assert_eq!(v["data"]["pagination"]["total"], n, "{name}: {v}");
        assert_eq!(v["data"]["pagination"]["pages"], (n + 1) / 2, "{name}: {v}");
    }
}

// ---------------------------------------------------------------------------------------
// Group contacts: search
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn search_finds_latin_names_case_insensitively_in_name_or_push_name() {
    let app = spawn_app().await;
    let t = days_ago(&app, 1);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            entry("966512345001", Some("Omar Haddad"), None, false, Some(t)),
            entry("966512345002", Some("Lina Smith"), None, false, Some(t)),
            entry("966512345003", None, Some("Kareem Shop"), true, Some(t)),
            entry("966512345004", Some("maria mansour"), None, false, Some(t)),
        ],
    )
    .await;

    assert_eq!(
        search_all_group(&app, 1, 1, "&search=haddad").await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=OMAR&search_type=name").await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=MARIA%20MAN").await,
        vec!["+966512345004"]
    );
    // Push names are searched, too.
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=kAREEM&search_type=name").await,
        vec!["+966512345003"]
    );
    // A substring common to two names.
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=ma").await,
        vec!["+966512345001", "+966512345004"],
        "\"ma\" is in Omar Haddad and maria mansour"
    );
    assert!(
        search_all_group(&app, 1, 1, "&search=nobody")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn search_ignores_case_of_accented_latin_letters() {
    let app = spawn_app().await;
    let t = days_ago(&app, 1);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            entry("966512345001", Some("Élodie Martin"), None, false, Some(t)),
            entry("966512345002", Some("Lina Smith"), None, false, Some(t)),
        ],
    )
    .await;
    let mut misses = Vec::new();
    for search in ["élodie", "ÉLODIE", "Élodie", "MARTIN"] {
        let found = search_all_group(&app, 1, 1, &format!("&search={}", enc(search))).await;
        if found != vec!["+966512345001"] {
            misses.push(format!("{search:?} found {found:?}"));
        }
    }
    assert!(
        misses.is_empty(),
        "searches must find \"Élodie Martin\": {misses:?}"
    );
}

#[tokio::test]
async fn search_finds_arabic_names() {
    let app = spawn_app().await;
    let t = days_ago(&app, 1);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            entry("966512345001", Some("محمد العتيبي"), None, false, Some(t)),
            entry("966512345002", Some("فاطمة القحطاني"), None, false, Some(t)),
            entry("201012345678", None, Some("أحمد الشمري"), false, Some(t)),
            entry("966512345004", Some("Lina Smith"), None, false, Some(t)),
        ],
    )
    .await;

    assert_eq!(
        search_all_group(&app, 1, 1, &format!("&search={}", enc("العتيبي"))).await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(
            &app,
            1,
            1,
            &format!("&search={}&search_type=name", enc("فاطمة"))
        )
        .await,
        vec!["+966512345002"]
    );
    // In the push name.
    assert_eq!(
        search_all_group(&app, 1, 1, &format!("&search={}", enc("الشمري"))).await,
        vec!["+201012345678"]
    );
    // "ال" is in every Arabic name, in none of the Latin ones.
    assert_eq!(
        search_all_group(&app, 1, 1, &format!("&search={}", enc("ال"))).await,
        vec!["+201012345678", "+966512345001", "+966512345002"]
    );
    assert!(
        search_all_group(&app, 1, 1, &format!("&search={}", enc("خالد")))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn search_finds_phone_numbers_by_their_digits() {
    let app = spawn_app().await;
    let t = days_ago(&app, 1);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            person("966512345001", Some("First"), Some(t)),
            person("966512345002", Some("Second"), Some(t)),
            person("201012345678", Some("Third"), Some(t)),
        ],
    )
    .await;

    assert_eq!(
        search_all_group(&app, 1, 1, "&search=45001").await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=2010&search_type=phone").await,
        vec!["+201012345678"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=96651234500&search_type=phone").await,
        vec!["+966512345001", "+966512345002"]
    );
    // Written the way people type numbers: "+", spaces, dashes.
    assert_eq!(
        search_all_group(
            &app,
            1,
            1,
            &format!("&search={}&search_type=phone", enc("+966 51 234-5002"))
        )
        .await,
        vec!["+966512345002"]
    );
    assert!(
        search_all_group(&app, 1, 1, "&search=777777")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn search_type_name_does_not_match_phone_digits() {
    let app = spawn_app().await;
    ready_with_book(
        &app,
        1,
        1,
        vec![person(
            "966512345001",
            Some("Omar"),
            Some(days_ago(&app, 1)),
        )],
    )
    .await;
    assert!(
        search_all_group(&app, 1, 1, "&search=345001&search_type=name")
            .await
            .is_empty(),
        "search_type=name matched a phone number"
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=345001&search_type=all").await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=345001").await,
        vec!["+966512345001"],
        "search_type defaults to all"
    );
}

#[tokio::test]
async fn search_type_phone_does_not_match_names() {
    let app = spawn_app().await;
    ready_with_book(
        &app,
        1,
        1,
        vec![person(
            "966512345001",
            Some("Omar"),
            Some(days_ago(&app, 1)),
        )],
    )
    .await;
    assert!(
        search_all_group(&app, 1, 1, "&search=omar&search_type=phone")
            .await
            .is_empty(),
        "search_type=phone matched a name"
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=omar&search_type=name").await,
        vec!["+966512345001"]
    );
    assert_eq!(
        search_all_group(&app, 1, 1, "&search=omar").await,
        vec!["+966512345001"]
    );
}

#[tokio::test]
async fn search_matches_wildcard_and_regex_characters_literally() {
    let app = spawn_app().await;
    let t = days_ago(&app, 1);
    ready_with_book(
        &app,
        1,
        1,
        vec![
            person("966512345001", Some("50% Discount"), Some(t)),
            person("966512345002", Some("under_score"), Some(t)),
            person("966512345003", Some("Dr. Ali (Clinic)"), Some(t)),
            person("966512345004", Some("Plain Name"), Some(t)),
            person("966512345005", Some("Another Person"), Some(t)),
        ],
    )
    .await;

    let app = &app;
    let find = move |s: &'static str| async move {
        search_all_group(app, 1, 1, &format!("&search={}", enc(s))).await
    };
    assert_eq!(
        find("%").await,
        vec!["+966512345001"],
        "\"%\" must not match everything"
    );
    assert_eq!(
        search_all_group(
            app,
            1,
            1,
            &format!("&search={}&search_type=name", enc("50%"))
        )
        .await,
        vec!["+966512345001"]
    );
    assert_eq!(
        find("_").await,
        vec!["+966512345002"],
        "\"_\" must not match everything"
    );
    assert_eq!(
        find(".").await,
        vec!["+966512345003"],
        "\".\" must not match everything"
    );
    assert_eq!(find("(").await, vec!["+966512345003"]);
    assert_eq!(find("(Clinic)").await, vec!["+966512345003"]);
    // Patterns that would match if read as LIKE or regex, and do not literally.
    assert!(
        find("Pl%e").await.is_empty(),
        "LIKE pattern \"Pl%e\" was not literal"
    );
    assert!(
        find("_nder").await.is_empty(),
        "LIKE pattern \"_nder\" was not literal"
    );
    assert!(find(".*").await.is_empty(), "regex \".*\" was not literal");
    assert!(
        find("Plain.Name").await.is_empty(),
        "regex \"Plain.Name\" was not literal"
    );
    assert!(
        find("^Plain").await.is_empty(),
        "regex \"^Plain\" was not literal"
    );
    assert!(
        find("[A-Z]").await.is_empty(),
        "regex \"[A-Z]\" was not literal"
    );
    assert!(find("\\").await.is_empty());
    assert!(find("'").await.is_empty());
}
