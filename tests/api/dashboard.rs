//! The dashboard's files: served without a key (they hold no data), cached by ETag and
//! version, gzipped when asked, under a strict Content-Security-Policy; the API behind them
//! still needs its key. (What the page does in a browser is the browser test's.)

use std::collections::BTreeSet;
use std::io::Read;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;

const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; \
    style-src 'self'; script-src 'self'; frame-ancestors 'none'";

struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8")
    }
}

/// A request without any key, as a browser opening the page sends it.
async fn fetch(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = app.client.get(format!("{}{path}", app.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request");
    Got {
        status: res.status(),
        headers: res.headers().clone(),
        body: res.bytes().await.expect("body").to_vec(),
    }
}

/// Every `"./assets/<file>"` of the page, or `'./<file>'` of a module, with its query.
fn references(text: &str, prefix: &str, quote: char) -> BTreeSet<String> {
    let needle = format!("{quote}{prefix}");
    text.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &text[i + needle.len()..];
            rest[..rest.find(quote).expect("closing quote")].to_owned()
        })
        .collect()
}

fn content_type_for(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some(ext) if ext.starts_with("js") => "text/javascript",
        Some(ext) if ext.starts_with("css") => "text/css",
        other => panic!("unexpected asset {file} ({other:?})"),
    }
}

#[tokio::test]
async fn the_page_answers_html_without_a_key_under_the_csp() {
    let app = spawn_app_with_admin_key().await;
    for path in ["/", "/?lang=ar"] {
        let got = fetch(&app, path, &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert!(got.header(header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(got.header(header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(got.header(header::CACHE_CONTROL), "no-cache");
        let html = got.text();
        for hook in [
            "id=\"signin\"",
            "id=\"api-key\"",
            "id=\"lang\"",
            "dialog id=\"confirm\"",
        ] {
            assert!(html.contains(hook), "{hook} missing from the page");
        }
        // Nothing the page loads comes from elsewhere, and no script runs inline.
        for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!html.contains(outside), "the page loads {outside}…");
        }
        assert!(!html.contains("<script>"), "inline script");
    }
}

#[tokio::test]
async fn every_file_the_page_and_its_modules_reference_loads_without_a_key() {
    let app = spawn_app_with_admin_key().await;
    let html = fetch(&app, "/", &[]).await.text();
    let mut todo: Vec<String> = references(&html, "./assets/", '"').into_iter().collect();
    assert!(todo.len() >= 2, "the page references its files: {todo:?}");
    let mut seen = BTreeSet::new();
    while let Some(file) = todo.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        let (name, query) = file.split_once('?').expect("every reference is versioned");
        assert!(query.starts_with("v="), "{file}");
        let got = fetch(&app, &format!("/assets/{file}"), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{file}: {}", got.text());
        assert!(
            got.header(header::CONTENT_TYPE)
                .starts_with(content_type_for(name)),
            "{file}: {}",
            got.header(header::CONTENT_TYPE)
        );
        assert_eq!(
            got.header(header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{file}"
        );
        if name.ends_with(".js") {
            let text = got.text();
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{file}"
            );
            todo.extend(references(&text, "./", '\''));
        }
    }
    // The page's modules reach every view's module.
    for module in [
        "app.js", "api.js", "sse.js", "i18n.js", "link.js", "send.js",
    ] {
        assert!(
            seen.iter().any(|f| f.starts_with(&format!("{module}?"))),
            "{module} never loaded: {seen:?}"
        );
    }
}

#[tokio::test]
async fn an_etag_answers_304_and_a_stale_version_is_not_cached_forever() {
    let app = spawn_app_with_admin_key().await;
    let html = fetch(&app, "/", &[]).await.text();
    let css = references(&html, "./assets/", '"')
        .into_iter()
        .find(|f| f.starts_with("app.css?"))
        .expect("the page loads app.css");
    for path in ["/".to_string(), format!("/assets/{css}")] {
        let first = fetch(&app, &path, &[]).await;
        let etag = first.header(header::ETAG).to_owned();
        assert!(!etag.is_empty(), "{path} has no ETag");
        let again = fetch(&app, &path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header(header::ETAG), etag);
        let listed = format!("\"other\", {etag}");
        let again = fetch(&app, &path, &[("if-none-match", &listed)]).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        let other = fetch(&app, &path, &[("if-none-match", "\"other\"")]).await;
        assert_eq!(other.status, StatusCode::OK, "{path}");
        assert_eq!(other.body, first.body);
    }
    // A URL of another release may be cached, but not as immutable.
    for path in ["/assets/app.css?v=0000", "/assets/app.css"] {
        let got = fetch(&app, path, &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_eq!(got.header(header::CACHE_CONTROL), "no-cache", "{path}");
    }
}

#[tokio::test]
async fn files_are_gzipped_only_for_a_client_that_accepts_it() {
    let app = spawn_app_with_admin_key().await;
    let html = fetch(&app, "/", &[]).await;
    let app_js = references(&html.text(), "./assets/", '"')
        .into_iter()
        .find(|f| f.starts_with("app.js?"))
        .expect("the page loads app.js");
    for path in ["/".to_string(), format!("/assets/{app_js}")] {
        let plain = fetch(&app, &path, &[]).await;
        assert_eq!(plain.header(header::CONTENT_ENCODING), "", "{path}");
        assert!(plain.header(header::VARY).contains("accept-encoding"));
        let gz = fetch(&app, &path, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(gz.header(header::CONTENT_ENCODING), "gzip", "{path}");
        assert!(
            gz.body.len() < plain.body.len(),
            "{path} is not smaller gzipped"
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(gz.body.as_slice())
            .read_to_end(&mut unzipped)
            .expect("valid gzip");
        assert_eq!(unzipped, plain.body, "{path}");
        let refused = fetch(&app, &path, &[("accept-encoding", "gzip;q=0")]).await;
        assert_eq!(refused.header(header::CONTENT_ENCODING), "", "{path}");
    }
}

#[tokio::test]
async fn an_unknown_file_is_a_404_in_the_envelope() {
    let app = spawn_app_with_admin_key().await;
    for path in ["/assets/nope.js", "/assets/nope.js?v=1", "/assets/a/b.js"] {
        let got = fetch(&app, path, &[]).await;
        let v: Value = serde_json::from_slice(&got.body).expect("JSON envelope");
        assert_error(got.status, &v, 404);
    }
}

#[tokio::test]
async fn the_api_behind_the_page_still_needs_a_key() {
    let app = spawn_app_with_admin_key().await;
    for (method, path) in [
        (Method::GET, "/api/whatsapp/status?user_id=1&place_id=1"),
        (Method::GET, "/api/admin/keys"),
        (Method::POST, "/"),
        (Method::DELETE, "/assets/app.js"),
        (Method::GET, "/api/openapi.json"),
    ] {
        let (s, v) = app.request_as(None, method.clone(), path, None).await;
        let msg = assert_error(s, &v, 401);
        assert!(msg.contains("API key"), "{method} {path}: {msg}");
    }
}

#[tokio::test]
async fn without_an_admin_key_the_page_loads_and_the_api_still_refuses_other_sites() {
    let app = spawn_app().await;
    let got = fetch(&app, "/", &[("origin", "http://evil.example")]).await;
    assert_eq!(got.status, StatusCode::OK);
    let res = app
        .client
        .get(format!(
            "{}/api/whatsapp/status?user_id=1&place_id=1",
            app.base
        ))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("request");
    let status = res.status();
    let v: Value = res.json().await.expect("JSON");
    let msg = assert_error(status, &v, 403);
    assert!(msg.contains("cross-site"), "{msg}");
}
