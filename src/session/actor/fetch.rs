//! The actor's contact fetch: started on request, followed batch by batch, finished or
//! stopped at a batch boundary. One fetch per session at a time.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Actor, Flow, RunningFetch};
use crate::contacts::fetch::{FetchJob, FetchOutcome, FetchUpdate};
use crate::domain::SessionStatus;
use crate::session::FetchStarted;
use crate::session::error::{SessionError, SessionResult};
use crate::store::FetchState;

/// How long shutdown and restart wait for a running fetch to reach a batch boundary.
const FETCH_STOP_GRACE: Duration = Duration::from_secs(5);
/// During a fetch the contact count is recounted at most this often: a count reads every row
/// of the pair, and after each 1,000-contact batch it made a 100k fetch quadratic. The count
/// is exact again the moment the fetch ends.
const FETCH_RECOUNT_EVERY: Duration = Duration::from_millis(500);

impl Actor {
    pub(super) async fn start_fetch(&mut self) -> SessionResult<FetchStarted> {
        let status = self.record.status;
        if !status.is_ready() {
            return Err(SessionError::NotReady { status });
        }
        let client = match &self.client {
            Some(c) if c.is_alive() => c.clone(),
            _ => {
                self.mark_client_gone().await;
                tracing::error!(
                    "❌ Error starting contact fetch: Client not available - session may have been disconnected"
                );
                return Err(SessionError::ClientUnavailable);
            }
        };
        if self.fetch.is_some() {
            return Err(SessionError::FetchRunning);
        }
        tracing::info!("⚡ Contact fetch starting for session: {}", self.id());
        let cancel = CancellationToken::new();
        self.fetch_serial += 1;
        let job = FetchJob {
            serial: self.fetch_serial,
            session_id: self.record.session_id.clone(),
            pair: self.record.pair,
            client,
            store: self.deps.store.clone(),
            clock: self.deps.clock.clone(),
            own_phone: self.record.phone_number.clone(),
            updates: self.fetch_tx.clone(),
            cancel: cancel.clone(),
            slots: self.deps.fetch_slots.clone(),
        };
        self.fetch = Some(RunningFetch {
            serial: self.fetch_serial,
            started: std::time::Instant::now(),
            cancel,
            task: tokio::spawn(job.run()),
        });
        self.record.status = SessionStatus::FetchingContacts;
        self.record.fetch = FetchState {
            last_sync: self.record.fetch.last_sync,
            ..FetchState::default()
        };
        self.save().await;
        Ok(FetchStarted {
            session_id: self.record.session_id.clone(),
            current_status: status,
        })
    }

    pub(super) async fn on_fetch_update(&mut self, update: FetchUpdate) -> Flow {
        match update {
            FetchUpdate::Progress {
                processed,
                total,
                percent,
            } => {
                self.record.fetch.processed = processed;
                self.record.fetch.total = total;
                self.record.fetch.progress = percent;
                // Readers watch the contacts arrive, not only a percentage.
                if self
                    .counted_at
                    .is_none_or(|t| t.elapsed() >= FETCH_RECOUNT_EVERY)
                {
                    self.refresh_counts().await;
                    self.counted_at = Some(tokio::time::Instant::now());
                }
                self.publish();
            }
            FetchUpdate::Done(outcome) => {
                // A fetch that failed because the connection dropped must not set `ready`
                // over the drop's `disconnected`: a client starting a fetch on that `ready`
                // would find no connection. The engine's waiting events go first.
                if self.drain_events().await == Flow::Stop {
                    return Flow::Stop;
                }
                let took = self.fetch.take().map(|f| f.started.elapsed());
                crate::metrics::count(&self.deps.events, |m| m.fetch_finished(&outcome, took));
                self.counted_at = None;
                self.finish_fetch(outcome).await;
            }
        }
        Flow::Continue
    }

    pub(super) async fn finish_fetch(&mut self, outcome: FetchOutcome) {
        let id = self.id().clone();
        let mut completed = None;
        match outcome {
            FetchOutcome::Completed(summary) => {
                tracing::info!(
                    "✅ Contact fetch completed for session {id}: {} contacts saved from {} chats \
                     ({} groups, {} broadcasts, {} newsletters, {} unresolved LIDs, {} invalid ids skipped)",
                    summary.imported,
                    summary.received,
                    summary.skipped_groups,
                    summary.skipped_broadcasts,
                    summary.skipped_newsletters,
                    summary.skipped_unresolved_lids,
                    summary.skipped_invalid,
                );
                let f = &mut self.record.fetch;
                f.completed = true;
                f.error = None;
                f.progress = 100;
                f.total = f.total.max(summary.received as i64);
                f.processed = f.total;
                completed = Some(summary.clone());
                f.summary = Some(summary);
                f.last_sync = Some(self.deps.clock.now_ms());
            }
            FetchOutcome::Failed(message) => {
                tracing::error!("❌ Contact fetch failed for session {id}: {message}");
                self.record.fetch.completed = false;
                self.record.fetch.error = Some(message);
            }
            FetchOutcome::Cancelled => {}
        }
        if self.record.status == SessionStatus::FetchingContacts {
            self.record.status = SessionStatus::Ready;
        }
        self.refresh_counts().await;
        self.save().await;
        if let Some(summary) = completed {
            let data = serde_json::json!({
                "received": summary.received,
                "imported": summary.imported,
                "summary": summary,
                "total_contacts": self.counts.0,
                "total_groups": self.counts.1,
                "last_contacts_sync": self.record.fetch.last_sync.and_then(crate::clock::rfc3339_ms),
            });
            self.emit(crate::events::EventKind::ContactsFetchCompleted, data)
                .await;
        }
    }

    /// Cancels a running fetch and waits for it to leave at a batch boundary; committed
    /// batches stay, and the next fetch completes the picture. A fetch that finished just
    /// before the stop is recorded as finished, not as interrupted.
    pub(super) async fn stop_fetch(&mut self, why: &str) {
        let Some(mut running) = self.fetch.take() else {
            return;
        };
        running.cancel.cancel();
        if tokio::time::timeout(FETCH_STOP_GRACE, &mut running.task)
            .await
            .is_err()
        {
            tracing::warn!(
                "⚠️ Contact fetch of session {} did not stop in time",
                self.id()
            );
            running.task.abort();
        }
        let mut outcome = None;
        while let Ok((serial, update)) = self.fetch_rx.try_recv() {
            if serial == running.serial
                && let FetchUpdate::Done(o) = update
            {
                outcome = Some(o);
            }
        }
        if let Some(done @ (FetchOutcome::Completed(_) | FetchOutcome::Failed(_))) = outcome {
            self.finish_fetch(done).await;
            return;
        }
        self.record.fetch.completed = false;
        self.record.fetch.error = Some(format!(
            "Contact fetch was interrupted because {why}. Start it again to complete it; \
             nothing already saved is lost."
        ));
        if self.record.status == SessionStatus::FetchingContacts {
            self.record.status = SessionStatus::Ready;
        }
    }
}
