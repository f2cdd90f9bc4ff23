//! The store's contract, held against every backend: each test below is written once against
//! the store's public traits and instantiated per backend by [`suite!`], so a promise that
//! holds on SQLite and not on PostgreSQL (or the reverse) turns the build red.
//!
//! `cargo test --test store_conformance -- sqlite::` (or `postgres::`) runs one backend.

/// The leases nodes share (PostgreSQL only).
mod cluster;
mod contact_cache;
mod contacts;
mod events;
mod groups;
mod inbox;
mod keys;
mod media;
mod number_checks;
mod outbox;
/// PostgreSQL's own tests: concurrency from several pools, and its statements over arrays
/// compared with SQLite's.
mod pg_only;
mod receipts;
mod sessions;
mod sim;

use testkit::db::{TestBackend, TestDb};
use whatsapp_manager::domain::{Pair, PlaceId, SessionId, UserId};
use whatsapp_manager::store::DatabaseOptions;
pub use whatsapp_manager::store::Db;

/// A fresh database of one backend and the store opened on it.
pub struct Fixture {
    pub db: Db,
    pub backend: TestBackend,
    /// What keeps the database alive; also names it for a second pool.
    pub database: TestDb,
}

impl Fixture {
    pub async fn open(backend: TestBackend) -> Self {
        let database = backend.database().await;
        let db = connect(&database.url).await;
        Self {
            db,
            backend,
            database,
        }
    }

    /// Another store on the same database, with pools of its own: a second server.
    pub async fn second_server(&self) -> Db {
        connect(&self.database.url).await
    }
}

/// The store as the server builds it: the URL's scheme picks the backend.
async fn connect(url: &str) -> Db {
    whatsapp_manager::store::open(url, &DatabaseOptions::default())
        .await
        .expect("open the store")
}

pub fn pair(user: i64, place: i64) -> Pair {
    Pair::new(UserId::new_unchecked(user), PlaceId::new_unchecked(place))
}

pub fn user(id: i64) -> UserId {
    UserId::new_unchecked(id)
}

pub fn place(id: i64) -> PlaceId {
    PlaceId::new_unchecked(id)
}

pub fn session_id(pair: Pair, ms: i64) -> SessionId {
    SessionId::new(pair, ms)
}

/// One `#[tokio::test]` per named function of a module, on a fresh fixture of `$backend`.
macro_rules! instantiate {
    ($backend:expr, $module:ident, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::$module::$name(crate::Fixture::open($backend).await).await
                }
            )*
        }
    };
}

/// Every test of every module, against one backend.
macro_rules! suite {
    ($backend:expr) => {
        instantiate!(
            $backend,
            sessions,
            [
                saving_again_overwrites_the_row,
                the_latest_session_of_a_pair_is_the_newest_and_on_a_tie_the_last_saved,
                latest_sessions_gives_the_newest_of_every_pair,
                the_session_quota_counts_pairs_whose_newest_is_not_logged_out,
                the_store_answers_a_ping_and_closes,
            ]
        );
        instantiate!(
            $backend,
            groups,
            [
                default_groups_stay_unique_under_racing_calls_from_two_servers,
                lookalike_names_are_refused_including_the_automatic_ones,
                groups_count_their_contacts_by_rule_or_membership,
                groups_list_automatic_first_then_manual_by_age_with_paging,
                unknown_contact_ids_are_reported_in_order_and_change_nothing,
                automatic_groups_refuse_changes_and_unknown_groups_are_not_found,
                members_are_replaced_whole_and_a_deleted_group_leaves_its_contacts,
                groups_and_contacts_of_one_tenant_are_invisible_to_another,
            ]
        );
        instantiate!(
            $backend,
            contacts,
            [
                an_upsert_never_blanks_a_name_and_activity_only_moves_forward,
                an_upsert_keeps_tags_and_custom_fields,
                the_fetch_progress_is_written_with_its_batch,
                a_batch_larger_than_one_statement_is_imported_whole,
                every_filter_narrows_the_listing,
                listings_order_by_activity_then_id_and_page,
                contacts_after_reads_everything_by_id_in_pages,
                an_opt_out_is_stamped_once_kept_by_a_fetch_and_cleared,
                a_patch_replaces_tags_and_merges_fields_where_null_removes,
                search_matches_non_ascii_names_case_insensitively,
                stats_count_names_business_and_activity,
                opted_out_numbers_are_found_among_a_list_for_their_pair_only,
            ]
        );
        instantiate!(
            $backend,
            inbox,
            [
                an_incoming_message_is_kept_once_and_makes_its_sender_a_contact,
                a_known_contact_keeps_its_name_and_its_activity_moves_forward_only,
                conversations_order_by_newest_message_and_count_unread,
                a_peers_messages_are_both_directions_newest_first,
                incoming_rows_change_nothing_the_outbox_reads,
            ]
        );
        instantiate!(
            $backend,
            sim,
            [
                a_sim_link_is_kept_replaced_and_forgotten_once,
                a_phone_book_is_kept_byte_for_byte_per_pair,
                the_networks_list_is_kept_apart_from_every_pairs_book,
                the_outbox_keeps_the_order_sent_per_pair,
                a_second_connection_of_a_device_replaces_the_first_unless_its_node_is_dead,
                racing_connections_of_one_device_leave_exactly_one_open,
            ]
        );
        instantiate!(
            $backend,
            contact_cache,
            [
                the_contact_cache_merges_facts_and_resolves_lids,
                a_later_mapping_replaces_the_earlier_one,
                a_large_cache_write_is_kept_whole,
            ]
        );
        instantiate!(
            $backend,
            keys,
            [
                a_key_is_stored_with_its_hash_byte_for_byte,
                a_revoked_key_is_hidden_and_revoked_once,
                keys_list_by_user_oldest_first_with_paging,
                touching_a_key_stamps_its_last_use,
            ]
        );
        instantiate!(
            $backend,
            outbox,
            [
                enqueue_keeps_the_order_and_makes_the_job,
                the_oldest_queued_or_sending_message_is_claimed_first,
                marking_counts_attempts_and_a_resend_keeps_the_whatsapp_id,
                retry_queues_only_a_failed_message_of_the_pair,
                the_cap_window_counts_sent_messages_and_knows_the_oldest,
                message_filters_narrow_and_a_foreign_group_matches_nothing,
                jobs_count_their_messages_by_status,
                pairs_with_pending_lists_each_pair_once,
                media_of_every_kind_is_kept_with_its_file_details,
                a_download_fills_in_the_file_and_kinds_are_counted,
                a_job_is_made_with_what_its_send_left_out,
            ]
        );
        instantiate!(
            $backend,
            number_checks,
            [
                answers_are_read_back_when_fresh_and_a_newer_one_replaces_the_older,
                a_long_list_is_saved_and_read_whole,
                racing_saves_of_the_same_numbers_in_any_order_all_succeed,
            ]
        );
        instantiate!(
            $backend,
            media,
            [
                an_upload_is_kept_byte_for_byte_until_it_expires,
                expired_uploads_are_purged_and_a_new_one_sweeps_them,
            ]
        );
        instantiate!(
            $backend,
            receipts,
            [
                receipts_move_a_message_forward_only_and_stamp_each_time_once,
                a_read_first_stamps_delivered_too_and_a_receipt_before_the_send_is_recorded_holds,
                receipts_touch_only_the_pairs_outgoing_messages_from_sending_on,
                counts_follow_receipts_and_a_job_stays_done,
            ]
        );
        instantiate!(
            $backend,
            events,
            [
                an_event_payload_carries_its_id_and_a_delivery_needs_a_subscription,
                events_after_reads_per_user_and_place_with_a_limit,
                deleting_the_webhook_fails_its_pending_deliveries,
                only_the_head_of_each_tenants_queue_is_pending,
                attempts_are_recorded_and_deliveries_listed_newest_first,
                a_reader_never_sees_an_id_below_one_it_already_read,
                every_tenants_events_follow_one_id_and_the_last_id_is_known,
                a_delivery_is_claimed_by_one_dispatcher_until_due_again_or_released,
            ]
        );
    };
}

mod sqlite {
    suite!(testkit::db::TestBackend::Sqlite);
}

mod postgres {
    suite!(testkit::db::TestBackend::Postgres);
}
