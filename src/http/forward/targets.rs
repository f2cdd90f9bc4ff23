//! Which requests act on a live session (and so belong to the node that runs it), and where
//! each names its pair. Reads are not here: any node answers them from the database.

use std::time::Duration;

use axum::http::Method;
use axum::http::request::Parts;
use serde_json::Value;

use crate::auth::Caller;
use crate::cluster::RouteKind;
use crate::domain::Pair;
use crate::http::extract::{PairQuery, pair_from};

/// Long enough for what a command does at its owner; a fetch start or a lifecycle command
/// answers at once.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// A send downloads its `image_url` once to check it, for up to 30 s, before it answers.
const SEND_TIMEOUT: Duration = Duration::from_secs(40);

/// Where the request names its pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairIn {
    Query,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub kind: RouteKind,
    pair_in: PairIn,
    /// How long the owner may take to answer.
    pub timeout: Duration,
    /// The route's own body limit, where it takes more than the API's default.
    pub body_limit: Option<usize>,
}

impl Target {
    const fn new(kind: RouteKind, pair_in: PairIn, timeout: Duration) -> Self {
        Self {
            kind,
            pair_in,
            timeout,
            body_limit: None,
        }
    }

    const fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = Some(limit);
        self
    }

    /// Whether the pair is read from the body (which must then be buffered to be sent on).
    pub fn reads_body(&self) -> bool {
        self.pair_in == PairIn::Body
    }

    /// The pair the request acts on, if it names one this caller may act on. `None` leaves the
    /// request to this node's handler, which answers a bad or foreign pair as it always has.
    pub fn pair(&self, parts: &Parts, body: &[u8], caller: Caller) -> Option<Pair> {
        let pair = match self.pair_in {
            PairIn::Query => query_pair(parts.uri.query().unwrap_or(""), caller),
            PairIn::Body => body_pair(parts, body, caller),
        };
        pair.ok()
    }
}

/// The commands on a live session, by method and full path.
pub fn find(method: &Method, path: &str) -> Option<Target> {
    use PairIn::{Body, Query};
    use RouteKind::{Act, Start};
    let path = path.strip_suffix('/').unwrap_or(path);
    let target = |kind, pair_in, timeout| Some(Target::new(kind, pair_in, timeout));
    if method == Method::GET {
        return match path {
            "/api/whatsapp/qr" => target(Act, Query, COMMAND_TIMEOUT),
            // The file comes through the owner's connection.
            _ if one_segment_between(path, "/api/whatsapp/messages/", "/media") => {
                target(Act, Query, SEND_TIMEOUT)
            }
            _ => None,
        };
    }
    if method != Method::POST {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/api/whatsapp/") {
        return match rest {
            "init" | "restart" => target(Start, Body, COMMAND_TIMEOUT),
            "logout" | "pair-code" | "start-contact-fetch" => target(Act, Body, COMMAND_TIMEOUT),
            "send-message" | "send-bulk-messages" | "check-numbers" => {
                target(Act, Body, SEND_TIMEOUT)
            }
            _ if one_segment_between(rest, "groups/", "/send-message") => {
                target(Act, Body, SEND_TIMEOUT)
            }
            _ if one_segment_between(rest, "messages/", "/retry") => {
                target(Act, Body, COMMAND_TIMEOUT)
            }
            // Read receipts go through the owner's connection.
            _ if one_segment_between(rest, "contacts/", "/read")
                || one_segment_between(rest, "contacts/", "/messages/read")
                || one_segment_between(rest, "conversations/", "/read") =>
            {
                target(Act, Body, COMMAND_TIMEOUT)
            }
            _ => None,
        };
    }
    match path {
        "/api/sim/scan" | "/api/sim/fault" | "/api/sim/receipt" => {
            target(Act, Body, COMMAND_TIMEOUT)
        }
        // It may carry a file.
        "/api/sim/incoming" => Some(
            Target::new(Act, Body, COMMAND_TIMEOUT)
                .with_body_limit(crate::http::sim::INCOMING_BODY_LIMIT),
        ),
        _ => None,
    }
}

/// `prefix{segment}suffix` with one non-empty path segment in the middle.
fn one_segment_between(path: &str, prefix: &str, suffix: &str) -> bool {
    path.strip_prefix(prefix)
        .and_then(|p| p.strip_suffix(suffix))
        .is_some_and(|seg| !seg.is_empty() && !seg.contains('/'))
}

fn query_pair(query: &str, caller: Caller) -> Result<Pair, ()> {
    let mut seen = serde_json::Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        // The first value wins, as in `Params`.
        seen.entry(k.into_owned())
            .or_insert_with(|| Value::String(v.into_owned()));
    }
    let q: PairQuery = serde_json::from_value(Value::Object(seen)).map_err(|_| ())?;
    q.pair(caller).map_err(|_| ())
}

/// The pair of a JSON or form body, read the way `Body` reads it.
fn body_pair(parts: &Parts, body: &[u8], caller: Caller) -> Result<Pair, ()> {
    let form = crate::http::form::is_form(&parts.headers);
    let value = match form.then(|| crate::http::form::to_json(body)).flatten() {
        Some(v) => v.map_err(|_| ())?,
        None => serde_json::from_slice(body).map_err(|_| ())?,
    };
    let Value::Object(mut map) = value else {
        return Err(());
    };
    pair_from(caller, &map.remove("user_id"), &map.remove("place_id")).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PlaceId, UserId};

    fn parts(uri: &str, content_type: &str) -> Parts {
        axum::http::Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", content_type)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn commands_are_found_and_reads_are_not() {
        let post = |p: &str| find(&Method::POST, p).map(|t| t.kind);
        assert_eq!(post("/api/whatsapp/init"), Some(RouteKind::Start));
        assert_eq!(post("/api/whatsapp/restart"), Some(RouteKind::Start));
        for p in [
            "/api/whatsapp/logout",
            "/api/whatsapp/pair-code",
            "/api/whatsapp/start-contact-fetch",
            "/api/whatsapp/send-message",
            "/api/whatsapp/send-bulk-messages",
            "/api/whatsapp/groups/12/send-message",
            "/api/whatsapp/messages/7/retry",
            "/api/sim/scan",
            "/api/sim/fault",
            "/api/sim/incoming",
            "/api/sim/receipt",
        ] {
            assert_eq!(post(p), Some(RouteKind::Act), "{p}");
        }
        assert_eq!(
            find(&Method::GET, "/api/whatsapp/qr").map(|t| t.kind),
            Some(RouteKind::Act)
        );
        for p in [
            "/api/whatsapp/groups//send-message",
            "/api/whatsapp/groups/1/2/send-message",
            "/api/whatsapp/messages/retry",
            "/api/sim/phonebook",
            "/api/admin/keys",
        ] {
            assert_eq!(post(p), None, "{p}");
        }
        for p in [
            "/api/whatsapp/status",
            "/api/whatsapp/init",
            "/api/sim/outbox",
        ] {
            assert_eq!(find(&Method::GET, p), None, "{p}");
        }
    }

    #[test]
    fn the_pair_is_read_from_json_forms_and_queries_and_only_when_allowed() {
        let t = find(&Method::POST, "/api/whatsapp/init").unwrap();
        let json = parts("/api/whatsapp/init", "application/json");
        let want = Pair::new(UserId::new_unchecked(3), PlaceId::new_unchecked(4));
        assert_eq!(
            t.pair(&json, br#"{"user_id":3,"place_id":"4"}"#, Caller::Admin),
            Some(want)
        );
        let form = parts("/x", "application/x-www-form-urlencoded");
        assert_eq!(
            t.pair(&form, b"user_id=3&place_id=4", Caller::Admin),
            Some(want)
        );
        assert_eq!(t.pair(&json, br#"{"place_id":4}"#, Caller::Admin), None);
        assert_eq!(t.pair(&json, b"[1]", Caller::Admin), None);
        assert_eq!(t.pair(&json, b"{", Caller::Admin), None);
        let other = Caller::Tenant {
            user_id: UserId::new_unchecked(9),
            key_id: 1,
        };
        assert_eq!(t.pair(&json, br#"{"user_id":3,"place_id":4}"#, other), None);
        let q = find(&Method::GET, "/api/whatsapp/qr").unwrap();
        let get = parts("/api/whatsapp/qr?user_id=3&place_id=4&format=raw", "");
        assert_eq!(q.pair(&get, b"", Caller::Admin), Some(want));
    }
}
