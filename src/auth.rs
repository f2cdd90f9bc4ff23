//! API keys: one admin key from the command line, tenant keys scoped to one `user_id`.
//!
//! No key is kept in clear: the admin key is hashed when the server starts, a tenant key
//! is shown once when created and stored as its SHA-256. A tenant key reads
//! `wam_<public id>_<secret>`; the public id finds its row, the hash of the whole key is
//! compared in constant time, so neither lookup nor comparison tells how close a guess was.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::domain::{Pair, UserId};
use crate::error::{AppError, AppResult};
use crate::store::{ApiKeyRecord, KeyStore, NewApiKey};

const TENANT_PREFIX: &str = "wam_";
/// `last_used_at` is a hint for the admin, not an audit log: one write a minute per key.
const TOUCH_EVERY_MS: i64 = 60_000;
pub const KEY_NAME_MAX_CHARS: usize = 100;

/// A secret given on the command line; never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The SHA-256 of the admin key; the only form in which the server keeps it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AdminKeyHash([u8; 32]);

impl AdminKeyHash {
    pub fn of(key: &str) -> Self {
        Self(digest(key))
    }
}

impl fmt::Debug for AdminKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKeyHash(***)")
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who is calling, decided once per request by the auth middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The admin key, or anyone when no admin key is configured (loopback only).
    Admin,
    Tenant {
        key_id: i64,
        user_id: UserId,
    },
}

impl Caller {
    /// The pair, if this caller may act on it. Another tenant's user is refused openly:
    /// the caller named that user, so saying no reveals nothing it did not already know.
    pub fn scope(&self, pair: Pair) -> AppResult<Pair> {
        match *self {
            Self::Admin => Ok(pair),
            Self::Tenant { user_id, .. } if user_id == pair.user_id => Ok(pair),
            Self::Tenant { user_id, .. } => Err(AppError::Forbidden(format!(
                "This API key belongs to user_id {user_id} and cannot act on user_id {}",
                pair.user_id
            ))),
        }
    }

    /// A user-wide resource (a tenant's webhook), if this caller may act on that user.
    pub fn scope_user(&self, user: UserId) -> AppResult<UserId> {
        match *self {
            Self::Admin => Ok(user),
            Self::Tenant { user_id, .. } if user_id == user => Ok(user),
            Self::Tenant { user_id, .. } => Err(AppError::Forbidden(format!(
                "This API key belongs to user_id {user_id} and cannot act on user_id {user}"
            ))),
        }
    }

    pub fn require_admin(&self, what: &str) -> AppResult<()> {
        match self {
            Self::Admin => Ok(()),
            Self::Tenant { .. } => Err(AppError::Forbidden(format!(
                "Only the admin API key can {what}"
            ))),
        }
    }
}

/// A tenant key as the admin sees it after creating it: the only time `key` exists.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

#[derive(Clone)]
pub struct ApiKeys {
    admin: Option<AdminKeyHash>,
    store: Arc<dyn KeyStore>,
    clock: SharedClock,
}

impl ApiKeys {
    pub fn new(admin: Option<AdminKeyHash>, store: Arc<dyn KeyStore>, clock: SharedClock) -> Self {
        Self {
            admin,
            store,
            clock,
        }
    }

    /// Whether requests must carry a key; without an admin key the server is open, and
    /// listens on loopback only.
    pub fn enforced(&self) -> bool {
        self.admin.is_some()
    }

    /// The caller behind a presented key (`None`: no key was sent).
    pub async fn authenticate(&self, presented: Option<&str>) -> AppResult<Caller> {
        let Some(key) = presented else {
            return if self.enforced() {
                Err(AppError::Unauthorized(
                    "An API key is required: send it in the X-Api-Key header or as \
                     Authorization: Bearer <key>"
                        .into(),
                ))
            } else {
                Ok(Caller::Admin)
            };
        };
        let hash = digest(key);
        if let Some(admin) = &self.admin
            && bool::from(admin.0.ct_eq(&hash))
        {
            return Ok(Caller::Admin);
        }
        let Some(record) = self.lookup(key, &hash).await? else {
            return Err(AppError::Unauthorized(
                "The API key is not valid or was revoked".into(),
            ));
        };
        let now = self.clock.now_ms();
        if record
            .last_used_at
            .is_none_or(|t| now.saturating_sub(t) >= TOUCH_EVERY_MS)
            && let Err(e) = self.store.touch_api_key(record.id, now).await
        {
            // The key is good; a missed "last used" stamp is not worth refusing the request.
            tracing::warn!(
                "⚠️ Could not record the use of API key {}: {e:#}",
                record.id
            );
        }
        Ok(Caller::Tenant {
            key_id: record.id,
            user_id: record.user_id,
        })
    }

    async fn lookup(&self, key: &str, hash: &[u8; 32]) -> AppResult<Option<ApiKeyRecord>> {
        let Some(public_id) = key
            .strip_prefix(TENANT_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty() && id.len() <= 32)
        else {
            return Ok(None);
        };
        let record = self.store.active_api_key(public_id).await?;
        Ok(record.filter(|r| bool::from(r.key_hash.as_slice().ct_eq(hash))))
    }

    pub async fn create(&self, user_id: UserId, name: Option<&str>) -> AppResult<CreatedKey> {
        // Hex, so it never holds the `_` that ends it.
        let public_id: String = random::<6>()?.iter().map(|b| format!("{b:02x}")).collect();
        let key = format!(
            "{TENANT_PREFIX}{public_id}_{}",
            URL_SAFE_NO_PAD.encode(random::<32>()?)
        );
        let record = self
            .store
            .insert_api_key(NewApiKey {
                public_id: &public_id,
                user_id,
                name,
                key_hash: &digest(&key),
                now_ms: self.clock.now_ms(),
            })
            .await?;
        tracing::info!(
            "✅ API key {} created for user {user_id} ({})",
            record.id,
            record.public_id
        );
        Ok(CreatedKey { record, key })
    }

    pub async fn list(
        &self,
        user: Option<UserId>,
        page: i64,
        limit: i64,
    ) -> AppResult<(Vec<ApiKeyRecord>, i64)> {
        Ok(self.store.list_api_keys(user, page, limit).await?)
    }

    pub async fn revoke(&self, id: i64) -> AppResult<ApiKeyRecord> {
        let record = self
            .store
            .revoke_api_key(id, self.clock.now_ms())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("No active API key with id {id}")))?;
        tracing::info!(
            "✅ API key {} of user {} revoked",
            record.id,
            record.user_id
        );
        Ok(record)
    }
}

fn random<const N: usize>() -> AppResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| anyhow::anyhow!("the system random source failed: {e}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: i64) -> Pair {
        Pair::new(
            UserId::new_unchecked(user),
            crate::domain::PlaceId::new_unchecked(1),
        )
    }

    #[test]
    fn a_tenant_acts_on_its_own_user_only() {
        let t = Caller::Tenant {
            key_id: 1,
            user_id: UserId::new_unchecked(7),
        };
        assert!(t.scope(pair(7)).is_ok());
        let err = t.scope(pair(8)).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::FORBIDDEN);
        assert!(Caller::Admin.scope(pair(8)).is_ok());
        assert!(t.require_admin("manage API keys").is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2-very-secret".parse().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", AdminKeyHash::of("x")).contains('x'));
    }
}
