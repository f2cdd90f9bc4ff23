//! The store's aggregates, one small trait each, and [`Database`]: all of them, which each
//! backend implements once (`store/sqlite/`, `store/postgres/`) and the conformance suite
//! (`tests/store_conformance/`) holds to the same promises.

use std::sync::Arc;

use async_trait::async_trait;

pub use super::device::CredentialStore;
use super::messaging::*;
pub use super::number_checks::NumberCheckStore;
pub use super::simulated::{SimCloseReason, SimConnection, SimOpened, SimStore};
use super::*;
use crate::domain::{Pair, PlaceId, SessionId, UserId};
use crate::engine::RawContact;

/// The database itself: is it there, which kind, and closing it when the server stops.
#[async_trait]
pub trait Health: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;
    async fn close(&self);
    /// Leases and nodes, on a database several servers can share.
    fn cluster(&self) -> Option<Arc<dyn ClusterStore>> {
        None
    }
    /// Notifications between the servers on this database.
    fn signals(&self) -> Option<Arc<dyn Signals>> {
        None
    }
}

/// Session rows: what each linked number is doing, the newest per pair.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates or overwrites the session's row.
    async fn save_session(&self, rec: &SessionRecord) -> StoreResult<()>;
    async fn latest_session(&self, pair: Pair) -> StoreResult<Option<SessionRecord>>;
    /// The newest session of every pair.
    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Pairs of the user whose newest session is not `logged_out`: what the per-user
    /// session quota counts.
    async fn counted_sessions(&self, user: UserId) -> StoreResult<i64>;
}

/// Contact groups: the automatic ones (rules) and the manual ones (lists).
#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Creates the automatic groups that are missing; safe under any concurrency.
    async fn ensure_default_groups(
        &self,
        pair: Pair,
        now_ms: i64,
    ) -> StoreResult<DefaultGroupsOutcome>;
    async fn list_groups(
        &self,
        pair: Pair,
        page: i64,
        limit: i64,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<GroupRecord>, i64)>;
    async fn group(
        &self,
        pair: Pair,
        group_id: i64,
        recent_since_s: i64,
    ) -> StoreResult<Option<GroupRecord>>;
    /// A manual group with these members (ids of the pair's active contacts, deduplicated).
    async fn create_manual_group(
        &self,
        pair: Pair,
        name: &str,
        description: Option<&str>,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange>;
    /// The members of a manual group become exactly these, in one transaction.
    async fn replace_group_members(
        &self,
        pair: Pair,
        group_id: i64,
        contact_ids: &[i64],
        now_ms: i64,
    ) -> StoreResult<GroupChange>;
    /// Deletes a manual group and its memberships; the contacts stay.
    async fn delete_manual_group(&self, pair: Pair, group_id: i64) -> StoreResult<GroupChange>;
}

/// Contacts of a pair: imported by fetches, searched, paged, patched.
#[async_trait]
pub trait ContactStore: Send + Sync + 'static {
    /// Upserts one batch and records the fetch's progress, atomically.
    async fn import_contacts(
        &self,
        pair: Pair,
        batch: &[ImportContact],
        progress: BatchProgress<'_>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// (total active contacts, groups) of the pair.
    async fn pair_counts(&self, pair: Pair) -> StoreResult<(i64, i64)>;
    async fn contact_stats(&self, pair: Pair, recent_since_s: i64) -> StoreResult<ContactStats>;
    /// One page of the pair's active contacts (of one group when given), most recently
    /// active first, and how many match in all.
    async fn search_contacts(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        query: &ContactQuery,
        recent_since_s: i64,
    ) -> StoreResult<(Vec<ContactRecord>, i64)>;
    /// Up to `limit` matching contacts with an id above `after_id`, by id, custom fields
    /// included: an export reads the whole set this way without holding a transaction.
    async fn contacts_after(
        &self,
        pair: Pair,
        group: Option<&GroupRecord>,
        filter: &ContactFilter,
        recent_since_s: i64,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<ContactRecord>>;
    /// One active contact of the pair.
    async fn contact(&self, pair: Pair, contact_id: i64) -> StoreResult<Option<ContactRecord>>;
    /// Which of these numbers (E.164) belong to a contact of the pair who opted out.
    async fn opted_out_numbers(&self, pair: Pair, numbers: &[String]) -> StoreResult<Vec<String>>;
    /// Applies the patch to one active contact of the pair; `None` when there is none.
    async fn update_contact(
        &self,
        pair: Pair,
        contact_id: i64,
        patch: &ContactPatch,
        now_ms: i64,
    ) -> StoreResult<Option<ContactRecord>>;
}

/// What WhatsApp told the engine about a session's contacts, kept between fetches.
#[async_trait]
pub trait ContactCacheStore: Send + Sync + 'static {
    /// Merges what WhatsApp just said about contacts into the session's cache: a name is
    /// never replaced by none, activity only moves forward.
    async fn cache_contacts(
        &self,
        session: &SessionId,
        entries: &[CachedContact],
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Records LID → phone-number pairs (`lid_jid`, `pn_jid`).
    async fn cache_lid_mappings(
        &self,
        session: &SessionId,
        pairs: &[(String, String)],
    ) -> StoreResult<()>;
    /// Everything cached for the session, LID chats resolved to numbers where a mapping is
    /// known.
    async fn cached_contacts(&self, session: &SessionId) -> StoreResult<Vec<RawContact>>;
}

/// Tenant keys; apart from the contacts because they are the gate, not the data behind it.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRecord>;
    /// The key with this public id, unless revoked.
    async fn active_api_key(&self, public_id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// A page of the keys not revoked, oldest first, of one user when given; and their total.
    async fn list_api_keys(
        &self,
        user: Option<UserId>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<ApiKeyRecord>, i64)>;
    /// Revokes a key not yet revoked; `None` when there is no such key.
    async fn revoke_api_key(&self, id: i64, now_ms: i64) -> StoreResult<Option<ApiKeyRecord>>;
    async fn touch_api_key(&self, id: i64, now_ms: i64) -> StoreResult<()>;
}

/// The paced outbox: messages and their jobs.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Queues the messages (and their job, when given) in one transaction; the rows as
    /// queued, in order.
    async fn enqueue(
        &self,
        pair: Pair,
        job: Option<NewJob>,
        messages: &[NewMessage],
        now_ms: i64,
    ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)>;
    /// Pairs with messages not yet sent or failed: their workers start with the server.
    async fn pairs_with_pending(&self) -> StoreResult<Vec<Pair>>;
    /// Messages queued or being sent, of every pair: the outbox depth metric.
    async fn pending_count(&self) -> StoreResult<i64>;
    /// The oldest message of the pair still to send (queued, or caught mid-send by a stop).
    async fn next_pending(&self, pair: Pair) -> StoreResult<Option<MessageRecord>>;
    async fn mark_sending(&self, id: i64, now_ms: i64) -> StoreResult<()>;
    async fn mark_sent(&self, id: i64, wa_message_id: &str, now_ms: i64) -> StoreResult<()>;
    async fn mark_failed(&self, id: i64, error: &str, now_ms: i64) -> StoreResult<()>;
    /// Back to the queue after an attempt that never reached WhatsApp.
    async fn requeue(&self, id: i64, now_ms: i64) -> StoreResult<()>;
    /// How many of the pair's messages were sent since then, and when the oldest of them was.
    async fn sent_since(&self, pair: Pair, since_ms: i64) -> StoreResult<(i64, Option<i64>)>;
    async fn last_sent_at(&self, pair: Pair) -> StoreResult<Option<i64>>;
    async fn message(&self, pair: Pair, id: i64) -> StoreResult<Option<MessageRecord>>;
    async fn list_messages(
        &self,
        pair: Pair,
        filter: &MessageFilter,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)>;
    async fn message_counts(
        &self,
        pair: Pair,
        filter: &MessageFilter,
    ) -> StoreResult<MessageCounts>;
    /// A failed message goes back to the queue with its error cleared.
    async fn retry_message(&self, pair: Pair, id: i64, now_ms: i64) -> StoreResult<RetryOutcome>;
    async fn job(&self, pair: Pair, id: i64) -> StoreResult<Option<JobRecord>>;
    /// A receipt from the recipient's phone for the pair's outgoing messages with these
    /// WhatsApp ids: each moves to `to` (`delivered`, `read` or `played`; any other changes
    /// nothing) when that is further than it is (`MessageStatus::rank`), from `sending` on
    /// (`queued` and `failed` stay). The times of `to` and of the steps it implies (a read
    /// message was delivered) are stamped `now_ms` where not stamped yet. Returns the
    /// messages that moved, as they are now.
    async fn apply_receipt(
        &self,
        pair: Pair,
        wa_message_ids: &[String],
        to: MessageStatus,
        now_ms: i64,
    ) -> StoreResult<Vec<MessageRecord>>;
    /// What the worker learned of a message's file when it downloaded it.
    async fn set_message_media(
        &self,
        id: i64,
        mime: &str,
        size: i64,
        file_name: Option<&str>,
    ) -> StoreResult<()>;
}

/// The event log and the webhook delivery queue.
/// Uploaded files, sent later by id; each is usable until its `expires_at`.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Keeps the file (and drops the expired ones).
    async fn insert_upload(&self, upload: &NewUpload) -> StoreResult<UploadInfo>;
    /// The upload unless it is unknown or expired at `now_ms`.
    async fn upload(&self, id: &str, now_ms: i64) -> StoreResult<Option<UploadInfo>>;
    async fn upload_bytes(&self, id: &str, now_ms: i64) -> StoreResult<Option<Vec<u8>>>;
    /// Drops the uploads expired at `now_ms`; how many.
    async fn purge_uploads(&self, now_ms: i64) -> StoreResult<u64>;
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends the event and, when the tenant's webhook subscribes to it, queues its delivery,
    /// in one transaction. The payload is built from the id the event gets. Returns the
    /// event and whether a delivery was queued.
    async fn record_event(
        &self,
        pair: Pair,
        session_id: Option<&SessionId>,
        kind: &str,
        payload: &(dyn Fn(i64) -> String + Send + Sync),
        now_ms: i64,
    ) -> StoreResult<(EventRecord, bool)>;
    /// Events of the user (of one place when given) after `after_id`, oldest first: what a
    /// reconnecting event-stream listener missed.
    async fn events_after(
        &self,
        user: UserId,
        place: Option<PlaceId>,
        after_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>>;
    /// The highest event id so far (0 with none): a node follows the others' events from
    /// there.
    async fn last_event_id(&self) -> StoreResult<i64>;
    /// Events of every tenant after `after_id`, oldest first: what a node missed while it
    /// could not hear the others.
    async fn events_since(&self, after_id: i64, limit: i64) -> StoreResult<Vec<EventRecord>>;
    async fn set_webhook(&self, hook: &WebhookRecord) -> StoreResult<WebhookRecord>;
    async fn webhook(&self, user: UserId) -> StoreResult<Option<WebhookRecord>>;
    /// Removes the webhook; its pending deliveries fail with the reason.
    async fn delete_webhook(&self, user: UserId, now_ms: i64) -> StoreResult<bool>;
    /// The oldest pending delivery of every tenant that has one: deliveries of one tenant go
    /// strictly in order, so only the head of each queue may be tried.
    async fn pending_heads(&self) -> StoreResult<Vec<DeliveryRecord>>;
    /// Deliveries waiting for their (next) attempt, of every tenant: the queue depth metric.
    async fn pending_delivery_count(&self) -> StoreResult<i64>;
    /// Takes a due pending delivery for one attempt: its next attempt moves to `until_ms`,
    /// so no other dispatcher tries it meanwhile, and one that dies with it lets it go then.
    /// False when it is not due (another dispatcher took it) or no longer pending.
    async fn claim_delivery(
        &self,
        delivery_id: i64,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool>;
    /// Gives back a claim whose attempt was cut short (a stop): due again at `due_ms`. A
    /// delivery recorded or claimed anew since is left as it is.
    async fn release_delivery(
        &self,
        delivery_id: i64,
        claimed_until_ms: i64,
        due_ms: i64,
    ) -> StoreResult<()>;
    async fn record_attempt(
        &self,
        delivery_id: i64,
        result: &AttemptResult,
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn deliveries(
        &self,
        user: UserId,
        status: Option<DeliveryStatus>,
        page: i64,
        limit: i64,
    ) -> StoreResult<(Vec<DeliveryRecord>, i64)>;
}

/// Every aggregate: what a backend is.
pub trait Database:
    Health
    + SessionStore
    + GroupStore
    + ContactStore
    + ContactCacheStore
    + KeyStore
    + OutboxStore
    + MediaStore
    + EventStore
    + SimStore
    + NumberCheckStore
    + CredentialStore
    + super::inbox::InboxStore
{
}

impl<T> Database for T where
    T: Health
        + SessionStore
        + GroupStore
        + ContactStore
        + ContactCacheStore
        + KeyStore
        + OutboxStore
        + MediaStore
        + EventStore
        + SimStore
        + NumberCheckStore
        + CredentialStore
        + super::inbox::InboxStore
{
}

/// A node of a cluster as its row says; `state` is worked out with the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node_id: String,
    pub advertise_url: String,
    pub started_at: i64,
    pub last_heartbeat: i64,
    /// Sessions it holds a live lease on.
    pub sessions: i64,
    pub state: NodeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Alive,
    Leaving,
    Dead,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Leaving => "leaving",
            Self::Dead => "dead",
        }
    }
}

/// Joining the cluster under a node id.
#[derive(Debug, Clone)]
pub struct NodeJoin<'a> {
    pub node_id: &'a str,
    pub advertise_url: &'a str,
    pub incarnation: &'a str,
    pub lease_ms: i64,
    /// Take the id even from a node whose heartbeat is fresh: it was found unreachable.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// A node with a fresh heartbeat holds the id.
    Held {
        advertise_url: String,
    },
}

/// A session this node holds, with the fencing epoch it got it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub pair: Pair,
    pub epoch: i64,
}

/// What one heartbeat found: the leases renewed, and which of them another node asks for.
#[derive(Debug, Clone, Default)]
pub struct Renewal {
    pub held: Vec<Lease>,
    /// `(lease, the node asking for it)`.
    pub asked: Vec<(Lease, String)>,
}

/// The cluster as one node sees it each second, to decide how many sessions to claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Leases that exist: sessions that should run.
    pub total: i64,
    /// Nodes alive (leaving ones not counted).
    pub alive: i64,
    /// Live leases this node holds.
    pub mine: i64,
    /// Sessions being handed over to this node.
    pub incoming: i64,
    /// Leases nobody holds: released, or run out.
    pub claimable: i64,
}

/// Who runs a session, as a node deciding where a command goes sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseHolder {
    /// No lease: nothing should run (never started, logged out, failed).
    Nobody,
    /// A live node holds it.
    Node {
        node_id: String,
        advertise_url: String,
        epoch: i64,
    },
    /// It should run, but its holder left or stopped renewing: a takeover is due.
    Orphaned,
}

/// Nodes, their heartbeats and the leases on sessions (PostgreSQL only: one SQLite file is
/// one node). Times are the database's clock.
#[async_trait]
pub trait ClusterStore: Send + Sync + 'static {
    async fn join(&self, join: &NodeJoin<'_>) -> StoreResult<JoinOutcome>;
    /// The heartbeat and the renewal of every lease of the node, in one transaction. `None`:
    /// another process took the node id, so this one holds nothing anymore.
    async fn renew(
        &self,
        node_id: &str,
        incarnation: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<Renewal>>;
    async fn census(&self, node_id: &str) -> StoreResult<Census>;
    async fn set_node_state(
        &self,
        node_id: &str,
        incarnation: &str,
        state: &str,
    ) -> StoreResult<()>;
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
    /// Gives a lease (unowned) to every session that should run and has none: the newest
    /// session of its pair is neither logged out nor failed. For a database written before
    /// leases, and for sessions whose holder vanished without a trace.
    async fn seed_leases(&self) -> StoreResult<u64>;
    /// Takes the session's lease unless another live node holds it (`None` then); a lease
    /// this node already holds keeps its epoch.
    async fn acquire(&self, pair: Pair, node_id: &str, lease_ms: i64) -> StoreResult<Option<i64>>;
    /// Takes up to `limit` leases nobody holds (released, or run out), oldest first.
    async fn claim(&self, node_id: &str, lease_ms: i64, limit: i64) -> StoreResult<Vec<Lease>>;
    /// Asks the busiest live node above `share` for up to `limit` of its sessions, among
    /// those `ready` (a session linking or fetching stays where it is).
    async fn ask_handover(&self, node_id: &str, share: i64, limit: i64) -> StoreResult<u64>;
    /// Gives the lease to the node that asked for it (if that node is still alive), under
    /// a new epoch; clears the ask otherwise. `Some(node)`: handed over.
    async fn hand_over(
        &self,
        lease: Lease,
        from: &str,
        to: &str,
        lease_ms: i64,
    ) -> StoreResult<Option<String>>;
    /// The owner keeps the session (it is linking or fetching): the ask is cleared.
    async fn decline_handover(&self, lease: Lease, from: &str) -> StoreResult<()>;
    /// Lets go of every lease of the node (it is leaving): anyone may claim them now.
    async fn release_all(&self, node_id: &str) -> StoreResult<u64>;
    /// The session ended (logged out, failed): nothing to run, no lease.
    async fn drop_lease(&self, lease: Lease, node_id: &str) -> StoreResult<()>;
    async fn holder(&self, pair: Pair) -> StoreResult<LeaseHolder>;
    /// The live node with the fewest sessions, preferring `me` among equals.
    async fn roomiest(&self, me: &str) -> StoreResult<Option<(String, String)>>;
    /// Whether `node_id` still holds the lease under `epoch`: a write of a node that lost it
    /// must not land.
    async fn holds(&self, lease: Lease, node_id: &str) -> StoreResult<bool>;
}

/// A notification between processes on one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    Notified {
        channel: String,
        payload: String,
    },
    /// The listening connection was lost and is back: what was notified meanwhile is gone,
    /// so read the tables again.
    Reconnected,
}

/// `LISTEN/NOTIFY` (PostgreSQL only). The tables stay the truth; a signal only says "look".
#[async_trait]
pub trait Signals: Send + Sync + 'static {
    async fn notify(&self, channel: &str, payload: &str) -> StoreResult<()>;
    /// Signals on these channels until the receiver is dropped; reconnects by itself.
    async fn listen(&self, channels: &[&str]) -> StoreResult<tokio::sync::mpsc::Receiver<Signal>>;
}
