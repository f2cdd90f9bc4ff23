//! What every request but the dashboard's static files passes before routing: in keyless mode
//! the browser check, then the key check (every route but health needs a key, so unknown
//! routes tell nothing without one), the failed-key throttle and the rate limit.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::keys::presented_key;
use super::{AppState, envelope};
use crate::auth::limits::ClientAddr;
use crate::auth::{KeyFailure, SessionLimit};
use crate::http::error::AppError;

pub const HEALTH_PATH: &str = "/api/health";

pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    // The dashboard's files hold no data: the page asks for the key, then sends it itself.
    if super::dashboard::is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    if !st.keys.enforced()
        && let Err(why) = browser_check(req.uri(), req.headers())
    {
        tracing::warn!("⚠️ Refused a request from a browser context: {why}");
        return envelope::error(StatusCode::FORBIDDEN, &why);
    }
    let addr = ClientAddr::of(
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    );
    if is_health(req.method(), req.uri()) {
        // Health never refuses: a wrong key reads as no key, and shows the short answer.
        let who = match presented_key(req.headers()) {
            Ok(key) => st.keys.authenticate(key).await.ok(),
            Err(_) => None,
        };
        let who = match who {
            Some(who) => Some(who),
            None => st.keys.authenticate(None).await.ok(),
        };
        if let Some(who) = who {
            req.extensions_mut().insert(who.caller);
        }
        return next.run(req).await;
    }
    let who = match presented_key(req.headers()) {
        Ok(key) => st.keys.authenticate(key).await.map_err(AppError::from),
        Err(e) => Err(e),
    };
    let who = match who {
        Ok(who) => who,
        Err(AppError::Unauthorized(msg)) => {
            return match st.keys.key_failed(addr) {
                KeyFailure::Refused => AppError::Unauthorized(msg).into_response(),
                KeyFailure::Throttled { retry_after_secs } => too_many(
                    retry_after_secs,
                    &format!(
                        "Too many failed API key checks from this address \
                         ({} within a minute); try again in {retry_after_secs} s",
                        st.keys.limits().key_failures_per_minute
                    ),
                ),
            };
        }
        Err(e) => return e.into_response(),
    };
    if let Err(secs) = st.keys.take_request(&who, addr) {
        let rate = st.keys.limits().rate(&who.quotas);
        let (per_second, burst) = rate.map_or((0.0, 0), |r| (r.per_second, r.burst));
        return too_many(
            secs,
            &format!(
                "Rate limit reached: this API key may send {per_second} requests per second \
                 (bursts of {burst}); try again in {secs} s"
            ),
        );
    }
    req.extensions_mut().insert(who.caller);
    req.extensions_mut()
        .insert(SessionLimit(st.keys.limits().sessions(&who.quotas)));
    next.run(req).await
}

fn is_health(method: &Method, uri: &Uri) -> bool {
    uri.path() == HEALTH_PATH && (method == Method::GET || method == Method::HEAD)
}

fn too_many(retry_after_secs: u64, message: &str) -> Response {
    let mut res = envelope::error(StatusCode::TOO_MANY_REQUESTS, message);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    res
}

/// The session quota of the request, as the key check decided it; the server's own value
/// where no key check ran.
impl FromRequestParts<AppState> for SessionLimit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<SessionLimit>()
            .copied()
            .unwrap_or_else(|| SessionLimit(st.keys.limits().max_sessions_per_user)))
    }
}

const KEYLESS: &str = "this server has no admin API key, so it only answers programs on this \
    machine, never web pages";

/// Without an admin key, anyone who can make this machine send a request is trusted, and
/// a browser can be made to: a page of another site posting to 127.0.0.1 (its Origin
/// gives it away), or a site whose name was pointed at 127.0.0.1 (DNS rebinding: its name
/// stays in the Host header). Programs such as curl send neither.
fn browser_check(uri: &Uri, headers: &HeaderMap) -> Result<(), String> {
    let authority = uri.authority().map(|a| a.as_str());
    let host_header = match headers.get(header::HOST) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            format!("Refused: {KEYLESS}, and the Host header is not readable text")
        })?),
    };
    let mut port_of_host = None;
    // HTTP/2 names the server in the authority, HTTP/1 in Host; when both come, both count.
    for host in [authority, host_header].into_iter().flatten() {
        match loopback_host(host) {
            Some(port) => port_of_host = port_of_host.or(Some(port)),
            None => {
                return Err(format!(
                    "Refused: {KEYLESS}. The request names the host {host:?}, which is not \
                     localhost or a loopback address (a web page using DNS rebinding would \
                     send that). Call it as http://127.0.0.1:<port> or http://localhost:<port>, \
                     or start the server with --api-key."
                ));
            }
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(unreadable)");
    let cross_site = || {
        format!(
            "Refused: {KEYLESS}. The request comes from a web page of the origin {origin:?}, \
             not from this server itself (a cross-site request). Start the server with \
             --api-key to let other origins call it with a key."
        )
    };
    let (scheme, rest) = origin.split_once("://").ok_or_else(cross_site)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(cross_site()),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(cross_site());
    }
    let origin_port = loopback_host(rest).ok_or_else(cross_site)?;
    // Without a port in Host, the browser used the default port of the origin's scheme.
    let server_port = port_of_host.flatten().unwrap_or(default_port);
    if origin_port.unwrap_or(default_port) != server_port {
        return Err(cross_site());
    }
    Ok(())
}

/// `Some(port)` when `host[:port]` names this machine: `localhost`, `*.localhost`,
/// 127.0.0.0/8 or `[::1]`.
fn loopback_host(host: &str) -> Option<Option<u16>> {
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inside.parse().ok()?;
        let loopback = ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return loopback.then_some(port);
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, p)) => (name, Some(parse_port(p)?)),
        None => (host, None),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let named = name == "localhost" || name.ends_with(".localhost");
    let addressed = name
        .parse::<Ipv4Addr>()
        .is_ok_and(|ip| IpAddr::V4(ip).is_loopback());
    (named || addressed).then_some(port)
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, origin: Option<&str>) -> Result<(), String> {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(v).unwrap());
        }
        browser_check(&Uri::from_static("/api/whatsapp/init"), &h)
    }

    #[test]
    fn loopback_names_and_addresses_pass() {
        for host in [
            "127.0.0.1:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "localhost:5000",
            "LOCALHOST",
            "app.localhost:5000",
            "localhost.:5000",
            "[::1]:5000",
            "[::1]",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert_eq!(check(Some(host), None), Ok(()), "{host}");
        }
        // No Host at all is no browser.
        assert_eq!(check(None, None), Ok(()));
    }

    #[test]
    fn other_hosts_are_refused_with_the_reason() {
        for host in [
            "evil.example:5000",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:5000",
            "0.0.0.0:5000",
            "[::2]:5000",
            "127.1:5000",
            "localhost:abc",
            "localhost:",
            "[::1]x",
        ] {
            let why = check(Some(host), None).unwrap_err();
            assert!(why.contains("DNS rebinding"), "{host}: {why}");
            assert!(why.contains("--api-key"), "{why}");
        }
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let host = Some("127.0.0.1:5000");
        for origin in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "HTTP://[::1]:5000",
        ] {
            assert_eq!(check(host, Some(origin)), Ok(()), "{origin}");
        }
        assert_eq!(check(Some("localhost"), Some("http://localhost")), Ok(()));
        assert_eq!(
            check(Some("localhost"), Some("https://localhost")),
            Ok(()),
            "behind a TLS proxy on the default port"
        );
        for origin in [
            "http://evil.example",
            "http://evil.example:5000",
            "null",
            "http://127.0.0.1:3000",
            "http://127.0.0.1",
            "file://",
            "chrome-extension://abcdef",
            "http://127.0.0.1:5000/path",
            "http://user@127.0.0.1:5000",
            "",
        ] {
            let why = check(host, Some(origin)).unwrap_err();
            assert!(why.contains("cross-site"), "{origin}: {why}");
        }
    }

    #[test]
    fn an_http2_authority_counts_like_host() {
        let uri: Uri = "http://evil.example:5000/api/health".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:5000"));
        assert!(browser_check(&uri, &h).is_err());
        let uri: Uri = "http://127.0.0.1:5000/api/health".parse().unwrap();
        assert!(browser_check(&uri, &HeaderMap::new()).is_ok());
    }
}
