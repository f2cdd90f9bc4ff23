//! On a cluster an actor writes only while its node holds the session's lease under the
//! actor's epoch: a node that lost it (another node took the session over) stops the client
//! without writing, so two nodes never drive one device.

use std::sync::Arc;
use std::time::Duration;

use super::Actor;

/// The longest a save waits to learn whether this node still holds the session's lease; a
/// node cut off from its database must still stop its clients promptly.
const LEASE_CHECK: Duration = Duration::from_secs(2);

pub(crate) struct Fence {
    pub store: Arc<dyn crate::store::traits::ClusterStore>,
    pub node_id: String,
    pub lease: crate::store::traits::Lease,
}

impl Actor {
    /// Whether this node may still write the session: always off a cluster; on one, while
    /// it holds the lease under the actor's epoch. A database that cannot say is a no: the
    /// write could not land anyway, and the lease loop stops the clients of a node cut off
    /// from its database.
    pub(super) async fn still_holds(&mut self) -> bool {
        let Some(f) = &self.deps.fence else {
            return true;
        };
        if self.fenced {
            return false;
        }
        match tokio::time::timeout(LEASE_CHECK, f.store.holds(f.lease, &f.node_id)).await {
            Ok(Ok(true)) => true,
            Ok(Ok(false)) => {
                self.fenced = true;
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "⚠️ Cannot check the lease of session {}; not saving: {e}",
                    self.record.session_id
                );
                false
            }
            Err(_) => {
                tracing::warn!(
                    "⚠️ The database did not say in time whether this node still runs session \
                     {}; not saving",
                    self.record.session_id
                );
                false
            }
        }
    }
}
