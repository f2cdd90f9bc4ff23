//! `X-Request-Id`: on every answer, the caller's when sane, and on every log line of the
//! request (with the method and the route template: see `process::observability`).

use reqwest::StatusCode;

use crate::helpers::*;

async fn id_of(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no X-Request-Id on a {} answer", res.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

fn is_uuid_v4(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
        && groups[2].starts_with('4')
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_any_other_replaced_by_a_new_one() {
    let app = spawn_app_with_admin_key().await;
    let get = |id: Option<&[u8]>| {
        let mut req = app
            .client
            .get(format!("{}/api/health", app.base))
            .header("x-api-key", ADMIN_KEY);
        if let Some(id) = id {
            req = req.header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(id).unwrap(),
            );
        }
        req.send()
    };
    let res = get(None).await.unwrap();
    let first = id_of(&res).await;
    assert!(is_uuid_v4(&first), "{first}");
    let second = id_of(&get(None).await.unwrap()).await;
    assert_ne!(first, second, "each request gets its own id");

    for sane in [
        "abc-123".to_owned(),
        "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        "trace:span.1_x".to_owned(),
        "x".repeat(128),
    ] {
        let res = get(Some(sane.as_bytes())).await.unwrap();
        assert_eq!(id_of(&res).await, sane);
    }
    let too_long = "x".repeat(129);
    for insane in [
        too_long.as_bytes(),
        b"",
        b"a\tb",
        b"two words",
        b"<script>",
        "caf\u{e9}".as_bytes(),
    ] {
        let res = get(Some(insane)).await.unwrap();
        let id = id_of(&res).await;
        assert!(is_uuid_v4(&id), "{insane:?} became {id}");
    }
}

#[tokio::test]
async fn refusals_and_unknown_routes_carry_the_request_id_too() {
    let app = spawn_app_with_admin_key().await;
    let url = |p: &str| format!("{}{p}", app.base);
    let cases = [
        // No key.
        (
            app.client
                .get(url("/api/whatsapp/status?user_id=1&place_id=1")),
            StatusCode::UNAUTHORIZED,
        ),
        // No such route.
        (
            app.client
                .get(url("/api/nothing/here"))
                .header("x-api-key", ADMIN_KEY),
            StatusCode::NOT_FOUND,
        ),
        // Wrong method.
        (
            app.client
                .delete(url("/api/whatsapp/init"))
                .header("x-api-key", ADMIN_KEY),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // Too large a body.
        (
            app.client
                .post(url("/api/whatsapp/init"))
                .header("x-api-key", ADMIN_KEY)
                .header("content-type", "application/json")
                .body(vec![b' '; 200 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (i, (req, want)) in cases.into_iter().enumerate() {
        let mine = format!("refusal-{i}");
        let res = req.header("x-request-id", &mine).send().await.unwrap();
        assert_eq!(res.status(), want);
        assert_eq!(id_of(&res).await, mine, "{want}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["success"], false, "{body}");
    }
}
