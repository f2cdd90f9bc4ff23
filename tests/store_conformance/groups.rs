//! Groups: the two automatic groups of every pair, manual groups with unique names, and
//! their members.

use whatsapp_manager::domain::PhoneNumber;
use whatsapp_manager::store::{
    AutoRule, BatchProgress, ContactQuery, GroupChange, ImportContact, SessionRecord,
};

use crate::{Db, Fixture, pair, session_id};

const ALL: &str = "جميع الارقام";
const RECENT: &str = "اخر الارقام (90 يوم)";

/// A contact with this number, activity and name.
pub fn contact(phone: &str, last_message_at: Option<i64>, name: Option<&str>) -> ImportContact {
    let digits = phone.trim_start_matches('+');
    ImportContact {
        phone: PhoneNumber::from_db(phone.to_string()),
        jid: format!("{digits}@s.whatsapp.net"),
        name: name.map(str::to_string),
        push_name: None,
        is_business: false,
        last_message_at,
    }
}

/// Imports the batch as one fetch step of a fresh session of the pair.
pub async fn import(db: &Db, p: whatsapp_manager::domain::Pair, batch: &[ImportContact]) {
    let sid = session_id(p, 1);
    if db.latest_session(p).await.unwrap().is_none() {
        db.save_session(&SessionRecord::new(sid.clone(), p, 1))
            .await
            .unwrap();
    }
    let progress = BatchProgress {
        session_id: &sid,
        processed: batch.len() as i64,
        total: batch.len() as i64,
        percent: 100,
    };
    db.import_contacts(p, batch, progress, 5).await.unwrap();
}

/// The ids of the pair's contacts, by phone number.
pub async fn ids(db: &Db, p: whatsapp_manager::domain::Pair) -> Vec<(String, i64)> {
    let q = ContactQuery {
        page: 1,
        limit: 1_000,
        ..Default::default()
    };
    let (list, _) = db.search_contacts(p, None, &q, 0).await.unwrap();
    let mut ids: Vec<_> = list.into_iter().map(|c| (c.phone_number, c.id)).collect();
    ids.sort();
    ids
}

pub async fn default_groups_stay_unique_under_racing_calls_from_two_servers(f: Fixture) {
    let a = f.db.clone();
    let b = f.second_server().await;
    let p = pair(1, 2);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { s.ensure_default_groups(p, i).await.unwrap().created });
    }
    let mut created = 0;
    while let Some(n) = tasks.join_next().await {
        created += n.unwrap();
    }
    assert_eq!(created, 2);
    let (groups, total) = a.list_groups(p, 1, 100, 0).await.unwrap();
    assert_eq!(total, 2);
    let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec![ALL, RECENT]);
    let rules: Vec<_> = groups.iter().map(|g| g.auto_rule).collect();
    assert_eq!(
        rules,
        vec![Some(AutoRule::All), Some(AutoRule::Recent90Days)]
    );
    let again = b.ensure_default_groups(p, 99).await.unwrap();
    assert_eq!(again.created, 0);
    assert_eq!(again.existing, vec![ALL.to_string(), RECENT.to_string()]);
    // Another pair gets its own.
    assert_eq!(
        a.ensure_default_groups(pair(1, 3), 1)
            .await
            .unwrap()
            .created,
        2
    );
}

pub async fn lookalike_names_are_refused_including_the_automatic_ones(f: Fixture) {
    let p = pair(1, 2);
    f.db.ensure_default_groups(p, 1).await.unwrap();
    let create = |name: &'static str| {
        let db = f.db.clone();
        async move { db.create_manual_group(p, name, None, &[], 2).await.unwrap() }
    };
    assert!(matches!(create("Friends").await, GroupChange::Done(_)));
    assert_eq!(create("Friends").await, GroupChange::NameTaken);
    assert_eq!(create("FRIENDS").await, GroupChange::NameTaken);
    // Full-width letters and an invisible character look the same.
    assert_eq!(create("ＦＲＩＥＮＤＳ").await, GroupChange::NameTaken);
    assert_eq!(create("Fri\u{200B}ends").await, GroupChange::NameTaken);
    assert_eq!(create(ALL).await, GroupChange::NameTaken);
    assert_eq!(create("اخر الارقام (90 يوم)").await, GroupChange::NameTaken);
    assert!(matches!(create("Straße").await, GroupChange::Done(_)));
    assert_eq!(create("STRASSE").await, GroupChange::NameTaken);
    // The same name in another pair is another group.
    let other =
        f.db.create_manual_group(pair(1, 3), "Friends", None, &[], 2);
    assert!(matches!(other.await.unwrap(), GroupChange::Done(_)));
    let (_, total) = f.db.list_groups(p, 1, 100, 0).await.unwrap();
    assert_eq!(total, 4);
}

pub async fn groups_count_their_contacts_by_rule_or_membership(f: Fixture) {
    let p = pair(1, 2);
    f.db.ensure_default_groups(p, 1).await.unwrap();
    import(
        &f.db,
        p,
        &[
            contact("+966500000001", Some(1_000), Some("a")),
            contact("+966500000002", Some(500), None),
            contact("+966500000003", None, None),
        ],
    )
    .await;
    let ids = ids(&f.db, p).await;
    let picked = [ids[0].1, ids[2].1, ids[0].1];
    let GroupChange::Done(manual) =
        f.db.create_manual_group(p, "Picked", Some("two of them"), &picked, 3)
            .await
            .unwrap()
    else {
        panic!("not created");
    };
    let (groups, _) = f.db.list_groups(p, 1, 100, 800).await.unwrap();
    let counts: Vec<_> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.contact_count))
        .collect();
    assert_eq!(counts, vec![(ALL, 3), (RECENT, 1), ("Picked", 2)]);
    // The 90-day group is a rule evaluated at the cut-off asked for.
    let (groups, _) = f.db.list_groups(p, 1, 100, 400).await.unwrap();
    assert_eq!(groups[1].contact_count, 2);
    let g = f.db.group(p, manual, 800).await.unwrap().unwrap();
    assert_eq!(g.description.as_deref(), Some("two of them"));
    assert_eq!(g.auto_rule, None);
    assert_eq!((g.created_at, g.updated_at, g.contact_count), (3, 3, 2));
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (3, 3));
    // Listing a group lists its members, by the same rules.
    let q = ContactQuery {
        page: 1,
        limit: 10,
        ..Default::default()
    };
    let (members, total) = f.db.search_contacts(p, Some(&g), &q, 800).await.unwrap();
    assert_eq!(total, 2);
    let mut member_ids: Vec<_> = members.iter().map(|c| c.id).collect();
    member_ids.sort();
    assert_eq!(member_ids, vec![ids[0].1, ids[2].1]);
    let recent = &groups[1];
    let (members, total) =
        f.db.search_contacts(p, Some(recent), &q, 400)
            .await
            .unwrap();
    assert_eq!((members.len(), total), (2, 2));
}

pub async fn groups_list_automatic_first_then_manual_by_age_with_paging(f: Fixture) {
    let p = pair(1, 2);
    // Manual groups made before the automatic ones still list after them.
    for name in ["b", "a", "c"] {
        f.db.create_manual_group(p, name, None, &[], 1)
            .await
            .unwrap();
    }
    f.db.ensure_default_groups(p, 2).await.unwrap();
    let names = |groups: Vec<whatsapp_manager::store::GroupRecord>| {
        groups.into_iter().map(|g| g.name).collect::<Vec<_>>()
    };
    let (all, total) = f.db.list_groups(p, 1, 100, 0).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(names(all), vec![ALL, RECENT, "b", "a", "c"]);
    let (page2, total) = f.db.list_groups(p, 2, 2, 0).await.unwrap();
    assert_eq!(total, 5);
    assert_eq!(names(page2), vec!["b", "a"]);
    let (page4, _) = f.db.list_groups(p, 4, 2, 0).await.unwrap();
    assert!(page4.is_empty());
}

pub async fn unknown_contact_ids_are_reported_in_order_and_change_nothing(f: Fixture) {
    let p = pair(1, 2);
    import(&f.db, p, &[contact("+966500000001", None, None)]).await;
    import(&f.db, pair(9, 9), &[contact("+966500000009", None, None)]).await;
    let mine = ids(&f.db, p).await[0].1;
    let foreign = ids(&f.db, pair(9, 9)).await[0].1;
    let asked = [mine, 999_999, foreign, -1];
    let refused =
        f.db.create_manual_group(p, "G", None, &asked, 1)
            .await
            .unwrap();
    assert_eq!(
        refused,
        GroupChange::UnknownContacts(vec![999_999, foreign, -1])
    );
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (1, 0), "no group made");

    let GroupChange::Done(g) =
        f.db.create_manual_group(p, "G", None, &[mine], 1)
            .await
            .unwrap()
    else {
        panic!("not created");
    };
    let refused =
        f.db.replace_group_members(p, g, &[foreign, mine], 2)
            .await
            .unwrap();
    assert_eq!(refused, GroupChange::UnknownContacts(vec![foreign]));
    let kept = f.db.group(p, g, 0).await.unwrap().unwrap();
    assert_eq!((kept.contact_count, kept.updated_at), (1, 1));
}

pub async fn automatic_groups_refuse_changes_and_unknown_groups_are_not_found(f: Fixture) {
    let p = pair(1, 2);
    f.db.ensure_default_groups(p, 1).await.unwrap();
    let (groups, _) = f.db.list_groups(p, 1, 10, 0).await.unwrap();
    for g in &groups {
        assert_eq!(
            f.db.replace_group_members(p, g.id, &[], 2).await.unwrap(),
            GroupChange::Automatic
        );
        assert_eq!(
            f.db.delete_manual_group(p, g.id).await.unwrap(),
            GroupChange::Automatic
        );
    }
    assert_eq!(
        f.db.delete_manual_group(p, 999_999).await.unwrap(),
        GroupChange::NotFound
    );
    assert_eq!(
        f.db.replace_group_members(p, 999_999, &[], 2)
            .await
            .unwrap(),
        GroupChange::NotFound
    );
    let (_, total) = f.db.list_groups(p, 1, 10, 0).await.unwrap();
    assert_eq!(total, 2);
}

pub async fn members_are_replaced_whole_and_a_deleted_group_leaves_its_contacts(f: Fixture) {
    let p = pair(1, 2);
    import(
        &f.db,
        p,
        &[
            contact("+966500000001", None, None),
            contact("+966500000002", None, None),
            contact("+966500000003", None, None),
        ],
    )
    .await;
    let ids: Vec<i64> = ids(&f.db, p).await.into_iter().map(|(_, id)| id).collect();
    let GroupChange::Done(g) =
        f.db.create_manual_group(p, "G", None, &ids[..2], 1)
            .await
            .unwrap()
    else {
        panic!("not created");
    };
    let done =
        f.db.replace_group_members(p, g, &[ids[2], ids[2]], 7)
            .await
            .unwrap();
    assert_eq!(done, GroupChange::Done(g));
    let group = f.db.group(p, g, 0).await.unwrap().unwrap();
    assert_eq!((group.contact_count, group.updated_at), (1, 7));
    let q = ContactQuery {
        page: 1,
        limit: 10,
        ..Default::default()
    };
    let (members, _) = f.db.search_contacts(p, Some(&group), &q, 0).await.unwrap();
    assert_eq!(
        members.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    // Emptied, then deleted: the contacts stay.
    f.db.replace_group_members(p, g, &[], 8).await.unwrap();
    assert_eq!(f.db.group(p, g, 0).await.unwrap().unwrap().contact_count, 0);
    assert_eq!(
        f.db.delete_manual_group(p, g).await.unwrap(),
        GroupChange::Done(g)
    );
    assert_eq!(f.db.group(p, g, 0).await.unwrap(), None);
    assert_eq!(f.db.pair_counts(p).await.unwrap(), (3, 0));
    // Its name is free again.
    let again =
        f.db.create_manual_group(p, "G", None, &ids, 9)
            .await
            .unwrap();
    assert!(matches!(again, GroupChange::Done(_)));
}

pub async fn groups_and_contacts_of_one_tenant_are_invisible_to_another(f: Fixture) {
    let mine = pair(1, 2);
    let theirs = pair(3, 2);
    let same_user_other_place = pair(1, 4);
    f.db.ensure_default_groups(mine, 1).await.unwrap();
    import(&f.db, mine, &[contact("+966500000001", Some(10), None)]).await;
    let id = ids(&f.db, mine).await[0].1;
    let GroupChange::Done(g) =
        f.db.create_manual_group(mine, "G", None, &[id], 1)
            .await
            .unwrap()
    else {
        panic!("not created");
    };
    for other in [theirs, same_user_other_place] {
        assert_eq!(f.db.group(other, g, 0).await.unwrap(), None);
        assert_eq!(f.db.list_groups(other, 1, 10, 0).await.unwrap().1, 0);
        assert_eq!(f.db.pair_counts(other).await.unwrap(), (0, 0));
        assert_eq!(f.db.contact(other, id).await.unwrap(), None);
        assert_eq!(
            f.db.delete_manual_group(other, g).await.unwrap(),
            GroupChange::NotFound
        );
        assert_eq!(
            f.db.replace_group_members(other, g, &[], 2).await.unwrap(),
            GroupChange::NotFound
        );
        let patch = whatsapp_manager::store::ContactPatch {
            opted_out: None,
            tags: Some(vec!["x".into()]),
            custom_fields: None,
        };
        assert_eq!(
            f.db.update_contact(other, id, &patch, 2).await.unwrap(),
            None
        );
        assert!(ids(&f.db, other).await.is_empty());
    }
    assert_eq!(f.db.pair_counts(mine).await.unwrap(), (1, 3));
    assert!(
        f.db.contact(mine, id)
            .await
            .unwrap()
            .unwrap()
            .tags
            .is_empty()
    );
}
