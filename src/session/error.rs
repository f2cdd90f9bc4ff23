//! What the session layer refuses, and why. Each sentence a person reads is written here once;
//! `http/` alone decides which status each one answers with.

use crate::domain::{SessionStatus, UserId};
use crate::engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The pair never had a session.
    #[error("No WhatsApp session found. Please initialize a session first.")]
    NoSession,
    /// The session's engine client is gone (it died, or the server no longer holds it).
    #[error("WhatsApp client is not available. Please restart the session and try again.")]
    ClientUnavailable,
    /// Messages can be queued only for a linked session (even one reconnecting).
    #[error(
        "Session is not ready to send messages. Current status: {status}. Please wait for \
         the session to be ready, or link it again with /api/whatsapp/init."
    )]
    CannotSend { status: SessionStatus },
    /// A contact fetch needs a linked, connected session.
    #[error(
        "Session is not ready for contact fetch. Current status: {status}. Please wait for \
         session to be ready or restart the session."
    )]
    NotReady { status: SessionStatus },
    /// Asking WhatsApp about numbers needs a linked, connected session.
    #[error(
        "Session is not ready to check numbers. Current status: {status}. Please wait for \
         the session to be ready or restart the session."
    )]
    NotReadyToCheck { status: SessionStatus },
    #[error(
        "A contact fetch is already running for this session. Follow it at GET \
         /api/whatsapp/contacts/progress."
    )]
    FetchRunning,
    /// A pairing code for a session that already has a phone.
    #[error(
        "Session is already linked to WhatsApp (status: {status}). Call /api/whatsapp/logout \
         first to link another phone."
    )]
    AlreadyLinked { status: SessionStatus },
    /// A pairing code for a linked session whose connection dropped: it comes back by itself.
    #[error(
        "Session is already linked to WhatsApp and is reconnecting; no pairing code is needed."
    )]
    Reconnecting,
    /// A pairing code for a session that ended (logged out, failed).
    #[error(
        "Session is not waiting to be linked. Current status: {status}. Call \
         /api/whatsapp/init first."
    )]
    NotLinking { status: SessionStatus },
    /// The client has no connection to WhatsApp yet, so it cannot ask for a pairing code.
    #[error(
        "The session is not connected to WhatsApp yet, so no pairing code can be requested. \
         Wait until its status is qr_ready and try again."
    )]
    NotConnected,
    /// One more session would take the user past its quota.
    #[error(
        "user_id {user} already has {held} WhatsApp sessions, the most allowed (max sessions \
         per user: {limit}); log one out to link another"
    )]
    TooManySessions { user: UserId, held: i64, limit: u32 },
    /// Another live node runs the session, or its node is gone and no other took it over
    /// yet: the same request succeeds in a moment.
    #[error("Session is moving to another node. Please retry.")]
    Moving,
    /// WhatsApp refused or failed what was asked; its own words.
    #[error("{0}")]
    Refused(Refusal),
    /// The database, or a task that did not finish; details for the log only.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why WhatsApp said no.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Something already under way collides with the request (another pairing code).
    #[error("{0}")]
    Busy(String),
    /// WhatsApp will not take this input (the number).
    #[error("{0}")]
    Invalid(String),
    /// WhatsApp asks to wait before trying again.
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    Failed(String),
}

impl From<EngineError> for SessionError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::ClientGone => Self::ClientUnavailable,
            EngineError::NotConnected => Self::NotConnected,
            EngineError::Busy(m) => Self::Refused(Refusal::Busy(m)),
            EngineError::Invalid(m) => Self::Refused(Refusal::Invalid(m)),
            EngineError::RateLimited(m) => Self::Refused(Refusal::RateLimited(m)),
            EngineError::Failed(m) => Self::Refused(Refusal::Failed(m)),
        }
    }
}

pub type SessionResult<T> = Result<T, SessionError>;

impl From<crate::store::StoreError> for SessionError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}
