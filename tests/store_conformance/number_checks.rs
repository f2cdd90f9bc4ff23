//! Number checks: the engine's answers kept one row per number, read back only when fresh
//! enough, a newer answer replacing the older, and all forgotten at once.

use whatsapp_manager::store::NumberCheckRecord;

use crate::Fixture;

fn check(number: &str, on: bool, business: bool, at: i64) -> NumberCheckRecord {
    NumberCheckRecord {
        phone_number: number.into(),
        on_whatsapp: on,
        is_business: business,
        jid: on.then(|| format!("{}@s.whatsapp.net", number.trim_start_matches('+'))),
        checked_at: at,
    }
}

fn sorted(mut v: Vec<NumberCheckRecord>) -> Vec<NumberCheckRecord> {
    v.sort_by(|a, b| a.phone_number.cmp(&b.phone_number));
    v
}

pub async fn answers_are_read_back_when_fresh_and_a_newer_one_replaces_the_older(f: Fixture) {
    let (on, off, biz) = (
        check("+966500000001", true, false, 100),
        check("+966500000002", false, false, 100),
        check("+966500000003", true, true, 50),
    );
    f.db.save_number_checks(&[on.clone(), off.clone(), biz.clone()])
        .await
        .unwrap();
    let all: Vec<String> = [&on, &off, &biz, &check("+966500000009", true, false, 0)]
        .iter()
        .map(|c| c.phone_number.clone())
        .collect();
    assert_eq!(
        sorted(f.db.number_checks(&all, 0).await.unwrap()),
        vec![on.clone(), off.clone(), biz.clone()],
        "each as saved, a number never checked left out"
    );
    assert_eq!(
        sorted(f.db.number_checks(&all, 100).await.unwrap()),
        vec![on.clone(), off.clone()],
        "an answer older than asked is left out"
    );
    assert!(f.db.number_checks(&[], 0).await.unwrap().is_empty());

    // The number got WhatsApp since: the newer answer replaces the row.
    let now_on = check("+966500000002", true, false, 200);
    f.db.save_number_checks(std::slice::from_ref(&now_on))
        .await
        .unwrap();
    assert_eq!(
        f.db.number_checks(std::slice::from_ref(&now_on.phone_number), 0)
            .await
            .unwrap(),
        vec![now_on]
    );
    assert_eq!(f.db.clear_number_checks().await.unwrap(), 3);
    assert!(f.db.number_checks(&all, 0).await.unwrap().is_empty());
    assert_eq!(f.db.clear_number_checks().await.unwrap(), 0);
}

pub async fn a_long_list_is_saved_and_read_whole(f: Fixture) {
    // More numbers than one statement may bind on SQLite's default limits.
    let checks: Vec<NumberCheckRecord> = (0..5_000)
        .map(|i| check(&format!("+9665{i:08}"), i % 3 != 0, i % 7 == 0, 10))
        .collect();
    f.db.save_number_checks(&checks).await.unwrap();
    let numbers: Vec<String> = checks.iter().map(|c| c.phone_number.clone()).collect();
    assert_eq!(
        sorted(f.db.number_checks(&numbers, 10).await.unwrap()),
        checks
    );
}

pub async fn racing_saves_of_the_same_numbers_in_any_order_all_succeed(f: Fixture) {
    let other = f.second_server().await;
    let forward: Vec<NumberCheckRecord> = (0..200)
        .map(|i| check(&format!("+9665{i:08}"), true, false, 1))
        .collect();
    let backward: Vec<NumberCheckRecord> = forward
        .iter()
        .rev()
        .map(|c| NumberCheckRecord {
            checked_at: 2,
            ..c.clone()
        })
        .collect();
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            f.db.save_number_checks(&forward),
            other.save_number_checks(&backward)
        );
        a.unwrap();
        b.unwrap();
    }
    let numbers: Vec<String> = forward.iter().map(|c| c.phone_number.clone()).collect();
    let kept = f.db.number_checks(&numbers, 0).await.unwrap();
    assert_eq!(kept.len(), 200);
    // Each number holds one whole answer, whichever save came last.
    assert!(kept.iter().all(|c| c.checked_at == 1 || c.checked_at == 2));
}
