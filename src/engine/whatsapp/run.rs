//! The client task: builds the library client, pumps its events until it ends, and the
//! glue that hands the library our transport, HTTP client and runtime.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::Instrument;
use whatsapp_rust::bot::Bot;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::events::{Event, EventHandler, EventInterest, EventKind};

use super::client::WaClient;
use super::events::Pump;
use super::send::AckWaiters;
use super::{STOP_GRACE, WATCHDOG_TICK, WhatsAppEngine};
use crate::engine::{ClientStart, EngineEvent};

/// What the pump reads: the library's events and our transport's failed attempts, on one
/// channel so their order is the order they happened in.
pub(super) enum Input {
    Library(Arc<Event>),
    ConnectFailed(String),
    /// Answered once everything before it is handled.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Forwards the library's lifecycle events, in dispatch order, to the pump, and answers
/// sends waiting for their ack.
pub(super) struct Forwarder {
    tx: mpsc::UnboundedSender<Input>,
    acks: Arc<AckWaiters>,
}

pub(super) const LIFECYCLE: &[EventKind] = &[
    EventKind::Connected,
    EventKind::Disconnected,
    EventKind::PairSuccess,
    EventKind::PairError,
    EventKind::LoggedOut,
    EventKind::PairingQrCode,
    EventKind::PairingQrCodesExhausted,
    EventKind::QrScannedWithoutMultidevice,
    EventKind::ClientOutdated,
    EventKind::StreamReplaced,
    EventKind::TemporaryBan,
    EventKind::ConnectFailure,
    EventKind::StreamError,
    // Contacts, cached as they come.
    EventKind::HistorySync,
    EventKind::ContactUpdate,
    EventKind::PushNameUpdate,
    // Contacts' activity, and messages people write to the account.
    EventKind::Messages,
    // WhatsApp took (or refused) a message we sent.
    EventKind::ServerAck,
    // The recipient's phone got, read or played a message we sent.
    EventKind::Receipt,
];

impl EventHandler for Forwarder {
    fn handle_event(&self, event: Arc<Event>) {
        if let Event::ServerAck(ack) = &*event {
            // Answered here, not by the pump: a send waits on it, and the pump may be busy
            // writing a large history chunk.
            if ack.class.as_deref() == Some("message") {
                self.acks.acked(&ack.id, ack.error.clone());
            }
            return;
        }
        let _ = self.tx.send(Input::Library(event));
    }

    /// Only what drives the status: the library then skips building the rest for us.
    fn interest(&self) -> EventInterest {
        EventInterest::of(LIFECYCLE)
    }
}

/// Wraps the real transport so a failed connection attempt becomes visible: the library
/// retries those silently, and a session must not sit in `initializing` forever offline.
pub(super) struct ObservedTransport {
    inner: Arc<dyn TransportFactory>,
    timeout: Duration,
    failures: mpsc::UnboundedSender<Input>,
}

#[async_trait]
impl TransportFactory for ObservedTransport {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(
        Arc<dyn Transport>,
        whatsapp_rust::async_channel::Receiver<TransportEvent>,
    )> {
        match tokio::time::timeout(self.timeout, self.inner.create_transport()).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => {
                let _ = self.failures.send(Input::ConnectFailed(format!("{e:#}")));
                Err(e)
            }
            Err(_) => {
                let msg = format!("no answer within {} s", self.timeout.as_secs());
                let _ = self.failures.send(Input::ConnectFailed(msg.clone()));
                Err(anyhow::anyhow!(msg))
            }
        }
    }
}

pub(super) async fn run_client(
    engine: WhatsAppEngine,
    client: Arc<WaClient>,
    start: ClientStart,
    span: tracing::Span,
) {
    let id = start.session_id.clone();
    let events = start.events;
    // Not instrumented with the span itself: the runtime puts every library task in it.
    if let Err(message) = drive(&engine, &client, &events, span).await {
        tracing::error!("❌ WhatsApp client of session {id} failed: {message}");
        tokio::select! {
            _ = events.send(EngineEvent::Failed { message }) => {}
            _ = client.stop.cancelled() => {}
        }
    }
    // A device that never got linked cannot be resumed; a restart makes a new one. Removed
    // before anyone hears the client ended, so a restart's new device is not swept away.
    // When the flag cannot be read the device is kept: a linked one must never be lost.
    if matches!(engine.inner.creds.is_linked(&id).await, Ok(false))
        && let Err(e) = engine.forget_device(&id).await
    {
        tracing::warn!("⚠️ Cannot remove the unlinked device of session {id}: {e}");
    }
    client.mark_ended();
    tracing::info!("ℹ️ WhatsApp client of session {id} stopped");
}

/// Runs the library client until it ends; returns an error only when it could not start.
pub(super) async fn drive(
    engine: &WhatsAppEngine,
    client: &Arc<WaClient>,
    events: &mpsc::Sender<EngineEvent>,
    span: tracing::Span,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let starting = async {
        let version = engine.version().await;
        let backend = engine
            .inner
            .creds
            .device_backend(&client.session_id)
            .await
            .map_err(|e| {
                format!(
                    "cannot open the session's credentials ({e:#}); check that the database is \
                     reachable and writable, then call /api/whatsapp/restart"
                )
            })?;
        Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(ObservedTransport {
                inner: engine.inner.transport.clone(),
                timeout: engine.inner.connect_timeout,
                failures: tx.clone(),
            })
            .with_http_client(SharedHttp(engine.inner.http.clone()))
            .with_runtime(SessionRuntime { span })
            .with_version(version)
            .with_event_handler(Forwarder {
                tx: tx.clone(),
                acks: client.acks.clone(),
            })
            .build()
            .await
            .map_err(|e| format!("cannot build the WhatsApp client: {e}"))
    };
    let bot = tokio::select! {
        bot = starting => bot?,
        // Asked to stop while starting: never connect.
        _ = client.stop.cancelled() => return Ok(()),
    };
    if let Ok(mut g) = client.input.lock() {
        *g = Some(tx.clone());
    }
    drop(tx);
    let lib = bot.client();
    client.set_lib(lib.clone());
    if client.stop.is_cancelled() {
        return Ok(());
    }
    let mut handle = bot.spawn();
    let mut pump = Pump {
        client: client.clone(),
        lib: lib.clone(),
        events: events.clone(),
        last_failure: None,
        waiting_since: Some(tokio::time::Instant::now()),
    };
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = loop {
        tokio::select! {
            input = rx.recv() => match input {
                Some(Input::Library(ev)) => pump.on_library_event(&ev).await,
                Some(Input::ConnectFailed(reason)) => pump.on_connect_failure(reason).await,
                Some(Input::Barrier(done)) => {
                    let _ = done.send(());
                }
                None => break false,
            },
            _ = &mut handle => break false,
            _ = client.stop.cancelled() => break true,
            _ = watchdog.tick() => pump.check_progress().await,
        }
    };
    if stopped {
        // Flushes the device state and closes the socket; the run loop then ends.
        let _ = tokio::time::timeout(STOP_GRACE, lib.disconnect()).await;
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            tracing::warn!(
                "⚠️ WhatsApp client of session {} did not stop in time; aborting it",
                client.session_id
            );
            handle.abort();
        }
        return Ok(());
    }
    // Events dispatched just before the run loop ended (a logout, a ban) still count.
    while let Ok(input) = rx.try_recv() {
        if let Input::Library(ev) = input {
            pump.on_library_event(&ev).await;
        }
    }
    Ok(())
}

/// The engine's one HTTP client as the library's builder takes it: a value, where the engine
/// holds a trait object (the real client, or a test's fake media server).
pub(super) struct SharedHttp(Arc<dyn HttpClient>);

#[async_trait]
impl HttpClient for SharedHttp {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.0.resource_report()
    }
}

/// Tokio, with every task the library spawns inside the session's span: its own log lines
/// then carry the session id like ours.
pub(super) struct SessionRuntime {
    span: tracing::Span,
}

pub(super) type BoxedTask =
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

impl SessionRuntime {
    pub(super) fn wrap(&self, future: BoxedTask) -> BoxedTask {
        Box::pin(future.instrument(self.span.clone()))
    }
}

impl whatsapp_rust::Runtime for SessionRuntime {
    fn spawn(&self, future: BoxedTask) -> whatsapp_rust::wacore::runtime::AbortHandle {
        whatsapp_rust::TokioRuntime.spawn(self.wrap(future))
    }

    fn spawn_detached(&self, future: BoxedTask) {
        whatsapp_rust::TokioRuntime.spawn_detached(self.wrap(future))
    }

    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        whatsapp_rust::TokioRuntime.sleep(duration)
    }

    fn spawn_blocking(
        &self,
        f: Box<dyn FnOnce() + Send + 'static>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        whatsapp_rust::TokioRuntime.spawn_blocking(f)
    }

    fn yield_now(&self) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        whatsapp_rust::TokioRuntime.yield_now()
    }
}
