//! The HTTP suite of `tests/api` against a server on PostgreSQL: the same module files,
//! compiled with a `helpers` whose `spawn_app*` give each test a fresh database of the tests'
//! cluster (`testkit::pg`). A promise of the contract holds on both backends or the build is
//! red.
//!
//! Left out, being about SQLite or about no database at all:
//! - `database_busy`: SQLite's single writer lock and its "busy" answer.
//! - `database_down`: a stub store that fails every call; no backend under it.
//! - `files`: the SQLite file's modes and the data folder's, on disk (`legacy_files`, the
//!   import of what an earlier version kept there, runs here).
//! - `names_upgrade`: a SQLite database from before name keys; PostgreSQL began after them.
//! - `openapi`: the document and the router, the same whatever the database.
//! - `process`: the server binary as a child; it runs on PostgreSQL in `tests/api` itself.

mod helpers;

/// Two nodes on one database (not a file of `tests/api`: SQLite is one node).
mod cluster;
/// Only here: a node of a cluster cut off from the database.
mod cut_off;

#[path = "../api/check_numbers.rs"]
mod check_numbers;
#[path = "../api/connections.rs"]
mod connections;
#[path = "../api/contact_search.rs"]
mod contact_search;
#[path = "../api/contacts_earlier_names.rs"]
mod contacts_earlier_names;
#[path = "../api/contention.rs"]
mod contention;
#[path = "../api/conventions.rs"]
mod conventions;
#[path = "../api/fetch.rs"]
mod fetch;
#[path = "../api/fetch_interrupted.rs"]
mod fetch_interrupted;
#[path = "../api/groups.rs"]
mod groups;
#[path = "../api/inbox.rs"]
mod inbox;
#[path = "../api/keys.rs"]
mod keys;
#[path = "../api/laravel.rs"]
mod laravel;
#[path = "../api/legacy_files.rs"]
mod legacy_files;
#[path = "../api/lifecycle.rs"]
mod lifecycle;
#[path = "../api/manual_groups.rs"]
mod manual_groups;
#[path = "../api/media.rs"]
mod media;
#[path = "../api/message_checks.rs"]
mod message_checks;
#[path = "../api/messaging.rs"]
mod messaging;
#[path = "../api/messaging_aliases.rs"]
mod messaging_aliases;
#[path = "../api/names.rs"]
mod names;
mod nodes_events;
#[path = "../api/opt_out.rs"]
mod opt_out;
#[path = "../api/outbound.rs"]
mod outbound;
#[path = "../api/quotas.rs"]
mod quotas;
#[path = "../api/receipts.rs"]
mod receipts;
#[path = "../api/security.rs"]
mod security;
#[path = "../api/sim_access.rs"]
mod sim_access;
#[path = "../api/sim_connections.rs"]
mod sim_connections;
#[path = "../api/unknown_params.rs"]
mod unknown_params;
#[path = "../api/webhooks.rs"]
mod webhooks;
