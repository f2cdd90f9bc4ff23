//! The dashboard in a real browser: the server binary on the sim engine and a headless
//! Chromium (testkit::browser) walking what a person does, in Arabic, against the hooks of
//! the dashboard's DOM contract: sign in (a wrong key first), link a number by its QR code,
//! the phone scans, fetch the contacts, the groups and a group's contacts, send a message,
//! then a tenant key's narrower view. One test function, so the browser and the server start
//! once. Screenshots of each step go to `target/dashboard-screenshots/`.

mod server;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::api::{ALL_GROUP, RECENT_GROUP};
use testkit::browser::{Browser, ascii_digits};

use server::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_links_a_number_fetches_its_contacts_and_sends_from_the_dashboard_in_arabic() {
    let server = Server::start();
    let browser = Browser::start("ar").await;
    let base = server.base.clone();

    // The pair's phone book, set before linking as a phone would hold it.
    server
        .admin(
            Method::PUT,
            "/api/sim/phonebook",
            Some(json!({"user_id": USER, "place_id": PLACE,
                        "me": "966511111111@s.whatsapp.net", "push_name": "متجر الورد",
                        "entries": phone_book()})),
        )
        .await;

    // ---- The page loads without a key, in Arabic (the browser's language), right to left.
    browser.goto(&format!("{base}/")).await;
    browser.wait_visible(WAIT, "#signin").await;
    let html = browser
        .js(
            "return [document.documentElement.lang, document.documentElement.dir];",
            vec![],
        )
        .await;
    assert_eq!(
        html,
        json!(["ar", "rtl"]),
        "the page follows navigator.languages"
    );
    // Gone if anything reloads the page: `ready` must arrive without a reload.
    browser
        .js("window.__wamNoReload = true; return true;", vec![])
        .await;
    shot(&browser, "signin").await;

    // ---- A wrong key: the API's 401 message, in place.
    let wrong = "not-a-key-of-this-server-000";
    let (status, refusal) = server
        .call_as(wrong, Method::GET, "/api/whatsapp/sessions?limit=1", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refusal}");
    let message = refusal["message"]
        .as_str()
        .expect("an error message")
        .to_string();
    browser.fill("#api-key", wrong).await;
    browser.click("#signin-submit").await;
    let shown = browser
        .wait_js(WAIT, "the 401 message shown", SHOWN_ERROR, vec![])
        .await;
    assert!(
        shown.as_str().unwrap_or_default().contains(&message),
        "the page shows the API's message {message:?}, not {shown}"
    );
    shot(&browser, "wrong-key").await;

    // ---- The admin key signs in.
    browser.fill("#api-key", ADMIN_KEY).await;
    browser.click("#signin-submit").await;
    browser.wait_visible(WAIT, "#whoami").await;
    browser.wait_visible(WAIT, "#signout").await;
    browser.wait_visible(WAIT, "nav a[data-nav=\"keys\"]").await;
    shot(&browser, "signed-in-admin").await;

    // ---- Link a number: init from the page, the QR code shows and rotates.
    browser.click("nav a[data-nav=\"link\"]").await;
    browser.wait_visible(WAIT, "#view-link").await;
    browser.fill("#link-user", &USER.to_string()).await;
    browser.fill("#link-place", &PLACE.to_string()).await;
    browser.click("#link-start").await;
    let first_qr = browser
        .wait_js(
            WAIT,
            "the QR code rendered",
            "const i = document.querySelector('img#qr-img');
             return i && i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/')
                 ? i.src : null;",
            vec![],
        )
        .await;
    browser.wait_visible(WAIT, "#qr-countdown").await;
    let countdown = browser.text("#qr-countdown").await.unwrap_or_default();
    assert!(
        countdown.chars().any(|c| c.is_ascii_digit()),
        "a countdown in seconds: {countdown:?}"
    );
    shot(&browser, "qr-code").await;
    browser
        .wait_js(
            WAIT,
            "the QR code replaced when it rotates",
            "const i = document.querySelector('img#qr-img');
             return i && i.src !== arguments[0] && i.complete && i.naturalWidth > 0;",
            vec![first_qr.clone()],
        )
        .await;
    // What the page shows is the code the server shows (they agree between two rotations).
    let path = format!("/api/whatsapp/status?user_id={USER}&place_id={PLACE}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shown = browser
            .js(
                "const i = document.querySelector('img#qr-img'); return i ? i.src : null;",
                vec![],
            )
            .await;
        let status = server.admin(Method::GET, &path, None).await;
        if status["qr_code"] == shown {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page's QR code never matched the server's ({})",
            status["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shot(&browser, "qr-code-rotated").await;

    // ---- The phone scans; the page follows to `ready` by itself.
    server
        .admin(
            Method::POST,
            "/api/sim/scan",
            Some(json!({"user_id": USER, "place_id": PLACE})),
        )
        .await;
    browser
        .wait_visible(WAIT, "#link-status[data-status=\"ready\"]")
        .await;
    let kept = browser
        .js("return window.__wamNoReload === true;", vec![])
        .await;
    assert_eq!(kept, json!(true), "`ready` arrived without a reload");
    shot(&browser, "linked-ready").await;

    // ---- The session's page: fetch the contacts, the bar reaches 100.
    browser.click("#link-open-session").await;
    browser.wait_visible(WAIT, "#view-session").await;
    browser
        .wait_visible(WAIT, "#session-status[data-status=\"ready\"]")
        .await;
    shot(&browser, "session").await;
    browser.click("#fetch-btn").await;
    browser
        .wait_js(
            WAIT,
            "the progress bar at 100",
            "const p = document.querySelector('progress#fetch-progress');
             return !!p && p.max === 100 && p.value === 100;",
            vec![],
        )
        .await;
    let percent = browser.text("#fetch-percent").await.unwrap_or_default();
    assert!(
        percent.contains("100"),
        "#fetch-percent says 100: {percent:?}"
    );
    let progress = server
        .admin(
            Method::GET,
            &format!("/api/whatsapp/contacts/progress?user_id={USER}&place_id={PLACE}"),
            None,
        )
        .await;
    assert_eq!(progress["total_contacts"], 12, "{progress}");
    browser
        .wait_js(
            WAIT,
            "the fetch's summary",
            "const s = document.querySelector('#fetch-summary');
             return s && s.innerText.trim() !== '' ? s.innerText : null;",
            vec![],
        )
        .await;
    let summary = browser.text("#fetch-summary").await.unwrap_or_default();
    assert!(
        summary.contains("12"),
        "the summary counts the 12 imported: {summary:?}"
    );
    shot_at(&browser, "#fetch-summary", "fetched").await;

    // ---- The groups, with the counts the API gives.
    browser.click("#open-groups").await;
    browser
        .wait_visible(WAIT, "#groups-table tbody tr[data-group-id]")
        .await;
    let groups = server
        .admin(
            Method::GET,
            &format!("/api/whatsapp/groups?user_id={USER}&place_id={PLACE}"),
            None,
        )
        .await;
    let groups = groups["groups"].as_array().expect("groups").clone();
    let count_of = |name: &str| {
        groups
            .iter()
            .find(|g| g["name"] == name)
            .map(|g| g["contact_count"].as_i64().unwrap_or(-1))
            .unwrap_or_else(|| panic!("no group {name} in {groups:?}"))
    };
    assert_eq!(count_of(ALL_GROUP), 12);
    assert_eq!(count_of(RECENT_GROUP), 5, "the chats of the last 90 days");
    for g in &groups {
        let id = id_text(&g["id"]);
        let shown = browser
            .wait_js(
                WAIT,
                &format!("group {} in the table", g["name"]),
                "const r = document.querySelector(`#groups-table tbody tr[data-group-id=\"${arguments[0]}\"]`);
                 const c = r && r.querySelector('[data-field=\"contact_count\"]');
                 return c ? [r.dataset.groupName, c.innerText] : null;",
                vec![json!(id)],
            )
            .await;
        assert_eq!(shown[0], g["name"], "data-group-name");
        assert_eq!(
            ascii_digits(shown[1].as_str().unwrap_or_default()).trim(),
            g["contact_count"].to_string(),
            "the count of {}",
            g["name"]
        );
    }
    shot(&browser, "groups").await;

    // ---- A group's contacts: Arabic names right to left, a search narrows the rows.
    let all_id = groups
        .iter()
        .find(|g| g["name"] == ALL_GROUP)
        .map(|g| id_text(&g["id"]))
        .expect("the all-numbers group");
    let link = format!("#groups-table tbody tr[data-group-id=\"{all_id}\"] a");
    browser.click(&link).await;
    browser.wait_visible(WAIT, "#view-group").await;
    browser
        .wait_js(
            WAIT,
            "the group's 12 contacts listed",
            "return document.querySelectorAll('#contacts-table tbody tr[data-contact-id]').length === 12;",
            vec![],
        )
        .await;
    let layout = browser
        .js(
            "const r = [...document.querySelectorAll('#contacts-table tbody tr[data-contact-id]')]
                 .find(r => r.querySelector('[data-field=\"name\"]').innerText.includes('فاطمة'));
             const n = r.querySelector('[data-field=\"name\"]');
             const p = r.querySelector('[data-field=\"phone_number\"]');
             return [getComputedStyle(n).direction, getComputedStyle(p).direction, p.innerText];",
            vec![],
        )
        .await;
    assert_eq!(
        layout[0], "rtl",
        "an Arabic name is laid out right to left: {layout}"
    );
    assert_eq!(layout[1], "ltr", "a phone number left to right: {layout}");
    assert!(
        layout[2]
            .as_str()
            .unwrap_or_default()
            .contains("966500000002"),
        "{layout}"
    );
    shot(&browser, "group-contacts").await;
    browser.fill("#contacts-search", "فاطمة").await;
    let rows = browser
        .wait_js(
            WAIT,
            "the search narrowing the rows to one",
            "const rs = [...document.querySelectorAll('#contacts-table tbody tr[data-contact-id]')];
             return rs.length === 1 ? rs.map(r => r.innerText) : null;",
            vec![],
        )
        .await;
    assert!(
        rows[0]
            .as_str()
            .unwrap_or_default()
            .contains("فاطمة الزهراني"),
        "{rows}"
    );
    shot(&browser, "group-search").await;

    // ---- Send a message to a contact; it shows as `sent` in the log.
    browser.goto(&format!("{base}/#/send/{USER}/{PLACE}")).await;
    browser.wait_visible(WAIT, "#view-send").await;
    browser.select("#send-kind", "contact").await;
    browser.fill("#send-contact", "+966500000002").await;
    let text = "مرحبا، وصلت طلبيتك";
    browser.fill("#send-text", text).await;
    shot(&browser, "send-form").await;
    browser.click("#send-submit").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let shown_id = loop {
        let sent = browser
            .js(
                "const r = document.querySelector('#messages-table tbody tr[data-status=\"sent\"][data-message-id]');
                 return r ? r.dataset.messageId : null;",
                vec![],
            )
            .await;
        if let Some(id) = sent.as_str() {
            break id.to_string();
        }
        if let Some(err) = browser.js(SHOWN_ERROR, vec![]).await.as_str() {
            panic!("the send failed on the page: {err}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the message never showed as sent"
        );
        // The log follows the event stream; asking for it again costs nothing if it did.
        browser
            .js("const b = document.querySelector('#messages-refresh'); if (b) b.click(); return true;", vec![])
            .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let log = server
        .admin(
            Method::GET,
            &format!("/api/whatsapp/messages?user_id={USER}&place_id={PLACE}"),
            None,
        )
        .await;
    let sent = log["messages"].as_array().cloned().unwrap_or_default();
    assert!(
        sent.iter()
            .any(|m| id_text(&m["id"]) == shown_id || m["message_id"] == shown_id.as_str()),
        "the page's message {shown_id} is the API's: {log}"
    );
    let outbox = server
        .admin(
            Method::GET,
            &format!("/api/sim/outbox?user_id={USER}&place_id={PLACE}"),
            None,
        )
        .await;
    let out = outbox["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(out.len(), 1, "one message left the phone: {outbox}");
    assert_eq!(out[0]["text"], text, "{outbox}");
    shot_at(&browser, "#messages-table", "message-sent").await;

    // ---- Another user's pair, and a tenant key for the first user.
    server
        .admin(
            Method::POST,
            "/api/whatsapp/init",
            Some(json!({"user_id": OTHER_USER, "place_id": PLACE})),
        )
        .await;
    browser.goto(&format!("{base}/#/sessions")).await;
    browser.wait_visible(WAIT, "#view-sessions").await;
    browser
        .wait_js(
            WAIT,
            "the admin's list holding both users' sessions",
            "const us = [...document.querySelectorAll('#sessions-table tbody tr[data-user-id]')].map(r => r.dataset.userId);
             return us.includes(arguments[0]) && us.includes(arguments[1]);",
            vec![json!(USER.to_string()), json!(OTHER_USER.to_string())],
        )
        .await;
    shot(&browser, "sessions-admin").await;
    let key = server
        .admin(
            Method::POST,
            "/api/admin/keys",
            Some(json!({"user_id": USER, "name": "browser tenant"})),
        )
        .await;
    let tenant_key = key["key"].as_str().expect("the new key").to_string();

    browser.click("#signout").await;
    browser.wait_visible(WAIT, "#signin").await;
    browser.fill("#api-key", &tenant_key).await;
    browser.click("#signin-submit").await;
    browser.wait_visible(WAIT, "#whoami").await;
    let whoami = browser.text("#whoami").await.unwrap_or_default();
    assert!(
        whoami.contains(&USER.to_string()),
        "#whoami names user {USER}: {whoami:?}"
    );
    browser.goto(&format!("{base}/#/sessions")).await;
    let users = browser
        .wait_js(
            WAIT,
            "the tenant's own session listed",
            "const us = [...document.querySelectorAll('#sessions-table tbody tr[data-user-id]')].map(r => r.dataset.userId);
             return us.includes(arguments[0]) ? us : null;",
            vec![json!(USER.to_string())],
        )
        .await;
    assert!(
        users
            .as_array()
            .is_some_and(|us| us.iter().all(|u| u == &json!(USER.to_string()))),
        "a tenant sees only its own sessions: {users}"
    );
    let hidden = browser
        .js(
            "const shown = s => { const e = document.querySelector(s); return !!e && e.getClientRects().length > 0; };
             return [shown('nav a[data-nav=\"keys\"]'), shown('nav a[data-nav=\"nodes\"]'), shown('#filter-user')];",
            vec![],
        )
        .await;
    assert_eq!(
        hidden,
        json!([false, false, false]),
        "admin nav and the user filter hidden for a tenant"
    );
    shot(&browser, "sessions-tenant").await;

    // ---- Switched to English: left to right.
    browser.select("#lang", "en").await;
    browser
        .wait_js(
            WAIT,
            "the page in English, left to right",
            "return document.documentElement.lang === 'en' && document.documentElement.dir === 'ltr';",
            vec![],
        )
        .await;
    browser.screenshot("sessions-tenant-english").await;

    browser.close().await;
}
