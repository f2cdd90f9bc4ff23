//! Contacts: the fetch's upsert and its merge rules, listings, filters, exports and patches.

use serde_json::json;
use whatsapp_manager::store::{
    BatchProgress, ContactFilter, ContactPatch, ContactQuery, ContactRecord, ContactStats,
    GroupChange, ImportContact, SearchType, SessionRecord,
};

use crate::groups::{contact, ids, import};
use crate::{Db, Fixture, pair, session_id};

fn query(filter: ContactFilter, page: i64, limit: i64) -> ContactQuery {
    ContactQuery {
        filter,
        page,
        limit,
    }
}

/// The phone numbers a listing with this filter gives, in its order.
async fn listed(db: &Db, p: whatsapp_manager::domain::Pair, filter: ContactFilter) -> Vec<String> {
    let (list, total) = db
        .search_contacts(p, None, &query(filter, 1, 100), 0)
        .await
        .unwrap();
    assert_eq!(total, list.len() as i64);
    list.into_iter().map(|c| c.phone_number).collect()
}

async fn only(db: &Db, p: whatsapp_manager::domain::Pair) -> ContactRecord {
    let (list, _) = db
        .search_contacts(p, None, &query(ContactFilter::default(), 1, 10), 0)
        .await
        .unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    db.contact(p, list[0].id).await.unwrap().unwrap()
}

pub async fn an_upsert_never_blanks_a_name_and_activity_only_moves_forward(f: Fixture) {
    let p = pair(1, 2);
    let mut first = contact("+966500000001", Some(1_000), Some("Ali"));
    first.push_name = Some("Ali P".into());
    first.is_business = true;
    import(&f.db, p, &[first]).await;
    let id = only(&f.db, p).await.id;

    // Nothing known this time, older activity, no longer a business.
    import(&f.db, p, &[contact("+966500000001", Some(10), None)]).await;
    let c = only(&f.db, p).await;
    assert_eq!(c.id, id, "the same row");
    assert_eq!(c.name.as_deref(), Some("Ali"));
    assert_eq!(c.push_name.as_deref(), Some("Ali P"));
    assert_eq!(c.last_message_at, Some(1_000));
    assert!(!c.is_business, "is_business is replaced");

    // No activity known keeps what was known; newer activity and a new name replace.
    import(&f.db, p, &[contact("+966500000001", None, None)]).await;
    assert_eq!(only(&f.db, p).await.last_message_at, Some(1_000));
    let mut newer = contact("+966500000001", Some(2_000), Some("Ali B"));
    newer.is_business = true;
    import(&f.db, p, &[newer]).await;
    let c = only(&f.db, p).await;
    assert_eq!(c.name.as_deref(), Some("Ali B"));
    assert_eq!(c.last_message_at, Some(2_000));
    assert!(c.is_business);
    // The new name is what search finds.
    let by_name = |s: &str| ContactFilter {
        search: Some(s.into()),
        search_type: SearchType::Name,
        ..Default::default()
    };
    assert_eq!(listed(&f.db, p, by_name("ali b")).await.len(), 1);
}

pub async fn an_upsert_keeps_tags_and_custom_fields(f: Fixture) {
    let p = pair(1, 2);
    import(&f.db, p, &[contact("+966500000001", Some(5), Some("A"))]).await;
    let id = only(&f.db, p).await.id;
    let patch = ContactPatch {
        opted_out: None,
        tags: Some(vec!["vip".into(), "riyadh".into()]),
        custom_fields: Some(json!({"tier": "gold", "n": 3}).as_object().unwrap().clone()),
    };
    f.db.update_contact(p, id, &patch, 6)
        .await
        .unwrap()
        .unwrap();
    import(&f.db, p, &[contact("+966500000001", Some(7), Some("B"))]).await;
    let c = only(&f.db, p).await;
    assert_eq!(c.tags, vec!["vip", "riyadh"]);
    assert_eq!(
        serde_json::Value::Object(c.custom_fields),
        json!({"tier": "gold", "n": 3})
    );
    assert_eq!(c.name.as_deref(), Some("B"));
}

pub async fn the_fetch_progress_is_written_with_its_batch(f: Fixture) {
    let p = pair(1, 2);
    let sid = session_id(p, 1);
    f.db.save_session(&SessionRecord::new(sid.clone(), p, 1))
        .await
        .unwrap();
    let progress = BatchProgress {
        session_id: &sid,
        processed: 2,
        total: 8,
        percent: 25,
    };
    let batch = [
        contact("+966500000001", None, None),
        contact("+966500000002", None, None),
    ];
    f.db.import_contacts(p, &batch, progress, 42).await.unwrap();
    let s = f.db.latest_session(p).await.unwrap().unwrap();
    assert_eq!(
        (
            s.fetch.processed,
            s.fetch.total,
            s.fetch.progress,
            s.updated_at
        ),
        (2, 8, 25, 42)
    );
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (2, 0));
}

pub async fn a_batch_larger_than_one_statement_is_imported_whole(f: Fixture) {
    let p = pair(1, 2);
    // Above SQLite's 2,000 rows per statement and PostgreSQL's 65,535 parameters.
    let n = 5_500;
    let batch: Vec<ImportContact> = (0..n)
        .map(|i| contact(&format!("+9665{i:08}"), Some(i), Some(&format!("n{i}"))))
        .collect();
    import(&f.db, p, &batch).await;
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (n, 0));
    let (first, total) =
        f.db.search_contacts(p, None, &query(ContactFilter::default(), 1, 1), 0)
            .await
            .unwrap();
    assert_eq!(total, n);
    assert_eq!(
        first[0].name.as_deref(),
        Some(format!("n{}", n - 1).as_str())
    );
    // A second import of the same numbers merges instead of adding.
    import(&f.db, p, &batch).await;
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (n, 0));
}

pub async fn every_filter_narrows_the_listing(f: Fixture) {
    let p = pair(1, 2);
    let mut shop = contact("+966500000001", Some(1_000), Some("Coffee Shop"));
    shop.is_business = true;
    let mut pushed = contact("+966500000002", Some(100), None);
    pushed.push_name = Some("Coffee lover".into());
    let silent = contact("+201000000003", None, Some("Tea"));
    import(&f.db, p, &[shop, pushed, silent]).await;
    let all = ids(&f.db, p).await;
    let id_of = |phone: &str| all.iter().find(|(n, _)| n == phone).unwrap().1;
    let tag = |tags: &[&str]| ContactPatch {
        opted_out: None,
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        custom_fields: None,
    };
    f.db.update_contact(p, id_of("+966500000001"), &tag(&["a", "b"]), 1)
        .await
        .unwrap();
    f.db.update_contact(p, id_of("+966500000002"), &tag(&["a"]), 1)
        .await
        .unwrap();

    let search = |s: &str, t| ContactFilter {
        search: Some(s.into()),
        search_type: t,
        ..Default::default()
    };
    assert_eq!(
        listed(&f.db, p, search("COFFEE", SearchType::Name)).await,
        vec!["+966500000001", "+966500000002"],
        "name and push name, any case"
    );
    assert!(
        listed(&f.db, p, search("coffee", SearchType::Phone))
            .await
            .is_empty()
    );
    assert_eq!(
        listed(&f.db, p, search("0000000", SearchType::Phone))
            .await
            .len(),
        3
    );
    assert_eq!(
        listed(&f.db, p, search("20 10", SearchType::Phone)).await,
        vec!["+201000000003"],
        "the digits of the search are looked for"
    );
    assert_eq!(
        listed(&f.db, p, search("tea", SearchType::All)).await,
        vec!["+201000000003"]
    );
    assert_eq!(
        listed(&f.db, p, search("966", SearchType::All)).await.len(),
        2
    );
    // Text that would be a pattern or SQL elsewhere is only text.
    assert!(
        listed(&f.db, p, search("%", SearchType::All))
            .await
            .is_empty()
    );
    assert!(
        listed(&f.db, p, search("' OR 1=1 --", SearchType::Name))
            .await
            .is_empty()
    );

    let only_business = ContactFilter {
        is_business: Some(true),
        ..Default::default()
    };
    assert_eq!(listed(&f.db, p, only_business).await, vec!["+966500000001"]);
    let not_business = ContactFilter {
        is_business: Some(false),
        ..Default::default()
    };
    assert_eq!(listed(&f.db, p, not_business).await.len(), 2);
    let active = ContactFilter {
        active_since: Some(100),
        ..Default::default()
    };
    assert_eq!(
        listed(&f.db, p, active).await,
        vec!["+966500000001", "+966500000002"]
    );
    let inactive = ContactFilter {
        inactive_since: Some(1_000),
        ..Default::default()
    };
    assert_eq!(
        listed(&f.db, p, inactive).await,
        vec!["+966500000002", "+201000000003"],
        "never active counts as inactive"
    );
    let tagged = |tags: &[&str]| ContactFilter {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(listed(&f.db, p, tagged(&["a"])).await.len(), 2);
    assert_eq!(
        listed(&f.db, p, tagged(&["a", "b"])).await,
        vec!["+966500000001"]
    );
    assert!(listed(&f.db, p, tagged(&["c"])).await.is_empty());
    // Filters combine.
    let both = ContactFilter {
        tags: vec!["a".into()],
        is_business: Some(false),
        ..search("coffee", SearchType::All)
    };
    assert_eq!(listed(&f.db, p, both).await, vec!["+966500000002"]);
}

pub async fn listings_order_by_activity_then_id_and_page(f: Fixture) {
    let p = pair(1, 2);
    import(
        &f.db,
        p,
        &[
            contact("+966500000001", None, None),
            contact("+966500000002", Some(5), None),
            contact("+966500000003", Some(9), None),
            contact("+966500000004", None, None),
            contact("+966500000005", Some(5), None),
        ],
    )
    .await;
    let ids = ids(&f.db, p).await;
    let id_of = |phone: &str| ids.iter().find(|(n, _)| n == phone).unwrap().1;
    let mut ties = [id_of("+966500000002"), id_of("+966500000005")];
    ties.sort();
    let mut never = [id_of("+966500000001"), id_of("+966500000004")];
    never.sort();
    let want = vec![id_of("+966500000003"), ties[0], ties[1], never[0], never[1]];
    let mut got = Vec::new();
    for page in 1..=3 {
        let (list, total) =
            f.db.search_contacts(p, None, &query(ContactFilter::default(), page, 2), 0)
                .await
                .unwrap();
        assert_eq!(total, 5);
        got.extend(list.into_iter().map(|c| c.id));
    }
    assert_eq!(got, want);
    let (beyond, total) =
        f.db.search_contacts(p, None, &query(ContactFilter::default(), 4, 2), 0)
            .await
            .unwrap();
    assert!(beyond.is_empty());
    assert_eq!(total, 5);
}

pub async fn contacts_after_reads_everything_by_id_in_pages(f: Fixture) {
    let p = pair(1, 2);
    let batch: Vec<ImportContact> = (0..25)
        .map(|i| contact(&format!("+9665000000{i:02}"), Some(i % 3), None))
        .collect();
    import(&f.db, p, &batch).await;
    let all: Vec<i64> = ids(&f.db, p).await.into_iter().map(|(_, id)| id).collect();
    let first = all[0];
    let fields = json!({"k": "v"}).as_object().unwrap().clone();
    let patch = ContactPatch {
        opted_out: None,
        tags: None,
        custom_fields: Some(fields.clone()),
    };
    f.db.update_contact(p, first, &patch, 1).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page =
            f.db.contacts_after(p, None, &ContactFilter::default(), 0, after, 10)
                .await
                .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = page.last().unwrap().id;
        seen.extend(page);
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(seen.iter().map(|c| c.id).collect::<Vec<_>>(), sorted);
    let with_fields = seen.iter().find(|c| c.id == first).unwrap();
    assert_eq!(
        with_fields.custom_fields, fields,
        "custom fields are exported"
    );
    // The filter applies too.
    let active = ContactFilter {
        active_since: Some(2),
        ..Default::default()
    };
    let page =
        f.db.contacts_after(p, None, &active, 0, 0, 100)
            .await
            .unwrap();
    assert_eq!(page.len(), 8);
    assert!(page.windows(2).all(|w| w[0].id < w[1].id));
    // And a group: only its members.
    let members = [sorted[20], sorted[3], sorted[11]];
    let GroupChange::Done(g) =
        f.db.create_manual_group(p, "G", None, &members, 1)
            .await
            .unwrap()
    else {
        panic!("not created");
    };
    let group = f.db.group(p, g, 0).await.unwrap().unwrap();
    let filter = ContactFilter::default();
    let page =
        f.db.contacts_after(p, Some(&group), &filter, 0, sorted[3], 100)
            .await
            .unwrap();
    assert_eq!(
        page.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![sorted[11], sorted[20]]
    );
}

pub async fn a_patch_replaces_tags_and_merges_fields_where_null_removes(f: Fixture) {
    let p = pair(1, 2);
    import(&f.db, p, &[contact("+966500000001", None, Some("A"))]).await;
    let id = only(&f.db, p).await.id;
    let fields = |v: serde_json::Value| Some(v.as_object().unwrap().clone());
    let first = ContactPatch {
        opted_out: None,
        tags: Some(vec!["x".into(), "y".into()]),
        custom_fields: fields(json!({"a": 1, "b": "two", "c": [1, 2]})),
    };
    let c =
        f.db.update_contact(p, id, &first, 2)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(c.tags, vec!["x", "y"]);
    let second = ContactPatch {
        opted_out: None,
        tags: Some(vec!["z".into()]),
        custom_fields: fields(json!({"a": null, "b": "deux", "d": {"e": true}})),
    };
    let c =
        f.db.update_contact(p, id, &second, 3)
            .await
            .unwrap()
            .unwrap();
    let want = json!({"b": "deux", "c": [1, 2], "d": {"e": true}});
    assert_eq!(c.tags, vec!["z"]);
    assert_eq!(serde_json::Value::Object(c.custom_fields.clone()), want);
    // Only tags: fields stay; only fields: tags stay.
    let tags_only = ContactPatch {
        opted_out: None,
        tags: Some(vec![]),
        custom_fields: None,
    };
    f.db.update_contact(p, id, &tags_only, 4).await.unwrap();
    let stored = f.db.contact(p, id).await.unwrap().unwrap();
    assert!(stored.tags.is_empty());
    assert_eq!(serde_json::Value::Object(stored.custom_fields), want);
    assert_eq!(stored.name.as_deref(), Some("A"));
    assert_eq!(
        f.db.update_contact(p, 999_999, &first, 5).await.unwrap(),
        None
    );
}

pub async fn search_matches_non_ascii_names_case_insensitively(f: Fixture) {
    let p = pair(1, 2);
    let mut greek = contact("+966500000002", Some(2), Some("ΩMEGA Café"));
    greek.push_name = Some("Ünal".into());
    import(
        &f.db,
        p,
        &[contact("+966500000001", Some(1), Some("محمد العلي")), greek],
    )
    .await;
    let by_name = |s: &str| ContactFilter {
        search: Some(s.into()),
        search_type: SearchType::Name,
        ..Default::default()
    };
    assert_eq!(
        listed(&f.db, p, by_name("العلي")).await,
        vec!["+966500000001"]
    );
    assert_eq!(
        listed(&f.db, p, by_name("ωmega")).await,
        vec!["+966500000002"]
    );
    assert_eq!(
        listed(&f.db, p, by_name("CAFÉ")).await,
        vec!["+966500000002"]
    );
    assert_eq!(
        listed(&f.db, p, by_name("üNAL")).await,
        vec!["+966500000002"]
    );
    let c =
        f.db.contact(p, ids(&f.db, p).await[1].1)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(c.name.as_deref(), Some("ΩMEGA Café"), "shown as it came");
}

pub async fn stats_count_names_business_and_activity(f: Fixture) {
    let p = pair(1, 2);
    assert_eq!(
        f.db.contact_stats(p, 0).await.unwrap(),
        ContactStats::default()
    );
    let mut pushed = contact("+966500000002", Some(50), None);
    pushed.push_name = Some("P".into());
    pushed.is_business = true;
    let mut both = contact("+966500000003", Some(500), Some("N"));
    both.push_name = Some("P".into());
    import(
        &f.db,
        p,
        &[
            contact("+966500000001", None, Some("N")),
            pushed,
            both,
            contact("+966500000004", None, None),
        ],
    )
    .await;
    import(
        &f.db,
        pair(2, 2),
        &[contact("+966500000009", Some(900), None)],
    )
    .await;
    let stats = f.db.contact_stats(p, 100).await.unwrap();
    assert_eq!(
        stats,
        ContactStats {
            total_contacts: 4,
            with_saved_name: 2,
            with_push_name: 2,
            without_any_name: 1,
            business: 1,
            active_last_90_days: 1,
            with_known_activity: 2,
        }
    );
}

pub async fn an_opt_out_is_stamped_once_kept_by_a_fetch_and_cleared(f: Fixture) {
    let p = pair(1, 2);
    import(&f.db, p, &[contact("+966500000001", Some(1), None)]).await;
    let c = only(&f.db, p).await;
    assert!(!c.opted_out && c.opted_out_at.is_none(), "{c:?}");
    let set = ContactPatch {
        opted_out: Some(true),
        ..Default::default()
    };
    let got =
        f.db.update_contact(p, c.id, &set, 50)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((got.opted_out, got.opted_out_at), (true, Some(50)));
    // A second opt-out word keeps the first time.
    f.db.update_contact(p, c.id, &set, 60).await.unwrap();
    // A fetch updates names, never the opt-out.
    import(&f.db, p, &[contact("+966500000001", Some(2), None)]).await;
    let again = only(&f.db, p).await;
    assert_eq!((again.opted_out, again.opted_out_at), (true, Some(50)));
    let clear = ContactPatch {
        opted_out: Some(false),
        ..Default::default()
    };
    let got =
        f.db.update_contact(p, c.id, &clear, 70)
            .await
            .unwrap()
            .unwrap();
    assert_eq!((got.opted_out, got.opted_out_at), (false, None));
    assert!(!only(&f.db, p).await.opted_out);
}

pub async fn opted_out_numbers_are_found_among_a_list_for_their_pair_only(f: Fixture) {
    let (p, q) = (pair(1, 2), pair(1, 3));
    let numbers = ["+966500000001", "+966500000002", "+966500000003"];
    let book: Vec<ImportContact> = numbers.iter().map(|n| contact(n, Some(1), None)).collect();
    import(&f.db, p, &book).await;
    import(&f.db, q, &book).await;
    let opt_out = ContactPatch {
        opted_out: Some(true),
        ..Default::default()
    };
    for (pair, number) in [(p, numbers[0]), (p, numbers[2]), (q, numbers[1])] {
        let (list, _) =
            f.db.search_contacts(pair, None, &query(ContactFilter::default(), 1, 10), 0)
                .await
                .unwrap();
        let c = list.iter().find(|c| c.phone_number == number).unwrap();
        f.db.update_contact(pair, c.id, &opt_out, 10).await.unwrap();
    }
    let asked: Vec<String> = numbers
        .iter()
        .map(|n| n.to_string())
        .chain(["+966599999999".to_string()])
        .collect();
    let mut found = f.db.opted_out_numbers(p, &asked).await.unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![numbers[0], numbers[2]],
        "this pair's opt-outs only"
    );
    assert_eq!(
        f.db.opted_out_numbers(q, &asked).await.unwrap(),
        vec![numbers[1]]
    );
    assert!(f.db.opted_out_numbers(p, &[]).await.unwrap().is_empty());
    assert!(
        f.db.opted_out_numbers(pair(9, 9), &asked)
            .await
            .unwrap()
            .is_empty()
    );
}
