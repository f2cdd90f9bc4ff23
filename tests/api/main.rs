//! HTTP tests against a real server on port 0, one test per sentence of the contract.

mod helpers;

mod connections;
mod contact_search;
mod contention;
mod conventions;
mod database_busy;
mod database_down;
mod fetch;
mod files;
mod groups;
mod keys;
mod lifecycle;
mod manual_groups;
mod messaging;
mod names;
mod openapi;
mod outbound;
mod process;
mod quotas;
mod security;
mod sim_access;
mod webhooks;
