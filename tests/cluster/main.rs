//! The cluster with real processes on a real PostgreSQL (issue 17, point 6, simulated
//! engine): several `serve` nodes on one database, killed, stopped and restarted, everything
//! observed through their HTTP API.
//!
//! The heavy tests take [`helpers::one_at_a_time`]: each runs three nodes, and their timing
//! promises (a takeover within the lease plus a margin) are about the service, not about
//! three clusters fighting over two cores.

mod events;
mod flags;
mod helpers;
mod leave;
mod request_ids;
mod takeover;
