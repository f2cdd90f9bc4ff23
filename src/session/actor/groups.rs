//! On ready: the pair's two automatic groups, created at once and never twice (the database
//! enforces it), retried a few times when the database is busy.

use std::time::Duration;

use super::Actor;

const DEFAULT_GROUP_ATTEMPTS: u32 = 3;

impl Actor {
    pub(super) async fn create_default_groups(&mut self) {
        let id = self.id().clone();
        let user = self.record.pair.user_id;
        tracing::info!("🏗️ Creating default groups for session: {id}");
        let mut attempt = 1;
        let result = loop {
            let r = self
                .deps
                .store
                .ensure_default_groups(self.record.pair, self.now_ms())
                .await;
            match r {
                Err(e) if attempt < DEFAULT_GROUP_ATTEMPTS => {
                    tracing::warn!(
                        "⚠️ Creating default groups for session {id} failed (attempt {attempt}), retrying: {e:#}"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        match result {
            Ok(outcome) => {
                tracing::info!(
                    "ℹ️ Found {} existing auto groups: {}",
                    outcome.existing.len(),
                    outcome.existing.join(", ")
                );
                tracing::info!(
                    "✅ Created {} new default groups for user {user}",
                    outcome.created
                );
                tracing::info!(
                    "✅ Created {} default groups for session: {id}",
                    outcome.created
                );
            }
            Err(e) => {
                tracing::error!("❌ Error creating default groups for session {id}: {e:#}");
            }
        }
    }
}
