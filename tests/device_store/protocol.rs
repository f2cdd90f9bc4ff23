//! Every method of the `Backend`, continued: the protocol tables, message secrets, and
//! batches larger than one statement.

use std::sync::Arc;

use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::{
    DeviceInfo, DeviceListRecord, LidPnMappingEntry, MsgSecretEntry, TcTokenEntry,
};

use crate::{Db, sid};

crate::on_both!(
    sender_key_devices,
    lid_mappings,
    base_keys_registry_and_group_metadata,
    tc_tokens_merge_by_their_rules,
    sent_messages_are_taken_once,
    msg_secrets_merge_by_their_rules,
    batches_larger_than_one_statement,
);

async fn sender_key_devices(db: Db) {
    let b = db.backend("s").await;
    b.set_sender_key_status(
        "g1",
        &[("a:1@lid", true), ("b:2@lid", false), ("a:1@lid", false)],
    )
    .await
    .unwrap();
    b.set_sender_key_status("g2", &[("a:1@lid", true), ("c:3@lid", true)])
        .await
        .unwrap();
    assert_eq!(
        b.get_sender_key_devices("g1").await.unwrap(),
        vec![("a:1@lid".into(), false), ("b:2@lid".into(), false)]
    );
    b.set_sender_key_status("g1", &[("b:2@lid", true)])
        .await
        .unwrap();
    assert_eq!(
        b.get_sender_key_devices("g1").await.unwrap()[1],
        ("b:2@lid".into(), true)
    );
    b.delete_sender_key_device_rows(&["a:1@lid"]).await.unwrap();
    assert_eq!(b.get_sender_key_devices("g1").await.unwrap().len(), 1);
    assert_eq!(
        b.get_sender_key_devices("g2").await.unwrap(),
        vec![("c:3@lid".into(), true)]
    );
    b.clear_sender_key_devices("g1").await.unwrap();
    assert!(b.get_sender_key_devices("g1").await.unwrap().is_empty());
    assert_eq!(b.get_sender_key_devices("g2").await.unwrap().len(), 1);
    b.clear_all_sender_key_devices().await.unwrap();
    assert!(b.get_sender_key_devices("g2").await.unwrap().is_empty());
}

fn lid(lid: &str, pn: &str, created: i64, updated: i64, source: &str) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: created,
        updated_at: updated,
        learning_source: source.into(),
    }
}

async fn lid_mappings(db: Db) {
    let b = db.backend("s").await;
    b.put_lid_mapping(&lid("100", "5511", 10, 10, "usync"))
        .await
        .unwrap();
    b.put_lid_mapping(&lid("100", "5512", 20, 20, "peer_pn_message"))
        .await
        .unwrap();
    let got = b.get_lid_mapping("100").await.unwrap().unwrap();
    assert_eq!(
        (got.phone_number.as_str(), got.created_at, got.updated_at),
        ("5512", 10, 20)
    );
    assert_eq!(got.learning_source, "peer_pn_message");
    // A number that moved to another LID answers with the newest.
    b.put_lid_mappings(&[
        lid("200", "5513", 30, 30, "a"),
        lid("300", "5513", 40, 40, "b"),
    ])
    .await
    .unwrap();
    assert_eq!(b.get_pn_mapping("5513").await.unwrap().unwrap().lid, "300");
    b.put_lid_mapping(&lid("200", "5513", 50, 50, "c"))
        .await
        .unwrap();
    assert_eq!(b.get_pn_mapping("5513").await.unwrap().unwrap().lid, "200");
    assert!(b.get_pn_mapping("5511").await.unwrap().is_none());
    // One batch naming a LID twice: the first learning time, the rest of the last.
    b.put_lid_mappings(&[lid("400", "1", 60, 60, "x"), lid("400", "2", 70, 70, "y")])
        .await
        .unwrap();
    let got = b.get_lid_mapping("400").await.unwrap().unwrap();
    assert_eq!(
        (got.phone_number.as_str(), got.created_at, got.updated_at),
        ("2", 60, 70)
    );
    let all: Vec<String> = b
        .get_all_lid_mappings()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.lid)
        .collect();
    assert_eq!(all, vec!["100", "200", "300", "400"]);
}

async fn base_keys_registry_and_group_metadata(db: Db) {
    let b = db.backend("s").await;
    assert!(!b.has_same_base_key("a@lid", "M1", b"k").await.unwrap());
    b.save_base_key("a@lid", "M1", b"k").await.unwrap();
    assert!(b.has_same_base_key("a@lid", "M1", b"k").await.unwrap());
    assert!(!b.has_same_base_key("a@lid", "M1", b"other").await.unwrap());
    b.save_base_key("a@lid", "M1", b"other").await.unwrap();
    assert!(b.has_same_base_key("a@lid", "M1", b"other").await.unwrap());
    b.delete_base_key("a@lid", "M1").await.unwrap();
    assert!(!b.has_same_base_key("a@lid", "M1", b"other").await.unwrap());

    let record = |user: &str, ts: i64, raw_id: Option<u32>| DeviceListRecord {
        user: user.into(),
        devices: vec![
            DeviceInfo::new(0, None),
            DeviceInfo::new(7, Some(3)).with_hosting(true),
        ],
        timestamp: ts,
        phash: Some("2:abc".into()),
        raw_id,
    };
    assert!(b.get_devices("5511").await.unwrap().is_none());
    b.update_device_list(record("5511", 1, None)).await.unwrap();
    b.update_device_lists(vec![
        record("5512", 2, Some(9)),
        record("5511", 5_000_000_000, Some(u32::MAX)),
    ])
    .await
    .unwrap();
    let got = b.get_devices("5511").await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(record("5511", 5_000_000_000, Some(u32::MAX))).unwrap()
    );
    b.delete_devices("5511").await.unwrap();
    assert!(b.get_devices("5511").await.unwrap().is_none());
    assert!(b.get_devices("5512").await.unwrap().is_some());

    assert_eq!(b.get_group_metadata("g@g.us").await.unwrap(), None);
    b.put_group_metadata("g@g.us", b"v1").await.unwrap();
    b.put_group_metadata("g@g.us", b"v2").await.unwrap();
    assert_eq!(
        b.get_group_metadata("g@g.us").await.unwrap().unwrap(),
        b"v2"
    );
    b.delete_group_metadata("g@g.us").await.unwrap();
    assert_eq!(b.get_group_metadata("g@g.us").await.unwrap(), None);
}

async fn tc_tokens_merge_by_their_rules(db: Db) {
    let b = db.backend("s").await;
    let tok = |b: &[u8], t: i64, s: Option<i64>| TcTokenEntry {
        token: b.to_vec(),
        token_timestamp: t,
        sender_timestamp: s,
    };
    let get = |jid: &'static str| {
        let b = b.clone();
        async move {
            b.get_tc_token(jid)
                .await
                .unwrap()
                .map(|e| (e.token, e.token_timestamp, e.sender_timestamp))
        }
    };
    b.put_tc_token("a@lid", &tok(b"t", 100, Some(5)))
        .await
        .unwrap();
    assert_eq!(get("a@lid").await, Some((b"t".to_vec(), 100, Some(5))));
    // The sender bucket only moves forward and never touches the token.
    b.touch_tc_token_sender_timestamp("a@lid", 3).await.unwrap();
    b.touch_tc_token_sender_timestamp("a@lid", 8).await.unwrap();
    assert_eq!(get("a@lid").await, Some((b"t".to_vec(), 100, Some(8))));
    // A placeholder for a contact with no token yet.
    b.touch_tc_token_sender_timestamp("b@lid", 50)
        .await
        .unwrap();
    assert_eq!(get("b@lid").await, Some((vec![], 50, Some(50))));
    // Received: newer wins, keeps the sender bucket; a placeholder yields to any token.
    b.store_received_tc_token("a@lid", b"old", 99)
        .await
        .unwrap();
    assert_eq!(get("a@lid").await, Some((b"t".to_vec(), 100, Some(8))));
    b.store_received_tc_token("a@lid", b"new", 100)
        .await
        .unwrap();
    assert_eq!(get("a@lid").await, Some((b"new".to_vec(), 100, Some(8))));
    b.store_received_tc_token("b@lid", b"real", 10)
        .await
        .unwrap();
    assert_eq!(get("b@lid").await, Some((b"real".to_vec(), 10, Some(50))));
    b.store_received_tc_token("c@lid", b"c", 7).await.unwrap();
    assert_eq!(get("c@lid").await, Some((b"c".to_vec(), 7, None)));
    assert_eq!(
        b.get_all_tc_token_jids().await.unwrap(),
        vec!["a@lid", "b@lid", "c@lid"]
    );

    // Gone only when both halves are stale.
    b.put_tc_token("d@lid", &tok(b"", 0, Some(1)))
        .await
        .unwrap();
    assert_eq!(
        b.delete_expired_tc_tokens(11, 9).await.unwrap(),
        2,
        "c and d"
    );
    assert_eq!(
        b.get_all_tc_token_jids().await.unwrap(),
        vec!["a@lid", "b@lid"]
    );
    b.delete_tc_token("a@lid").await.unwrap();
    assert_eq!(get("a@lid").await, None);
}

async fn sent_messages_are_taken_once(db: Db) {
    let b = db.backend("s").await;
    b.store_sent_message("c@s.whatsapp.net", "M1", b"p1")
        .await
        .unwrap();
    b.store_sent_message("c@s.whatsapp.net", "M1", b"p2")
        .await
        .unwrap();
    b.store_sent_message("c@s.whatsapp.net", "M2", b"q")
        .await
        .unwrap();
    assert_eq!(
        b.take_sent_message("c@s.whatsapp.net", "M1")
            .await
            .unwrap()
            .unwrap(),
        b"p2"
    );
    assert_eq!(
        b.take_sent_message("c@s.whatsapp.net", "M1").await.unwrap(),
        None
    );
    assert_eq!(b.delete_expired_sent_messages(0).await.unwrap(), 0);
    assert_eq!(b.delete_expired_sent_messages(i64::MAX).await.unwrap(), 1);
    assert_eq!(
        b.take_sent_message("c@s.whatsapp.net", "M2").await.unwrap(),
        None
    );
}

fn secret(chat: &str, id: &str, s: u8, expires_at: i64, message_ts: i64) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: Arc::from(chat),
        sender: Arc::from("me@s.whatsapp.net"),
        msg_id: Arc::from(id),
        secret: [s; 32],
        expires_at,
        message_ts,
    }
}

async fn msg_secrets_merge_by_their_rules(db: Db) {
    let b = db.backend("s").await;
    let get = |id: &'static str| {
        let b = b.clone();
        async move {
            b.get_msg_secret_with_ts("c", "me@s.whatsapp.net", id)
                .await
                .unwrap()
        }
    };
    b.put_msg_secret("c", "me@s.whatsapp.net", "A", &[1; 32])
        .await
        .unwrap();
    assert_eq!(get("A").await, Some((vec![1; 32], 0)));
    assert_eq!(
        b.get_msg_secret("c", "me@s.whatsapp.net", "A")
            .await
            .unwrap(),
        Some(vec![1; 32])
    );
    assert_eq!(b.get_msg_secret("c", "other", "A").await.unwrap(), None);
    let n = b
        .put_msg_secrets(vec![
            secret("c", "B", 2, 100, 50),
            secret("c", "B", 3, 200, 40),
            secret("c", "C", 4, 100, 0),
            secret("c", "A", 5, 300, 60),
        ])
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        get("B").await,
        Some((vec![3; 32], 50)),
        "latest secret, later parent time"
    );
    assert_eq!(get("A").await, Some((vec![5; 32], 60)));
    b.put_msg_secrets(vec![secret("c", "C", 6, 50, 0)])
        .await
        .unwrap();
    // Deadlines: "never" (0) wins, else the later one. A never expires; C keeps 100.
    assert_eq!(b.delete_expired_msg_secrets(99).await.unwrap(), 0);
    assert_eq!(
        b.delete_expired_msg_secrets(100).await.unwrap(),
        1,
        "C at its deadline"
    );
    assert_eq!(get("C").await, None);
    assert_eq!(
        b.delete_expired_msg_secrets(i64::MAX).await.unwrap(),
        1,
        "B"
    );
    assert!(get("A").await.is_some(), "0 = never");
    assert_eq!(b.put_msg_secrets(vec![]).await.unwrap(), 0);
}

/// More rows than one statement takes (chunks of 1,000), in one call each.
async fn batches_larger_than_one_statement(db: Db) {
    let b = db.backend("s").await;
    let sessions: Vec<(Arc<str>, Bytes)> = (0..2_500)
        .map(|i| {
            (
                Arc::from(format!("{i}@lid")),
                Bytes::from(vec![(i % 251) as u8; 64]),
            )
        })
        .collect();
    b.put_sessions_batch(&sessions).await.unwrap();
    assert_eq!(
        b.get_session("2499@lid").await.unwrap().unwrap(),
        &[(2499 % 251) as u8; 64][..]
    );
    let ids: Vec<u32> = (1..=2_500).collect();
    let keys: Vec<(u32, Bytes)> = ids
        .iter()
        .map(|&i| (i, Bytes::from(i.to_be_bytes().to_vec())))
        .collect();
    b.store_prekeys_batch(&keys, false).await.unwrap();
    assert_eq!(b.load_prekeys_batch(&ids).await.unwrap().len(), 2_500);
    b.mark_prekeys_uploaded(&ids).await.unwrap();
    let rows = db.creds.device_rows(&sid("s")).await.unwrap().unwrap();
    assert!(rows.prekeys.iter().all(|p| p.2));
    let secrets: Vec<MsgSecretEntry> = (0..2_500)
        .map(|i| secret("c", &format!("M{i}"), 1, 0, i))
        .collect();
    assert_eq!(b.put_msg_secrets(secrets).await.unwrap(), 2_500);
    assert_eq!(db.rows_of("wa_msg_secrets", "s").await, 2_500);
}
