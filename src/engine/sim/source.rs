//! A contact read from a simulated phone: its book in chunks of 1,000, failing when the
//! client dies or its connection drops mid-read, as a real read would.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;

use super::client::ClientShared;
use super::{PhoneBook, SimEntry};
use crate::engine::{ContactSource, EngineError, RawContact};

const CHUNK: usize = 1_000;
const SLOW_FETCH: Duration = Duration::from_secs(3);

pub(super) struct SimSource {
    pub(super) shared: Arc<ClientShared>,
    pub(super) generation: u64,
    pub(super) book: Arc<PhoneBook>,
    pub(super) pos: usize,
    pub(super) slow: bool,
    pub(super) delay: Duration,
}

#[async_trait]
impl ContactSource for SimSource {
    fn total(&self) -> Option<u64> {
        Some(self.book.entries.len() as u64)
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<RawContact>>, EngineError> {
        if self.slow {
            self.slow = false;
            tokio::time::sleep(SLOW_FETCH).await;
        } else if self.pos > 0 && !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if !self.shared.alive.load(Ordering::SeqCst) {
            return Err(EngineError::ClientGone);
        }
        if self.shared.generation.load(Ordering::SeqCst) != self.generation {
            return Err(EngineError::Failed(
                "the connection dropped while contacts were being read".into(),
            ));
        }
        if self.pos >= self.book.entries.len() {
            return Ok(None);
        }
        let end = (self.pos + CHUNK).min(self.book.entries.len());
        let chunk = self.book.entries[self.pos..end]
            .iter()
            .map(SimEntry::raw)
            .collect();
        self.pos = end;
        Ok(Some(chunk))
    }

    fn own_jids(&self) -> Vec<String> {
        self.book.me.iter().cloned().collect()
    }
}
