//! Our own accept loop around the router. `axum::serve` gives hyper no timer, so a client
//! that sends its request head one byte at a time, or nothing at all, holds a connection
//! (and a file descriptor) for as long as it likes, before any key is ever checked.
//!
//! Here every connection is bounded three ways:
//! - its request heads must arrive within the header timeout (hyper's own timer, which also
//!   closes a kept-alive connection that waits that long for its next request);
//! - once no bytes move in either direction and nothing is being prepared for it, it is
//!   closed after the idle timeout (a client that stopped reading a streamed answer);
//! - at most `max_connections` are open; further clients wait in the listen backlog until
//!   one closes, so the ones already served keep their file descriptors and their speed.
//!
//! Only HTTP/1.1 is spoken, as before: axum's `http2` feature was never on, and without it
//! there is no protocol sniffing whose first read could wait without a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use futures::future::BoxFuture;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long an accept that failed for want of resources (EMFILE, ENFILE, ENOMEM) waits
/// before the next try: closing connections free descriptors meanwhile, and retrying at once
/// would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What one connection may cost, in time and in number.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The whole head of a request (request line and headers) must arrive within this, and
    /// a kept-alive connection is closed after waiting this long for its next request.
    pub header_timeout: Duration,
    /// A connection on which no byte has moved for this long, and where no handler runs nor
    /// a streamed answer waits for its next part, is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; further clients are accepted only when one closes.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// open connection to finish its request in flight, and returns once all have closed.
/// Dropping the returned future instead closes every connection at once: the caller bounds
/// how long the drain may take.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    // Each connection task holds a clone of both: `stopping` asks for a graceful end,
    // `abort` (cancelled when this future is dropped) ends them on the spot.
    let stopping = CancellationToken::new();
    let abort = CancellationToken::new();
    let _abort_on_drop = abort.clone().drop_guard();
    let connections = TaskTracker::new();

    tokio::pin!(shutdown);
    loop {
        let (permit, stream, peer) = tokio::select! {
            // A stop wins over a client arriving at the same moment.
            biased;
            () = &mut shutdown => break,
            next = next_connection(&listener, &slots) => next,
        };
        let conn = Conn {
            builder: builder.clone(),
            router: router.clone(),
            peer,
            limits,
            stopping: stopping.clone(),
            abort: abort.clone(),
        };
        connections.spawn(conn.run(stream, permit));
    }
    // Closing the listener now makes new clients fail fast instead of waiting in a backlog
    // nobody reads any more.
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}

/// Waits for a free slot, then for a client. Errors that concern only the one client that
/// just gave up are skipped; any other (out of descriptors, above all) is logged and retried
/// after a pause, never ending the loop.
async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, TcpStream, SocketAddr) {
    // The semaphore is never closed, so this cannot fail; if it ever did, waiting forever
    // (until shutdown) is the safe answer: no connection beyond the limit.
    let Ok(permit) = slots.clone().acquire_owned().await else {
        tracing::error!("❌ The connection limit is gone; accepting no more connections");
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (permit, stream, peer),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(
                    "❌ Cannot accept a connection: {e}; retrying in {ACCEPT_BACKOFF:?}"
                );
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Everything one connection task needs besides its socket.
struct Conn {
    builder: Arc<http1::Builder>,
    router: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    stopping: CancellationToken,
    abort: CancellationToken,
}

impl Conn {
    /// Serves one client until it leaves, breaks a limit, or the server stops. `_slot` is
    /// held for as long, so the connection counts against `max_connections` until closed.
    async fn run(self, stream: TcpStream, _slot: OwnedSemaphorePermit) {
        // Answers are small and written whole; Nagle would hold each one back for the
        // client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %self.peer, "cannot set TCP_NODELAY: {e}");
        }
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Metered {
            inner: stream,
            activity: activity.clone(),
        });
        let service = PerConnection {
            router: self.router,
            peer: self.peer,
            activity: activity.clone(),
        };
        // Without upgrades, unlike `axum::serve`: no route answers 101 (no WebSocket), and an
        // upgraded socket would leave the reach of the idle watch below.
        let conn = self.builder.serve_connection(io, service);
        let idle = activity.idle_for(self.limits.idle_timeout);
        tokio::pin!(conn, idle);
        let mut draining = false;
        loop {
            tokio::select! {
                ended = conn.as_mut() => {
                    // Header timeouts, clients that hang up mid-request, malformed requests:
                    // the client's doing, and common; not worth more than a debug line.
                    if let Err(e) = ended {
                        tracing::debug!(peer = %self.peer, "connection ended: {e}");
                    }
                    return;
                }
                () = self.stopping.cancelled(), if !draining => {
                    // Finishes the request in flight, if any, then closes; an idle
                    // connection closes at once.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = &mut idle => {
                    tracing::debug!(peer = %self.peer, "closing a connection idle for {:?}", self.limits.idle_timeout);
                    return;
                }
                () = self.abort.cancelled() => return,
            }
        }
    }
}

/// When bytes last moved on a connection, and how many things are under way on the server's
/// side of it (a handler running, a streamed answer waiting for its next part). Shared by
/// the socket wrapper, the service, the answer bodies and the idle watch of one connection.
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin` of the last byte read or written, or of the last
    /// server-side work that ended.
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks server-side work under way until the guard drops; the idle clock starts again
    /// from that moment, not from the last byte before it.
    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves once the connection has been idle for `limit`: no bytes moved and nothing
    /// under way on the server's side all that time.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let now = Instant::now();
            let deadline = if self.busy.load(Ordering::Acquire) > 0 {
                // Work under way resets the clock when it ends; look again a full period on.
                now + limit
            } else {
                let last =
                    self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                let due = last + limit;
                if now >= due {
                    return;
                }
                due
            };
            tokio::time::sleep_until(deadline).await;
        }
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The touch before the decrement: whoever sees the count at zero sees the new time.
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, noting every byte that moves.
struct Metered {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as one connection sees it: each request carries the peer address, and counts
/// as work under way while its handler runs.
#[derive(Clone)]
struct PerConnection {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        // The type axum's `ConnectInfo` extractor looks for, as `into_make_service_with_
        // connect_info` would have put it there.
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let handling = self.activity.busy();
        let router = self.router.clone();
        let activity = self.activity.clone();
        Box::pin(async move {
            let res = router.oneshot(req).await?;
            drop(handling);
            Ok(res.map(|body| Tracked {
                inner: body,
                activity,
                waiting: None,
            }))
        })
    }
}

/// An answer's body, counted as work under way whenever it waits for its next part from the
/// server (an event stream between events, an export between pages), but not while hyper
/// waits to write what it already has: that wait is the client's, and the idle timeout is
/// for exactly that.
struct Tracked {
    inner: Body,
    activity: Arc<Activity>,
    waiting: Option<Busy>,
}

impl http_body::Body for Tracked {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        if res.is_pending() {
            if this.waiting.is_none() {
                this.waiting = Some(this.activity.busy());
            }
        } else {
            this.waiting = None;
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    // Hyper writes `Content-Length` from this; without it every answer would go chunked.
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bare router behind `serve`, on port 0; the sender stops it.
    async fn start(router: Router) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 16,
        };
        tokio::spawn(serve(listener, router, limits, async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// One request on a fresh connection that the server closes after answering.
    async fn get_once(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    #[tokio::test]
    async fn every_request_carries_the_peer_address_as_connect_info() {
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (addr, _stop) = start(router).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let me = s.local_addr().unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(15), s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        // The address of this very connection, as the client sees its own end.
        assert!(out.ends_with(&format!("\r\n\r\n{me}")), "{out}");
    }

    #[tokio::test]
    async fn after_shutdown_new_connections_are_refused_and_open_requests_finish() {
        let started = Arc::new(tokio::sync::Notify::new());
        let entered = started.clone();
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        );
        let (addr, stop) = start(router).await;
        let in_flight = tokio::spawn(get_once(addr, "/slow"));
        tokio::time::timeout(Duration::from_secs(15), started.notified())
            .await
            .expect("the request reaches its handler");
        stop.send(()).unwrap();
        let out = in_flight.await.unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("done"),
            "{out}"
        );
        let refused = async {
            loop {
                if TcpStream::connect(addr).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), refused)
            .await
            .expect("the listener closes after a stop");
    }
}
