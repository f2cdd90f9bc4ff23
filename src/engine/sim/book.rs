//! The phone book a simulated phone holds when nobody set one: deterministic per pair,
//! with the junk a real account carries (groups, broadcasts, LIDs, malformed ids).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Pair;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PhoneBook {
    /// The account's own jid (`<digits>@s.whatsapp.net`).
    pub me: Option<String>,
    pub push_name: Option<String>,
    pub entries: Vec<SimEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SimEntry {
    pub jid: String,
    #[serde(default)]
    pub pn_jid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub push_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_false")]
    pub is_business: bool,
    #[serde(default)]
    pub last_message_at: Option<i64>,
}

impl SimEntry {
    /// The entry as the engine hands a contact to a fetch.
    pub fn raw(&self) -> crate::engine::RawContact {
        crate::engine::RawContact {
            jid: self.jid.clone(),
            pn_jid: self.pn_jid.clone(),
            name: self.name.clone(),
            push_name: self.push_name.clone(),
            is_business: self.is_business,
            last_message_at: self.last_message_at,
        }
    }
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// splitmix64: a tiny deterministic generator; the sim needs repeatability, not quality.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub(crate) fn pair_seed(pair: Pair) -> u64 {
    (pair.user_id.get() as u64).wrapping_mul(0x0100_0000_01B3) ^ (pair.place_id.get() as u64)
}

/// The simulated account's own number when the book does not name one: a Saudi mobile.
pub fn default_me_digits(pair: Pair) -> String {
    let mut rng = Rng::new(pair_seed(pair) ^ 0x5EED);
    format!("9665{:08}", rng.below(100_000_000))
}

const FIRST_NAMES: &[&str] = &[
    "محمد",
    "أحمد",
    "فاطمة",
    "نورة",
    "خالد",
    "سارة",
    "عبدالله",
    "ريم",
    "Omar",
    "Lina",
    "Youssef",
    "Maria",
    "John",
    "Aisha",
    "Hassan",
    "Layla",
];
const LAST_NAMES: &[&str] = &[
    "العتيبي",
    "القحطاني",
    "الشمري",
    "Haddad",
    "Mansour",
    "Smith",
    "الحربي",
    "Farouk",
];

/// A valid mobile number's digits (Saudi, Egyptian, Emirati or Jordanian).
fn mobile_digits(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 | 1 => format!("9665{:08}", rng.below(100_000_000)),
        2 => format!("2010{:08}", rng.below(100_000_000)),
        _ => format!(
            "9715{}{:07}",
            [0, 2, 5, 6, 8][rng.below(5) as usize],
            rng.below(10_000_000)
        ),
    }
}

fn person_name(rng: &mut Rng) -> String {
    format!(
        "{} {}",
        FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize],
        LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]
    )
}

/// `n` entries, activity spread over the last 365 days before `now`.
pub fn generate(pair: Pair, n: usize, now: DateTime<Utc>) -> PhoneBook {
    let mut rng = Rng::new(pair_seed(pair));
    let me = default_me_digits(pair);
    let now_s = now.timestamp();
    let mut persons: Vec<String> = Vec::new();
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let roll = rng.below(100);
        let last = if rng.below(10) == 0 {
            None
        } else {
            Some(now_s - rng.below(365 * 86_400) as i64)
        };
        let name = (rng.below(4) != 0).then(|| person_name(&mut rng));
        let push_name = (rng.below(3) != 0).then(|| person_name(&mut rng));
        let mut e = SimEntry {
            last_message_at: last,
            ..SimEntry::default()
        };
        match roll {
            0..=59 | 92..=99 => {
                let d = mobile_digits(&mut rng);
                e.jid = format!("{d}@s.whatsapp.net");
                e.is_business = roll >= 92;
                e.name = name;
                e.push_name = push_name;
                persons.push(d);
            }
            60..=65 => {
                let d = mobile_digits(&mut rng);
                e.jid = format!("{d}@c.us");
                e.name = name;
                persons.push(d);
            }
            66..=71 => {
                let d = mobile_digits(&mut rng);
                e.jid = format!(
                    "{}@lid",
                    100_000_000_000_000 + rng.below(899_999_999_999_999)
                );
                e.pn_jid = Some(format!("{d}@s.whatsapp.net"));
                e.push_name = push_name;
                persons.push(d);
            }
            72..=74 => {
                e.jid = format!(
                    "{}@lid",
                    100_000_000_000_000 + rng.below(899_999_999_999_999)
                );
                e.push_name = push_name;
            }
            75..=80 => {
                e.jid = format!("1203630{:011}@g.us", rng.below(100_000_000_000));
                e.name = Some(format!("Group {i}"));
            }
            81 => e.jid = "status@broadcast".into(),
            82 => e.jid = format!("{}@broadcast", rng.below(10_000_000_000)),
            83 | 84 => e.jid = format!("1203634{:011}@newsletter", rng.below(100_000_000_000)),
            85 => e.jid = "not-a-jid".into(),
            86 => e.jid = "abc@s.whatsapp.net".into(),
            87 => e.jid = format!("{}@s.whatsapp.net", rng.below(1000)),
            88..=90 => {
                // The same person again, written with a device suffix.
                match persons.get(rng.below(persons.len().max(1) as u64) as usize) {
                    Some(d) => e.jid = format!("{d}:{}@s.whatsapp.net", 1 + rng.below(20)),
                    None => e.jid = "0@s.whatsapp.net".into(),
                }
            }
            _ => e.jid = format!("{me}@s.whatsapp.net"),
        }
        entries.push(e);
    }
    PhoneBook {
        entries,
        ..generated_identity(pair)
    }
}

/// The account a generated phone book belongs to, without its entries.
pub fn generated_identity(pair: Pair) -> PhoneBook {
    PhoneBook {
        me: Some(format!("{}@s.whatsapp.net", default_me_digits(pair))),
        push_name: Some(format!("Place {}", pair.place_id)),
        entries: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PlaceId, UserId};

    #[test]
    fn generated_books_are_deterministic_and_mixed() {
        let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(2));
        let now = Utc::now();
        let a = generate(pair, 500, now);
        let b = generate(pair, 500, now);
        assert_eq!(a, b);
        assert_eq!(a.entries.len(), 500);
        for kind in [
            "@g.us",
            "@lid",
            "@broadcast",
            "@newsletter",
            "@c.us",
            "@s.whatsapp.net",
        ] {
            assert!(a.entries.iter().any(|e| e.jid.ends_with(kind)), "{kind}");
        }
        let oldest = now.timestamp() - 365 * 86_400;
        assert!(
            a.entries
                .iter()
                .flat_map(|e| e.last_message_at)
                .all(|t| t > oldest)
        );
    }
}
