//! The dashboard: hand-written HTML, CSS and JavaScript modules embedded in the binary and
//! served at `/` and `/assets/{file}`. They hold no data (every figure comes from the API, with
//! the key the person signs in with), so they are the one part of the server that needs no key.
//!
//! Everything is prepared once, when the router is built: each file's ETag, its gzip form,
//! and the references between files rewritten to carry `?v=<version>` (a hash of every
//! file), so a browser may keep an asset forever and still never mixes two releases' modules.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::envelope;

pub const INDEX_PATH: &str = "/";
pub const ASSETS_PREFIX: &str = "/assets/";

/// Nothing the page loads or calls may come from elsewhere, and no inline script runs.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'";

const INDEX_CACHE: &str = "no-cache";
/// Only for a request naming the current version: the same URL never changes content.
const VERSIONED_CACHE: &str = "public, max-age=31536000, immutable";

const JS: &str = "text/javascript; charset=utf-8";

/// The files, as written under `assets/`. A module imports another as `'./<name>'` and the
/// page references them as `"./assets/<name>"`: those are the spellings rewritten with the
/// version.
const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("ui.js", JS, include_str!("assets/ui.js")),
    ("i18n.js", JS, include_str!("assets/i18n.js")),
    ("sse.js", JS, include_str!("assets/sse.js")),
    ("sessions.js", JS, include_str!("assets/sessions.js")),
    ("link.js", JS, include_str!("assets/link.js")),
    ("session.js", JS, include_str!("assets/session.js")),
    ("groups.js", JS, include_str!("assets/groups.js")),
    ("send.js", JS, include_str!("assets/send.js")),
    ("admin.js", JS, include_str!("assets/admin.js")),
];
const INDEX: &str = include_str!("assets/index.html");

/// One file as served: both encodings and the validator they share.
struct Prepared {
    content_type: &'static str,
    identity: Bytes,
    /// `None` when compressing does not make it smaller.
    gzip: Option<Bytes>,
    /// Weak: the gzip and identity forms are the same representation for caching.
    etag: HeaderValue,
}

pub struct Dashboard {
    index: Prepared,
    assets: HashMap<&'static str, Prepared>,
    version: String,
}

impl Dashboard {
    /// Start-up: compressing into memory and formatting a hex hash cannot fail.
    pub fn build() -> Self {
        let mut all = Sha256::new();
        all.update(INDEX.as_bytes());
        for (name, _, text) in FILES {
            all.update(name.as_bytes());
            all.update(text.as_bytes());
        }
        let version = hex(&all.finalize())[..16].to_owned();
        let versioned = |text: &str, spelling: fn(&str) -> String| {
            FILES.iter().fold(text.to_owned(), |acc, (name, _, _)| {
                let plain = spelling(name);
                let with = spelling(&format!("{name}?v={version}"));
                acc.replace(&plain, &with)
            })
        };
        let index = prepare(
            "text/html; charset=utf-8",
            versioned(INDEX, |n| format!("\"./assets/{n}\"")),
        );
        let assets = FILES
            .iter()
            .map(|(name, content_type, text)| {
                let text = versioned(text, |n| format!("'./{n}'"));
                (*name, prepare(content_type, text))
            })
            .collect();
        Self {
            index,
            assets,
            version,
        }
    }
}

fn prepare(content_type: &'static str, text: String) -> Prepared {
    let identity = Bytes::from(text.into_bytes());
    let etag = format!("W/\"{}\"", &hex(&Sha256::digest(&identity))[..20]);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&identity).expect("gzip into memory");
    let gz = enc.finish().expect("gzip into memory");
    Prepared {
        content_type,
        gzip: (gz.len() < identity.len()).then(|| Bytes::from(gz)),
        identity,
        etag: HeaderValue::from_str(&etag).expect("a hex ETag is a header value"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The page and its files: no key, and not in the OpenAPI document (they are not API).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let dashboard = Arc::new(Dashboard::build());
    Router::new()
        .route(INDEX_PATH, get(index))
        .route("/assets/{file}", get(asset))
        .with_state(dashboard)
}

/// Whether the key check lets this request through without a key: the page and its files.
pub fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (path == INDEX_PATH || path.starts_with(ASSETS_PREFIX))
}

/// # `GET /`
async fn index(State(d): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    answer(&d.index, &headers, INDEX_CACHE)
}

/// # `GET /assets/{file}[?v=<version>]`
async fn asset(
    State(d): State<Arc<Dashboard>>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(p) = d.assets.get(file.as_str()) else {
        return envelope::error(
            StatusCode::NOT_FOUND,
            &format!("Dashboard file not found: {ASSETS_PREFIX}{file}"),
        );
    };
    // Another version's URL must not be cached forever with this version's bytes.
    let current = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(k, v)| k == "v" && v == d.version);
    let cache = if current {
        VERSIONED_CACHE
    } else {
        INDEX_CACHE
    };
    answer(p, &headers, cache)
}

fn answer(p: &Prepared, req: &HeaderMap, cache: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::ETAG, p.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if matches_etag(req, &p.etag) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(p.content_type),
    );
    let body = match &p.gzip {
        Some(gz) if accepts_gzip(req) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz.clone()
        }
        _ => p.identity.clone(),
    };
    (StatusCode::OK, h, body).into_response()
}

/// `If-None-Match` by weak comparison (RFC 9110 §13.1.2): `W/` does not count, `*` matches.
fn matches_etag(req: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default().trim_start_matches("W/");
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == ours)
}

/// `gzip` (or `*`) listed with a quality above zero.
fn accepts_gzip(req: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in req
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => gzip = Some(q > 0.0),
            "*" => any = Some(q > 0.0),
            _ => {}
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn gzip_is_sent_only_when_accepted_with_a_quality() {
        let yes = [
            "gzip",
            "br, gzip, deflate",
            "gzip;q=0.5",
            "*",
            "identity, *;q=1",
        ];
        for v in yes {
            assert!(accepts_gzip(&with(header::ACCEPT_ENCODING, v)), "{v}");
        }
        let no = ["", "br", "gzip;q=0", "*;q=0", "gzip;q=0, *", "identity"];
        for v in no {
            assert!(!accepts_gzip(&with(header::ACCEPT_ENCODING, v)), "{v}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_in_lists() {
        let etag = HeaderValue::from_static("W/\"abc\"");
        for v in ["W/\"abc\"", "\"abc\"", "\"x\", W/\"abc\"", "*"] {
            assert!(matches_etag(&with(header::IF_NONE_MATCH, v), &etag), "{v}");
        }
        for v in ["\"abcd\"", "W/\"ab\"", ""] {
            assert!(!matches_etag(&with(header::IF_NONE_MATCH, v), &etag), "{v}");
        }
    }

    #[test]
    fn every_reference_between_files_carries_the_version() {
        let d = Dashboard::build();
        let v = &d.version;
        let index = std::str::from_utf8(&d.index.identity).unwrap();
        for (name, ..) in FILES {
            let plain = format!("\"./assets/{name}\"");
            assert!(!index.contains(&plain), "{name} left unversioned");
        }
        assert!(index.contains(&format!("./assets/app.js?v={v}")));
        for (name, p) in &d.assets {
            let text = std::str::from_utf8(&p.identity).unwrap();
            for (other, ..) in FILES {
                assert!(
                    !text.contains(&format!("'./{other}'")),
                    "{name} imports {other} unversioned"
                );
            }
        }
    }
}
