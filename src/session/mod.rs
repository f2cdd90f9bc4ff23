//! Sessions: one actor task per live session owns its engine client; handlers reach it
//! through a [`SessionHandle`] and read its state from a watch channel without waiting.

mod actor;
mod cluster;
mod error;
pub mod health;
mod manager;
mod registry;
mod restore;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{Pair, SessionId, SessionStatus};
use crate::engine::EngineClient;
use crate::qr::QrImage;
use crate::store::SessionRecord;

pub use error::{Refusal, SessionError, SessionResult};
pub use manager::{InitOutcome, LogoutOutcome, SessionManager};

/// What a status read sees: the persisted record plus what only the live actor knows.
#[derive(Clone)]
pub struct SessionSnapshot {
    pub record: SessionRecord,
    pub qr: Option<Arc<QrImage>>,
    /// The live client, asked (an atomic read, never a wait) whether it is still there.
    pub client: Option<Arc<dyn EngineClient>>,
    pub fetch_running: bool,
    pub total_contacts: i64,
    pub total_groups: i64,
}

impl SessionSnapshot {
    pub fn status(&self) -> SessionStatus {
        self.record.status
    }

    /// Linked, connected, and the client has not vanished. A vanished client keeps the
    /// status `ready` until it is used (the notes' "client not available" path), but it is
    /// never reported ready.
    pub fn client_ready(&self) -> bool {
        self.record.status.is_ready() && self.client_alive()
    }

    pub fn client_alive(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.is_alive())
    }

    /// Whether messages may be queued for this session: it is linked, even if reconnecting.
    /// A session that was never linked, was unlinked, or stopped with an error cannot send;
    /// a ready one whose client vanished must be restarted first.
    pub fn sendable(&self) -> SessionResult<()> {
        let status = self.status();
        let linked = self.record.phone_number.is_some();
        let ok = match status {
            SessionStatus::Ready
            | SessionStatus::FetchingContacts
            | SessionStatus::Disconnected
            | SessionStatus::Authenticated => true,
            SessionStatus::Initializing => linked,
            _ => false,
        };
        if !ok {
            return Err(SessionError::CannotSend { status });
        }
        if status.is_ready() && !self.client_alive() {
            return Err(SessionError::ClientUnavailable);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchStarted {
    pub session_id: SessionId,
    /// The status the session had when the fetch was accepted.
    pub current_status: SessionStatus,
}

pub(crate) enum Command {
    StartFetch(oneshot::Sender<SessionResult<FetchStarted>>),
    /// For a pairing code: the live client of a session still waiting to be linked.
    LinkingClient(oneshot::Sender<SessionResult<Arc<dyn crate::engine::EngineClient>>>),
    /// From `init`: restart the client if it died; answers whether it did.
    EnsureRunning(oneshot::Sender<bool>),
    Restart(oneshot::Sender<()>),
    Logout(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    /// This node may no longer run the session (cut off from its database): the client
    /// stops at once, and nothing more is written.
    Abandon(oneshot::Sender<()>),
}

/// A cheap handle to a live actor.
#[derive(Clone)]
pub struct SessionHandle {
    /// Tells apart two actors of the same pair over time.
    pub(crate) serial: u64,
    pub pair: Pair,
    /// The actor holds the receiver; it ends when every handle is gone or on Shutdown.
    pub(crate) commands: mpsc::Sender<Command>,
    /// The actor holds the sender and publishes every change.
    pub(crate) state: watch::Receiver<Arc<SessionSnapshot>>,
}

impl SessionHandle {
    pub fn snapshot(&self) -> Arc<SessionSnapshot> {
        self.state.borrow().clone()
    }

    /// Sends a command and waits for the answer; `None` when the actor has ended.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }
}
