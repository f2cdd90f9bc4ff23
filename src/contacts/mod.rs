//! From what an account holds to the contacts we keep: classification, E.164, the fetch job.

pub mod fetch;
pub mod fields;

use std::collections::{HashMap, HashSet};

use crate::domain::PhoneNumber;
use crate::domain::text::phone_name_opt;
use crate::engine::RawContact;
use crate::store::{FetchSummary, ImportContact};

/// What one raw chat id turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    Person(ImportContact),
    Group,
    Broadcast,
    Newsletter,
    Own,
    UnresolvedLid,
    Invalid,
}

/// Splits `user[.agent][:device]@server` into the bare user and the server.
fn split_jid(jid: &str) -> Option<(&str, &str)> {
    let (user, server) = jid.trim().split_once('@')?;
    let user = user.split([':', '.']).next().unwrap_or(user);
    Some((user, server))
}

/// The phone number of a person jid (`@s.whatsapp.net`, or the old `@c.us`).
fn person_number(jid: &str) -> Option<PhoneNumber> {
    let (user, server) = split_jid(jid)?;
    match server {
        "s.whatsapp.net" | "c.us" => PhoneNumber::parse_international(user),
        _ => None,
    }
}

/// A name from the phone as we keep it: control characters out, trimmed, none if empty.
fn clean(s: &Option<String>) -> Option<String> {
    phone_name_opt(s.as_deref())
}

/// Activity stamped further ahead than this is a broken clock, not activity: kept, it would
/// pin a contact in the 90-day group forever.
const CLOCK_SKEW_S: i64 = 86_400;

/// `latest_s`: the latest believable activity time (unix seconds).
pub fn classify(raw: &RawContact, own: &[PhoneNumber], latest_s: i64) -> Classified {
    let Some((_, server)) = split_jid(&raw.jid) else {
        return Classified::Invalid;
    };
    let phone = match server {
        "s.whatsapp.net" | "c.us" => person_number(&raw.jid),
        "lid" => match raw.pn_jid.as_deref().and_then(person_number) {
            Some(p) => Some(p),
            None => return Classified::UnresolvedLid,
        },
        "g.us" => return Classified::Group,
        "broadcast" => return Classified::Broadcast,
        "newsletter" => return Classified::Newsletter,
        _ => None,
    };
    let Some(phone) = phone else {
        return Classified::Invalid;
    };
    if own.contains(&phone) {
        return Classified::Own;
    }
    Classified::Person(ImportContact {
        jid: format!("{}@s.whatsapp.net", phone.digits()),
        phone,
        name: clean(&raw.name),
        push_name: clean(&raw.push_name),
        is_business: raw.is_business,
        last_message_at: raw.last_message_at.filter(|t| *t > 0 && *t <= latest_s),
    })
}

pub fn own_numbers<'a>(jids: impl IntoIterator<Item = &'a str>) -> Vec<PhoneNumber> {
    jids.into_iter()
        .filter_map(|j| person_number(j).or_else(|| PhoneNumber::parse_international(j)))
        .collect()
}

/// What one fetch knows while it reads chunk after chunk.
pub struct ChunkPreparer {
    own: Vec<PhoneNumber>,
    latest_s: i64,
    /// Numbers this fetch has seen as a business: a later duplicate (say its LID chat)
    /// without the flag must not clear it.
    business: HashSet<PhoneNumber>,
    pub summary: FetchSummary,
}

impl ChunkPreparer {
    pub fn new(own: Vec<PhoneNumber>, now_s: i64) -> Self {
        Self {
            own,
            latest_s: now_s + CLOCK_SKEW_S,
            business: HashSet::new(),
            summary: FetchSummary::default(),
        }
    }

    /// Classifies a chunk, counts what was left out, and merges the same number seen twice
    /// (a `@c.us` and a `@s.whatsapp.net` chat, a LID chat and its phone chat).
    pub fn prepare(&mut self, chunk: &[RawContact]) -> Vec<ImportContact> {
        let classified = self.classifier().classify(chunk);
        self.merge(classified)
    }

    /// The stateless, costly half of [`prepare`](Self::prepare) (number parsing), which can
    /// run on another thread while earlier chunks are merged and written.
    pub fn classifier(&self) -> Classifier {
        Classifier {
            own: self.own.clone().into(),
            latest_s: self.latest_s,
        }
    }

    /// The other half: counts, merges duplicates, and carries the business flag across
    /// chunks. Chunks must come in the order they were read.
    pub fn merge(&mut self, classified: Vec<Classified>) -> Vec<ImportContact> {
        let summary = &mut self.summary;
        let mut by_phone: HashMap<PhoneNumber, ImportContact> =
            HashMap::with_capacity(classified.len());
        let mut order = Vec::with_capacity(classified.len());
        summary.received += classified.len() as u64;
        for c in classified {
            match c {
                Classified::Person(c) => match by_phone.get_mut(&c.phone) {
                    Some(seen) => {
                        summary.merged_duplicates += 1;
                        merge(seen, c);
                    }
                    None => {
                        order.push(c.phone.clone());
                        by_phone.insert(c.phone.clone(), c);
                    }
                },
                Classified::Group => summary.skipped_groups += 1,
                Classified::Broadcast => summary.skipped_broadcasts += 1,
                Classified::Newsletter => summary.skipped_newsletters += 1,
                Classified::Own => summary.skipped_self += 1,
                Classified::UnresolvedLid => summary.skipped_unresolved_lids += 1,
                Classified::Invalid => summary.skipped_invalid += 1,
            }
        }
        let mut batch: Vec<ImportContact> = order
            .into_iter()
            .filter_map(|p| by_phone.remove(&p))
            .collect();
        for c in &mut batch {
            if c.is_business {
                self.business.insert(c.phone.clone());
            } else if self.business.contains(&c.phone) {
                c.is_business = true;
            }
        }
        batch
    }
}

/// Classifies raw entries on its own: cheap to clone, `Send`, no state between chunks.
#[derive(Clone)]
pub struct Classifier {
    own: std::sync::Arc<[PhoneNumber]>,
    latest_s: i64,
}

impl Classifier {
    pub fn classify(&self, chunk: &[RawContact]) -> Vec<Classified> {
        chunk
            .iter()
            .map(|raw| classify(raw, &self.own, self.latest_s))
            .collect()
    }
}

fn merge(into: &mut ImportContact, other: ImportContact) {
    if into.name.is_none() {
        into.name = other.name;
    }
    if into.push_name.is_none() {
        into.push_name = other.push_name;
    }
    into.is_business |= other.is_business;
    into.last_message_at = match (into.last_message_at, other.last_message_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(jid: &str) -> RawContact {
        RawContact {
            jid: jid.into(),
            ..RawContact::default()
        }
    }

    #[test]
    fn keeps_only_person_chats_with_a_number() {
        let own = own_numbers(["966500000001@s.whatsapp.net"]);
        let cases = [
            ("966512345678@s.whatsapp.net", "person"),
            ("966512345678:12@s.whatsapp.net", "person"),
            ("966512345678.0:3@s.whatsapp.net", "person"),
            ("201012345678@c.us", "person"),
            ("120363012345678901@g.us", "group"),
            ("status@broadcast", "broadcast"),
            ("1234567@broadcast", "broadcast"),
            ("120363400000000000@newsletter", "newsletter"),
            ("123456789012345@lid", "lid"),
            ("966500000001@s.whatsapp.net", "own"),
            ("not-a-jid", "invalid"),
            ("abc@s.whatsapp.net", "invalid"),
            ("12@s.whatsapp.net", "invalid"),
            ("@s.whatsapp.net", "invalid"),
            ("966512345678@call", "invalid"),
        ];
        for (jid, want) in cases {
            let got = match classify(&raw(jid), &own, i64::MAX) {
                Classified::Person(_) => "person",
                Classified::Group => "group",
                Classified::Broadcast => "broadcast",
                Classified::Newsletter => "newsletter",
                Classified::Own => "own",
                Classified::UnresolvedLid => "lid",
                Classified::Invalid => "invalid",
            };
            assert_eq!(got, want, "{jid}");
        }
    }

    #[test]
    fn names_from_the_phone_lose_control_characters_only() {
        let mut r = raw("966512345678@s.whatsapp.net");
        r.name = Some("Ali\0\nAhmed\u{200D}".into());
        r.push_name = Some("\u{7}\u{1B}".into());
        match classify(&r, &[], i64::MAX) {
            Classified::Person(c) => {
                assert_eq!(c.name.as_deref(), Some("AliAhmed\u{200D}"));
                assert_eq!(c.push_name, None, "nothing left once the controls are gone");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lid_with_its_phone_jid_becomes_that_number() {
        let mut r = raw("123456789012345@lid");
        r.pn_jid = Some("201012345678@s.whatsapp.net".into());
        match classify(&r, &[], i64::MAX) {
            Classified::Person(c) => assert_eq!(c.phone.as_str(), "+201012345678"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicates_in_a_chunk_merge_keeping_names_and_newest_activity() {
        let mut a = raw("966512345678@c.us");
        a.name = Some("Ali".into());
        a.last_message_at = Some(100);
        let mut b = raw("966512345678:2@s.whatsapp.net");
        b.push_name = Some(" ".into());
        b.last_message_at = Some(200);
        b.is_business = true;
        let mut prep = ChunkPreparer::new(Vec::new(), 1_000);
        let out = prep.prepare(&[a, b]);
        let s = &prep.summary;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name.as_deref(), Some("Ali"));
        assert_eq!(out[0].push_name, None);
        assert_eq!(out[0].last_message_at, Some(200));
        assert!(out[0].is_business);
        assert_eq!(s.merged_duplicates, 1);
        assert_eq!(s.received, 2);
    }
}

#[cfg(test)]
mod across_chunks {
    use super::*;

    fn person(jid: &str, business: bool, at: Option<i64>) -> RawContact {
        RawContact {
            jid: jid.into(),
            is_business: business,
            last_message_at: at,
            ..RawContact::default()
        }
    }

    #[test]
    fn a_business_seen_in_one_chunk_stays_business_in_a_later_one() {
        let mut prep = ChunkPreparer::new(Vec::new(), 1_000);
        let first = prep.prepare(&[person("966512345678@c.us", true, None)]);
        assert!(first[0].is_business);
        let later = prep.prepare(&[person("966512345678@s.whatsapp.net", false, None)]);
        assert!(later[0].is_business);
        // A fresh fetch starts from what the phone says now.
        let mut next = ChunkPreparer::new(Vec::new(), 1_000);
        assert!(
            !next.prepare(&[person("966512345678@s.whatsapp.net", false, None)])[0].is_business
        );
    }

    #[test]
    fn activity_from_the_future_is_ignored() {
        let mut prep = ChunkPreparer::new(Vec::new(), 1_000);
        let out = prep.prepare(&[
            person("966512345001@s.whatsapp.net", false, Some(i64::MAX)),
            person("966512345002@s.whatsapp.net", false, Some(1_000 + 3_600)),
        ]);
        assert_eq!(out[0].last_message_at, None);
        assert_eq!(out[1].last_message_at, Some(4_600));
    }
}
