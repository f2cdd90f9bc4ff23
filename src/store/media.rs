//! Files uploaded to be sent later by `media_id`: kept a day, in the database so every node
//! of a cluster can send them.

use crate::domain::UserId;
use crate::store::MessageKind;

/// A file to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub id: String,
    /// The tenant whose key uploaded it; `None` for the admin key (any user may send it).
    pub user: Option<UserId>,
    pub kind: MessageKind,
    pub mime: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What an upload is, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub id: String,
    pub user: Option<UserId>,
    pub kind: MessageKind,
    pub mime: String,
    pub file_name: Option<String>,
    pub size: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

impl UploadInfo {
    /// Whether a send of `user` may use it: its own uploads and the admin key's.
    pub fn usable_by(&self, user: UserId) -> bool {
        self.user.is_none_or(|u| u == user)
    }
}
