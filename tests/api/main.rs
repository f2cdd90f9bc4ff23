//! HTTP tests against a real server on port 0, one test per sentence of the contract.

mod helpers;

mod connections;
mod contact_search;
mod contacts_earlier_names;
mod contention;
mod conventions;
mod dashboard;
mod database_busy;
mod database_down;
mod fetch;
mod files;
mod groups;
mod keys;
mod laravel;
mod legacy_files;
mod lifecycle;
mod manual_groups;
mod media;
mod messaging;
mod messaging_aliases;
mod metrics;
mod names;
mod names_upgrade;
mod openapi;
mod outbound;
mod process;
mod quotas;
mod request_ids;
mod security;
mod sessions_list;
mod sim_access;
mod sim_connections;
mod unknown_params;
mod webhooks;
