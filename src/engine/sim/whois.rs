//! Who is on the simulated WhatsApp: every number in a phone book someone set (of any pair)
//! and the phone it belongs to, in the asking pair's own book and its phone, or on the
//! network's list (`PUT /api/sim/network`). The
//! list is kept in the database beside the phone books, so every node answers alike.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::network::SimNetwork;
use super::{PhoneBook, SimEntry};
use crate::domain::{Pair, PhoneNumber};
use crate::engine::{EngineError, NumberInfo};

/// The number (E.164) of a phone-book entry: its jid when that is a phone number, else the
/// phone-number jid a LID entry carries.
fn entry_number(e: &SimEntry) -> Option<PhoneNumber> {
    [Some(e.jid.as_str()), e.pn_jid.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|jid| jid.strip_suffix("@s.whatsapp.net"))
        .and_then(|digits| PhoneNumber::parse_international(digits.split(':').next()?))
}

impl SimNetwork {
    /// Replaces the network's list of numbers on WhatsApp.
    pub async fn set_network(&self, numbers: &[PhoneNumber]) -> anyhow::Result<()> {
        let book = PhoneBook {
            me: None,
            push_name: None,
            entries: numbers
                .iter()
                .map(|n| SimEntry {
                    jid: format!("{}@s.whatsapp.net", n.digits()),
                    ..SimEntry::default()
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&book)?;
        self.inner
            .store
            .set_sim_network(&bytes, self.inner.clock.now_ms())
            .await?;
        Ok(())
    }

    /// The network's list of numbers, as last set.
    pub async fn network(&self) -> anyhow::Result<Vec<PhoneNumber>> {
        let Some(bytes) = self.inner.store.sim_network().await? else {
            return Ok(Vec::new());
        };
        let book: PhoneBook = serde_json::from_slice(&bytes)?;
        Ok(book.entries.iter().filter_map(entry_number).collect())
    }

    /// How many numbers this node's sim was asked about since it started: what shows that a
    /// check answered from the cache did not ask the engine.
    pub fn numbers_checked(&self) -> u64 {
        self.inner.numbers_checked.load(Ordering::Relaxed)
    }

    /// Answers for these numbers, in order, from every phone book and the network's list.
    pub(super) async fn check_numbers(
        &self,
        pair: Pair,
        numbers: &[PhoneNumber],
    ) -> Result<Vec<NumberInfo>, EngineError> {
        let down = |e: &dyn std::fmt::Display| {
            EngineError::Failed(format!("the simulated network is down: {e}"))
        };
        let stored = self
            .inner
            .store
            .all_sim_phonebooks()
            .await
            .map_err(|e| down(&e))?;
        // Number → whether some book's entry for it is a business.
        let mut known: HashMap<PhoneNumber, bool> = HashMap::new();
        let mut add = |book: &PhoneBook| {
            // The phone a book belongs to is on WhatsApp too.
            let owner = book.me.as_deref().and_then(|jid| {
                let digits = jid.strip_suffix("@s.whatsapp.net")?.split(':').next()?;
                PhoneNumber::parse_international(digits)
            });
            if let Some(n) = owner {
                known.entry(n).or_default();
            }
            for e in &book.entries {
                if let Some(n) = entry_number(e) {
                    *known.entry(n).or_default() |= e.is_business;
                }
            }
        };
        for bytes in &stored {
            // A book that no longer parses holds nobody.
            if let Ok(book) = serde_json::from_slice::<PhoneBook>(bytes) {
                add(&book);
            }
        }
        add(&*self.phonebook(pair).await);
        self.inner
            .numbers_checked
            .fetch_add(numbers.len() as u64, Ordering::Relaxed);
        Ok(numbers
            .iter()
            .map(|n| {
                let business = known.get(n).copied();
                NumberInfo {
                    phone: n.clone(),
                    on_whatsapp: business.is_some(),
                    is_business: business.unwrap_or(false),
                    jid: business.map(|_| format!("{}@s.whatsapp.net", n.digits())),
                }
            })
            .collect())
    }
}
