//! WhatsApp Manager: many linked WhatsApp numbers, one per (user_id, place_id), and their
//! contacts turned into contact groups.

pub mod app;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod contacts;
pub mod domain;
pub mod engine;
pub mod events;
pub mod files;
pub mod http;
pub mod inbox;
pub mod logging;
pub mod messaging;
pub mod metrics;
pub mod outbound;
pub mod qr;
pub mod session;
pub mod store;

pub use app::Application;
pub use config::Config;
