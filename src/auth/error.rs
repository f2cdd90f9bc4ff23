//! What the key gate refuses, and why, in words for the caller; `http/` picks the status.

use crate::domain::UserId;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The server asks for keys and none was sent.
    #[error(
        "An API key is required: send it in the X-Api-Key header or as Authorization: Bearer <key>"
    )]
    KeyRequired,
    /// A key was sent that is no admin key and no live tenant key.
    #[error("The API key is not valid or was revoked")]
    InvalidKey,
    /// A tenant key naming another user. Said openly: the caller named that user, so the
    /// refusal reveals nothing it did not already know.
    #[error("This API key belongs to user_id {key_user} and cannot act on user_id {asked}")]
    OtherUser { key_user: UserId, asked: UserId },
    /// A tenant key asking for what only the admin may do; `what` completes "can …".
    #[error("Only the admin API key can {0}")]
    AdminOnly(String),
    #[error("No active API key with id {0}")]
    NoSuchKey(i64),
    /// The key store or the random source failed; details go to the log only.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type AuthResult<T> = Result<T, AuthError>;

impl From<crate::store::StoreError> for AuthError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(anyhow::Error::new(e))
    }
}
