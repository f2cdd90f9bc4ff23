//! API keys: one admin key from the command line, tenant keys scoped to one `user_id`.
//!
//! No key is kept in clear: the admin key is hashed when the server starts, a tenant key
//! is shown once when created and stored as its SHA-256. A tenant key reads
//! `wam_<public id>_<secret>`; the public id finds its row, the hash of the whole key is
//! compared in constant time, so neither lookup nor comparison tells how close a guess was.
//!
//! The gate also keeps the limits that go with a key (see [`limits`]): failed key checks
//! per client address, requests per second per key, sessions per user.

mod error;
pub mod limits;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::domain::{Pair, UserId};
use crate::store::prelude::*;
use crate::store::traits::Signals;
use crate::store::{ApiKeyRecord, KeyQuotas, NewApiKey};
pub use error::{AuthError, AuthResult};
use limits::{BucketKey, ClientAddr, FailureThrottle, FailureVerdict, RateLimiter};
pub use limits::{Limits, SessionLimit};

const TENANT_PREFIX: &str = "wam_";
/// A shorter admin key could be guessed: it is the one key with no random part of ours.
pub const ADMIN_KEY_MIN_CHARS: usize = 16;
/// The window of the failed-key throttle.
const FAILURE_WINDOW_MS: i64 = 60_000;
/// `last_used_at` is a hint for the admin, not an audit log: one write a minute per key.
const TOUCH_EVERY_MS: i64 = 60_000;
/// Keys read per page when the open streams' keys are looked up again.
const RECHECK_PAGE: i64 = 1_000;

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

impl Secret {
    /// The admin key as given: empty (or blank) means "no key", as a template's
    /// `WAM_API_KEY=` does; otherwise at least [`ADMIN_KEY_MIN_CHARS`] characters. The
    /// refusal never repeats the value.
    pub fn admin_key(s: &str) -> Result<Self, String> {
        let chars = s.trim().chars().count();
        if chars == 0 || chars >= ADMIN_KEY_MIN_CHARS {
            return Ok(Self(s.to_owned()));
        }
        let plural = if chars == 1 { "" } else { "s" };
        Err(format!(
            "the admin API key (--api-key / WAM_API_KEY) has {chars} character{plural}; it needs at \
             least {ADMIN_KEY_MIN_CHARS} so that it cannot be guessed (e.g. `openssl rand -hex \
             32`). Leave it empty for no key (loopback only)."
        ))
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
    pub fn scope(&self, pair: Pair) -> AuthResult<Pair> {
        self.scope_user(pair.user_id).map(|_| pair)
    }

    /// A user-wide resource (a tenant's webhook), if this caller may act on that user.
    pub fn scope_user(&self, user: UserId) -> AuthResult<UserId> {
        match *self {
            Self::Admin => Ok(user),
            Self::Tenant { user_id, .. } if user_id == user => Ok(user),
            Self::Tenant { user_id, .. } => Err(AuthError::OtherUser {
                key_user: user_id,
                asked: user,
            }),
        }
    }

    /// A listing across users: the admin sees the user it names or every user (`None`); a
    /// tenant sees its own user whether it names it or not.
    pub fn scope_listing(&self, user: Option<UserId>) -> AuthResult<Option<UserId>> {
        match (*self, user) {
            (Self::Admin, user) => Ok(user),
            (Self::Tenant { user_id, .. }, None) => Ok(Some(user_id)),
            (_, Some(user)) => self.scope_user(user).map(Some),
        }
    }

    pub fn require_admin(&self, what: &str) -> AuthResult<()> {
        match self {
            Self::Admin => Ok(()),
            Self::Tenant { .. } => Err(AuthError::AdminOnly(what.to_owned())),
        }
    }
}

/// A caller and the quotas of the key it came with (none for the admin key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Authenticated {
    pub caller: Caller,
    pub quotas: KeyQuotas,
}

/// What the failed-key throttle answered for one failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    /// Answer 401.
    Refused,
    /// Answer 429: too many failures from this address.
    Throttled { retry_after_secs: u64 },
}

/// The admin's view of a revocation, for the streams of the key that was revoked.
struct Revocations {
    /// Ids revoked since this process started; a stream opening just as its key is revoked
    /// looks here, so it cannot miss the signal.
    ids: Mutex<HashSet<i64>>,
    /// Bumped after each revocation; every open event stream of a tenant key holds a
    /// receiver and looks whether its key is among `ids`.
    changed: tokio::sync::watch::Sender<u64>,
    /// The keys of the open streams, with how many each: what a node that may have missed
    /// another node's revocation looks up again.
    watched: Mutex<HashMap<i64, usize>>,
}

impl Revocations {
    fn add(&self, ids: impl IntoIterator<Item = i64>) {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ids);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// Resolves once the key is revoked; held by an open event stream.
pub struct RevocationWatch {
    key_id: i64,
    revocations: Arc<Revocations>,
    rx: tokio::sync::watch::Receiver<u64>,
}

impl Drop for RevocationWatch {
    fn drop(&mut self) {
        let mut watched = self
            .revocations
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = watched.get_mut(&self.key_id) {
            *n -= 1;
            if *n == 0 {
                watched.remove(&self.key_id);
            }
        }
    }
}

impl RevocationWatch {
    pub async fn revoked(mut self) {
        loop {
            self.rx.borrow_and_update();
            if self
                .revocations
                .ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&self.key_id)
            {
                return;
            }
            if self.rx.changed().await.is_err() {
                // The key store is gone with the server; so is the stream.
                return;
            }
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
    limits: Limits,
    failures: Arc<FailureThrottle>,
    rates: Arc<RateLimiter>,
    revocations: Arc<Revocations>,
    /// On a node of a cluster: where a revocation is told to the other nodes, whose open
    /// streams of the key must end too.
    signals: Option<Arc<dyn Signals>>,
}

impl ApiKeys {
    pub fn new(admin: Option<AdminKeyHash>, store: Arc<dyn KeyStore>, clock: SharedClock) -> Self {
        Self {
            admin,
            store,
            clock,
            limits: Limits::default(),
            failures: Arc::new(Self::throttle(&Limits::default())),
            rates: Arc::new(RateLimiter::new(limits::RATE_TABLE_CAPACITY)),
            revocations: Arc::new(Revocations {
                ids: Mutex::default(),
                changed: tokio::sync::watch::channel(0).0,
                watched: Mutex::default(),
            }),
            signals: None,
        }
    }

    /// Tells every revocation to the other nodes on the database; they hear it through
    /// [`Self::revoked_elsewhere`].
    pub fn with_signals(mut self, signals: Arc<dyn Signals>) -> Self {
        self.signals = Some(signals);
        self
    }

    /// Another node revoked the key: the streams it opened here end. Requests need nothing:
    /// every one reads its key from the database.
    pub fn revoked_elsewhere(&self, id: i64) {
        self.revocations.add([id]);
    }

    /// Revocations this node may not have heard of (its listening connection was lost): the
    /// keys of its open streams are looked up again.
    pub async fn recheck_revocations(&self) {
        let watched: HashSet<i64> = self
            .revocations
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        if watched.is_empty() {
            return;
        }
        let mut active = HashSet::new();
        let mut page = 1;
        loop {
            match self.store.list_api_keys(None, page, RECHECK_PAGE).await {
                Ok((keys, total)) => {
                    active.extend(keys.iter().map(|k| k.id));
                    if keys.is_empty() || page * RECHECK_PAGE >= total {
                        break;
                    }
                    page += 1;
                }
                Err(e) => {
                    tracing::warn!("⚠️ Cannot look up the keys of open event streams: {e:#}");
                    return;
                }
            }
        }
        self.revocations.add(watched.difference(&active).copied());
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.failures = Arc::new(Self::throttle(&limits));
        self.limits = limits;
        self
    }

    fn throttle(limits: &Limits) -> FailureThrottle {
        FailureThrottle::new(
            limits.key_failures_per_minute,
            FAILURE_WINDOW_MS,
            limits::FAILURE_TABLE_CAPACITY,
        )
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts a failed key check from `addr`; past the allowance the answer becomes 429.
    pub fn key_failed(&self, addr: ClientAddr) -> KeyFailure {
        match self.failures.record_failure(addr, self.clock.now_ms()) {
            FailureVerdict::Counted => KeyFailure::Refused,
            FailureVerdict::Throttled {
                retry_after_secs,
                newly,
            } => {
                if newly {
                    tracing::warn!(
                        "⚠️ {} failed API key checks within {} s from {addr}: answering 429 \
                         to its failing requests (correct keys still pass)",
                        self.failures.allowance(),
                        self.failures.window_secs()
                    );
                }
                KeyFailure::Throttled { retry_after_secs }
            }
        }
    }

    /// Takes one request from the caller's rate bucket; `Err(seconds to wait)` when empty.
    pub fn take_request(&self, who: &Authenticated, addr: ClientAddr) -> Result<(), u64> {
        let Some(rate) = self.limits.rate(&who.quotas) else {
            return Ok(());
        };
        let bucket = match who.caller {
            Caller::Tenant { key_id, .. } => BucketKey::Tenant(key_id),
            // Without an admin key, callers without a key are anyone on this machine.
            Caller::Admin if !self.enforced() => BucketKey::Address(addr),
            Caller::Admin => BucketKey::Admin,
        };
        self.rates.take(bucket, rate, self.clock.now_ms())
    }

    /// Resolves when the key is revoked, for streams that must end with it.
    pub fn revocation(&self, key_id: i64) -> RevocationWatch {
        *self
            .revocations
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key_id)
            .or_default() += 1;
        RevocationWatch {
            key_id,
            revocations: self.revocations.clone(),
            rx: self.revocations.changed.subscribe(),
        }
    }

    /// Whether requests must carry a key; without an admin key the server is open, and
    /// listens on loopback only.
    pub fn enforced(&self) -> bool {
        self.admin.is_some()
    }

    /// The caller behind a presented key (`None`: no key was sent).
    pub async fn authenticate(&self, presented: Option<&str>) -> AuthResult<Authenticated> {
        let admin = Authenticated {
            caller: Caller::Admin,
            quotas: KeyQuotas::default(),
        };
        let Some(key) = presented else {
            return if self.enforced() {
                Err(AuthError::KeyRequired)
            } else {
                Ok(admin)
            };
        };
        let hash = digest(key);
        if let Some(admin_hash) = &self.admin
            && bool::from(admin_hash.0.ct_eq(&hash))
        {
            return Ok(admin);
        }
        let Some(record) = self.lookup(key, &hash).await? else {
            return Err(AuthError::InvalidKey);
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
        Ok(Authenticated {
            caller: Caller::Tenant {
                key_id: record.id,
                user_id: record.user_id,
            },
            quotas: record.quotas,
        })
    }

    async fn lookup(&self, key: &str, hash: &[u8; 32]) -> AuthResult<Option<ApiKeyRecord>> {
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

    pub async fn create(
        &self,
        user_id: UserId,
        name: Option<&str>,
        quotas: KeyQuotas,
    ) -> AuthResult<CreatedKey> {
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
                quotas,
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
    ) -> AuthResult<(Vec<ApiKeyRecord>, i64)> {
        Ok(self.store.list_api_keys(user, page, limit).await?)
    }

    pub async fn revoke(&self, id: i64) -> AuthResult<ApiKeyRecord> {
        let record = self
            .store
            .revoke_api_key(id, self.clock.now_ms())
            .await?
            .ok_or(AuthError::NoSuchKey(id))?;
        self.revocations.add([record.id]);
        if let Some(signals) = &self.signals
            && let Err(e) = signals
                .notify(crate::events::nodes::KEYS_CHANNEL, &record.id.to_string())
                .await
        {
            // Their requests are refused all the same (keys are read per request); a stream
            // of the key open there lasts until that node looks its keys up again.
            tracing::warn!(
                "⚠️ Cannot tell the other nodes that API key {} is revoked: {e:#}",
                record.id
            );
        }
        tracing::info!(
            "✅ API key {} of user {} revoked",
            record.id,
            record.user_id
        );
        Ok(record)
    }
}

fn random<const N: usize>() -> AuthResult<[u8; N]> {
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
        assert!(matches!(err, AuthError::OtherUser { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "This API key belongs to user_id 7 and cannot act on user_id 8"
        );
        assert!(Caller::Admin.scope(pair(8)).is_ok());
        assert!(t.require_admin("manage API keys").is_err());
    }

    #[test]
    fn the_admin_key_needs_16_characters_unless_empty() {
        for ok in [
            "",
            "   ",
            "0123456789abcdef",
            "  0123456789abcdef  ",
            "ééééééééééééééééé",
        ] {
            assert!(Secret::admin_key(ok).is_ok(), "{ok:?}");
        }
        for short in ["Zq", "fifteen-chars-Z", "  0123456789abcde  "] {
            let err = Secret::admin_key(short).unwrap_err();
            assert!(err.contains("at least 16"), "{err}");
            assert!(
                !err.contains(short.trim()),
                "the refusal repeats the key: {err}"
            );
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let s: Secret = "hunter2-very-secret".parse().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", AdminKeyHash::of("x")).contains('x'));
    }
}
