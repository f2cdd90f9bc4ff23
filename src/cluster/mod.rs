//! Several servers ("nodes") on one PostgreSQL database as one service: each session is run
//! by exactly one live node, recorded as a lease; a lost node's sessions move to the others
//! once its leases run out, a leaving node hands its sessions over at once, and any node
//! answers any request (commands on a session run elsewhere go to its owner).
//!
//! `identity`: who this node is.

mod identity;

pub use identity::{NodeIdentity, host_name};
