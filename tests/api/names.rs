//! Names: what a caller sets is stored in NFC and may hold no control or bidi override
//! characters; group names of a pair may not look alike (case, invisible characters), so
//! no manual group imitates an automatic one (also on a SQLite database from before that
//! rule: `names_upgrade.rs`); names that come from phones are kept, minus their control
//! characters.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::messaging::pair_with_contacts;

const RULE: &str = "must not contain control characters or bidirectional override characters";
const PROSE_RULE: &str = "must not contain control characters (other than line breaks and \
                          tabs) or bidirectional override characters";
pub(crate) const TAKEN: &str = "A group with this name already exists for this user and place";
const BIDI: [char; 9] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];
/// NUL, other C0 controls, DEL, a C1 control (NEL).
const CONTROLS: [char; 9] = [
    '\0', '\u{1}', '\u{7}', '\u{1B}', '\u{7F}', '\u{85}', '\n', '\r', '\t',
];

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn patch(app: &TestApp, contact: i64, body: Value) -> (StatusCode, Value) {
    app.request(
        Method::PATCH,
        &format!("/api/whatsapp/contacts/{contact}"),
        Some(body),
    )
    .await
}

/// Every place a caller names something, with `bad` put there, and the field the answer
/// must name. Validation comes before any lookup, so no session or contact is needed.
async fn refusals(app: &TestApp, bad: &str) -> Vec<(String, StatusCode, Value)> {
    let pair = json!({"user_id": 1, "place_id": 2});
    let with = |extra: Value| {
        let mut b = pair.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let to = "+966551234567";
    let mut out = Vec::new();
    let mut push = |field: &str, (s, v): (StatusCode, Value)| out.push((field.to_string(), s, v));
    push(
        "name",
        app.post(
            "/api/whatsapp/groups",
            with(json!({"name": bad, "contact_ids": [1]})),
        )
        .await,
    );
    push(
        "tags",
        patch(app, 1, with(json!({"tags": ["ok", bad]}))).await,
    );
    push(
        "custom_fields names",
        patch(app, 1, with(json!({"custom_fields": {bad: "v"}}))).await,
    );
    push(
        "custom_fields.note",
        patch(app, 1, with(json!({"custom_fields": {"note": bad}}))).await,
    );
    for route in [
        "contacts/search",
        "contacts/export.csv",
        "groups/1/contacts",
        "groups/1/export.csv",
    ] {
        let path = format!(
            "/api/whatsapp/{route}?user_id=1&place_id=2&tags=vip,{}",
            enc(bad)
        );
        push("tags", app.get(&path).await);
    }
    push(
        "name",
        app.post("/api/admin/keys", json!({"user_id": 1, "name": bad}))
            .await,
    );
    push(
        "variables.who",
        app.post(
            "/api/whatsapp/send-message",
            with(json!({"phone_number": to, "text": "Hi {who}", "variables": {"who": bad}})),
        )
        .await,
    );
    push(
        "recipients[0].name",
        app.post(
            "/api/whatsapp/send-bulk-messages",
            with(json!({"recipients": [{"phone_number": to, "name": bad}], "text": "Hi {name}"})),
        )
        .await,
    );
    push(
        "recipients[1].variables.who",
        app.post(
            "/api/whatsapp/send-bulk-messages",
            with(json!({"recipients": [to, {"phone_number": "+966551234568",
                        "variables": {"who": bad}}], "text": "Hi"})),
        )
        .await,
    );
    out
}

#[tokio::test]
async fn every_kind_of_name_refuses_control_and_bidi_override_characters_naming_the_field() {
    let app = spawn_app().await;
    for c in CONTROLS.into_iter().chain(BIDI) {
        let bad = format!("VIP{c}x");
        for (field, status, body) in refusals(&app, &bad).await {
            let msg = assert_error(status, &body, 400);
            assert_eq!(msg, format!("{field} {RULE}"), "U+{:04X}", c as u32);
        }
    }
}

#[tokio::test]
async fn a_description_may_break_lines_but_holds_no_other_control_or_bidi_character() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 1).await;
    for c in CONTROLS.into_iter().chain(BIDI) {
        let (status, body) = app
            .post(
                "/api/whatsapp/groups",
                json!({"user_id": 1, "place_id": 2, "name": format!("G{}", c as u32),
                       "description": format!("line{c}x"), "contact_ids": [ids[0]]}),
            )
            .await;
        if matches!(c, '\n' | '\r' | '\t') {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["data"]["description"], format!("line{c}x"));
        } else {
            let msg = assert_error(status, &body, 400);
            assert_eq!(
                msg,
                format!("description {PROSE_RULE}"),
                "U+{:04X}",
                c as u32
            );
        }
    }
}

#[tokio::test]
async fn names_sent_decomposed_are_stored_composed() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let cafe = "Cafe\u{301}";
    assert_ne!(cafe, "Café", "the test sends e + combining acute");

    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": cafe,
                   "description": "Cre\u{300}me\nbru\u{302}le\u{301}e", "contact_ids": [ids[0]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["name"], "Café");
    assert_eq!(body["data"]["description"], "Crème\nbrûlée");
    // The composed spelling is the same name.
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 2, "name": "Café", "contact_ids": [ids[0]]}),
        )
        .await;
    assert_eq!(assert_error(status, &body, 409), TAKEN);

    let (status, body) = patch(
        &app,
        ids[0],
        json!({"user_id": 1, "place_id": 2, "tags": [cafe, "Café"],
               "custom_fields": {cafe: "The\u{301}"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["tags"], json!(["Café"]), "one tag, composed");
    assert_eq!(body["data"]["custom_fields"], json!({"Café": "Thé"}));
    // A filter finds the tag however it is typed.
    for typed in [cafe, "Café"] {
        let (status, body) = app
            .get(&format!(
                "/api/whatsapp/contacts/search?user_id=1&place_id=2&tags={}",
                enc(typed)
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let found: Vec<i64> = body["data"]["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        assert_eq!(found, [ids[0]], "{typed:?}");
    }

    let (status, body) = app
        .post("/api/admin/keys", json!({"user_id": 1, "name": cafe}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["name"], "Café");

    let (status, body) = app
        .post(
            "/api/whatsapp/send-message",
            json!({"user_id": 1, "place_id": 2, "contact_id": ids[1], "text": "Hi {who}",
                   "variables": {"who": cafe}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["data"]["text"], "Hi Café");
}

pub(crate) async fn create_group(app: &TestApp, name: &str, ids: &[i64]) -> (StatusCode, Value) {
    app.post(
        "/api/whatsapp/groups",
        json!({"user_id": 1, "place_id": 2, "name": name, "contact_ids": ids}),
    )
    .await
}

/// Names that read as one of the pair's groups: the automatic ones with an invisible
/// character, and `Shop` in other case or with invisible characters.
pub(crate) fn lookalikes() -> Vec<String> {
    let (all, recent) = (ALL_GROUP, RECENT_GROUP);
    vec![
        format!("{all}\u{200D}"),
        format!("\u{FEFF}{all}"),
        recent.replacen(' ', "\u{200B} ", 1),
        format!("{recent}\u{2060}"),
        "SHOP".into(),
        "shop".into(),
        "sh\u{200B}op".into(),
        "S\u{00AD}hop\u{200C}".into(),
        "\u{200E}Shop\u{061C}".into(),
    ]
}

#[tokio::test]
async fn group_names_that_only_look_different_are_taken() {
    let app = spawn_app().await;
    let ids = pair_with_contacts(&app, 1, 2, 2).await;
    let (status, body) = create_group(&app, "Shop", &ids).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for name in lookalikes() {
        let (status, body) = create_group(&app, &name, &ids).await;
        assert_eq!(assert_error(status, &body, 409), TAKEN, "{name:?}");
    }
    // Another pair has none of these groups.
    let other = pair_with_contacts(&app, 1, 3, 1).await;
    let (status, body) = app
        .post(
            "/api/whatsapp/groups",
            json!({"user_id": 1, "place_id": 3, "name": "SHOP", "contact_ids": other}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A zero-width character that makes no lookalike is kept as it was sent: Persian
    // writes "می‌خواهم" with a non-joiner, and an emoji sequence needs its joiner.
    for name in ["می\u{200C}خواهم", "Team \u{1F469}\u{200D}\u{1F4BB}"] {
        let (status, body) = create_group(&app, name, &ids).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["name"], name);
    }
    // Nothing but invisible characters is no name.
    let (status, body) = create_group(&app, "\u{200B}\u{2060}", &ids).await;
    assert!(assert_error(status, &body, 400).starts_with("name must be"));

    let names: Vec<Value> = app
        .groups(1, 2)
        .await
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

#[tokio::test]
async fn names_from_the_phone_are_kept_without_their_control_characters() {
    let app = spawn_app().await;
    let (status, body) = app
        .put(
            "/api/sim/phonebook",
            json!({"user_id": 1, "place_id": 2, "me": "966500000009@s.whatsapp.net",
                   "push_name": "Test\u{7} Shop\n",
                   "entries": [{"jid": "966551230001@s.whatsapp.net",
                                "name": "Ali\u{0}\r\nAhmed \u{202E}\u{200D}",
                                "push_name": "\u{1B}[31mAli", "is_business": false}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let st = app.ready_session(1, 2).await;
    assert_eq!(st["name"], "Test Shop");

    app.fetch_and_wait(1, 2).await;
    let (status, body) = app
        .get("/api/whatsapp/contacts/search?user_id=1&place_id=2")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["data"]["contacts"][0];
    // Only the controls go: the bidi override and the joiner are the phone's to show.
    assert_eq!(c["name"], "AliAhmed \u{202E}\u{200D}");
    assert_eq!(c["push_name"], "[31mAli");

    let (status, body) = app
        .post(
            "/api/sim/incoming",
            json!({"user_id": 1, "place_id": 2, "from": "+966551230002",
                   "push_name": "Sa\u{0}ra\n", "text": "marker-7731"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut resp = app
        .client
        .get(format!("{}/api/whatsapp/events?user_id=1", app.base))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    let seen = read_until(&mut resp, "marker-7731").await;
    let line = seen
        .lines()
        .find(|l| l.contains("marker-7731"))
        .and_then(|l| l.strip_prefix("data:"))
        .expect("a data line");
    let event: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(event["data"]["push_name"], "Sara", "{event}");
}
