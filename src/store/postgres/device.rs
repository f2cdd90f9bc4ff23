//! The engine's device store on PostgreSQL: [`PgCredentials`] over this store's pool, so the
//! devices of every session share the one pool of the service.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_rust::store::traits::Backend;

use super::PgStore;
use crate::domain::SessionId;
use crate::store::StoreResult;
use crate::store::device::{CredentialStore, DeviceRows, PgCredentials};

impl PgStore {
    fn credentials(&self) -> PgCredentials {
        PgCredentials::new(self.pool.clone())
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn device_backend(&self, session: &SessionId) -> StoreResult<Arc<dyn Backend>> {
        self.credentials().device_backend(session).await
    }

    async fn is_linked(&self, session: &SessionId) -> StoreResult<bool> {
        self.credentials().is_linked(session).await
    }

    async fn linked_devices(&self) -> StoreResult<Vec<SessionId>> {
        self.credentials().linked_devices().await
    }

    async fn mark_linked(&self, session: &SessionId, now_ms: i64) -> StoreResult<()> {
        self.credentials().mark_linked(session, now_ms).await
    }

    async fn forget_device(&self, session: &SessionId) -> StoreResult<()> {
        self.credentials().forget_device(session).await
    }

    async fn forget_unlinked_devices(&self) -> StoreResult<u64> {
        self.credentials().forget_unlinked_devices().await
    }

    async fn device_rows(&self, session: &SessionId) -> StoreResult<Option<DeviceRows>> {
        self.credentials().device_rows(session).await
    }

    async fn set_imported_from(&self, session: &SessionId, source: &str) -> StoreResult<()> {
        self.credentials().set_imported_from(session, source).await
    }
}
