//! Whether numbers are on WhatsApp: answers are kept a day per number, and only the numbers
//! without a fresh answer go to the engine, all in one query per call, each once.

use std::collections::{HashMap, HashSet};

use crate::domain::PhoneNumber;
use crate::engine::{EngineClient, EngineError};
use crate::store::{NumberCheckRecord, NumberCheckStore, StoreError};

use super::pacing::DAY_MS;

/// Numbers one check-numbers request may ask about, and one engine query at most.
pub const MAX_NUMBERS_PER_CHECK: usize = 100;
/// How long an answer is reused.
pub const CHECK_TTL_MS: i64 = DAY_MS;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// WhatsApp (or the client) could not answer.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is known of one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberStatus {
    pub on_whatsapp: bool,
    pub is_business: bool,
}

impl From<&NumberCheckRecord> for NumberStatus {
    fn from(r: &NumberCheckRecord) -> Self {
        Self {
            on_whatsapp: r.on_whatsapp,
            is_business: r.is_business,
        }
    }
}

/// Answers for `numbers` (repeats are asked once), keyed by number. At most
/// [`MAX_NUMBERS_PER_CHECK`] distinct numbers: a caller with more checks them in batches.
pub async fn check(
    store: &dyn NumberCheckStore,
    client: &dyn EngineClient,
    now_ms: i64,
    numbers: &[PhoneNumber],
) -> Result<HashMap<PhoneNumber, NumberStatus>, CheckError> {
    let mut seen = HashSet::new();
    let unique: Vec<PhoneNumber> = numbers
        .iter()
        .filter(|n| seen.insert(*n))
        .cloned()
        .collect();
    let keys: Vec<String> = unique.iter().map(|n| n.as_str().to_owned()).collect();
    let mut known: HashMap<PhoneNumber, NumberStatus> = store
        .number_checks(&keys, now_ms - CHECK_TTL_MS)
        .await?
        .iter()
        .map(|r| (PhoneNumber::from_db(r.phone_number.clone()), r.into()))
        .collect();
    let missing: Vec<PhoneNumber> = unique
        .into_iter()
        .filter(|n| !known.contains_key(n))
        .collect();
    if missing.is_empty() {
        return Ok(known);
    }
    let answers = client.check_numbers(&missing).await?;
    let fresh: Vec<NumberCheckRecord> = answers
        .into_iter()
        // Only what was asked: an engine naming another number is not believed for it.
        .filter(|a| missing.contains(&a.phone))
        .map(|a| NumberCheckRecord {
            phone_number: a.phone.as_str().to_owned(),
            on_whatsapp: a.on_whatsapp,
            is_business: a.is_business,
            jid: a.jid,
            checked_at: now_ms,
        })
        .collect();
    store.save_number_checks(&fresh).await?;
    for r in &fresh {
        known.insert(PhoneNumber::from_db(r.phone_number.clone()), r.into());
    }
    // A number WhatsApp said nothing about has no account to send to; not kept, so the
    // next check asks again.
    for n in missing {
        known.entry(n).or_insert(NumberStatus {
            on_whatsapp: false,
            is_business: false,
        });
    }
    Ok(known)
}
