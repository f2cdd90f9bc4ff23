//! One number's worker: sends its queued messages in order, at its pace, while its session
//! is ready on this node, and records each outcome.

use super::*;

pub(super) struct Worker {
    inner: Arc<Inner>,
    pair: Pair,
    notify: Arc<Notify>,
    pacer: Pacer,
    /// The last file sent, by where it came from: a group send reuses it.
    media: Option<(String, OutgoingMedia, tokio::time::Instant)>,
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
            media: None,
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

    /// The message's file: from its upload, or downloaded from its URL (`image_url` under
    /// its own rules); what a download found goes into the log.
    async fn media_for(&mut self, msg: &MessageRecord) -> Result<OutgoingMedia, String> {
        let legacy = msg
            .image_url
            .as_deref()
            .filter(|_| msg.media.media_id.is_none());
        let key = match (&msg.media.media_id, legacy, &msg.media.url) {
            (Some(id), _, _) => format!("upload:{id}"),
            (None, Some(url), _) => format!("url:{url}"),
            (None, None, Some(url)) => format!("url:{url}"),
            (None, None, None) => return Err("the message has no file to send".into()),
        };
        let key = format!("{}:{key}", msg.kind.as_str());
        if let Some((k, m, at)) = &self.media
            && *k == key
            && at.elapsed() < MEDIA_REUSE
        {
            return Ok(self.shaped(m.clone(), msg));
        }
        let (bytes, mime) = if let Some(id) = &msg.media.media_id {
            let now = self.inner.clock.now_ms();
            let bytes = self
                .inner
                .uploads
                .upload_bytes(id, now)
                .await
                .map_err(|e| format!("cannot read upload {id}: {e}"))?
                .ok_or_else(|| {
                    format!("media_id {id} expired before the message went out (uploads are kept 24 hours)")
                })?;
            let mime = msg
                .media
                .mime
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into());
            (bytes, mime)
        } else if let Some(url) = legacy {
            let f = self
                .inner
                .images
                .fetch(url)
                .await
                .map_err(|e| format!("image_url: {e}"))?;
            self.note_download(msg, &f.mime, f.bytes.len(), &f.final_url)
                .await;
            (f.bytes, f.mime)
        } else {
            let url = msg.media.url.as_deref().unwrap_or_default();
            let f = self
                .inner
                .images
                .fetch_as(url, msg.kind, media::cap(msg.kind))
                .await
                .map_err(|e| crate::messaging::content::ContentError::Media(e).to_string())?;
            self.note_download(msg, &f.mime, f.bytes.len(), &f.final_url)
                .await;
            (f.bytes, f.mime)
        };
        let (bytes, preview) = if msg.kind == MessageKind::Image {
            // Decoding a large picture takes a while: not on the async threads.
            tokio::task::spawn_blocking(move || {
                let p = thumbnail::preview(&bytes);
                (bytes, p)
            })
            .await
            .map_err(|e| format!("cannot read the image: {e}"))?
        } else {
            (bytes, None)
        };
        let out = OutgoingMedia {
            kind: msg.kind,
            bytes: Arc::new(bytes),
            mime,
            file_name: None,
            voice_note: false,
            thumbnail: preview.as_ref().and_then(|p| p.jpeg.clone()),
            width: preview.as_ref().map(|p| p.width),
            height: preview.as_ref().map(|p| p.height),
        };
        self.media = Some((key, out.clone(), tokio::time::Instant::now()));
        Ok(self.shaped(out, msg))
    }

    /// The shared file as this message sends it: its own name and voice-note flag.
    fn shaped(&self, mut m: OutgoingMedia, msg: &MessageRecord) -> OutgoingMedia {
        m.file_name = msg.media.file_name.clone();
        m.voice_note = msg.media.voice_note;
        if m.voice_note && !m.mime.starts_with("audio/ogg") {
            tracing::warn!(
                "⚠️ Message {} is a voice note of {}; WhatsApp's clients expect {}",
                msg.id,
                m.mime,
                media::VOICE_NOTE_MIME
            );
        }
        m
    }

    /// Records what a download found, when the log does not say it yet.
    async fn note_download(&self, msg: &MessageRecord, mime: &str, size: usize, final_url: &str) {
        let name = (msg.kind == MessageKind::Document && msg.media.file_name.is_none())
            .then(|| media::url_file_name(final_url))
            .flatten();
        if msg.media.mime.as_deref() == Some(mime) && msg.media.size == Some(size as i64) {
            return;
        }
        if let Err(e) = self
            .inner
            .store
            .set_message_media(msg.id, mime, size as i64, name.as_deref())
            .await
        {
            // Only the log's detail is lost; the send goes on.
            tracing::warn!("⚠️ Cannot record the file of message {}: {e:#}", msg.id);
        }
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
        let media = if msg.kind.is_media() {
            match self.media_for(msg).await {
                Ok(m) => Some(m),
                Err(reason) => return Outcome::Failed(reason),
            }
        } else {
            None
        };
        let out = OutgoingMessage {
            id: msg.wa_message_id.clone(),
            to,
            text: msg.body.clone(),
            media,
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
