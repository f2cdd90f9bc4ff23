//! One number's worker: sends its queued messages in order, at its pace, while its session
//! is ready on this node, and records each outcome.

use super::*;

pub(super) struct Worker {
    inner: Arc<Inner>,
    pair: Pair,
    notify: Arc<Notify>,
    pacer: Pacer,
    image: Option<(String, OutgoingImage, tokio::time::Instant)>,
}

enum Outcome {
    Sent(String),
    Failed(String),
    /// Never reached WhatsApp: back to the queue.
    Interrupted,
}

impl Worker {
    pub(super) async fn new(inner: Arc<Inner>, pair: Pair, notify: Arc<Notify>) -> Self {
        let since_last = match inner.store.last_sent_at(pair).await {
            Ok(Some(at)) => Some(Duration::from_millis(
                (inner.clock.now_ms() - at).max(0) as u64
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("⚠️ Cannot read when {pair} last sent; pacing from now: {e:#}");
                Some(Duration::ZERO)
            }
        };
        let pacer = Pacer::new(inner.pacing, since_last);
        Self {
            inner,
            pair,
            notify,
            pacer,
            image: None,
        }
    }

    /// Sleeps, unless cancelled (then false).
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = self.inner.cancel.cancelled() => false,
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            if self.inner.cancel.is_cancelled() {
                return;
            }
            let msg = match self.inner.store.next_pending(self.pair).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    if self.idle().await {
                        continue;
                    }
                    return;
                }
                Err(e) => {
                    tracing::error!("❌ Cannot read the outbox of {}: {e:#}", self.pair);
                    if !self.pause(RECHECK).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(client) = self.wait_ready().await else {
                return;
            };
            // The daily cap, counted from the database so a restart does not reset it.
            let now = self.inner.clock.now_ms();
            match self.inner.store.sent_since(self.pair, now - DAY_MS).await {
                Ok((n, oldest)) => {
                    if let Some(wait) = self.pacer.cap_wait(n, oldest, now) {
                        tracing::info!(
                            "ℹ️ {} reached its daily cap of {} messages; the next goes in {}s",
                            self.pair,
                            self.inner.pacing.daily_cap,
                            wait.as_secs()
                        );
                        if !self.pause(wait.min(RECHECK)).await {
                            return;
                        }
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!("❌ Cannot count the sends of {}: {e:#}", self.pair);
                    if !self.pause(RECHECK).await {
                        return;
                    }
                    continue;
                }
            }
            let gap = Duration::from_millis(msg.min_gap_ms.max(0) as u64);
            tokio::select! {
                () = self.pacer.wait(gap) => {}
                () = self.inner.cancel.cancelled() => return,
            }
            // The session may have dropped while waiting for the pace.
            let client = if client.is_alive() {
                client
            } else {
                continue;
            };
            let (store, now) = (&self.inner.store, self.inner.clock.now_ms());
            let marked = keep_trying(
                format!("Marking message {} as sending", msg.id),
                Some(&self.inner.cancel),
                || store.mark_sending(msg.id, now),
            )
            .await;
            if let Err(e) = marked {
                if self.inner.cancel.is_cancelled() {
                    return;
                }
                // Not sent, still queued: it is tried again.
                tracing::error!("❌ Cannot mark message {} as sending: {e:#}", msg.id);
                if !self.pause(RECHECK).await {
                    return;
                }
                continue;
            }
            let cancel = self.inner.cancel.clone();
            let outcome = tokio::select! {
                o = self.deliver(client.as_ref(), &msg) => o,
                () = cancel.cancelled() => return,
            };
            self.record(&msg, outcome).await;
        }
    }

    /// Waits for a wake with nothing to send; false when the worker should end (a stop, or
    /// its session no longer runs on this node).
    async fn idle(&self) -> bool {
        loop {
            tokio::select! {
                () = self.notify.notified() => return true,
                () = self.inner.cancel.cancelled() => return false,
                // Only the registry is looked at, not the queue: a wake says when to look.
                () = tokio::time::sleep(RECHECK), if self.inner.signals.get().is_some() => {
                    if self.inner.end_worker(self.pair, &self.notify) {
                        return false;
                    }
                }
            }
        }
    }

    /// The live client once the session is ready; `None` when stopping, or on a node of a
    /// cluster when the session does not run here (its node sends).
    async fn wait_ready(&self) -> Option<Arc<dyn EngineClient>> {
        loop {
            match self.inner.manager.live(self.pair) {
                Some(h) => {
                    let mut state = h.state.clone();
                    let snap = state.borrow_and_update().clone();
                    if snap.client_ready()
                        && let Some(c) = snap.client.clone()
                    {
                        return Some(c);
                    }
                    tokio::select! {
                        _ = state.changed() => {}
                        () = tokio::time::sleep(RECHECK) => {}
                        () = self.inner.cancel.cancelled() => return None,
                    }
                }
                None => {
                    if self.inner.signals.get().is_some()
                        && self.inner.end_worker(self.pair, &self.notify)
                    {
                        return None;
                    }
                    if !self.pause(RECHECK).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn image_for(&mut self, url: &str) -> Result<OutgoingImage, String> {
        if let Some((u, img, at)) = &self.image
            && u == url
            && at.elapsed() < IMAGE_REUSE
        {
            return Ok(img.clone());
        }
        let fetched = self
            .inner
            .images
            .fetch(url)
            .await
            .map_err(|e| format!("image_url: {e}"))?;
        let img = OutgoingImage {
            bytes: Arc::new(fetched.bytes),
            mime: fetched.mime,
        };
        self.image = Some((url.to_owned(), img.clone(), tokio::time::Instant::now()));
        Ok(img)
    }

    async fn deliver(&mut self, client: &dyn EngineClient, msg: &MessageRecord) -> Outcome {
        let Some(to) = PhoneNumber::parse_international(&msg.recipient) else {
            return Outcome::Failed(format!("{} is not a valid phone number", msg.recipient));
        };
        if msg
            .body
            .as_ref()
            .is_some_and(|b| b.chars().count() > MAX_TEXT_CHARS)
        {
            return Outcome::Failed(format!(
                "the text is longer than {MAX_TEXT_CHARS} characters once its variables are filled"
            ));
        }
        let image = match (msg.kind, msg.image_url.as_deref()) {
            (MessageKind::Image, Some(url)) => match self.image_for(url).await {
                Ok(i) => Some(i),
                Err(reason) => return Outcome::Failed(reason),
            },
            _ => None,
        };
        let out = OutgoingMessage {
            id: msg.wa_message_id.clone(),
            to,
            text: msg.body.clone(),
            image,
        };
        match tokio::time::timeout(SEND_TIMEOUT, client.send(&out)).await {
            Ok(Ok(id)) => Outcome::Sent(id),
            Ok(Err(EngineError::NotConnected | EngineError::ClientGone | EngineError::Busy(_))) => {
                Outcome::Interrupted
            }
            Ok(Err(EngineError::RateLimited(why))) => {
                tracing::warn!("⚠️ WhatsApp asks {} to slow down: {why}", self.pair);
                Outcome::Interrupted
            }
            Ok(Err(EngineError::Invalid(why) | EngineError::Failed(why))) => Outcome::Failed(why),
            Err(_) => Outcome::Interrupted,
        }
    }

    async fn record(&mut self, msg: &MessageRecord, outcome: Outcome) {
        let now = self.inner.clock.now_ms();
        let session_id = self
            .inner
            .manager
            .live(self.pair)
            .map(|h| h.snapshot().record.session_id.clone());
        let data = |extra: serde_json::Value| {
            let mut d = json!({
                "message_id": msg.id,
                "job_id": msg.job_id,
                "contact_id": msg.contact_id,
                "recipient": msg.recipient,
                "type": msg.kind.as_str(),
            });
            if let (Some(d), serde_json::Value::Object(e)) = (d.as_object_mut(), extra) {
                d.extend(e);
            }
            d
        };
        match outcome {
            Outcome::Sent(wa_id) => {
                self.pacer.sent();
                // Unrecorded, the message would go again (under the same id, which WhatsApp
                // shows once, but still a second send): wait for a busy database.
                let store = &self.inner.store;
                let recorded = keep_trying(
                    format!("Recording message {} as sent", msg.id),
                    Some(&self.inner.cancel),
                    || store.mark_sent(msg.id, &wa_id, now),
                )
                .await;
                if let Err(e) = recorded {
                    tracing::error!(
                        "❌ Message {} was sent but cannot be recorded: {e:#}",
                        msg.id
                    );
                }
                tracing::info!("✅ Message {} sent by {}", msg.id, self.pair);
                self.inner.events.metrics().message("sent");
                self.tell(
                    session_id,
                    EventKind::MessageSent,
                    data(json!({ "whatsapp_message_id": wa_id })),
                )
                .await;
            }
            Outcome::Failed(reason) => {
                self.pacer.sent();
                self.fail(msg, &reason, session_id, data(json!({ "error": reason })))
                    .await;
            }
            Outcome::Interrupted if msg.attempts + 1 >= MAX_ATTEMPTS => {
                let reason =
                    format!("WhatsApp did not confirm the send after {MAX_ATTEMPTS} attempts");
                self.fail(msg, &reason, session_id, data(json!({ "error": reason })))
                    .await;
            }
            Outcome::Interrupted => {
                let store = &self.inner.store;
                let requeued = keep_trying(
                    format!("Putting message {} back in the queue", msg.id),
                    Some(&self.inner.cancel),
                    || store.requeue(msg.id, now),
                )
                .await;
                if let Err(e) = requeued {
                    tracing::error!("❌ Cannot put message {} back in the queue: {e:#}", msg.id);
                }
                // Give a dropping connection a moment before the next look.
                self.pause(Duration::from_millis(500)).await;
            }
        }
    }

    async fn fail(
        &self,
        msg: &MessageRecord,
        reason: &str,
        session_id: Option<crate::domain::SessionId>,
        data: serde_json::Value,
    ) {
        let (store, now) = (&self.inner.store, self.inner.clock.now_ms());
        let recorded = keep_trying(
            format!("Recording the failure of message {}", msg.id),
            Some(&self.inner.cancel),
            || store.mark_failed(msg.id, reason, now),
        )
        .await;
        if let Err(e) = recorded {
            tracing::error!("❌ Cannot record the failure of message {}: {e:#}", msg.id);
        }
        tracing::warn!("⚠️ Message {} of {} failed: {reason}", msg.id, self.pair);
        self.inner.events.metrics().message("failed");
        self.tell(session_id, EventKind::MessageFailed, data).await;
    }

    /// Tells an outcome as an event. The event waits for a busy database, but a stop does not
    /// wait for the event.
    async fn tell(
        &self,
        session_id: Option<crate::domain::SessionId>,
        kind: EventKind,
        data: serde_json::Value,
    ) {
        let told = self
            .inner
            .events
            .emit(self.pair, session_id.as_ref(), kind, data);
        tokio::select! {
            () = told => {}
            () = self.inner.cancel.cancelled() => {}
        }
    }
}
