//! A store whose every call fails as a database that stopped answering does.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_manager::domain::{Pair, PlaceId, SessionId, UserId};
use whatsapp_manager::engine::RawContact;
use whatsapp_manager::store::prelude::*;
use whatsapp_manager::store::*;

pub struct DownStore;

fn down<T>() -> StoreResult<T> {
    Err(StoreError::other("database is gone"))
}

#[async_trait]
impl OutboxStore for DownStore {
    async fn enqueue(
        &self,
        _pair: Pair,
        _job: Option<NewJob>,
        _messages: &[NewMessage],
        _now_ms: i64,
    ) -> StoreResult<(Option<i64>, Vec<MessageRecord>)> {
        down()
    }
    async fn pairs_with_pending(&self) -> StoreResult<Vec<Pair>> {
        down()
    }
    async fn pending_count(&self) -> StoreResult<i64> {
        down()
    }
    async fn next_pending(&self, _pair: Pair) -> StoreResult<Option<MessageRecord>> {
        down()
    }
    async fn mark_sending(&self, _id: i64, _now_ms: i64) -> StoreResult<()> {
        down()
    }
    async fn mark_sent(&self, _id: i64, _wa_message_id: &str, _now_ms: i64) -> StoreResult<()> {
        down()
    }
    async fn mark_failed(&self, _id: i64, _error: &str, _now_ms: i64) -> StoreResult<()> {
        down()
    }
    async fn set_message_media(
        &self,
        _id: i64,
        _mime: &str,
        _size: i64,
        _file_name: Option<&str>,
    ) -> StoreResult<()> {
        down()
    }
    async fn requeue(&self, _id: i64, _now_ms: i64) -> StoreResult<()> {
        down()
    }
    async fn sent_since(&self, _pair: Pair, _since_ms: i64) -> StoreResult<(i64, Option<i64>)> {
        down()
    }
    async fn last_sent_at(&self, _pair: Pair) -> StoreResult<Option<i64>> {
        down()
    }
    async fn message(&self, _pair: Pair, _id: i64) -> StoreResult<Option<MessageRecord>> {
        down()
    }
    async fn list_messages(
        &self,
        _pair: Pair,
        _filter: &MessageFilter,
        _page: i64,
        _limit: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)> {
        down()
    }
    async fn message_counts(
        &self,
        _pair: Pair,
        _filter: &MessageFilter,
    ) -> StoreResult<MessageCounts> {
        down()
    }
    async fn retry_message(
        &self,
        _pair: Pair,
        _id: i64,
        _now_ms: i64,
    ) -> StoreResult<RetryOutcome> {
        down()
    }
    async fn job(&self, _pair: Pair, _id: i64) -> StoreResult<Option<JobRecord>> {
        down()
    }
    async fn apply_receipt(
        &self,
        _pair: Pair,
        _wa_message_ids: &[String],
        _to: MessageStatus,
        _now_ms: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        down()
    }
}

#[async_trait]
impl MediaStore for DownStore {
    async fn insert_upload(&self, _upload: &NewUpload) -> StoreResult<UploadInfo> {
        down()
    }
    async fn upload(&self, _id: &str, _now_ms: i64) -> StoreResult<Option<UploadInfo>> {
        down()
    }
    async fn upload_bytes(&self, _id: &str, _now_ms: i64) -> StoreResult<Option<Vec<u8>>> {
        down()
    }
    async fn purge_uploads(&self, _now_ms: i64) -> StoreResult<u64> {
        down()
    }
}

#[async_trait]
impl EventStore for DownStore {
    async fn record_event(
        &self,
        _pair: Pair,
        _session_id: Option<&SessionId>,
        _kind: &str,
        _payload: &(dyn Fn(i64) -> String + Send + Sync),
        _now_ms: i64,
    ) -> StoreResult<(EventRecord, bool)> {
        down()
    }
    async fn events_after(
        &self,
        _user: UserId,
        _place: Option<PlaceId>,
        _after_id: i64,
        _limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        down()
    }
    async fn last_event_id(&self) -> StoreResult<i64> {
        down()
    }
    async fn events_since(&self, _after_id: i64, _limit: i64) -> StoreResult<Vec<EventRecord>> {
        down()
    }
    async fn set_webhook(&self, _hook: &WebhookRecord) -> StoreResult<WebhookRecord> {
        down()
    }
    async fn webhook(&self, _user: UserId) -> StoreResult<Option<WebhookRecord>> {
        down()
    }
    async fn delete_webhook(&self, _user: UserId, _now_ms: i64) -> StoreResult<bool> {
        down()
    }
    async fn pending_heads(&self) -> StoreResult<Vec<DeliveryRecord>> {
        down()
    }
    async fn pending_delivery_count(&self) -> StoreResult<i64> {
        down()
    }
    async fn claim_delivery(&self, _id: i64, _now_ms: i64, _until_ms: i64) -> StoreResult<bool> {
        down()
    }
    async fn release_delivery(&self, _id: i64, _until_ms: i64, _due_ms: i64) -> StoreResult<()> {
        down()
    }
    async fn record_attempt(
        &self,
        _delivery_id: i64,
        _result: &AttemptResult,
        _now_ms: i64,
    ) -> StoreResult<()> {
        down()
    }
    async fn deliveries(
        &self,
        _user: UserId,
        _status: Option<DeliveryStatus>,
        _page: i64,
        _limit: i64,
    ) -> StoreResult<(Vec<DeliveryRecord>, i64)> {
        down()
    }
}

#[async_trait]
impl NumberCheckStore for DownStore {
    async fn number_checks(&self, _: &[String], _: i64) -> StoreResult<Vec<NumberCheckRecord>> {
        down()
    }
    async fn save_number_checks(&self, _: &[NumberCheckRecord]) -> StoreResult<()> {
        down()
    }
    async fn clear_number_checks(&self) -> StoreResult<u64> {
        down()
    }
}

#[async_trait]
impl SimStore for DownStore {
    async fn sim_device(&self, _: &SessionId) -> StoreResult<Option<String>> {
        down()
    }
    async fn save_sim_device(&self, _: &SessionId, _: &str, _: i64) -> StoreResult<()> {
        down()
    }
    async fn forget_sim_device(&self, _: &SessionId) -> StoreResult<bool> {
        down()
    }
    async fn sim_phonebook(&self, _: Pair) -> StoreResult<Option<Vec<u8>>> {
        down()
    }
    async fn set_sim_phonebook(&self, _: Pair, _: &[u8], _: i64) -> StoreResult<()> {
        down()
    }
    async fn record_sim_sent(&self, _: Pair, _: &str, _: i64) -> StoreResult<()> {
        down()
    }
    async fn sim_network(&self) -> StoreResult<Option<Vec<u8>>> {
        down()
    }
    async fn set_sim_network(&self, _: &[u8], _: i64) -> StoreResult<()> {
        down()
    }
    async fn all_sim_phonebooks(&self) -> StoreResult<Vec<Vec<u8>>> {
        down()
    }
    async fn sim_outbox(&self, _: Pair) -> StoreResult<Vec<String>> {
        down()
    }
    async fn open_sim_connection(
        &self,
        _: Pair,
        _: &SessionId,
        _: &str,
        _: i64,
    ) -> StoreResult<whatsapp_manager::store::traits::SimOpened> {
        down()
    }
    async fn close_sim_connection(
        &self,
        _: i64,
        _: whatsapp_manager::store::traits::SimCloseReason,
        _: i64,
    ) -> StoreResult<bool> {
        down()
    }
    async fn close_sim_connections_of(
        &self,
        _: &str,
        _: whatsapp_manager::store::traits::SimCloseReason,
        _: i64,
    ) -> StoreResult<u64> {
        down()
    }
    async fn sim_connection(
        &self,
        _: i64,
    ) -> StoreResult<Option<whatsapp_manager::store::traits::SimConnection>> {
        down()
    }
    async fn open_sim_connections_of(&self, _: &str) -> StoreResult<Vec<i64>> {
        down()
    }
    async fn sim_connections(
        &self,
        _: Pair,
    ) -> StoreResult<Vec<whatsapp_manager::store::traits::SimConnection>> {
        down()
    }
}

#[async_trait]
impl CredentialStore for DownStore {
    async fn device_backend(
        &self,
        _: &SessionId,
    ) -> StoreResult<Arc<dyn whatsapp_rust::store::traits::Backend>> {
        down()
    }
    async fn is_linked(&self, _: &SessionId) -> StoreResult<bool> {
        down()
    }
    async fn linked_devices(&self) -> StoreResult<Vec<SessionId>> {
        down()
    }
    async fn mark_linked(&self, _: &SessionId, _: i64) -> StoreResult<()> {
        down()
    }
    async fn forget_device(&self, _: &SessionId) -> StoreResult<()> {
        down()
    }
    async fn forget_unlinked_devices(&self) -> StoreResult<u64> {
        down()
    }
    async fn device_rows(
        &self,
        _: &SessionId,
    ) -> StoreResult<Option<whatsapp_manager::store::device::DeviceRows>> {
        down()
    }
    async fn set_imported_from(&self, _: &SessionId, _: &str) -> StoreResult<()> {
        down()
    }
}

#[async_trait]
impl KeyStore for DownStore {
    async fn insert_api_key(&self, _: NewApiKey<'_>) -> StoreResult<ApiKeyRecord> {
        down()
    }
    async fn active_api_key(&self, _: &str) -> StoreResult<Option<ApiKeyRecord>> {
        down()
    }
    async fn list_api_keys(
        &self,
        _: Option<whatsapp_manager::domain::UserId>,
        _: i64,
        _: i64,
    ) -> StoreResult<(Vec<ApiKeyRecord>, i64)> {
        down()
    }
    async fn revoke_api_key(&self, _: i64, _: i64) -> StoreResult<Option<ApiKeyRecord>> {
        down()
    }
    async fn touch_api_key(&self, _: i64, _: i64) -> StoreResult<()> {
        down()
    }
}

#[async_trait]
impl Health for DownStore {
    async fn ping(&self) -> StoreResult<()> {
        down()
    }

    async fn close(&self) {}
    fn kind(&self) -> &'static str {
        "down"
    }
}

#[async_trait]
impl SessionStore for DownStore {
    async fn save_session(&self, _: &SessionRecord) -> StoreResult<()> {
        down()
    }

    async fn latest_session(&self, _: Pair) -> StoreResult<Option<SessionRecord>> {
        down()
    }

    async fn latest_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        down()
    }

    async fn counted_sessions(&self, _: whatsapp_manager::domain::UserId) -> StoreResult<i64> {
        down()
    }
}

#[async_trait]
impl GroupStore for DownStore {
    async fn ensure_default_groups(&self, _: Pair, _: i64) -> StoreResult<DefaultGroupsOutcome> {
        down()
    }

    async fn list_groups(
        &self,
        _: Pair,
        _: i64,
        _: i64,
        _: i64,
    ) -> StoreResult<(Vec<GroupRecord>, i64)> {
        down()
    }

    async fn group(&self, _: Pair, _: i64, _: i64) -> StoreResult<Option<GroupRecord>> {
        down()
    }

    async fn create_manual_group(
        &self,
        _: Pair,
        _: &str,
        _: Option<&str>,
        _: &[i64],
        _: i64,
    ) -> StoreResult<GroupChange> {
        down()
    }

    async fn replace_group_members(
        &self,
        _: Pair,
        _: i64,
        _: &[i64],
        _: i64,
    ) -> StoreResult<GroupChange> {
        down()
    }

    async fn delete_manual_group(&self, _: Pair, _: i64) -> StoreResult<GroupChange> {
        down()
    }
}

#[async_trait]
impl ContactStore for DownStore {
    async fn opted_out_numbers(&self, _: Pair, _: &[String]) -> StoreResult<Vec<String>> {
        down()
    }
    async fn import_contacts(
        &self,
        _: Pair,
        _: &[ImportContact],
        _: BatchProgress<'_>,
        _: i64,
    ) -> StoreResult<()> {
        down()
    }

    async fn pair_counts(&self, _: Pair) -> StoreResult<(i64, i64)> {
        down()
    }

    async fn contact_stats(&self, _: Pair, _: i64) -> StoreResult<ContactStats> {
        down()
    }

    async fn search_contacts(
        &self,
        _: Pair,
        _: Option<&GroupRecord>,
        _: &ContactQuery,
        _: i64,
    ) -> StoreResult<(Vec<ContactRecord>, i64)> {
        down()
    }

    async fn contacts_after(
        &self,
        _: Pair,
        _: Option<&GroupRecord>,
        _: &ContactFilter,
        _: i64,
        _: i64,
        _: i64,
    ) -> StoreResult<Vec<ContactRecord>> {
        down()
    }

    async fn contact(&self, _: Pair, _: i64) -> StoreResult<Option<ContactRecord>> {
        down()
    }

    async fn update_contact(
        &self,
        _: Pair,
        _: i64,
        _: &ContactPatch,
        _: i64,
    ) -> StoreResult<Option<ContactRecord>> {
        down()
    }
}

#[async_trait]
impl ContactCacheStore for DownStore {
    async fn cache_contacts(&self, _: &SessionId, _: &[CachedContact], _: i64) -> StoreResult<()> {
        down()
    }

    async fn cache_lid_mappings(&self, _: &SessionId, _: &[(String, String)]) -> StoreResult<()> {
        down()
    }

    async fn cached_contacts(&self, _: &SessionId) -> StoreResult<Vec<RawContact>> {
        down()
    }
}

#[async_trait]
impl InboxStore for DownStore {
    async fn record_incoming(
        &self,
        _: Pair,
        _: &inbox::NewIncoming,
        _: i64,
    ) -> StoreResult<inbox::Recorded> {
        down()
    }
    async fn conversations(
        &self,
        _: Pair,
        _: i64,
        _: i64,
    ) -> StoreResult<(Vec<inbox::Conversation>, i64)> {
        down()
    }
    async fn peer_messages(
        &self,
        _: Pair,
        _: &str,
        _: i64,
        _: i64,
    ) -> StoreResult<(Vec<MessageRecord>, i64)> {
        down()
    }
    async fn mark_conversation_read(
        &self,
        _: Pair,
        _: &str,
        _: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        down()
    }
}
