//! The live actors by pair: the manager adds them, each actor removes itself as it ends.

use std::collections::HashMap;
use std::sync::Mutex;

use super::SessionHandle;
use crate::domain::Pair;

/// Live actors by pair. The std mutex is never held across an `.await`.
#[derive(Default)]
pub(crate) struct Registry {
    live: Mutex<HashMap<Pair, SessionHandle>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Pair, SessionHandle>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, pair: Pair) -> Option<SessionHandle> {
        self.map().get(&pair).filter(|h| h.is_running()).cloned()
    }

    pub(super) fn insert(&self, handle: SessionHandle) {
        self.map().insert(handle.pair, handle);
    }

    /// Called by an ending actor; leaves a newer actor of the same pair alone.
    pub(crate) fn remove(&self, pair: Pair, serial: u64) {
        let mut map = self.map();
        if map.get(&pair).is_some_and(|h| h.serial == serial) {
            map.remove(&pair);
        }
    }

    pub(super) fn all(&self) -> Vec<SessionHandle> {
        self.map().values().cloned().collect()
    }

    pub(super) fn len(&self) -> usize {
        self.map().values().filter(|h| h.is_running()).count()
    }
}
