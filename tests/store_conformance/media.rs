//! Uploads: kept byte for byte until they expire, then gone, and each remembers whose it is.

use whatsapp_manager::store::{MessageKind, NewUpload};

use crate::{Fixture, user};

fn upload(id: &str, user_id: Option<i64>, bytes: Vec<u8>, at: i64) -> NewUpload {
    NewUpload {
        id: id.into(),
        user: user_id.map(user),
        kind: MessageKind::Document,
        mime: "application/pdf".into(),
        file_name: Some("invoice.pdf".into()),
        bytes,
        created_at: at,
        expires_at: at + 1_000,
    }
}

pub async fn an_upload_is_kept_byte_for_byte_until_it_expires(f: Fixture) {
    // Every byte value, a NUL among them: a blob, not text.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let info =
        f.db.insert_upload(&upload("up1", Some(7), bytes.clone(), 100))
            .await
            .unwrap();
    assert_eq!(info.id, "up1");
    assert_eq!(info.user, Some(user(7)));
    assert_eq!(info.kind, MessageKind::Document);
    assert_eq!(info.mime, "application/pdf");
    assert_eq!(info.file_name.as_deref(), Some("invoice.pdf"));
    assert_eq!(info.size, 70_000);
    assert_eq!((info.created_at, info.expires_at), (100, 1_100));
    assert!(info.usable_by(user(7)));
    assert!(!info.usable_by(user(8)));
    assert_eq!(f.db.upload("up1", 500).await.unwrap(), Some(info));
    assert_eq!(f.db.upload_bytes("up1", 500).await.unwrap(), Some(bytes));
    assert_eq!(f.db.upload("up1", 1_100).await.unwrap(), None, "expired");
    assert_eq!(f.db.upload_bytes("up1", 1_100).await.unwrap(), None);
    assert_eq!(f.db.upload("nope", 500).await.unwrap(), None);
}

pub async fn expired_uploads_are_purged_and_a_new_one_sweeps_them(f: Fixture) {
    let admin =
        f.db.insert_upload(&upload("a", None, vec![1], 0))
            .await
            .unwrap();
    assert!(admin.usable_by(user(1)) && admin.usable_by(user(2)));
    f.db.insert_upload(&upload("b", Some(1), vec![2], 500))
        .await
        .unwrap();
    assert_eq!(f.db.purge_uploads(1_000).await.unwrap(), 1);
    assert_eq!(f.db.upload("a", 0).await.unwrap(), None, "purged");
    assert!(f.db.upload("b", 1_000).await.unwrap().is_some());
    // A later upload drops what expired before it.
    f.db.insert_upload(&upload("c", Some(1), vec![3], 1_600))
        .await
        .unwrap();
    assert_eq!(f.db.upload_bytes("b", 0).await.unwrap(), None);
    assert_eq!(f.db.purge_uploads(1_600).await.unwrap(), 0);
}
