//! Connections through real sockets: slow or silent clients are cut, idle ones closed, the
//! number open at once bounded, and well-behaved clients untouched by any of it.
//!
//! "Closed by the server" is always a read returning 0 or an error, with upper bounds many
//! times the timeout under test, so a loaded machine makes these slower, never wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::helpers::{TestApp, spawn_app_with};

/// How long a test waits for the server to close a connection whose limit is 1-2 s.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);
/// How long a test waits for an answer that should come at once.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(addr(app)).await.expect("connect")
}

/// Reads until the server closes the connection and returns what it sent before; panics
/// if it is still open after `limit`.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open for {limit:?}; it sent {} bytes: {:?}…",
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(200)])
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn send_get(stream: &mut (impl AsyncWrite + Unpin), path: &str) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .expect("write request");
}

/// One answer with a `Content-Length`, read whole: its status and body.
async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.expect("read answer");
        assert!(
            n > 0,
            "closed mid-answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    while got.len() < head_end + length {
        let n = stream.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed mid-body");
        got.extend_from_slice(&buf[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&got[head_end..head_end + length]).to_string(),
    )
}

/// A request on an open connection, answered within [`ANSWER_WITHIN`].
async fn get_on(stream: &mut TcpStream, path: &str) -> (u16, String) {
    send_get(stream, path).await;
    timeout(ANSWER_WITHIN, read_answer(stream))
        .await
        .expect("an answer in time")
}

/// Writes `bytes` one every `gap` until the server stops taking them; returns a counter of
/// the bytes written so far.
fn dribble(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    bytes: &'static [u8],
    gap: Duration,
) -> Arc<AtomicUsize> {
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        for b in bytes {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            sleep(gap).await;
        }
        // Kept open, so that only the server can end the connection.
        sleep(Duration::from_secs(600)).await;
        drop(w);
    });
    sent
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let (mut r, w) = connect(&app).await.into_split();
    const HEAD: &[u8] =
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nAccept: */*\r\n\r\n";
    let sent = dribble(w, HEAD, Duration::from_millis(500));

    let got = read_until_closed(&mut r, CLOSE_WITHIN).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < HEAD.len(),
        "the whole head went through ({sent} bytes) before the server closed"
    );
    assert!(
        got.is_empty(),
        "a head that never arrived was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    let got = read_until_closed(&mut stream, CLOSE_WITHIN).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_dribbled_http2_preface_is_cut_after_the_header_timeout() {
    // The first bytes of a prior-knowledge HTTP/2 client, at a pace that would take 12 s:
    // a server that sniffs the protocol before giving the connection a timer waits for all
    // 24 of them.
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let (mut r, w) = connect(&app).await.into_split();
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let sent = dribble(w, PREFACE, Duration::from_millis(500));

    let got = read_until_closed(&mut r, CLOSE_WITHIN).await;
    let sent = sent.load(Ordering::SeqCst);
    // Short of the first line's end: closed by the timeout, not for a bad request line.
    assert!(
        sent < b"PRI * HTTP/2.0\r\n".len(),
        "{sent} bytes of the preface went through before the server closed"
    );
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    // Kept alive after an answer, so a second request goes on the same connection...
    assert_eq!(get_on(&mut stream, "/api/health").await.0, 200);
    assert_eq!(get_on(&mut stream, "/api/health").await.0, 200);
    // ...but not forever when none comes.
    let got = read_until_closed(&mut stream, CLOSE_WITHIN).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

#[tokio::test]
async fn a_busy_keep_alive_client_is_never_cut() {
    // Many requests on one connection, for longer than either timeout, none of the gaps
    // between them as long as one.
    let app = spawn_app_with(|c| {
        c.header_timeout = Duration::from_secs(2);
        c.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let mut answered = 0;
    while answered < 30 || started.elapsed() < Duration::from_secs(6) {
        let (status, body) = get_on(&mut stream, "/api/health").await;
        assert_eq!(status, 200, "request {answered}: {body}");
        answered += 1;
        sleep(Duration::from_millis(150)).await;
    }
    assert!(answered >= 30);
}

#[tokio::test]
async fn a_request_in_its_handler_is_not_cut_by_the_idle_timeout() {
    // The handler runs from the head on; it waits here for a body that pauses midway for
    // three idle timeouts. Only the request timeout (408) bounds that wait.
    let app = spawn_app_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let body = br#"{"user_id": 1, "place_id": 2}"#;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /api/whatsapp/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body[..10]).await.expect("first part");
    sleep(Duration::from_secs(3)).await;
    stream.write_all(&body[10..]).await.expect("the rest");
    let (status, answer) = timeout(ANSWER_WITHIN, read_answer(&mut stream))
        .await
        .expect("an answer in time");
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn beyond_max_connections_a_new_client_waits_until_one_closes() {
    let app = spawn_app_with(|c| {
        c.max_connections = 2;
        // Long enough that no connection here closes on its own.
        c.header_timeout = Duration::from_secs(60);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    assert_eq!(get_on(&mut first, "/api/health").await.0, 200);
    assert_eq!(get_on(&mut second, "/api/health").await.0, 200);

    // The third is let in by the kernel but not taken up by the server.
    let mut third = connect(&app).await;
    send_get(&mut third, "/api/health").await;
    let mut probe = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(1500), third.peek(&mut probe))
            .await
            .is_err(),
        "a third connection was served while the limit is two"
    );

    // The two already open are not slowed by the one waiting.
    assert_eq!(get_on(&mut first, "/api/health").await.0, 200);
    assert_eq!(get_on(&mut second, "/api/health").await.0, 200);

    drop(first);
    let (status, body) = timeout(ANSWER_WITHIN, read_answer(&mut third))
        .await
        .expect("the waiting client is served once a connection closes");
    assert_eq!(status, 200, "{body}");
    assert_eq!(get_on(&mut second, "/api/health").await.0, 200);
}

#[tokio::test]
async fn the_event_stream_outlives_the_idle_timeout_while_it_waits_for_events() {
    let app = spawn_app_with(|c| {
        c.header_timeout = Duration::from_secs(1);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // No client-side timeout: the stream is meant to stay open.
    let client = reqwest::Client::new();
    let mut resp = client
        .get(format!("{}/api/whatsapp/events?user_id=1", app.base))
        .send()
        .await
        .expect("open the stream");
    assert_eq!(resp.status(), StatusCode::OK);

    // Three idle timeouts without a byte: no event and no keep-alive comment (every 15 s).
    sleep(Duration::from_secs(3)).await;
    app.init(1, 2).await;
    let mut seen = String::new();
    while !seen.contains("event: session.status") {
        let chunk = timeout(ANSWER_WITHIN, resp.chunk())
            .await
            .expect("an event in time")
            .expect("the stream still open")
            .expect("the stream still open, not ended");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_cut_after_the_idle_timeout() {
    let app = spawn_app_with(|c| {
        // Only the idle timeout may end this connection.
        c.header_timeout = Duration::from_secs(60);
        c.idle_timeout = Duration::from_secs(1);
    })
    .await;
    // Pipelined requests for the API document (~140 kB each): far more answer than the
    // kernel buffers of both ends hold (a few MB on loopback), so the server's writes stall
    // once the client stops reading.
    const REQUESTS: usize = 100;
    let mut stream = connect(&app).await;
    let one = "GET /api/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    stream
        .write_all(one.repeat(REQUESTS).as_bytes())
        .await
        .expect("write requests");
    let mut first = [0u8; 1024];
    let n = timeout(ANSWER_WITHIN, stream.read(&mut first))
        .await
        .expect("answers start in time")
        .expect("read");
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );

    // Not reading: no byte moves, and no handler runs while the server waits to write.
    sleep(Duration::from_secs(6)).await;
    let rest = read_until_closed(&mut stream, Duration::from_secs(30)).await;
    let whole = [&first[..n], &rest[..]].concat();
    let answered = whole
        .windows(b"HTTP/1.1 200".len())
        .filter(|w| *w == b"HTTP/1.1 200")
        .count();
    assert!(
        answered < REQUESTS,
        "all {answered} answers ({} bytes) went to a client that did not read",
        whole.len()
    );
}
