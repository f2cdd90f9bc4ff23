//! What a client of the earlier service sends to the contact and group routes (issue 15):
//! `q` for `search`, contact ids as strings, form bodies, and `has_next`/`has_prev` in every
//! listing's pagination.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ME: &str = "966500000009@s.whatsapp.net";
const FORM: &str = "application/x-www-form-urlencoded";

/// Five contacts of (1, 2), newest activity first: Ahmed, Bob, Carla, Dana, Emad.
async fn five_contacts(app: &TestApp) -> Vec<i64> {
    let names = ["Ahmed", "Bob", "Carla", "Dana", "Emad"];
    let book: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            person(
                &format!("96651000000{}", i + 1),
                Some(name),
                Some(days_ago(app, i as i64 + 1)),
            )
        })
        .collect();
    app.set_phonebook(1, 2, ME, json!(book)).await;
    app.ready_session(1, 2).await;
    let p = app.fetch_and_wait(1, 2).await;
    assert_eq!(p["total_contacts"], 5, "{p}");
    let (status, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

fn names(body: &Value) -> Vec<String> {
    body["data"]["contacts"]
        .as_array()
        .unwrap_or_else(|| panic!("no contacts: {body}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The name column (the third) of a CSV export's rows.
async fn csv_names(app: &TestApp, path: &str) -> Vec<String> {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let text = res.text().await.unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn q_narrows_every_contact_listing_like_search() {
    let app = spawn_app().await;
    five_contacts(&app).await;
    let all = app.group_id(1, 2, ALL_GROUP).await;

    let (status, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&q=ahmed")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["Ahmed"], "{body}");
    assert_eq!(body["data"]["pagination"]["total"], 1, "{body}");

    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{all}/contacts?user_id=1&place_id=2&q=bob&search_type=name"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["Bob"], "{body}");

    assert_eq!(
        csv_names(
            &app,
            "/api/whatsapp/contacts/export.csv?user_id=1&place_id=2&q=carla"
        )
        .await,
        ["Carla"]
    );
    assert_eq!(
        csv_names(
            &app,
            &format!("/api/whatsapp/groups/{all}/export.csv?user_id=1&place_id=2&q=dana")
        )
        .await,
        ["Dana"]
    );

    // Both names for one value are one filter.
    let (status, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2&search=emad&q=%20emad")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body), ["Emad"], "{body}");
}

#[tokio::test]
async fn search_and_q_with_different_values_are_refused_naming_both() {
    let app = spawn_app().await;
    five_contacts(&app).await;
    let all = app.group_id(1, 2, ALL_GROUP).await;
    for path in [
        "/api/whatsapp/contacts/search?user_id=1&place_id=2&search=ahmed&q=bob".to_string(),
        "/api/whatsapp/contacts/export.csv?user_id=1&place_id=2&search=ahmed&q=bob".to_string(),
        format!("/api/whatsapp/groups/{all}/contacts?user_id=1&place_id=2&q=bob&search=ahmed"),
    ] {
        let (status, body) = app.get(&path).await;
        let msg = assert_error(status, &body, 400);
        assert_eq!(
            msg, "Give search or q (the same parameter), not both",
            "{path}"
        );
    }
    let long = "a".repeat(201);
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/search?user_id=1&place_id=2&q={long}"
        ))
        .await;
    let msg = assert_error(status, &body, 400);
    assert!(msg.starts_with("q must be at most 200"), "{msg}");
}

async fn group_members(app: &TestApp, group: i64) -> Vec<i64> {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{group}/contacts?user_id=1&place_id=2&limit=1000"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<i64> = body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn contact_ids_given_as_digit_strings_are_the_same_ids() {
    let app = spawn_app().await;
    let ids = five_contacts(&app).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": "1", "place_id": "2", "name": "Strings",
                   "contact_ids": [ids[0].to_string(), format!(" {} ", ids[1]), ids[2]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["contact_count"], 3, "{body}");
    let group = body["data"]["id"].as_i64().unwrap();
    let mut want = vec![ids[0], ids[1], ids[2]];
    want.sort_unstable();
    assert_eq!(group_members(&app, group).await, want);

    let (status, body) = app
        .put(
            &format!("/api/whatsapp/groups/{group}/contacts"),
            json!({"user_id": 1, "place_id": 2, "contact_ids": [ids[4].to_string()]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(group_members(&app, group).await, [ids[4]]);

    for bad in [
        json!(["12abc"]),
        json!(["0"]),
        json!(["-3"]),
        json!([""]),
        json!(["1.5"]),
    ] {
        let (status, body) = app
            .put(
                &format!("/api/whatsapp/groups/{group}/contacts"),
                json!({"user_id": 1, "place_id": 2, "contact_ids": bad}),
            )
            .await;
        let msg = assert_error(status, &body, 400);
        assert!(msg.starts_with("contact_ids must be"), "{bad}: {msg}");
    }
    assert_eq!(group_members(&app, group).await, [ids[4]], "unchanged");
}

fn form(pairs: &[(&str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn form_bodies_create_groups_replace_members_and_set_tags_and_custom_fields() {
    let app = spawn_app().await;
    let ids = five_contacts(&app).await;
    let body = form(&[
        ("user_id", "1".into()),
        ("place_id", "2".into()),
        ("name", "From a form".into()),
        ("description", "Laravel asForm()".into()),
        ("contact_ids[]", ids[0].to_string()),
        ("contact_ids[]", ids[3].to_string()),
    ]);
    let (status, answer) = app
        .send_raw(Method::POST, "/api/whatsapp/groups", FORM, body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["data"]["name"], "From a form");
    assert_eq!(answer["data"]["description"], "Laravel asForm()");
    let group = answer["data"]["id"].as_i64().unwrap();
    let mut want = vec![ids[0], ids[3]];
    want.sort_unstable();
    assert_eq!(group_members(&app, group).await, want);

    let body = form(&[
        ("user_id", "1".into()),
        ("place_id", "2".into()),
        ("contact_ids[]", ids[1].to_string()),
        ("contact_ids[]", ids[2].to_string()),
        ("contact_ids[]", ids[4].to_string()),
    ]);
    let (status, answer) = app
        .send_raw(
            Method::PUT,
            &format!("/api/whatsapp/groups/{group}/contacts"),
            FORM,
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut want = vec![ids[1], ids[2], ids[4]];
    want.sort_unstable();
    assert_eq!(group_members(&app, group).await, want);

    let body = form(&[
        ("user_id", "1".into()),
        ("place_id", "2".into()),
        ("tags[]", "vip".into()),
        ("tags[]", " riyadh ".into()),
        ("custom_fields[city]", "Riyadh".into()),
        ("custom_fields[visits]", "3".into()),
    ]);
    let (status, answer) = app
        .send_raw(
            Method::PATCH,
            &format!("/api/whatsapp/contacts/{}", ids[0]),
            FORM,
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["tags"], json!(["vip", "riyadh"]), "{answer}");
    assert_eq!(
        answer["data"]["custom_fields"],
        json!({"city": "Riyadh", "visits": "3"}),
        "{answer}"
    );
    let (_, stored) = app
        .get(&format!(
            "/api/whatsapp/contacts/{}?user_id=1&place_id=2",
            ids[0]
        ))
        .await;
    assert_eq!(stored["data"]["tags"], json!(["vip", "riyadh"]), "{stored}");

    // The same rules as JSON: a bad id in a form is named.
    let body = form(&[
        ("user_id", "1".into()),
        ("place_id", "2".into()),
        ("name", "Bad".into()),
        ("contact_ids[]", "twelve".into()),
    ]);
    let (status, answer) = app
        .send_raw(Method::POST, "/api/whatsapp/groups", FORM, body)
        .await;
    assert!(assert_error(status, &answer, 400).starts_with("contact_ids must be"));
}

fn page_flags(body: &Value) -> (bool, bool) {
    let p = &body["data"]["pagination"];
    (
        p["has_next"].as_bool().unwrap_or_else(|| panic!("{body}")),
        p["has_prev"].as_bool().unwrap_or_else(|| panic!("{body}")),
    )
}

#[tokio::test]
async fn listings_say_whether_a_next_and_a_previous_page_exist() {
    let app = spawn_app().await;
    let ids = five_contacts(&app).await;
    let all = app.group_id(1, 2, ALL_GROUP).await;
    // Five contacts, two a page: pages 1, 2 and 3.
    for base in [
        "/api/whatsapp/contacts/search?user_id=1&place_id=2&limit=2".to_string(),
        format!("/api/whatsapp/groups/{all}/contacts?user_id=1&place_id=2&limit=2"),
    ] {
        for (page, want) in [(1, (true, false)), (2, (true, true)), (3, (false, true))] {
            let (status, body) = app.get(&format!("{base}&page={page}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(page_flags(&body), want, "{base} page {page}: {body}");
        }
    }
    // Three groups (two automatic, one manual), one a page.
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "Third", "contact_ids": [ids[0]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (page, want) in [(1, (true, false)), (2, (true, true)), (3, (false, true))] {
        let (status, body) = app
            .get(&format!(
                "/api/whatsapp/groups?user_id=1&place_id=2&limit=1&page={page}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(page_flags(&body), want, "groups page {page}: {body}");
    }
}
