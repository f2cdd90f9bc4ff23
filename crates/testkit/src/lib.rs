//! The one harness of the tests: a server of ours started in-process and stopped on demand
//! ([`Running`]), waits that poll until a condition holds ([`poll`]), the event-stream reader
//! ([`read_until`]), and the server binary run as a child with its logs ([`child`]).
//!
//! [`api`] drives the simulated engine through HTTP; [`wa`] the real WhatsApp client against
//! an in-process fake WhatsApp server. [`db`] hands each test a fresh database of either
//! backend; [`pg`] is the throwaway PostgreSQL behind it. [`cluster`] runs several server
//! processes as the nodes of one cluster on a PostgreSQL database. [`browser`] drives a
//! headless Chromium over WebDriver.

pub mod api;
pub mod browser;
pub mod child;
pub mod cluster;
pub mod db;
pub mod pg;
pub mod proxy;
pub mod wa;

use std::future::Future;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use whatsapp_manager::Application;

/// An application of ours serving on a port of 127.0.0.1 until stopped (or dropped).
pub struct Running {
    pub base: String,
    /// The server task's stop signal; sent by [`Running::stop`] or on drop.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    pub fn start(app: Application) -> Self {
        let base = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            base,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits (`within` at most) until it has.
    pub async fn stop(&mut self, within: Duration) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(within, task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server result");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Asks `probe` every 20 ms until it answers `Ok`, `within` at most; past that, panics with
/// "never <what>" and what the last probe saw. Every wait of the tests ends as soon as its
/// condition holds, so the bound can be generous for a loaded machine.
pub async fn poll<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(done) => return done,
            Err(seen) => seen,
        };
        if tokio::time::Instant::now() > deadline {
            panic!("never {what}: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a streamed answer (the event stream) until `want` shows up, 20 s at most; what was
/// read so far.
pub async fn read_until(stream: &mut reqwest::Response, want: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {want} in time: {seen}"))
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}
