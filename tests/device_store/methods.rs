//! Every method of the `Backend`, with the promises of the library's own SQLite store: the
//! device, the Signal keys, the inbound buffer and app state (`protocol.rs` has the rest).

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{AppStateSyncKey, PendingInboundKey, PendingInboundRow};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;

use crate::{Db, sid};

crate::on_both!(
    device_blob_lifecycle_and_linking,
    identities_and_sessions,
    prekeys_never_come_back_once_removed,
    signed_prekeys_and_sender_keys,
    pending_inbound_buffer,
    app_state_keys_versions_and_macs,
    the_service_store_is_the_credential_store,
);

fn json(d: &Device) -> serde_json::Value {
    serde_json::to_value(d).unwrap()
}

async fn device_blob_lifecycle_and_linking(db: Db) {
    let s = sid("session_1_1_1");
    let b = db.backend("session_1_1_1").await;
    assert!(!b.exists().await.unwrap());
    assert!(b.load().await.unwrap().is_none());
    assert!(!db.creds.is_linked(&s).await.unwrap());

    // As the library's stores: create() stores a fresh device, a second create keeps it.
    let id = b.create().await.unwrap();
    assert_eq!(Some(i64::from(id)), db.device_id("session_1_1_1").await);
    assert!(b.exists().await.unwrap());
    let fresh = b.load().await.unwrap().unwrap();
    assert!(fresh.pn.is_none());
    b.create().await.unwrap();
    assert_eq!(json(&b.load().await.unwrap().unwrap()), json(&fresh));

    // Marked linked before the library saved the registered device: not linked yet.
    db.creds.mark_linked(&s, 1_700_000_000_000).await.unwrap();
    assert!(!db.creds.is_linked(&s).await.unwrap());
    assert!(db.creds.linked_devices().await.unwrap().is_empty());

    let mut d = fresh.clone();
    d.pn = "966501234567@s.whatsapp.net".parse().ok();
    d.lid = "100000012345678@lid".parse().ok();
    d.push_name = "Ali".into();
    d.nct_salt = Some(vec![4, 5, 6]);
    d.nct_salt_sync_seen = true;
    b.save(&d).await.unwrap();
    let back = b.load().await.unwrap().unwrap();
    assert_eq!(json(&back), json(&d));
    assert!(
        !back.nct_salt_sync_seen,
        "restored as the library's store restores it"
    );
    assert!(db.creds.is_linked(&s).await.unwrap());
    assert_eq!(db.creds.linked_devices().await.unwrap(), vec![s.clone()]);

    // The same session gets the same device; a handle made later reads what the first wrote.
    let again = db.backend("session_1_1_1").await;
    assert_eq!(json(&again.load().await.unwrap().unwrap()), json(&d));
    assert_eq!(
        again.resource_report().await.memory_bytes,
        Some(0),
        "nothing held in memory per session"
    );

    db.creds
        .set_imported_from(&s, "/data/whatsapp/x/device.db")
        .await
        .unwrap();
    let rows = db.creds.device_rows(&s).await.unwrap().unwrap();
    assert_eq!(
        rows.imported_from.as_deref(),
        Some("/data/whatsapp/x/device.db")
    );
    assert_eq!(rows.linked_at, Some(1_700_000_000_000));
    assert!(
        db.creds
            .device_rows(&sid("nobody"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(db.creds.mark_linked(&sid("nobody"), 1).await.is_err());
    assert!(
        db.creds
            .set_imported_from(&sid("nobody"), "x")
            .await
            .is_err()
    );
}

async fn identities_and_sessions(db: Db) {
    let b = db.backend("s").await;
    b.put_identity("123@s.whatsapp.net", [1; 32]).await.unwrap();
    b.put_identity("123@s.whatsapp.net", [2; 32]).await.unwrap();
    assert_eq!(
        b.load_identity("123@s.whatsapp.net").await.unwrap(),
        Some([2; 32])
    );
    b.put_identities_batch(&[
        (Arc::from("a@lid"), [3; 32]),
        (Arc::from("b@lid"), [4; 32]),
        (Arc::from("a@lid"), [5; 32]),
    ])
    .await
    .unwrap();
    assert_eq!(
        b.load_identity("a@lid").await.unwrap(),
        Some([5; 32]),
        "last wins"
    );
    assert_eq!(b.load_identity("b@lid").await.unwrap(), Some([4; 32]));
    b.delete_identity("a@lid").await.unwrap();
    assert_eq!(b.load_identity("a@lid").await.unwrap(), None);
    b.put_identities_batch(&[]).await.unwrap();

    assert_eq!(b.get_session("777:3@lid").await.unwrap(), None);
    assert!(!b.has_session("777:3@lid").await.unwrap());
    b.put_session("777:3@lid", b"one").await.unwrap();
    b.put_sessions_batch(&[
        (Arc::from("777:3@lid"), Bytes::from_static(b"two")),
        (
            Arc::from("888@s.whatsapp.net"),
            Bytes::from_static(b"three"),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(
        b.get_session("777:3@lid").await.unwrap().unwrap(),
        &b"two"[..]
    );
    assert!(b.has_session("888@s.whatsapp.net").await.unwrap());
    b.delete_session("888@s.whatsapp.net").await.unwrap();
    assert!(!b.has_session("888@s.whatsapp.net").await.unwrap());

    // Device 0 is `user@server`, device n `user:n@server`; another user sharing the digits
    // is not the user, and `_` is no wildcard.
    assert!(b.has_signal_state_for_user("777").await.unwrap());
    assert!(
        b.has_signal_state_for_user("123").await.unwrap(),
        "an identity counts"
    );
    assert!(!b.has_signal_state_for_user("77").await.unwrap());
    assert!(!b.has_signal_state_for_user("7_7").await.unwrap());
    assert!(!b.has_signal_state_for_user("888").await.unwrap());
    assert!(!b.has_signal_state_for_user("12").await.unwrap());
}

async fn prekeys_never_come_back_once_removed(db: Db) {
    let b = db.backend("s").await;
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 0);
    b.store_prekey(5, b"five", false).await.unwrap();
    b.store_prekeys_batch(
        &[
            (6, Bytes::from_static(b"six")),
            (7, Bytes::from_static(b"seven")),
        ],
        false,
    )
    .await
    .unwrap();
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 7);
    assert_eq!(b.load_prekey(6).await.unwrap().unwrap(), &b"six"[..]);
    assert_eq!(b.load_prekey(8).await.unwrap(), None);
    let got = b.load_prekeys_batch(&[7, 8, 5]).await.unwrap();
    let mut ids: Vec<u32> = got.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(ids, vec![5, 7], "only the keys there");

    b.remove_prekey(6).await.unwrap();
    b.mark_prekeys_uploaded(&[5, 6]).await.unwrap();
    assert_eq!(b.load_prekey(6).await.unwrap(), None, "never resurrected");
    let rows = db.creds.device_rows(&sid("s")).await.unwrap().unwrap();
    assert_eq!(
        rows.prekeys,
        vec![(5, b"five".to_vec(), true), (7, b"seven".to_vec(), false)]
    );
    b.store_prekey(7, b"seven", true).await.unwrap();
    let rows = db.creds.device_rows(&sid("s")).await.unwrap().unwrap();
    assert!(rows.prekeys[1].2);
}

async fn signed_prekeys_and_sender_keys(db: Db) {
    let b = db.backend("s").await;
    b.store_signed_prekey(2, b"two").await.unwrap();
    b.store_signed_prekey(1, b"one").await.unwrap();
    b.store_signed_prekey(2, b"TWO").await.unwrap();
    assert_eq!(b.load_signed_prekey(2).await.unwrap().unwrap(), b"TWO");
    assert_eq!(
        b.load_all_signed_prekeys().await.unwrap(),
        vec![(1, b"one".to_vec()), (2, b"TWO".to_vec())]
    );
    b.remove_signed_prekey(1).await.unwrap();
    assert_eq!(b.load_signed_prekey(1).await.unwrap(), None);

    let g = "120363021033254949@g.us::5511:2@s.whatsapp.net";
    b.put_sender_key(g, b"k1").await.unwrap();
    b.put_sender_keys_batch(&[(Arc::from(g), Bytes::from_static(b"k2"))])
        .await
        .unwrap();
    assert_eq!(b.get_sender_key(g).await.unwrap().unwrap(), b"k2");
    b.delete_sender_key(g).await.unwrap();
    assert_eq!(b.get_sender_key(g).await.unwrap(), None);
}

async fn pending_inbound_buffer(db: Db) {
    let b = db.backend("s").await;
    b.store_pending_inbound("c@s.whatsapp.net", "c@s.whatsapp.net", "M1", b"m1")
        .await
        .unwrap();
    b.store_pending_inbound_batch(&[
        PendingInboundRow {
            chat: "g@g.us",
            sender: "x@lid",
            id: "M1",
            message: b"g1",
        },
        PendingInboundRow {
            chat: "g@g.us",
            sender: "y@lid",
            id: "M1",
            message: b"g2",
        },
        PendingInboundRow {
            chat: "g@g.us",
            sender: "x@lid",
            id: "M1",
            message: b"g3",
        },
    ])
    .await
    .unwrap();
    let get = |c: &'static str, s: &'static str| {
        let b = b.clone();
        async move { b.get_pending_inbound(c, s, "M1").await.unwrap() }
    };
    assert_eq!(get("g@g.us", "x@lid").await.unwrap(), b"g3");
    assert_eq!(get("g@g.us", "y@lid").await.unwrap(), b"g2");
    b.delete_pending_inbound("c@s.whatsapp.net", "c@s.whatsapp.net", "M1")
        .await
        .unwrap();
    assert_eq!(get("c@s.whatsapp.net", "c@s.whatsapp.net").await, None);
    b.delete_pending_inbound_batch(&[PendingInboundKey {
        chat: "g@g.us",
        sender: "x@lid",
        id: "M1",
    }])
    .await
    .unwrap();
    assert_eq!(get("g@g.us", "x@lid").await, None);
    assert!(get("g@g.us", "y@lid").await.is_some());
    assert_eq!(b.delete_expired_pending_inbound(0).await.unwrap(), 0);
    assert_eq!(b.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 1);
}

async fn app_state_keys_versions_and_macs(db: Db) {
    let b = db.backend("s").await;
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), None);
    let key = |n: u8| AppStateSyncKey {
        key_data: vec![n; 32],
        fingerprint: vec![n, 1],
        timestamp: i64::from(n),
    };
    b.set_sync_key(&[0, 0, 10], key(10)).await.unwrap();
    b.set_sync_key(&[0, 1], key(2)).await.unwrap();
    b.set_sync_key(&[0, 0, 255, 1], key(3)).await.unwrap();
    let got = b.get_sync_key(&[0, 1]).await.unwrap().unwrap();
    assert_eq!(
        (got.key_data, got.fingerprint, got.timestamp),
        (vec![2; 32], vec![2, 1], 2)
    );
    assert!(b.get_sync_key(&[9]).await.unwrap().is_none());
    // The highest id bytewise, as the library's SQLite store answers, not the last one set.
    assert_eq!(b.get_latest_sync_key_id().await.unwrap(), Some(vec![0, 1]));

    let empty = b.get_version("regular").await.unwrap();
    assert_eq!((empty.version, empty.index_value_map.len()), (0, 0));
    let mut state = HashState {
        version: 42,
        hash: [3; 128],
        mac_mismatch_fatal: true,
        ..HashState::default()
    };
    state.index_value_map.insert("idx".into(), vec![9; 32]);
    b.set_version("regular", state.clone()).await.unwrap();
    let back = b.get_version("regular").await.unwrap();
    assert_eq!(back.version, 42);
    assert_eq!(back.hash, [3; 128]);
    assert!(back.mac_mismatch_fatal);
    assert_eq!(back.index_value_map, state.index_value_map);

    let mac = |i: u8, v: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![v; 32],
    };
    b.put_mutation_macs("regular", 1, &[mac(1, 1), mac(2, 2), mac(1, 3)])
        .await
        .unwrap();
    b.put_mutation_macs("regular_low", 1, &[mac(1, 7)])
        .await
        .unwrap();
    b.put_mutation_macs("regular", 2, &[mac(2, 4)])
        .await
        .unwrap();
    assert_eq!(
        b.get_mutation_mac("regular", &[1; 32]).await.unwrap(),
        Some(vec![3; 32])
    );
    assert_eq!(
        b.get_mutation_mac("regular_low", &[1; 32]).await.unwrap(),
        Some(vec![7; 32])
    );
    let many = b
        .get_mutation_macs("regular", &[[1; 32], [2; 32], [5; 32]])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&[2; 32]], vec![4; 32]);
    let rows = db.creds.device_rows(&sid("s")).await.unwrap().unwrap();
    assert!(
        rows.mutation_macs
            .contains(&("regular".into(), vec![2; 32], 2, vec![4; 32]))
    );
    b.delete_mutation_macs("regular", &[vec![1; 32]])
        .await
        .unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap(), None);
    b.clear_mutation_macs("regular").await.unwrap();
    assert_eq!(b.get_mutation_mac("regular", &[2; 32]).await.unwrap(), None);
    assert!(
        b.get_mutation_mac("regular_low", &[1; 32])
            .await
            .unwrap()
            .is_some(),
        "other collection kept"
    );
}

/// The store the server builds (`store::open`, by the URL's scheme) answers every method of
/// the credential store itself, the import's two included: none falls back to a refusal.
async fn the_service_store_is_the_credential_store(db: Db) {
    use whatsapp_manager::store::{DatabaseOptions, open};

    let service = open(&db.url, &DatabaseOptions::default()).await.unwrap();
    assert_eq!(service.kind(), db.kind);
    let s = sid("session_1_1_9");
    assert!(service.device_rows(&s).await.unwrap().is_none());
    assert!(service.set_imported_from(&s, "x").await.is_err());

    let b = service.device_backend(&s).await.unwrap();
    b.create().await.unwrap();
    let mut d = b.load().await.unwrap().unwrap();
    d.pn = "966501234567@s.whatsapp.net".parse().ok();
    b.save(&d).await.unwrap();
    service.mark_linked(&s, 1_700_000_000_000).await.unwrap();
    service
        .set_imported_from(&s, "/data/whatsapp/session_1_1_9/device.db")
        .await
        .unwrap();

    // What it wrote is what the device store reads back, and the other way round.
    let rows = service.device_rows(&s).await.unwrap().unwrap();
    assert_eq!(rows, db.creds.device_rows(&s).await.unwrap().unwrap());
    assert_eq!(
        rows.imported_from.as_deref(),
        Some("/data/whatsapp/session_1_1_9/device.db")
    );
    assert_eq!(rows.linked_at, Some(1_700_000_000_000));
    assert!(rows.device.is_some());
    assert!(service.is_linked(&s).await.unwrap());

    service.forget_device(&s).await.unwrap();
    assert!(db.creds.device_rows(&s).await.unwrap().is_none());
    service.close().await;
}
