//! The engine's contact cache: facts merged per session, LID chats resolved to numbers.

use whatsapp_manager::domain::SessionId;
use whatsapp_manager::store::CachedContact;

use crate::Fixture;

fn fact(jid: &str) -> CachedContact {
    CachedContact {
        jid: jid.into(),
        ..Default::default()
    }
}

pub async fn the_contact_cache_merges_facts_and_resolves_lids(f: Fixture) {
    let id = SessionId::from_db("session_1_2_3".into());
    let lid = "111122223333444@lid".to_string();
    let pn = "966501112222@s.whatsapp.net".to_string();
    f.db.cache_contacts(
        &id,
        &[
            CachedContact {
                name: Some("Ali".into()),
                last_message_at: Some(100),
                is_business: Some(true),
                ..fact(&pn)
            },
            CachedContact {
                last_message_at: Some(50),
                ..fact(&lid)
            },
        ],
        1,
    )
    .await
    .unwrap();
    // Later facts: a blank name and older activity change nothing; a push name adds; no
    // word on business keeps what was known.
    f.db.cache_contacts(
        &id,
        &[CachedContact {
            name: Some(" ".into()),
            push_name: Some("Ali P".into()),
            last_message_at: Some(90),
            ..fact(&pn)
        }],
        2,
    )
    .await
    .unwrap();
    let before = f.db.cached_contacts(&id).await.unwrap();
    let lid_row = before.iter().find(|c| c.jid == lid).unwrap();
    assert_eq!(lid_row.pn_jid, None, "unresolved until a mapping comes");
    f.db.cache_lid_mappings(&id, &[(lid.clone(), pn.clone())])
        .await
        .unwrap();
    let all = f.db.cached_contacts(&id).await.unwrap();
    assert_eq!(all.len(), 2);
    let p = all.iter().find(|c| c.jid == pn).unwrap();
    assert_eq!(p.name.as_deref(), Some("Ali"));
    assert_eq!(p.push_name.as_deref(), Some("Ali P"));
    assert_eq!(p.last_message_at, Some(100));
    assert!(p.is_business);
    let l = all.iter().find(|c| c.jid == lid).unwrap();
    assert_eq!(l.pn_jid.as_deref(), Some(pn.as_str()));
    assert!(!l.is_business, "unknown is not a business");
    // Newer activity moves forward; a blank first name is stored as none.
    f.db.cache_contacts(
        &id,
        &[
            CachedContact {
                last_message_at: Some(200),
                ..fact(&pn)
            },
            CachedContact {
                name: Some(" \t ".into()),
                ..fact("20100000000@s.whatsapp.net")
            },
        ],
        3,
    )
    .await
    .unwrap();
    let all = f.db.cached_contacts(&id).await.unwrap();
    assert_eq!(
        all.iter().find(|c| c.jid == pn).unwrap().last_message_at,
        Some(200)
    );
    let blank = all
        .iter()
        .find(|c| c.jid == "20100000000@s.whatsapp.net")
        .unwrap();
    assert_eq!(blank.name, None);
    // Another session sees none of it.
    let other = SessionId::from_db("session_9_9_9".into());
    assert!(f.db.cached_contacts(&other).await.unwrap().is_empty());
}

pub async fn a_later_mapping_replaces_the_earlier_one(f: Fixture) {
    let a = SessionId::from_db("session_1_2_3".into());
    let b = SessionId::from_db("session_1_2_4".into());
    let lid = "5550001@lid";
    // One LID chat, cached by two sessions.
    f.db.cache_contacts(&a, &[fact(lid)], 1).await.unwrap();
    f.db.cache_contacts(&b, &[fact(lid)], 1).await.unwrap();
    f.db.cache_lid_mappings(&a, &[(lid.into(), "111@s.whatsapp.net".into())])
        .await
        .unwrap();
    f.db.cache_lid_mappings(&a, &[(lid.into(), "222@s.whatsapp.net".into())])
        .await
        .unwrap();
    let got = f.db.cached_contacts(&a).await.unwrap();
    assert_eq!(got[0].pn_jid.as_deref(), Some("222@s.whatsapp.net"));
    // The other session's mapping is its own.
    let got = f.db.cached_contacts(&b).await.unwrap();
    assert_eq!(got[0].pn_jid, None);
    // A row that knows its own phone number keeps it over any mapping.
    let own = CachedContact {
        pn_jid: Some("333@s.whatsapp.net".into()),
        ..fact(lid)
    };
    f.db.cache_contacts(&a, &[own], 2).await.unwrap();
    let got = f.db.cached_contacts(&a).await.unwrap();
    assert_eq!(got[0].pn_jid.as_deref(), Some("333@s.whatsapp.net"));
    // A row whose jid is a number, with a LID of its own, resolves through that LID.
    let by_lid = CachedContact {
        lid_jid: Some("7770001@lid".into()),
        ..fact("chat-1@g.us")
    };
    f.db.cache_contacts(&b, &[by_lid], 3).await.unwrap();
    f.db.cache_lid_mappings(&b, &[("7770001@lid".into(), "777@s.whatsapp.net".into())])
        .await
        .unwrap();
    let got = f.db.cached_contacts(&b).await.unwrap();
    let row = got.iter().find(|c| c.jid == "chat-1@g.us").unwrap();
    assert_eq!(row.pn_jid.as_deref(), Some("777@s.whatsapp.net"));
}

pub async fn a_large_cache_write_is_kept_whole(f: Fixture) {
    let id = SessionId::from_db("session_1_2_3".into());
    // Above SQLite's 2,000 rows per statement and PostgreSQL's 65,535 parameters (9 a row).
    let n = 7_500;
    let entries: Vec<CachedContact> = (0..n)
        .map(|i| CachedContact {
            name: Some(format!("n{i}")),
            last_message_at: Some(i),
            ..fact(&format!("9665{i:08}@s.whatsapp.net"))
        })
        .collect();
    f.db.cache_contacts(&id, &entries, 1).await.unwrap();
    let mappings: Vec<(String, String)> = (0..n)
        .map(|i| (format!("{i}@lid"), format!("9665{i:08}@s.whatsapp.net")))
        .collect();
    f.db.cache_lid_mappings(&id, &mappings).await.unwrap();
    let got = f.db.cached_contacts(&id).await.unwrap();
    assert_eq!(got.len(), n as usize);
    // Ordered by jid.
    assert!(got.windows(2).all(|w| w[0].jid < w[1].jid));
    assert_eq!(got[0].name.as_deref(), Some("n0"));
}
