//! Sessions brought back after a stop: this server's own restart, or (on a cluster) the
//! sessions of a node that is gone. Same session id and keys, no new QR code.

use super::SessionManager;
use super::error::SessionResult;
use crate::domain::{SessionId, SessionStatus};
use crate::store::SessionRecord;
use crate::store::traits::Lease;

impl SessionManager {
    /// Brings back every session that was linked when the server stopped, same session id,
    /// no new QR; a fetch the stop cut short is marked so, never left `fetching_contacts`.
    /// On a cluster the lease loop does this instead, for the sessions this node gets.
    pub async fn restore(&self) -> anyhow::Result<usize> {
        let records: Vec<_> = self
            .inner
            .store
            .latest_sessions()
            .await?
            .into_iter()
            .filter(|rec| !rec.status.is_terminal())
            .map(|rec| (rec, None))
            .collect();
        Ok(self.bring_back(records, Stopped::Server).await?)
    }

    /// Starts each session again if its device is still linked; otherwise marks it failed (a
    /// person must scan a new QR code) and gives its lease up.
    pub(super) async fn bring_back(
        &self,
        records: Vec<(SessionRecord, Option<Lease>)>,
        why: Stopped,
    ) -> SessionResult<usize> {
        let ids: Vec<SessionId> = records.iter().map(|(r, _)| r.session_id.clone()).collect();
        let linked = self.inner.engine.linked_among(&ids).await;
        let mut restored = 0;
        for (mut rec, lease) in records {
            if rec.status == SessionStatus::FetchingContacts {
                rec.fetch.completed = false;
                rec.fetch.error = Some(why.fetch_cut_short().into());
            }
            if linked.contains(&rec.session_id) {
                tracing::info!("🔄 Restoring session: {}", rec.session_id);
                rec.status = SessionStatus::Initializing;
                rec.error_message = None;
                self.spawn(rec, lease);
                restored += 1;
            } else {
                // Nothing to reconnect to: a person must ask for a new QR code.
                rec.status = SessionStatus::Error;
                rec.error_message = Some(why.never_linked().into());
                rec.updated_at = self.inner.clock.now_ms();
                self.inner.store.save_session(&rec).await?;
                self.give_up_lease(lease).await;
            }
        }
        Ok(restored)
    }
}

/// What stopped the sessions being brought back, for what their records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    /// This server stopped and started again.
    Server,
    /// The node that ran them is gone or handed them over.
    Node,
}

impl Stopped {
    fn fetch_cut_short(self) -> &'static str {
        match self {
            Self::Server => {
                "Contact fetch was interrupted because the server stopped. Start it again to \
                 complete it; nothing already saved is lost."
            }
            Self::Node => {
                "Contact fetch was interrupted because the node running it stopped. Start it \
                 again to complete it; nothing already saved is lost."
            }
        }
    }

    fn never_linked(self) -> &'static str {
        match self {
            Self::Server => {
                "The server restarted before this session was linked. Call \
                 /api/whatsapp/init for a new QR code."
            }
            Self::Node => {
                "The node that ran it stopped before this session was linked. Call \
                 /api/whatsapp/init for a new QR code."
            }
        }
    }
}
