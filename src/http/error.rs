//! The HTTP layer's error: each variant is an HTTP outcome. The other layers answer with
//! their own errors, and the `From` impls here are the one place that decides their status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::envelope;

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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            // Other writers held the database for longer than we wait: the same request can
            // succeed in a moment, so it is not the server's fault.
            Self::Internal(e) if crate::store::is_busy(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn no_session() -> Self {
        Self::NotFound("No WhatsApp session found. Please initialize a session first.".into())
    }

    pub fn client_unavailable() -> Self {
        Self::Unavailable(
            "WhatsApp client is not available. Please restart the session and try again.".into(),
        )
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

/// The answer when the database stayed locked by other writers for longer than a request
/// waits.
pub const DATABASE_BUSY: &str = "The database is busy; try again";

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
        let mut res = envelope::error(status, &message);
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
}
