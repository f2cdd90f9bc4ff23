//! Several servers ("nodes") on one PostgreSQL database as one service: each session is run
//! by exactly one live node, recorded as a lease; a lost node's sessions move to the others
//! once its leases run out, a leaving node hands its sessions over at once, and any node
//! answers any request (commands on a session run elsewhere go to its owner).
//!
//! `identity`: who this node is; `leases` (the lease loop) keeps this node's share running.

mod identity;
mod leases;

use std::sync::Arc;
use std::time::Duration;

pub use identity::{NodeIdentity, host_name};
pub use leases::LeaseLoop;

use crate::domain::Pair;
use crate::store::StoreError;
use crate::store::traits::{ClusterStore, LeaseHolder, NodeRecord, Signals};

/// The channel nodes wake each other on about leases (a release, a handover); the payload
/// is the node meant, or `*` for all.
pub const LEASES_CHANNEL: &str = "wam_leases";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a command on a session needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `init`, `restart`: may start the session, on the node with the most room when no node
    /// runs it.
    Start,
    /// Every other command: goes where the session runs; with no session running, the node
    /// asked answers from the database.
    Act,
}

/// Where a command on a session is carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Here,
    /// Another live node runs it (or, for a start, has the most room).
    There {
        node_id: String,
        url: String,
    },
    /// It should run, but its node is gone and no other took it over yet.
    Moving,
}

#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeIdentity,
    /// This process's token in the node's row.
    incarnation: String,
    store: Arc<dyn ClusterStore>,
    signals: Arc<dyn Signals>,
    lease: Duration,
}

impl Cluster {
    pub fn new(
        me: NodeIdentity,
        incarnation: String,
        store: Arc<dyn ClusterStore>,
        signals: Arc<dyn Signals>,
        lease: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                me,
                incarnation,
                store,
                signals,
                lease,
            }),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.inner.me.node_id
    }

    pub fn incarnation(&self) -> &str {
        &self.inner.incarnation
    }

    pub fn advertise_url(&self) -> &str {
        &self.inner.me.advertise_url
    }

    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    pub fn store(&self) -> &Arc<dyn ClusterStore> {
        &self.inner.store
    }

    pub fn signals(&self) -> &Arc<dyn Signals> {
        &self.inner.signals
    }

    /// Where a command on the pair's session goes now.
    pub async fn route(&self, pair: Pair, kind: RouteKind) -> Result<Route, ClusterError> {
        let me = self.node_id();
        Ok(match self.inner.store.holder(pair).await? {
            LeaseHolder::Node { node_id, .. } if node_id == me => Route::Here,
            LeaseHolder::Node {
                node_id,
                advertise_url,
                ..
            } => Route::There {
                node_id,
                url: advertise_url,
            },
            LeaseHolder::Orphaned => Route::Moving,
            LeaseHolder::Nobody => match kind {
                RouteKind::Act => Route::Here,
                RouteKind::Start => match self.inner.store.roomiest(me).await? {
                    Some((node_id, url)) if node_id != me => Route::There { node_id, url },
                    _ => Route::Here,
                },
            },
        })
    }

    /// Every node the database knows, with its state.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, ClusterError> {
        Ok(self.inner.store.nodes().await?)
    }

    /// The node that owns the pair's session now, if a live one does.
    pub async fn owner(&self, pair: Pair) -> Result<Option<String>, ClusterError> {
        Ok(match self.inner.store.holder(pair).await? {
            LeaseHolder::Node { node_id, .. } => Some(node_id),
            _ => None,
        })
    }
}

/// A token for this process, different at every start.
pub fn new_incarnation() -> String {
    let mut b = [0u8; 12];
    if getrandom::fill(&mut b).is_err() {
        // Unique enough: the time and the process id.
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        return format!("{t:x}-{:x}", std::process::id());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
