//! The real binary: its flags, its logs, what SIGTERM and `kill -9` leave behind, and the
//! whole service on PostgreSQL (black-box flows, the database going away, TLS).

mod flags;
mod mid_fetch;
mod observability;
mod pg_down;
mod postgres;
mod server;
