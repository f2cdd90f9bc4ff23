//! The HTTP layer's error: each variant is an HTTP outcome. The other layers answer with
//! their own errors, and the `From` impls here are the one place that decides their status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::envelope;
use crate::session::{Refusal, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// The session's node changes hands: 503 with a `Retry-After`.
    #[error("{0}")]
    Moving(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// WhatsApp itself refused or failed what was asked.
    #[error("{0}")]
    BadGateway(String),
    /// Details go to the log, never to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) | Self::Moving(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            // Other writers held the database for longer than we wait: the same request can
            // succeed in a moment, so it is not the server's fault.
            Self::Internal(e) if crate::store::is_busy(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The session layer's refusals, each with the status it has always answered with.
impl From<SessionError> for AppError {
    fn from(e: SessionError) -> Self {
        let message = e.to_string();
        match e {
            SessionError::NoSession => Self::NotFound(message),
            SessionError::Moving => Self::Moving(message),
            SessionError::ClientUnavailable | SessionError::NotConnected => {
                Self::Unavailable(message)
            }
            SessionError::NotReady { .. }
            | SessionError::NotReadyToCheck { .. }
            | SessionError::NotLinking { .. }
            | SessionError::CannotSend { .. } => Self::BadRequest(message),
            SessionError::FetchRunning
            | SessionError::AlreadyLinked { .. }
            | SessionError::Reconnecting => Self::Conflict(message),
            SessionError::TooManySessions { .. } => Self::TooManyRequests(message),
            SessionError::Refused(Refusal::Busy(_)) => Self::Conflict(message),
            SessionError::Refused(Refusal::Invalid(_)) => Self::BadRequest(message),
            SessionError::Refused(Refusal::RateLimited(_)) => Self::TooManyRequests(message),
            SessionError::Refused(Refusal::Failed(_)) => Self::BadGateway(message),
            SessionError::Internal(e) => Self::Internal(e),
        }
    }
}

/// A value the caller gave that the domain cannot take is the caller's mistake.
impl From<crate::domain::Invalid> for AppError {
    fn from(e: crate::domain::Invalid) -> Self {
        Self::BadRequest(e.0)
    }
}

/// A caller's text that breaks the naming rule is the caller's mistake.
impl From<crate::domain::text::TextError> for AppError {
    fn from(e: crate::domain::text::TextError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

/// The key gate's refusals: no or a wrong key is 401, a key that may not do this 403.
impl From<crate::auth::AuthError> for AppError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError as E;
        match e {
            E::KeyRequired | E::InvalidKey => Self::Unauthorized(e.to_string()),
            E::OtherUser { .. } | E::AdminOnly(_) => Self::Forbidden(e.to_string()),
            E::NoSuchKey(_) => Self::NotFound(e.to_string()),
            E::Internal(e) => Self::Internal(e),
        }
    }
}

/// The cluster's only failure is its store's.
impl From<crate::cluster::ClusterError> for AppError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        match e {
            crate::cluster::ClusterError::Store(e) => e.into(),
        }
    }
}

/// The answer when the database stayed locked by other writers for longer than a request
/// waits.
pub const DATABASE_BUSY: &str = "The database is busy; try again";

/// The store's errors are never the client's; "unavailable" becomes a 503 in [`AppError::status`].
impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database error"))
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(e) if status == StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!("⚠️ Database busy: {e:#}");
                DATABASE_BUSY.to_string()
            }
            Self::Internal(e) => {
                tracing::error!("❌ Internal error: {e:#}");
                "Internal server error".to_string()
            }
            other => other.to_string(),
        };
        let moving = matches!(self, Self::Moving(_));
        let mut res = envelope::error(status, &message);
        if moving {
            // A takeover or a start elsewhere settles within seconds.
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("2"),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_busy_database_is_a_503_in_the_envelope_not_a_500() {
        let busy = crate::store::busy_error_for_tests().await;
        let err = AppError::from(busy.context("create a group"));
        assert!(err.to_string().contains("create a group"), "{err}");
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res = err.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], DATABASE_BUSY);
        assert_eq!(v["status_code"], 503);
        assert_eq!(v["success"], false);

        let other = AppError::from(anyhow::anyhow!("disk I/O error"));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn session_refusals_keep_their_statuses_and_sentences() {
        use crate::domain::{SessionStatus, UserId};
        let cases = [
            (
                SessionError::NoSession,
                404,
                "No WhatsApp session found. Please initialize a session first.",
            ),
            (
                SessionError::ClientUnavailable,
                503,
                "WhatsApp client is not available. Please restart the session and try again.",
            ),
            (
                SessionError::NotReady {
                    status: SessionStatus::QrReady,
                },
                400,
                "Session is not ready for contact fetch. Current status: qr_ready. Please wait \
                 for session to be ready or restart the session.",
            ),
            (
                SessionError::FetchRunning,
                409,
                "A contact fetch is already running for this session. Follow it at GET \
                 /api/whatsapp/contacts/progress.",
            ),
            (
                SessionError::AlreadyLinked {
                    status: SessionStatus::Ready,
                },
                409,
                "Session is already linked to WhatsApp (status: ready). Call \
                 /api/whatsapp/logout first to link another phone.",
            ),
            (
                SessionError::Reconnecting,
                409,
                "Session is already linked to WhatsApp and is reconnecting; no pairing code is \
                 needed.",
            ),
            (
                SessionError::NotLinking {
                    status: SessionStatus::LoggedOut,
                },
                400,
                "Session is not waiting to be linked. Current status: logged_out. Call \
                 /api/whatsapp/init first.",
            ),
            (
                SessionError::NotConnected,
                503,
                "The session is not connected to WhatsApp yet, so no pairing code can be \
                 requested. Wait until its status is qr_ready and try again.",
            ),
            (
                SessionError::TooManySessions {
                    user: UserId::new_unchecked(7),
                    held: 2,
                    limit: 2,
                },
                429,
                "user_id 7 already has 2 WhatsApp sessions, the most allowed (max sessions per \
                 user: 2); log one out to link another",
            ),
            (
                SessionError::Refused(Refusal::Busy("busy".into())),
                409,
                "busy",
            ),
            (
                SessionError::Refused(Refusal::Invalid("bad".into())),
                400,
                "bad",
            ),
            (
                SessionError::Refused(Refusal::RateLimited("wait".into())),
                429,
                "wait",
            ),
            (
                SessionError::Refused(Refusal::Failed("no".into())),
                502,
                "no",
            ),
        ];
        for (session, status, message) in cases {
            let err = AppError::from(session);
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.to_string(), message);
        }
        let internal = AppError::from(SessionError::Internal(anyhow::anyhow!("disk I/O error")));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
