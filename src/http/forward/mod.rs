//! Any node answers any command. A command on a session another node runs (see [`targets`])
//! is sent on to that node over HTTP, with the caller's own key (the owner checks it again),
//! and the owner's answer is the answer. A session whose node is gone waits briefly for
//! another node to take it over, then answers 503 with `Retry-After`.
//!
//! A middleware rather than a check in each handler: the handlers and the OpenAPI document
//! stay as they are, and a request that names no usable pair reaches this node's handler,
//! which refuses it exactly as before.

mod targets;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use crate::auth::Caller;
use crate::cluster::{Cluster, Route};
use crate::domain::Pair;
use crate::http::envelope;
use crate::http::error::AppError;
use crate::session::SessionError;
use crate::store::traits::LeaseHolder;

/// Marks a request one node sent another, with the sender's node id: it is handled where it
/// lands or refused, never sent on again, so two nodes that disagree cannot bounce it.
pub const HOP_HEADER: &str = "x-wam-forwarded-by";
/// On the answer to a forwarded request whose session the receiver does not run: the
/// sender looks again where the session is. Never shown to callers.
const NOT_HERE_HEADER: &str = "x-wam-not-here";

/// How long a command on a session without a live node waits for a takeover.
const MOVING_WAIT: Duration = Duration::from_secs(4);
const MOVING_POLL: Duration = Duration::from_millis(200);
/// A node that does not accept a connection in this long counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The owner's answer headers that mean something to the caller; the rest (connection
/// handling, our own markers) stay between the nodes.
const PASSED_HEADERS: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::RETRY_AFTER,
    header::CONTENT_DISPOSITION,
    header::ALLOW,
];
/// The request headers the owner needs: the body's type, the caller's key, and the request
/// id, so both nodes' log lines of the request carry the same one.
const SENT_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-request-id"),
];

/// The middleware's state: this node's view of the cluster and its client to the others.
#[derive(Clone)]
pub struct Forwarder {
    cluster: Cluster,
    client: reqwest::Client,
    body_limit: usize,
}

impl Forwarder {
    /// Built at start-up, on PostgreSQL only (SQLite is one node: nothing to forward).
    pub fn new(cluster: Cluster, body_limit: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Nodes reach each other directly, never through a proxy of the environment.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            cluster,
            client,
            body_limit,
        })
    }

    fn retry_after_secs(&self) -> u64 {
        // A takeover comes within about a third of a lease after the lease runs out.
        (self.cluster.lease().as_secs() / 3).max(1)
    }

    fn moving(&self) -> Response {
        let message = SessionError::Moving.to_string();
        let mut res = envelope::error(StatusCode::SERVICE_UNAVAILABLE, &message);
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs()),
        );
        res
    }
}

/// What became of a request sent to the owner.
enum Sent {
    /// The owner answered: that is the answer.
    Answer(Response),
    /// The node no longer runs the session, or could not be reached: the request did not
    /// run, so it may go where the session is now.
    Elsewhere,
    /// It was sent and no answer came in time: it may have run, so it is not sent again.
    Lost,
}

pub async fn forward(State(f): State<Forwarder>, req: Request, next: Next) -> Response {
    let Some(target) = targets::find(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    // No caller: the key check refused the request already or never ran; nothing to route.
    let Some(caller) = req.extensions().get::<Caller>().copied() else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let bytes = if target.reads_body() {
        match read_body(body, target.body_limit.unwrap_or(f.body_limit)).await {
            Ok(b) => b,
            Err(e) => return e.into_response(),
        }
    } else {
        // The routes that name their pair in the query take no body.
        Bytes::new()
    };
    let pair = target.pair(&parts, &bytes, caller);
    let Some(pair) = pair else {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    };
    if parts.headers.contains_key(HOP_HEADER) {
        return match runs_here_or_nobody_does(&f.cluster, pair).await {
            Ok(true) => {
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
            Ok(false) => {
                let mut res = f.moving();
                res.headers_mut()
                    .insert(NOT_HERE_HEADER, HeaderValue::from_static("1"));
                res
            }
            Err(e) => e.into_response(),
        };
    }
    let deadline = tokio::time::Instant::now() + MOVING_WAIT;
    loop {
        match f.cluster.route(pair, target.kind).await {
            Err(e) => return AppError::from(e).into_response(),
            Ok(Route::Here) => {
                return next
                    .run(Request::from_parts(parts, Body::from(bytes)))
                    .await;
            }
            Ok(Route::There { node_id, url }) => {
                match send(&f, &url, &parts, bytes.clone(), target.timeout).await {
                    Sent::Answer(res) => return res,
                    Sent::Lost => {
                        tracing::warn!(
                            "⚠️ Node {node_id} took too long to answer a forwarded {} {}",
                            parts.method,
                            parts.uri.path()
                        );
                        return f.moving();
                    }
                    Sent::Elsewhere => {}
                }
            }
            Ok(Route::Moving) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return f.moving();
        }
        tokio::time::sleep(MOVING_POLL).await;
    }
}

/// At the node a request was forwarded to: it runs the session, or no node does (a start
/// comes to the node chosen for it; anything else is answered from the database here).
async fn runs_here_or_nobody_does(cluster: &Cluster, pair: Pair) -> Result<bool, AppError> {
    let holder = cluster.store().holder(pair).await.map_err(AppError::from)?;
    Ok(match holder {
        LeaseHolder::Nobody => true,
        LeaseHolder::Node { node_id, .. } => node_id == cluster.node_id(),
        LeaseHolder::Orphaned => false,
    })
}

/// The body under the route's limit, refused as the `Body` extractor refuses it.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(AppError::PayloadTooLarge(
                "Request body is too large".into(),
            ))
        }
        Err(e) => Err(AppError::BadRequest(format!(
            "Could not read the request body: {e}"
        ))),
    }
}

async fn send(f: &Forwarder, base: &str, parts: &Parts, body: Bytes, timeout: Duration) -> Sent {
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = f
        .client
        .request(parts.method.clone(), &url)
        .timeout(timeout)
        .header(HOP_HEADER, f.cluster.node_id());
    for name in &SENT_HEADERS {
        if let Some(v) = parts.headers.get(name) {
            req = req.header(name, v);
        }
    }
    if !body.is_empty() {
        req = req.body(body);
    }
    let res = match req.send().await {
        Ok(res) => res,
        Err(e) if e.is_connect() || e.is_builder() => {
            tracing::warn!("⚠️ Could not reach the node at {base}: {e}");
            return Sent::Elsewhere;
        }
        Err(e) => {
            tracing::debug!("Forwarding to {url} failed: {e}");
            return Sent::Lost;
        }
    };
    if res.headers().contains_key(NOT_HERE_HEADER) {
        return Sent::Elsewhere;
    }
    let status = res.status();
    let mut headers = axum::http::HeaderMap::new();
    for name in &PASSED_HEADERS {
        if let Some(v) = res.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    let body = match res.bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!("Reading the answer of {url} failed: {e}");
            return Sent::Lost;
        }
    };
    let mut out = (status, body).into_response();
    // The owner's content type, not the one `Bytes` gives.
    out.headers_mut().extend(headers);
    Sent::Answer(out)
}
