//! The outermost layers: every request gets an id (`X-Request-Id`, the caller's when sane)
//! and is counted and timed for the metrics here; tower-http's trace layer, just inside, runs
//! it in a span that carries the id, the method and the route template, and ends it with one
//! log line of its status and latency.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

use crate::metrics::Metrics;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request no route matched: the raw path would let any caller grow
/// the metrics without bound.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Long enough for a UUID, a ULID or a trace id with a prefix; short enough for a log line.
const MAX_ID_LEN: usize = 128;

pub async fn observe(State(metrics): State<Metrics>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = match req.headers().get(&REQUEST_ID).and_then(sane) {
        Some(id) => id,
        None => new_id(),
    };
    // The trace layer, handlers and the forwarding layer (which passes it on to the owner
    // node) read it here.
    if let Ok(v) = HeaderValue::from_str(&id) {
        req.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    let method = req.method().clone();
    let route = route_of(&req).to_owned();
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    metrics.http_request(
        method.as_str(),
        &route,
        res.status().as_u16(),
        started.elapsed(),
    );
    res
}

fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, |m| m.as_str())
}

/// The trace layer's span of a request; [`observe`] has already put the id in the headers.
pub fn span_for(req: &Request) -> Span {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route_of(req),
    )
}

/// The trace layer's closing line, inside the request's span. Successes only at debug: under
/// load the default level must not log every call.
pub fn log_response(res: &Response, took: Duration, _span: &Span) {
    let status = res.status().as_u16();
    let ms = took.as_secs_f64() * 1000.0;
    match status {
        500.. => tracing::warn!("⚠️ answered {status} in {ms:.1} ms"),
        400..=499 => tracing::info!("ℹ️ answered {status} in {ms:.1} ms"),
        _ => tracing::debug!("✅ answered {status} in {ms:.1} ms"),
    }
}

/// The caller's id when it is 1 to 128 characters of letters, digits and `-_.:+/=@`: safe
/// in a log line and a header, and covers UUIDs, ULIDs, base64 and `prefix:id` schemes.
fn sane(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b));
    ok.then(|| s.to_owned())
}

/// A random UUID (version 4).
fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without the system's randomness the id still tells requests apart in one process.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        for ok in [
            "a",
            "abc-123_x.y:z",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "aGk+/w==",
            &"x".repeat(128),
        ] {
            assert_eq!(
                sane(&HeaderValue::from_str(ok).unwrap()).as_deref(),
                Some(ok)
            );
        }
        for bad in ["", "a b", "a\tb", "é", "<script>", &"x".repeat(129)] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert_eq!(sane(&v), None, "{bad:?}");
        }
    }

    #[test]
    fn new_ids_are_uuid_v4() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(new_id(), id);
    }
}
