//! Manual groups (create, replace members, delete) and one contact by id: the rules of
//! SPEC "Contacts and groups", tenant isolation, and that automatic groups refuse edits.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const ME: &str = "966500000009@s.whatsapp.net";

/// A linked pair whose fetch stored `n` contacts; their ids, most recently active first.
async fn pair_with_contacts(app: &TestApp, user: i64, place: i64, n: usize) -> Vec<i64> {
    let now = chrono::Utc::now().timestamp();
    let book: Vec<Value> = (0..n)
        .map(|i| {
            json!({"jid": format!("9665{:08}@s.whatsapp.net", 10_000_000 + user * 1_000 + i as i64),
                   "name": format!("Person {i}"), "last_message_at": now - i as i64 * 60})
        })
        .collect();
    app.set_phonebook(user, place, ME, json!(book)).await;
    app.ready_session(user, place).await;
    let p = app.fetch_and_wait(user, place).await;
    assert_eq!(p["total_contacts"], n, "{p}");
    let all = app.group_id(user, place, ALL_GROUP).await;
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{all}/contacts?user_id={user}&place_id={place}&limit=1000"
        ))
        .await;
    body["data"]["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

/// `DELETE /api/whatsapp/groups/{group}?user_id&place_id`.
async fn delete_group(app: &TestApp, user: i64, place: i64, group: i64) -> (StatusCode, Value) {
    app.request(
        Method::DELETE,
        &format!("/api/whatsapp/groups/{group}?user_id={user}&place_id={place}"),
        None,
    )
    .await
}

async fn members(app: &TestApp, user: i64, place: i64, group: i64) -> Vec<i64> {
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/groups/{group}/contacts?user_id={user}&place_id={place}&limit=1000"
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
async fn a_manual_group_is_created_listed_and_holds_exactly_its_members() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 5).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "  VIP  ", "description": "best",
                   "contact_ids": [ids[0], ids[2], ids[2], ids[4]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let g = &body["data"];
    assert_eq!(g["name"], "VIP");
    assert_eq!(g["description"], "best");
    assert_eq!(g["type"], "manual");
    assert_eq!(g["contact_count"], 3);
    assert_eq!(g["filter_applied"], Value::Null);
    let id = g["id"].as_i64().unwrap();
    let mut want = vec![ids[0], ids[2], ids[4]];
    want.sort_unstable();
    assert_eq!(members(&app, 1, 2, id).await, want);
    let (_, list) = app.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
    let names: Vec<&str> = list["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"VIP"), "{list}");
    // The same name again is a conflict, and nothing is made.
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "VIP", "contact_ids": [ids[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["success"], false);
    let (_, list) = app.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
    assert_eq!(list["data"]["pagination"]["total"], 3);
}

#[tokio::test]
async fn bad_group_bodies_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let cases = [
        (
            json!({"user_id": 1, "place_id": 2, "contact_ids": [ids[0]]}),
            "name",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "   ", "contact_ids": [ids[0]]}),
            "name",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "x".repeat(101), "contact_ids": [ids[0]]}),
            "name",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "description": 5, "contact_ids": [ids[0]]}),
            "description",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G"}),
            "contact_ids",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": []}),
            "contact_ids",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": [0]}),
            "contact_ids",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": ["1x"]}),
            "contact_ids",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": [1.5]}),
            "contact_ids",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "name": "G", "contact_ids": (1..=1001).collect::<Vec<i64>>()}),
            "contact_ids",
        ),
        (
            json!({"place_id": 2, "name": "G", "contact_ids": [ids[0]]}),
            "user_id",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/api/whatsapp/groups", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{body} → {answer}"
        );
    }
    let (_, list) = app.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
    assert_eq!(
        list["data"]["pagination"]["total"], 2,
        "nothing was created"
    );
}

#[tokio::test]
async fn another_pairs_contacts_cannot_join_a_group_and_are_named() {
    let app = spawn_app().await;
    let mine = pair_with_contacts(&app, 1, 2, 2).await;
    let theirs = pair_with_contacts(&app, 7, 8, 2).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "Mixed",
                   "contact_ids": [mine[0], theirs[1], 999_999]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&theirs[1].to_string()) && message.contains("999999"),
        "{message}"
    );
    assert!(!message.contains(&format!(" {},", mine[0])), "{message}");
    let (_, list) = app.get("/api/whatsapp/groups?user_id=1&place_id=2").await;
    assert_eq!(list["data"]["pagination"]["total"], 2);
}

#[tokio::test]
async fn members_are_replaced_whole_and_a_deleted_group_leaves_its_contacts() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 4).await;
    let (_, created) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "Team", "contact_ids": [ids[0], ids[1]]}),
        )
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    let path = format!("/api/whatsapp/groups/{id}/contacts");
    let (status, body) = app
        .put(
            &path,
            json!({"user_id": 1, "place_id": 2, "contact_ids": [ids[2], ids[3], ids[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["contact_count"], 3);
    let mut want = vec![ids[1], ids[2], ids[3]];
    want.sort_unstable();
    assert_eq!(members(&app, 1, 2, id).await, want);
    // A refused replacement changes nothing.
    let (status, _) = app
        .put(
            &path,
            json!({"user_id": 1, "place_id": 2, "contact_ids": [ids[0], 424_242]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(members(&app, 1, 2, id).await, want);

    let (status, body) = delete_group(&app, 1, 2, id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({"id": id, "deleted": true}));
    let (status, _) = app
        .get(&format!(
            "/api/whatsapp/groups/{id}/contacts?user_id=1&place_id=2"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = delete_group(&app, 1, 2, id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let all = app.group_id(1, 2, ALL_GROUP).await;
    assert_eq!(members(&app, 1, 2, all).await.len(), 4, "contacts stay");
}

#[tokio::test]
async fn automatic_groups_refuse_edits_and_deletion() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    for name in [ALL_GROUP, RECENT_GROUP] {
        let id = app.group_id(1, 2, name).await;
        let before = members(&app, 1, 2, id).await;
        let (status, body) = app
            .put(
                &format!("/api/whatsapp/groups/{id}/contacts"),
                json!({"user_id": 1, "place_id": 2, "contact_ids": [ids[0]]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("Automatic"),
            "{body}"
        );
        let (status, body) = delete_group(&app, 1, 2, id).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(members(&app, 1, 2, id).await, before);
    }
}

#[tokio::test]
async fn another_tenants_group_and_contact_are_not_found() {
    let app = spawn_app().await;
    let theirs = pair_with_contacts(&app, 7, 8, 1).await;
    pair_with_contacts(&app, 1, 2, 1).await;
    let (_, created) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 7, "place_id": 8, "name": "Theirs", "contact_ids": [theirs[0]]}),
        )
        .await;
    let id = created["data"]["id"].as_i64().unwrap();
    let (status, _) = app
        .put(
            &format!("/api/whatsapp/groups/{id}/contacts"),
            json!({"user_id": 1, "place_id": 2, "contact_ids": [theirs[0]]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = delete_group(&app, 1, 2, id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(members(&app, 7, 8, id).await, theirs);
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/{}?user_id=1&place_id=2",
            theirs[0]
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "Contact not found");
}

#[tokio::test]
async fn one_contact_by_id() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 3).await;
    let (status, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/{}?user_id=1&place_id=2",
            ids[0]
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["data"];
    assert_eq!(c["id"], ids[0]);
    assert_eq!(c["phone_number"], "+966510001000");
    assert_eq!(c["name"], "Person 0");
    assert_eq!(c["tags"], json!([]));
    assert!(c["last_interaction"].is_string());
    for bad in ["0", "abc", "-1", "1.5"] {
        let (status, _) = app
            .get(&format!(
                "/api/whatsapp/contacts/{bad}?user_id=1&place_id=2"
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = app
        .get("/api/whatsapp/contacts/987654?user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The static routes beside it still answer.
    let (status, _) = app
        .get("/api/whatsapp/contacts/progress?user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tags_and_custom_fields_are_set_merged_and_survive_a_fetch() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let path = format!("/api/whatsapp/contacts/{}", ids[0]);
    let patch = |body: Value| app.request(Method::PATCH, &path, Some(body));
    let (status, body) = patch(json!({"user_id": 1, "place_id": 2,
        "tags": [" vip ", "riyadh", "vip"], "custom_fields": {"city": "الرياض", "visits": 3}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["tags"], json!(["vip", "riyadh"]));
    assert_eq!(
        body["data"]["custom_fields"],
        json!({"city": "الرياض", "visits": 3})
    );
    // Fields merge, `null` removes one; tags left out stay as they were.
    let (status, body) = patch(json!({"user_id": 1, "place_id": 2,
        "custom_fields": {"visits": null, "vip_since": "2026"}}))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["tags"], json!(["vip", "riyadh"]));
    assert_eq!(
        body["data"]["custom_fields"],
        json!({"city": "الرياض", "vip_since": "2026"})
    );
    // A second fetch of the same phone book leaves them alone.
    app.fetch_and_wait(1, 2).await;
    let (_, body) = app.get(&format!("{path}?user_id=1&place_id=2")).await;
    assert_eq!(body["data"]["tags"], json!(["vip", "riyadh"]));
    assert_eq!(
        body["data"]["custom_fields"],
        json!({"city": "الرياض", "vip_since": "2026"})
    );
    let all = app.group_id(1, 2, ALL_GROUP).await;
    let (_, list) = app
        .get(&format!("/api/whatsapp/groups/{all}/contacts?user_id=1&place_id=2&search=Person 0&search_type=name"))
        .await;
    assert_eq!(
        list["data"]["contacts"][0]["tags"],
        json!(["vip", "riyadh"]),
        "{list}"
    );
}

#[tokio::test]
async fn bad_contact_patches_change_nothing() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 1).await;
    let theirs = pair_with_contacts(&app, 7, 8, 1).await;
    let path = format!("/api/whatsapp/contacts/{}", ids[0]);
    let long = "x".repeat(51);
    let cases = [
        (json!({"user_id": 1, "place_id": 2}), "tags"),
        (
            json!({"user_id": 1, "place_id": 2, "tags": null, "custom_fields": {"a": 1}}),
            "tags",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "tags": ["a"], "custom_fields": null}),
            "custom_fields",
        ),
        (json!({"user_id": 1, "place_id": 2, "tags": "vip"}), "tags"),
        (json!({"user_id": 1, "place_id": 2, "tags": ["  "]}), "tags"),
        (json!({"user_id": 1, "place_id": 2, "tags": [long]}), "tags"),
        (
            json!({"user_id": 1, "place_id": 2, "tags": (0..51).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "tags",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "custom_fields": ["a"]}),
            "custom_fields",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "custom_fields": {"a": {"b": 1}}}),
            "custom_fields",
        ),
        (
            json!({"user_id": 1, "place_id": 2, "custom_fields": {"a": "y".repeat(1001)}}),
            "custom_fields",
        ),
        (json!({"place_id": 2, "tags": ["vip"]}), "user_id"),
    ];
    for (body, field) in cases {
        let (status, answer) = app.request(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(field),
            "{body} → {answer}"
        );
    }
    let (status, _) = app
        .request(
            Method::PATCH,
            &format!("/api/whatsapp/contacts/{}", theirs[0]),
            Some(json!({"user_id": 1, "place_id": 2, "tags": ["mine"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, body) = app.get(&format!("{path}?user_id=1&place_id=2")).await;
    assert_eq!(body["data"]["tags"], json!([]));
    assert_eq!(body["data"]["custom_fields"], json!({}));
    let (_, body) = app
        .get(&format!(
            "/api/whatsapp/contacts/{}?user_id=7&place_id=8",
            theirs[0]
        ))
        .await;
    assert_eq!(body["data"]["tags"], json!([]));
}
