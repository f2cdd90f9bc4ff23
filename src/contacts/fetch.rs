//! The background contact fetch: read in chunks, upsert them in transactions that each carry
//! their progress, so a kill at any point leaves a consistent prefix that a rerun completes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{ChunkPreparer, own_numbers};
use crate::clock::SharedClock;
use crate::domain::{Pair, PhoneNumber, SessionId};
use crate::engine::{EngineClient, EngineError};
use crate::store::prelude::*;
use crate::store::{BatchProgress, FetchSummary, ImportContact, keep_trying};

/// Chunks whose numbers are parsed at once, on blocking threads.
const CLASSIFY_IN_PARALLEL: usize = 2;
/// Prepared chunks waiting for the writer.
const READ_AHEAD: usize = 4;
/// Contacts gathered before a transaction: every commit rewrites the index pages it touched
/// into the WAL, so 1,000-row commits made the writes of a 100k fetch three times as slow as
/// one transaction. Progress still moves several times a second.
const MIN_ROWS_PER_TRANSACTION: usize = 5_000;
/// How long the writer waits for `MIN_ROWS_PER_TRANSACTION` before it writes what it has.
const GATHER_AT_MOST: Duration = Duration::from_millis(250);
/// The most contacts one transaction takes when the writer gathers waiting chunks.
const MAX_ROWS_PER_TRANSACTION: usize = 20_000;

/// An update from the fetch numbered `.0`; the actor ignores those of a fetch it has let go.
pub type FetchMessage = (u64, FetchUpdate);

#[derive(Debug, Clone, PartialEq)]
pub enum FetchUpdate {
    Progress {
        processed: i64,
        total: i64,
        percent: i64,
    },
    Done(FetchOutcome),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    Completed(FetchSummary),
    Failed(String),
    /// Stopped on purpose (restart, logout, shutdown); what was committed stays.
    Cancelled,
}

pub struct FetchJob {
    /// Distinguishes this fetch's updates from those of an earlier one of the same session.
    pub serial: u64,
    pub session_id: SessionId,
    pub pair: Pair,
    pub client: Arc<dyn EngineClient>,
    pub store: Arc<dyn Database>,
    pub clock: SharedClock,
    pub own_phone: Option<PhoneNumber>,
    /// The session actor holds the receiver.
    pub updates: mpsc::UnboundedSender<FetchMessage>,
    pub cancel: CancellationToken,
    /// Shared by every session: a fetch beyond the cap waits here, `fetching_contacts` at 0%.
    pub slots: Arc<Semaphore>,
}

impl FetchJob {
    /// Runs to an outcome that is always reported, even when the import panics: a session
    /// must never stay `fetching_contacts` because its fetch died.
    pub async fn run(self) {
        let updates = self.updates.clone();
        let serial = self.serial;
        let cancel = self.cancel.clone();
        let id = self.session_id.clone();
        let mut inner = tokio::spawn(async move { self.import().await });
        let _abort_on_drop = AbortOnDrop(inner.abort_handle());
        // A finished import wins over a cancel that arrives at the same moment.
        let finished = tokio::select! {
            biased;
            r = &mut inner => Some(r),
            _ = cancel.cancelled() => None,
        };
        let outcome = match finished {
            Some(Ok(Ok(summary))) => FetchOutcome::Completed(summary),
            Some(Ok(Err(message))) => FetchOutcome::Failed(message),
            Some(Err(e)) => {
                tracing::error!("❌ Contact fetch task of session {id} died: {e}");
                FetchOutcome::Failed(
                    "Contact fetch failed because of an internal error. Start it again; \
                     nothing already saved is lost."
                        .into(),
                )
            }
            None => {
                // Wait for the abort to land: nothing may write after "cancelled" is said.
                inner.abort();
                let _ = inner.await;
                FetchOutcome::Cancelled
            }
        };
        let _ = updates.send((serial, FetchUpdate::Done(outcome)));
    }

    async fn import(&self) -> Result<FetchSummary, String> {
        let id = &self.session_id;
        // Held until the import ends; a cancel while queued drops the wait with the task.
        let _slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                tracing::info!(
                    "ℹ️ Contact fetch of session {id} is queued: the server already runs its \
                     maximum of concurrent fetches"
                );
                self.slots.clone().acquire_owned().await.map_err(|_| {
                    "Contact fetch failed: the server is shutting down. Start it again.".to_string()
                })?
            }
        };
        let mut source = self.client.read_contacts().await.map_err(describe)?;
        let total = source.total().unwrap_or(0) as i64;
        let mut own: Vec<PhoneNumber> = self.own_phone.iter().cloned().collect();
        let jids = source.own_jids();
        own.extend(own_numbers(jids.iter().map(String::as_str)));
        let mut prep = ChunkPreparer::new(own, self.clock.now().timestamp());
        tracing::info!("⚡ Reading contacts for session: {id} ({total} chats and contacts)");
        // Reading and preparing the next chunks (number parsing is most of the CPU) overlaps
        // the write of the earlier ones, which runs on the database's own thread.
        let (ready_tx, mut ready_rx) = mpsc::channel::<(Vec<ImportContact>, i64)>(READ_AHEAD);
        let classifier = prep.classifier();
        let read = async {
            let mut processed: i64 = 0;
            // Chunks classified on blocking threads, oldest first: both cores parse numbers
            // while the database is busy, and the merge still sees the chunks in order.
            let mut classifying = VecDeque::with_capacity(CLASSIFY_IN_PARALLEL);
            let mut more = true;
            loop {
                while more && classifying.len() < CLASSIFY_IN_PARALLEL {
                    match source.next_chunk().await.map_err(describe)? {
                        Some(chunk) => {
                            let c = classifier.clone();
                            classifying
                                .push_back(tokio::task::spawn_blocking(move || c.classify(&chunk)));
                        }
                        None => more = false,
                    }
                }
                let Some(next) = classifying.pop_front() else {
                    break;
                };
                let classified = next.await.map_err(|e| {
                    tracing::error!("❌ Classifying contacts failed for session {id}: {e}");
                    "Contact fetch failed because of an internal error. Start it again; nothing \
                     already saved is lost."
                        .to_string()
                })?;
                processed += classified.len() as i64;
                let batch = prep.merge(classified);
                if ready_tx.send((batch, processed)).await.is_err() {
                    break;
                }
            }
            drop(ready_tx);
            Ok::<(), String>(())
        };
        let write = async {
            let mut imported: u64 = 0;
            while let Some((mut batch, mut processed)) = ready_rx.recv().await {
                // Chunks are gathered into one transaction (fewer commits; each still leaves a
                // consistent prefix for a rerun to complete), but never for long: a slow
                // source's progress shows within moments.
                let deadline = tokio::time::Instant::now() + GATHER_AT_MOST;
                while batch.len() < MAX_ROWS_PER_TRANSACTION {
                    let next = if batch.len() < MIN_ROWS_PER_TRANSACTION {
                        tokio::time::timeout_at(deadline, ready_rx.recv())
                            .await
                            .ok()
                            .flatten()
                    } else {
                        ready_rx.try_recv().ok()
                    };
                    let Some((more, p)) = next else {
                        break;
                    };
                    batch.extend(more);
                    processed = p;
                }
                let total_now = total.max(processed);
                // 100 is kept for "done": the last batch is not the end until the source says so.
                let percent = (processed * 100 / total_now.max(1)).min(99);
                let progress = BatchProgress {
                    session_id: id,
                    processed,
                    total: total_now,
                    percent,
                };
                // A database busy with other writers delays the batch rather than failing the
                // fetch; a cancel stops the wait (and the whole import) at once.
                let now = self.clock.now_ms();
                let what = format!("Saving contacts of session {id}");
                keep_trying(what, Some(&self.cancel), || {
                    self.store.import_contacts(self.pair, &batch, progress, now)
                })
                .await
                .map_err(|e| {
                    tracing::error!("❌ Saving contacts failed for session {id}: {e:#}");
                    "Contact fetch failed: the contacts could not be saved. Start the fetch \
                     again."
                        .to_string()
                })?;
                imported += batch.len() as u64;
                let progress = FetchUpdate::Progress {
                    processed,
                    total: total_now,
                    percent,
                };
                let _ = self.updates.send((self.serial, progress));
            }
            Ok::<u64, String>(imported)
        };
        // The first error ends both: a failed write must not leave the reader waiting.
        let ((), imported) = tokio::try_join!(read, write)?;
        prep.summary.imported += imported;
        Ok(prep.summary)
    }
}

fn describe(e: EngineError) -> String {
    match e {
        EngineError::ClientGone => {
            "Contact fetch failed: the WhatsApp client is not available. Restart the session and \
             fetch again."
                .into()
        }
        EngineError::NotConnected => {
            "Contact fetch failed: the session lost its connection to WhatsApp. Wait for it to be \
             ready and fetch again."
                .into()
        }
        EngineError::Failed(m)
        | EngineError::Busy(m)
        | EngineError::Invalid(m)
        | EngineError::RateLimited(m) => {
            format!("Contact fetch failed: {m}. Start the fetch again.")
        }
    }
}

/// Cancelling a fetch (or dropping its runner) stops the import at its next await; an
/// uncommitted batch is rolled back with its transaction.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
