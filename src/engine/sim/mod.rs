//! A simulated phone network: QR codes that rotate and run out, a phone that scans, links
//! that survive restarts (each session's linked device in the database, like the real
//! engine's credentials), phone books, and the faults a real connection has.
//!
//! `network`: the network itself (the [`Engine`](super::Engine)), its phones and phone books;
//! `client`: one session's client, an actor driven by control messages; `connections`: the
//! one connection per linked device WhatsApp allows, recorded per node; `source`: a contact
//! read in chunks; `book`: generated and uploaded phone books; `legacy`: the import of what an
//! earlier version kept in files.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod book;
mod client;
mod connections;
mod legacy;
mod network;
mod source;
#[cfg(test)]
mod tests;
mod whois;

use crate::domain::{Pair, PhoneNumber};
pub use book::{PhoneBook, SimEntry, default_me_digits};
pub use connections::SIM_CHANNEL;
pub use network::{SimNetwork, SimNode};

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Size of the generated book of a pair nobody gave one.
    pub contacts: usize,
    /// The phone scans the first QR this long after it shows.
    pub auto_scan: Option<Duration>,
    pub qr_interval: Duration,
    pub qr_attempts: u32,
    /// Pause after every 1,000 contacts read.
    pub fetch_delay: Duration,
    /// How long a dropped connection stays down before the client is back.
    pub reconnect_backoff: Duration,
    /// The largest phone-book body `PUT /api/sim/phonebook` reads.
    pub max_phonebook_bytes: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            contacts: 200,
            auto_scan: None,
            qr_interval: Duration::from_secs(20),
            qr_attempts: 6,
            fetch_delay: Duration::ZERO,
            reconnect_backoff: Duration::from_secs(1),
            max_phonebook_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    DropClient,
    Disconnect,
    Logout,
    FailFetch,
    SlowFetch,
    /// The next send fails, as when WhatsApp refuses a message.
    FailSend,
}

impl Fault {
    pub const NAMES: &'static str =
        "drop_client, disconnect, logout, fail_fetch, slow_fetch, fail_send";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop_client" => Self::DropClient,
            "disconnect" => Self::Disconnect,
            "logout" => Self::Logout,
            "fail_fetch" => Self::FailFetch,
            "slow_fetch" => Self::SlowFetch,
            "fail_send" => Self::FailSend,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("No QR code is showing for {0}: there is nothing to scan.")]
    NoQr(Pair),
    #[error("No live simulated client for {0}. Call /api/whatsapp/init first.")]
    NoClient(Pair),
    #[error("The simulated phone of {0} is not connected: link it and wait for ready.")]
    NotConnected(Pair),
}

/// What reached the simulated WhatsApp from a pair's phone: one line per send attempt that
/// got through, kept in a file so it outlives a server restart like a real recipient's chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSent {
    /// The WhatsApp message id.
    pub id: String,
    /// E.164.
    pub to: String,
    pub text: Option<String>,
    pub image_mime: Option<String>,
    pub image_bytes: Option<usize>,
    /// A file of any kind (an image too): `image`, `document`, `video`, `audio`. Lines
    /// written before media of every kind have none.
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub media_mime: Option<String>,
    #[serde(default)]
    pub media_bytes: Option<usize>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub voice_note: bool,
    /// An image's size as the message carried it.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    pub at_ms: i64,
}

/// A message someone sends to a pair's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimIncoming {
    pub from: PhoneNumber,
    pub push_name: Option<String>,
    /// The text, or the file's caption.
    pub text: Option<String>,
    pub media: Option<SimMedia>,
}

/// A file someone sends to a pair's number; the sim keeps the bytes in the message's
/// `media_ref`, so a download hands them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMedia {
    /// `image`, `document`, `video`, `audio` or `sticker`.
    pub kind: String,
    pub mime: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
    pub voice_note: bool,
}

/// Read receipts the pair's phone sent, as the sim recorded them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimRead {
    /// The chat, E.164.
    pub chat: String,
    /// WhatsApp's ids of the messages read.
    pub ids: Vec<String>,
    pub at_ms: i64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole sim network down with a poisoned lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
