//! What the nodes of a cluster tell each other about events, keys and outboxes, over one
//! `LISTEN` connection per node (each listener holds a connection of the pool for good).
//!
//! Events: a node records an event, then NOTIFYs its id on [`EVENTS_CHANNEL`]; every node,
//! the recording one too, reads the tenant's events after the last one it handed to its
//! listeners and hands them over in id order. A tenant's events commit in id order (the
//! store's per-tenant lock), so "after the last one handed over" never skips one, however
//! late or out of order the NOTIFYs come. After a lost connection the table is read again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::EventBus;
use crate::auth::ApiKeys;
use crate::domain::{Pair, PlaceId, UserId};
use crate::messaging::Outbox;
use crate::store::StoreResult;
use crate::store::traits::{Signal, Signals};

/// `<event id> <user id> <1 when a webhook delivery was queued, else 0> <node id>`.
pub const EVENTS_CHANNEL: &str = "wam_events";
/// The id of a revoked API key.
pub const KEYS_CHANNEL: &str = "wam_keys";
/// `<user id>:<place id>`: messages were queued for the number; its node sends them.
pub const OUTBOX_CHANNEL: &str = "wam_outbox";

/// Events read per tenant and query.
const PAGE: i64 = 500;
/// After a lost connection, events this far below the highest one handed over are read
/// again: ids are given out at insert, so another tenant's event with a lower id can commit
/// after a higher one (a node's handful of open transactions; this is a wide margin).
const REPLAY_SLACK: i64 = 10_000;
/// A database that failed a read is asked again after this.
const RETRY: Duration = Duration::from_secs(1);
/// Signals handled before the tenants they woke are read.
const BATCH: usize = 256;

/// The NOTIFY of one recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    pub id: i64,
    pub user_id: UserId,
    pub queued: bool,
    pub node_id: String,
}

impl fmt::Display for EventNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = u8::from(self.queued);
        write!(f, "{} {} {q} {}", self.id, self.user_id, self.node_id)
    }
}

impl EventNote {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(4, ' ');
        let id = parts.next()?.parse().ok()?;
        let user = parts.next()?.parse().ok()?;
        let queued = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        Some(Self {
            id,
            user_id: UserId::new_unchecked(user),
            queued,
            node_id: parts.next()?.to_owned(),
        })
    }
}

/// `user_id:place_id`, the payload on [`OUTBOX_CHANNEL`].
pub fn pair_note(pair: Pair) -> String {
    format!("{}:{}", pair.user_id, pair.place_id)
}

fn parse_pair(s: &str) -> Option<Pair> {
    let (u, p) = s.split_once(':')?;
    Some(Pair::new(
        UserId::new_unchecked(u.parse().ok()?),
        PlaceId::new_unchecked(p.parse().ok()?),
    ))
}

/// A node's listening end, listening from before its sessions start, so no event recorded
/// meanwhile is missed.
pub struct Follower {
    bus: EventBus,
    signals: mpsc::Receiver<Signal>,
    recorded: mpsc::UnboundedReceiver<(i64, UserId)>,
    /// The highest event id when listening began: older events are not handed over.
    floor: i64,
    /// The last event handed over per tenant (the floor for a tenant not yet seen).
    cursors: HashMap<UserId, i64>,
    /// The highest event id handed over.
    high: i64,
}

impl Follower {
    /// Starts listening, then makes `bus` a node's bus (see [`EventBus::join_nodes`]). `None`
    /// when the bus already had a follower.
    pub async fn listen(
        bus: &EventBus,
        node_id: &str,
        signals: Arc<dyn Signals>,
    ) -> StoreResult<Option<Self>> {
        let rx = signals
            .listen(&[EVENTS_CHANNEL, KEYS_CHANNEL, OUTBOX_CHANNEL])
            .await?;
        // Read after LISTEN: an event between the two is both above the floor and notified.
        let floor = bus.store().last_event_id().await?;
        let Some(recorded) = bus.join_nodes(node_id, signals) else {
            return Ok(None);
        };
        Ok(Some(Self {
            bus: bus.clone(),
            signals: rx,
            recorded,
            floor,
            cursors: HashMap::new(),
            high: floor,
        }))
    }

    /// Runs until cancelled: events to this node's listeners and wakes for its dispatcher,
    /// revocations to `keys`, queued messages to `outbox`.
    pub async fn run(mut self, keys: ApiKeys, outbox: Outbox, cancel: CancellationToken) {
        let me = self
            .bus
            .inner
            .nodes
            .get()
            .map(|n| n.node_id.clone())
            .unwrap_or_default();
        let mut due: HashSet<UserId> = HashSet::new();
        let mut replay = false;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if (replay || !due.is_empty())
                && retry_at.is_none_or(|t| t <= tokio::time::Instant::now())
            {
                let mut ok = true;
                if replay {
                    ok = self.replay().await;
                    replay = !ok;
                }
                if ok {
                    ok = self.catch_up(&mut due).await;
                }
                retry_at = (!ok).then(|| tokio::time::Instant::now() + RETRY);
            }
            let mut handled = 0;
            let mut first = true;
            while handled < BATCH {
                let next = if first {
                    first = false;
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return,
                        Some((id, user)) = self.recorded.recv() => Step::Recorded(id, user),
                        s = self.signals.recv() => match s {
                            Some(s) => Step::Signal(s),
                            None => {
                                tracing::error!(
                                    "❌ This node stopped hearing the others: no events, \
                                     revocations or queued messages from them until restart"
                                );
                                return;
                            }
                        },
                        () = sleep_until(retry_at), if retry_at.is_some() => break,
                    }
                } else if let Ok((id, user)) = self.recorded.try_recv() {
                    Step::Recorded(id, user)
                } else if let Ok(s) = self.signals.try_recv() {
                    Step::Signal(s)
                } else {
                    break;
                };
                handled += 1;
                match next {
                    Step::Recorded(id, user) => self.note(&mut due, id, user),
                    Step::Signal(Signal::Reconnected) => {
                        replay = true;
                        // Deliveries queued elsewhere meanwhile, revocations, queued messages.
                        self.bus.queued().notify_one();
                        keys.recheck_revocations().await;
                        outbox.resume_here().await;
                    }
                    Step::Signal(Signal::Notified { channel, payload }) => match channel.as_str() {
                        EVENTS_CHANNEL => match EventNote::parse(&payload) {
                            Some(n) if n.node_id != me => {
                                if n.queued {
                                    self.bus.queued().notify_one();
                                }
                                self.note(&mut due, n.id, n.user_id);
                            }
                            Some(_) => {}
                            None => tracing::warn!("⚠️ Unreadable event note {payload:?}"),
                        },
                        KEYS_CHANNEL => match payload.parse() {
                            Ok(id) => keys.revoked_elsewhere(id),
                            Err(_) => tracing::warn!("⚠️ Unreadable key note {payload:?}"),
                        },
                        OUTBOX_CHANNEL => match parse_pair(&payload) {
                            Some(pair) => outbox.wake_here(pair),
                            None => tracing::warn!("⚠️ Unreadable outbox note {payload:?}"),
                        },
                        _ => {}
                    },
                }
            }
        }
    }

    fn cursor(&self, user: UserId) -> i64 {
        self.cursors.get(&user).copied().unwrap_or(self.floor)
    }

    fn note(&self, due: &mut HashSet<UserId>, id: i64, user: UserId) {
        if id > self.cursor(user) {
            due.insert(user);
        }
    }

    fn hand_over(&mut self, event: crate::store::EventRecord) {
        let user = event.pair.user_id;
        if event.id <= self.cursor(user) {
            return;
        }
        self.cursors.insert(user, event.id);
        self.high = self.high.max(event.id);
        self.bus.publish(event);
    }

    /// Reads the due tenants' new events and hands them over; false when a read failed
    /// (those tenants stay due).
    async fn catch_up(&mut self, due: &mut HashSet<UserId>) -> bool {
        let store = self.bus.store().clone();
        let from: Vec<(UserId, i64)> = due.iter().map(|&u| (u, self.cursor(u))).collect();
        let reads = from.into_iter().map(move |(user, after)| {
            let store = store.clone();
            async move { (user, store.events_after(user, None, after, PAGE).await) }
        });
        let results: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
            futures::stream::iter(reads),
            4,
        ))
        .await;
        let mut ok = true;
        for (user, read) in results {
            match read {
                Ok(events) => {
                    let more = events.len() as i64 >= PAGE;
                    for e in events {
                        self.hand_over(e);
                    }
                    if !more {
                        due.remove(&user);
                    }
                }
                Err(e) => {
                    tracing::warn!("⚠️ Cannot read the events of user {user}, again soon: {e:#}");
                    ok = false;
                }
            }
        }
        ok
    }

    /// What the NOTIFYs lost with the connection would have told: every tenant's events
    /// from a little below the highest handed over.
    async fn replay(&mut self) -> bool {
        let mut after = (self.high - REPLAY_SLACK).max(0);
        loop {
            match self.bus.store().events_since(after, PAGE).await {
                Ok(events) => {
                    let more = events.len() as i64 >= PAGE;
                    for e in events {
                        after = e.id;
                        self.hand_over(e);
                    }
                    if !more {
                        return true;
                    }
                }
                Err(e) => {
                    tracing::warn!("⚠️ Cannot read the events missed, again soon: {e:#}");
                    return false;
                }
            }
        }
    }
}

enum Step {
    Recorded(i64, UserId),
    Signal(Signal),
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_note_reads_back_as_written() {
        let n = EventNote {
            id: 42,
            user_id: UserId::new_unchecked(7),
            queued: true,
            node_id: "node a:8080".into(),
        };
        assert_eq!(n.to_string(), "42 7 1 node a:8080");
        assert_eq!(EventNote::parse(&n.to_string()), Some(n));
        assert_eq!(EventNote::parse("42 7 2 a"), None);
        assert_eq!(EventNote::parse("x 7 0 a"), None);
    }

    #[test]
    fn a_pair_note_reads_back_as_written() {
        let p = Pair::new(UserId::new_unchecked(3), PlaceId::new_unchecked(9));
        assert_eq!(parse_pair(&pair_note(p)), Some(p));
        assert_eq!(parse_pair("3"), None);
    }
}
