//! Tenant API keys: stored by hash, found by public id until revoked.

use whatsapp_manager::store::{KeyQuotas, NewApiKey};

use crate::{Fixture, user};

fn new_key<'a>(public_id: &'a str, u: i64, hash: &'a [u8], now_ms: i64) -> NewApiKey<'a> {
    NewApiKey {
        public_id,
        user_id: user(u),
        name: None,
        key_hash: hash,
        quotas: KeyQuotas::default(),
        now_ms,
    }
}

pub async fn a_key_is_stored_with_its_hash_byte_for_byte(f: Fixture) {
    // Every byte value, NUL and invalid UTF-8 included.
    let hash: Vec<u8> = (0..=255u8).rev().collect();
    let quotas = KeyQuotas {
        max_sessions: Some(0),
        rate_limit: Some(2.5),
        rate_limit_burst: Some(u32::MAX),
    };
    let inserted =
        f.db.insert_api_key(NewApiKey {
            name: Some("بوابة"),
            quotas,
            ..new_key("pub_a", 7, &hash, 10)
        })
        .await
        .unwrap();
    assert_eq!(inserted.key_hash, hash);
    assert_eq!(inserted.public_id, "pub_a");
    assert_eq!(inserted.user_id, user(7));
    assert_eq!(inserted.name.as_deref(), Some("بوابة"));
    assert_eq!((inserted.created_at, inserted.last_used_at), (10, None));
    assert_eq!(inserted.quotas, quotas);
    let found = f.db.active_api_key("pub_a").await.unwrap().unwrap();
    assert_eq!(found, inserted);
    // Quotas left unset stay unset.
    let plain =
        f.db.insert_api_key(new_key("pub_b", 7, b"h", 11))
            .await
            .unwrap();
    assert_eq!(plain.quotas, KeyQuotas::default());
    assert_eq!(
        f.db.active_api_key("pub_b").await.unwrap().unwrap().quotas,
        KeyQuotas::default()
    );
    assert_eq!(f.db.active_api_key("pub_c").await.unwrap(), None);
    // Public ids are unique.
    assert!(
        f.db.insert_api_key(new_key("pub_a", 8, b"x", 12))
            .await
            .is_err()
    );
}

pub async fn a_revoked_key_is_hidden_and_revoked_once(f: Fixture) {
    let key =
        f.db.insert_api_key(new_key("pub_a", 7, b"h", 10))
            .await
            .unwrap();
    let revoked = f.db.revoke_api_key(key.id, 20).await.unwrap();
    assert_eq!(revoked.map(|k| k.id), Some(key.id));
    assert_eq!(f.db.active_api_key("pub_a").await.unwrap(), None);
    assert_eq!(f.db.revoke_api_key(key.id, 30).await.unwrap(), None);
    assert_eq!(f.db.revoke_api_key(999_999, 30).await.unwrap(), None);
    let (listed, total) = f.db.list_api_keys(None, 1, 10).await.unwrap();
    assert!(listed.is_empty());
    assert_eq!(total, 0);
}

pub async fn keys_list_by_user_oldest_first_with_paging(f: Fixture) {
    let mut ids = Vec::new();
    for (i, u) in [1, 2, 1, 1, 2].into_iter().enumerate() {
        let public = format!("pub_{i}");
        let key =
            f.db.insert_api_key(new_key(&public, u, b"h", i as i64))
                .await
                .unwrap();
        ids.push((u, key.id));
    }
    f.db.revoke_api_key(ids[2].1, 9).await.unwrap();
    let (all, total) = f.db.list_api_keys(None, 1, 10).await.unwrap();
    assert_eq!(total, 4);
    let want: Vec<i64> = [0, 1, 3, 4].iter().map(|&i| ids[i].1).collect();
    assert_eq!(all.iter().map(|k| k.id).collect::<Vec<_>>(), want);
    let (mine, total) = f.db.list_api_keys(Some(user(1)), 1, 10).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        mine.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![ids[0].1, ids[3].1]
    );
    let (page2, total) = f.db.list_api_keys(None, 2, 3).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page2.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![ids[4].1]
    );
    let (none, total) = f.db.list_api_keys(Some(user(3)), 1, 10).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(total, 0);
}

pub async fn touching_a_key_stamps_its_last_use(f: Fixture) {
    let key =
        f.db.insert_api_key(new_key("pub_a", 7, b"h", 10))
            .await
            .unwrap();
    let other =
        f.db.insert_api_key(new_key("pub_b", 7, b"h", 10))
            .await
            .unwrap();
    f.db.touch_api_key(key.id, 55).await.unwrap();
    let found = f.db.active_api_key("pub_a").await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(55));
    assert_eq!(
        f.db.active_api_key("pub_b")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None
    );
    f.db.touch_api_key(key.id, 66).await.unwrap();
    let (listed, _) = f.db.list_api_keys(None, 1, 10).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(66));
    assert_eq!(listed[1].id, other.id);
    // Touching a key that does not exist is no error.
    f.db.touch_api_key(999_999, 77).await.unwrap();
}
