//! Many sessions on one pool: each sees its own rows only, forgetting one removes exactly its
//! rows in every table, and concurrent takers of one sent message get it once.

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{
    AppStateSyncKey, Backend, DeviceInfo, DeviceListRecord, LidPnMappingEntry, MsgSecretEntry,
    PendingInboundRow, TcTokenEntry,
};
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;

use crate::{Db, sid};

crate::on_both!(
    two_sessions_never_see_each_others_rows,
    forgetting_a_device_removes_exactly_its_rows_in_every_table,
    forgetting_unlinked_devices_keeps_the_linked_ones,
    concurrent_takers_of_a_sent_message_get_it_once,
    a_database_out_of_reach_is_an_error_never_a_miss,
);

/// One row in every table, under the same keys for every session, with values that name
/// the session (`tag`).
async fn fill(b: &Arc<dyn Backend>, tag: u8) {
    let t = vec![tag; 8];
    let mut device = Device::new();
    device.pn = format!("96650123456{tag}@s.whatsapp.net").parse().ok();
    b.create().await.unwrap();
    b.save(&device).await.unwrap();
    b.put_identity("1@lid", [tag; 32]).await.unwrap();
    b.put_session("1@lid", &t).await.unwrap();
    b.store_prekey(1, &t, false).await.unwrap();
    b.store_signed_prekey(1, &t).await.unwrap();
    b.put_sender_key("g@g.us::1@lid", &t).await.unwrap();
    b.set_sync_key(
        &[1],
        AppStateSyncKey {
            key_data: t.clone(),
            fingerprint: t.clone(),
            timestamp: 1,
        },
    )
    .await
    .unwrap();
    b.set_version(
        "regular",
        HashState {
            version: u64::from(tag),
            ..HashState::default()
        },
    )
    .await
    .unwrap();
    b.put_mutation_macs(
        "regular",
        1,
        &[AppStateMutationMAC {
            index_mac: vec![1; 32],
            value_mac: t.clone(),
        }],
    )
    .await
    .unwrap();
    b.put_lid_mapping(&LidPnMappingEntry {
        lid: "1".into(),
        phone_number: format!("55{tag}"),
        created_at: 1,
        updated_at: 1,
        learning_source: "usync".into(),
    })
    .await
    .unwrap();
    b.set_sender_key_status("g@g.us", &[("1:1@lid", tag.is_multiple_of(2))])
        .await
        .unwrap();
    b.save_base_key("1@lid", "M1", &t).await.unwrap();
    b.update_device_list(DeviceListRecord {
        user: "1".into(),
        devices: vec![DeviceInfo::new(u32::from(tag), None)],
        timestamp: 1,
        phash: None,
        raw_id: None,
    })
    .await
    .unwrap();
    b.put_tc_token(
        "1@lid",
        &TcTokenEntry {
            token: t.clone(),
            token_timestamp: 1,
            sender_timestamp: None,
        },
    )
    .await
    .unwrap();
    b.store_sent_message("1@lid", "M1", &t).await.unwrap();
    b.put_msg_secrets(vec![MsgSecretEntry {
        chat: Arc::from("1@lid"),
        sender: Arc::from("1@lid"),
        msg_id: Arc::from("M1"),
        secret: [tag; 32],
        expires_at: 0,
        message_ts: 0,
    }])
    .await
    .unwrap();
    b.put_group_metadata("g@g.us", &t).await.unwrap();
    b.store_pending_inbound_batch(&[PendingInboundRow {
        chat: "1@lid",
        sender: "1@lid",
        id: "M1",
        message: &t,
    }])
    .await
    .unwrap();
}

/// What the session sees under the keys `fill` wrote: each value must name its own tag.
async fn check(b: &Arc<dyn Backend>, tag: u8) {
    let t = vec![tag; 8];
    let pn = b.load().await.unwrap().unwrap().pn.unwrap().to_string();
    assert_eq!(pn, format!("96650123456{tag}@s.whatsapp.net"));
    assert_eq!(b.load_identity("1@lid").await.unwrap(), Some([tag; 32]));
    assert_eq!(
        b.get_session("1@lid").await.unwrap(),
        Some(Bytes::from(t.clone()))
    );
    assert_eq!(
        b.load_prekey(1).await.unwrap(),
        Some(Bytes::from(t.clone()))
    );
    assert_eq!(b.load_signed_prekey(1).await.unwrap(), Some(t.clone()));
    assert_eq!(
        b.get_sender_key("g@g.us::1@lid").await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(b.get_sync_key(&[1]).await.unwrap().unwrap().key_data, t);
    assert_eq!(
        b.get_version("regular").await.unwrap().version,
        u64::from(tag)
    );
    assert_eq!(
        b.get_mutation_mac("regular", &[1; 32]).await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        b.get_lid_mapping("1").await.unwrap().unwrap().phone_number,
        format!("55{tag}")
    );
    assert_eq!(
        b.get_pn_mapping(&format!("55{tag}"))
            .await
            .unwrap()
            .unwrap()
            .lid,
        "1"
    );
    assert_eq!(b.get_all_lid_mappings().await.unwrap().len(), 1);
    assert_eq!(
        b.get_sender_key_devices("g@g.us").await.unwrap(),
        vec![("1:1@lid".into(), tag.is_multiple_of(2))]
    );
    assert!(b.has_same_base_key("1@lid", "M1", &t).await.unwrap());
    assert_eq!(
        b.get_devices("1").await.unwrap().unwrap().devices[0].device_id,
        u32::from(tag)
    );
    assert_eq!(b.get_tc_token("1@lid").await.unwrap().unwrap().token, t);
    assert_eq!(b.get_all_tc_token_jids().await.unwrap(), vec!["1@lid"]);
    assert_eq!(
        b.get_msg_secret("1@lid", "1@lid", "M1").await.unwrap(),
        Some(vec![tag; 32])
    );
    assert_eq!(
        b.get_group_metadata("g@g.us").await.unwrap(),
        Some(t.clone())
    );
    assert_eq!(
        b.get_pending_inbound("1@lid", "1@lid", "M1").await.unwrap(),
        Some(t)
    );
    assert_eq!(b.get_max_prekey_id().await.unwrap(), 1);
    assert!(b.has_signal_state_for_user("1").await.unwrap());
}

async fn two_sessions_never_see_each_others_rows(db: Db) {
    let a = db.backend("a").await;
    let b = db.backend("b").await;
    fill(&a, 1).await;
    fill(&b, 2).await;
    check(&a, 1).await;
    check(&b, 2).await;

    // Deletes and clears of one session leave the other's rows.
    a.clear_all_sender_key_devices().await.unwrap();
    a.clear_mutation_macs("regular").await.unwrap();
    assert_eq!(a.delete_expired_sent_messages(i64::MAX).await.unwrap(), 1);
    assert_eq!(a.delete_expired_pending_inbound(i64::MAX).await.unwrap(), 1);
    assert_eq!(
        a.delete_expired_tc_tokens(i64::MAX, i64::MAX)
            .await
            .unwrap(),
        1
    );
    assert_eq!(a.take_sent_message("1@lid", "M1").await.unwrap(), None);
    assert!(b.get_sender_key_devices("g@g.us").await.unwrap().len() == 1);
    assert!(
        b.get_mutation_mac("regular", &[1; 32])
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        b.take_sent_message("1@lid", "M1").await.unwrap(),
        Some(vec![2; 8])
    );
    assert!(
        b.get_pending_inbound("1@lid", "1@lid", "M1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(b.get_tc_token("1@lid").await.unwrap().is_some());
    assert!(
        !db.backend("c")
            .await
            .has_signal_state_for_user("1")
            .await
            .unwrap()
    );
}

async fn forgetting_a_device_removes_exactly_its_rows_in_every_table(db: Db) {
    let a = db.backend("a").await;
    let b = db.backend("b").await;
    fill(&a, 1).await;
    fill(&b, 2).await;
    db.cache_rows("a").await;
    db.cache_rows("b").await;
    let tables = db.device_tables().await;
    assert_eq!(tables.len(), 17, "{tables:?}");
    for table in &tables {
        assert_eq!(
            db.rows_of(table, "a").await,
            1,
            "fill writes one row into {table}"
        );
    }
    let a_id = db.device_id("a").await.unwrap();
    let b_rows = db.creds.device_rows(&sid("b")).await.unwrap().unwrap();

    db.creds.forget_device(&sid("a")).await.unwrap();

    assert_eq!(db.device_id("a").await, None);
    for table in &tables {
        assert_eq!(
            db.rows_with_device_id(table, a_id).await,
            0,
            "{table} kept a row of a"
        );
        assert_eq!(db.rows_of(table, "b").await, 1, "{table} lost b's row");
    }
    for cache in ["engine_contact_cache", "engine_lid_map"] {
        let sql = format!("SELECT COUNT(*) FROM {cache} WHERE session_id = $1");
        assert_eq!(db.count(&sql, "a").await, 0, "{cache} kept a");
        assert_eq!(db.count(&sql, "b").await, 1, "{cache} lost b");
    }
    assert_eq!(
        db.creds.device_rows(&sid("b")).await.unwrap().unwrap(),
        b_rows
    );
    assert!(db.creds.device_rows(&sid("a")).await.unwrap().is_none());
    check(&b, 2).await;

    // The engine of a forgotten session may still hold its handle: its writes fail, they
    // never land in another session, and a new device for the same session starts empty.
    assert!(a.save(&Device::new()).await.is_err());
    assert!(a.put_session("x@lid", b"x").await.is_err());
    let fresh = db.backend("a").await;
    assert_ne!(db.device_id("a").await, Some(a_id), "ids are never reused");
    assert!(!fresh.exists().await.unwrap());
    assert_eq!(fresh.get_session("1@lid").await.unwrap(), None);
    assert!(!db.creds.is_linked(&sid("a")).await.unwrap());
}

async fn forgetting_unlinked_devices_keeps_the_linked_ones(db: Db) {
    let linked = db.backend("linked").await;
    fill(&linked, 1).await;
    db.creds.mark_linked(&sid("linked"), 1).await.unwrap();
    let mid_link = db.backend("mid_link").await;
    fill(&mid_link, 2).await;
    db.backend("never_created").await;
    db.cache_rows("mid_link").await;
    db.cache_rows("linked").await;

    assert_eq!(db.creds.forget_unlinked_devices().await.unwrap(), 2);
    assert_eq!(
        db.creds.linked_devices().await.unwrap(),
        vec![sid("linked")]
    );
    assert!(db.device_id("mid_link").await.is_none());
    assert!(db.device_id("never_created").await.is_none());
    for table in db.device_tables().await {
        assert_eq!(db.rows_of(&table, "linked").await, 1, "{table}");
    }
    let sql = "SELECT COUNT(*) FROM engine_contact_cache WHERE session_id = $1";
    assert_eq!(db.count(sql, "mid_link").await, 0);
    assert_eq!(db.count(sql, "linked").await, 1);
    check(&linked, 1).await;
    assert_eq!(db.creds.forget_unlinked_devices().await.unwrap(), 0);
}

async fn concurrent_takers_of_a_sent_message_get_it_once(db: Db) {
    // Two handles of one session, as two engine tasks would hold them.
    let handles = [db.backend("s").await, db.backend("s").await];
    for round in 0..10 {
        let id = format!("M{round}");
        handles[0]
            .store_sent_message("c@lid", &id, b"payload")
            .await
            .unwrap();
        let takers: Vec<_> = (0..8)
            .map(|i| {
                let b = handles[i % 2].clone();
                let id = id.clone();
                tokio::spawn(async move { b.take_sent_message("c@lid", &id).await.unwrap() })
            })
            .collect();
        let mut got = 0;
        for t in takers {
            if let Some(p) = t.await.unwrap() {
                assert_eq!(p, b"payload");
                got += 1;
            }
        }
        assert_eq!(got, 1, "round {round}: taken {got} times");
    }
}

/// The library keeps its pre-wire gate shut only if a failed write says so, and treats an
/// answer as the truth: with the database gone, every call fails, as a connection error that
/// keeps its cause (the driver's error, or the store's error that carries it).
async fn a_database_out_of_reach_is_an_error_never_a_miss(db: Db) {
    let b = db.backend("s").await;
    fill(&b, 1).await;
    db.close_store().await;
    let errors = [
        b.get_session("1@lid").await.map(drop).unwrap_err(),
        b.put_session("1@lid", b"x").await.unwrap_err(),
        b.put_sessions_batch(&[(Arc::from("1@lid"), Bytes::from_static(b"x"))])
            .await
            .unwrap_err(),
        b.delete_session("1@lid").await.unwrap_err(),
        b.take_sent_message("1@lid", "M1")
            .await
            .map(drop)
            .unwrap_err(),
        b.load().await.map(drop).unwrap_err(),
        b.exists().await.map(drop).unwrap_err(),
        b.save(&Device::new()).await.unwrap_err(),
    ];
    for e in errors {
        assert!(
            matches!(
                e,
                whatsapp_rust::wacore::store::error::StoreError::Connection(_)
            ),
            "{e:?}"
        );
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        let mut found = false;
        while let Some(c) = cause {
            found |= c.downcast_ref::<sqlx::Error>().is_some()
                || c.downcast_ref::<whatsapp_manager::store::StoreError>()
                    .is_some_and(|e| e.is_unavailable());
            cause = c.source();
        }
        assert!(found, "the cause is kept: {e:?}");
    }
    assert!(db.creds.is_linked(&sid("s")).await.is_err());
    assert!(db.creds.forget_device(&sid("s")).await.is_err());
}
