//! The nodes of the service, as the operator sees them: on PostgreSQL every node that ever
//! joined the database's cluster; on SQLite this server alone, a cluster of one.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::envelope::{ErrorEnvelope, success};
use super::openapi::tags;
use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::http::error::AppResult;
use crate::store::traits::{NodeRecord, NodeState};

/// # `GET /api/admin/nodes`
#[utoipa::path(
    get,
    path = "/nodes",
    operation_id = "list_nodes",
    tag = tags::ADMIN,
    summary = "The nodes of the service and the sessions each runs (admin key only)",
    description = "Every node that joined the PostgreSQL database, by `node_id`: `alive` while \
        its heartbeat is fresh, `leaving` while it hands its sessions over, `dead` once its \
        heartbeat stopped. With SQLite the server is the one node.",
    responses(
        (status = 200, description = "The nodes", body = NodeListResponse),
        (status = 503, description = "The database cannot be reached", body = ErrorEnvelope),
    )
)]
pub async fn list(State(st): State<AppState>, caller: Caller) -> AppResult<NodeListResponse> {
    caller.require_admin("list the nodes")?;
    let nodes = match &st.cluster {
        Some(cluster) => cluster.nodes().await?.iter().map(Node::from).collect(),
        None => vec![this_node(&st)],
    };
    Ok(NodeListResponse::new(NodeList { nodes }, "Nodes retrieved"))
}

/// A server without a cluster: its own identity, alive, running its live sessions.
fn this_node(st: &AppState) -> Node {
    let now = st.clock.now_ms();
    let up = i64::try_from(st.started.elapsed().as_millis()).unwrap_or(i64::MAX);
    Node {
        node_id: st.identity.node_id.clone(),
        advertise_url: st.identity.advertise_url.clone(),
        started_at: rfc3339_ms(now.saturating_sub(up)),
        last_heartbeat: rfc3339_ms(now),
        sessions: i64::try_from(st.manager.live_count()).unwrap_or(i64::MAX),
        state: NodeStateName::Alive,
    }
}

#[derive(Serialize, ToSchema)]
pub struct NodeList {
    /// By `node_id`.
    nodes: Vec<Node>,
}

#[derive(Serialize, ToSchema)]
pub struct Node {
    /// `--node-id`.
    #[schema(examples("node-a"))]
    node_id: String,
    /// Where the other nodes reach it (`--advertise-url`).
    #[schema(examples("http://10.0.0.5:3000"))]
    advertise_url: String,
    /// When its running process started.
    #[schema(value_type = String, format = DateTime)]
    started_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    last_heartbeat: Option<String>,
    /// The sessions it runs now.
    #[schema(minimum = 0)]
    sessions: i64,
    state: NodeStateName,
}

/// `alive`: heartbeat fresh; `leaving`: handing its sessions over; `dead`: heartbeat stopped.
#[derive(Serialize, ToSchema, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeStateName {
    Alive,
    Leaving,
    Dead,
}

impl From<NodeState> for NodeStateName {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Alive => Self::Alive,
            NodeState::Leaving => Self::Leaving,
            NodeState::Dead => Self::Dead,
        }
    }
}

impl From<&NodeRecord> for Node {
    fn from(n: &NodeRecord) -> Self {
        Self {
            node_id: n.node_id.clone(),
            advertise_url: n.advertise_url.clone(),
            started_at: rfc3339_ms(n.started_at),
            last_heartbeat: rfc3339_ms(n.last_heartbeat),
            sessions: n.sessions,
            state: n.state.into(),
        }
    }
}

success!(NodeListResponse, NodeList);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_written_as_the_contract_names_them() {
        for (s, want) in [
            (NodeState::Alive, "alive"),
            (NodeState::Leaving, "leaving"),
            (NodeState::Dead, "dead"),
        ] {
            assert_eq!(serde_json::to_value(NodeStateName::from(s)).unwrap(), want);
            assert_eq!(s.as_str(), want);
        }
    }
}
