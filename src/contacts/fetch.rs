//! The background contact fetch: read in chunks, upsert each chunk in one transaction with
//! its progress, so a kill at any point leaves a consistent prefix that a rerun completes.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{own_numbers, prepare_chunk};
use crate::clock::SharedClock;
use crate::domain::{Pair, PhoneNumber, SessionId};
use crate::engine::{EngineClient, EngineError};
use crate::store::{BatchProgress, FetchSummary, Store};

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
    pub session_id: SessionId,
    pub pair: Pair,
    pub client: Arc<dyn EngineClient>,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub own_phone: Option<PhoneNumber>,
    /// The session actor holds the receiver.
    pub updates: mpsc::Sender<FetchUpdate>,
    pub cancel: CancellationToken,
}

impl FetchJob {
    pub async fn run(self) {
        let outcome = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => FetchOutcome::Cancelled,
            r = self.import() => match r {
                Ok(summary) => FetchOutcome::Completed(summary),
                Err(message) => FetchOutcome::Failed(message),
            },
        };
        let _ = self.updates.send(FetchUpdate::Done(outcome)).await;
    }

    async fn import(&self) -> Result<FetchSummary, String> {
        let id = &self.session_id;
        let mut source = self.client.read_contacts().await.map_err(describe)?;
        let total = source.total().unwrap_or(0) as i64;
        let mut own: Vec<PhoneNumber> = self.own_phone.iter().cloned().collect();
        let jids = source.own_jids();
        own.extend(own_numbers(jids.iter().map(String::as_str)));
        let mut summary = FetchSummary::default();
        let mut processed: i64 = 0;
        tracing::info!("⚡ Reading contacts for session: {id} ({total} chats and contacts)");
        while let Some(chunk) = source.next_chunk().await.map_err(describe)? {
            let batch = prepare_chunk(&chunk, &own, &mut summary);
            processed += chunk.len() as i64;
            let total_now = total.max(processed);
            // 100 is kept for "done": the last batch is not the end until the source says so.
            let percent = (processed * 100 / total_now.max(1)).min(99);
            let progress = BatchProgress {
                session_id: id,
                processed,
                total: total_now,
                percent,
            };
            self.store
                .import_contacts(self.pair, &batch, progress, self.clock.now_ms())
                .await
                .map_err(|e| {
                    tracing::error!("❌ Saving contacts failed for session {id}: {e:#}");
                    "Contact fetch failed: the contacts could not be saved. Start the fetch again."
                        .to_string()
                })?;
            summary.imported += batch.len() as u64;
            let _ = self
                .updates
                .send(FetchUpdate::Progress {
                    processed,
                    total: total_now,
                    percent,
                })
                .await;
        }
        Ok(summary)
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
        EngineError::Failed(m) => format!("Contact fetch failed: {m}. Start the fetch again."),
    }
}
