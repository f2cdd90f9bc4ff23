//! The simulated engine's store: its phones' credentials, phone books, what they sent and the
//! connections they opened. Re-exported by [`super::traits`], beside the other aggregates.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{Pair, SessionId};

/// The simulated engine's phones: their credentials, phone books and what they sent. The
/// store keeps them as the engine encodes them (JSON): it only needs to keep them safe, so a
/// server with an empty data dir restores every simulated link like a real one.
#[async_trait]
pub trait SimStore: Send + Sync + 'static {
    /// The linked device of a session, if its phone linked.
    async fn sim_device(&self, session: &SessionId) -> StoreResult<Option<String>>;
    async fn save_sim_device(
        &self,
        session: &SessionId,
        device: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Whether there was one to forget.
    async fn forget_sim_device(&self, session: &SessionId) -> StoreResult<bool>;
    async fn sim_phonebook(&self, pair: Pair) -> StoreResult<Option<Vec<u8>>>;
    async fn set_sim_phonebook(&self, pair: Pair, book: &[u8], now_ms: i64) -> StoreResult<()>;
    /// The simulated network's list of numbers on WhatsApp (a phone book's JSON).
    async fn sim_network(&self) -> StoreResult<Option<Vec<u8>>>;
    async fn set_sim_network(&self, book: &[u8], now_ms: i64) -> StoreResult<()>;
    /// Every stored phone book, the network's list among them.
    async fn all_sim_phonebooks(&self) -> StoreResult<Vec<Vec<u8>>>;
    async fn record_sim_sent(&self, pair: Pair, sent: &str, now_ms: i64) -> StoreResult<()>;
    /// Everything the pair's phone sent, oldest first.
    async fn sim_outbox(&self, pair: Pair) -> StoreResult<Vec<String>>;
    /// Opens a connection of a linked device, closing the device's open ones as WhatsApp
    /// would: `replaced` when their node is alive (this one included), `connection_lost`
    /// when it is dead (a dead node's TCP connection is dropped, not replaced). Taken one at a
    /// time per device, so two opening at once cannot both stay open.
    async fn open_sim_connection(
        &self,
        pair: Pair,
        session: &SessionId,
        node_id: &str,
        now_ms: i64,
    ) -> StoreResult<SimOpened>;
    /// Whether it was still open: a connection someone else closed keeps their reason.
    async fn close_sim_connection(
        &self,
        id: i64,
        reason: SimCloseReason,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Closes every open connection of the node: at start, what its earlier process left.
    async fn close_sim_connections_of(
        &self,
        node_id: &str,
        reason: SimCloseReason,
        now_ms: i64,
    ) -> StoreResult<u64>;
    async fn sim_connection(&self, id: i64) -> StoreResult<Option<SimConnection>>;
    /// The ids of the node's connections that are open.
    async fn open_sim_connections_of(&self, node_id: &str) -> StoreResult<Vec<i64>>;
    /// Every connection of the pair, oldest first.
    async fn sim_connections(&self, pair: Pair) -> StoreResult<Vec<SimConnection>>;
}

/// One connection a simulated client opened to the simulated WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConnection {
    pub id: i64,
    pub pair: Pair,
    pub session_id: String,
    pub node_id: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    /// Why it closed (a [`SimCloseReason`]); `None` while open.
    pub reason: Option<String>,
}

/// A connection just opened, and the device's earlier ones it closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOpened {
    pub id: i64,
    /// `(id, node, why)`.
    pub closed: Vec<(i64, String, SimCloseReason)>,
}

/// Why a simulated connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimCloseReason {
    /// The client stopped (a restart, a server stop).
    Closed,
    /// Another connection of the same device took its place.
    Replaced,
    /// Dropped: a fault, a client that died, a node that died.
    ConnectionLost,
    /// The device was unlinked.
    LoggedOut,
}

impl SimCloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Replaced => "replaced",
            Self::ConnectionLost => "connection_lost",
            Self::LoggedOut => "logged_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "closed" => Self::Closed,
            "replaced" => Self::Replaced,
            "connection_lost" => Self::ConnectionLost,
            "logged_out" => Self::LoggedOut,
            _ => return None,
        })
    }
}
