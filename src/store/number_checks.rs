//! Whether numbers are on WhatsApp, as the engine last answered: kept a day, so a list
//! checked again (a campaign's recipients, checked before each send) costs WhatsApp nothing.

use async_trait::async_trait;

use super::StoreResult;

/// One number's answer, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberCheckRecord {
    /// E.164.
    pub phone_number: String,
    pub on_whatsapp: bool,
    pub is_business: bool,
    /// The account's jid when it is on WhatsApp.
    pub jid: Option<String>,
    /// Unix milliseconds.
    pub checked_at: i64,
}

/// The answers, one row per number; a newer answer replaces the older one.
#[async_trait]
pub trait NumberCheckStore: Send + Sync + 'static {
    /// The answers for these numbers (E.164) checked at or after `since_ms`; numbers with
    /// none, or only an older one, are left out.
    async fn number_checks(
        &self,
        numbers: &[String],
        since_ms: i64,
    ) -> StoreResult<Vec<NumberCheckRecord>>;
    /// Stores these answers, replacing older ones, in one transaction.
    async fn save_number_checks(&self, checks: &[NumberCheckRecord]) -> StoreResult<()>;
    /// Forgets every answer (the simulated network changed); how many there were.
    async fn clear_number_checks(&self) -> StoreResult<u64>;
}
