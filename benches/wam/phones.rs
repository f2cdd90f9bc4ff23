//! phones: the fetch's number normalisation (`PhoneNumber::parse_international`) over each
//! phone-number library, in this process: the fetch scenario's own phone book, then numbers
//! of uniformly random digits where the libraries' metadata can disagree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use whatsapp_manager::clock::SystemClock;
use whatsapp_manager::contacts::{ChunkPreparer, Classified, own_numbers};
use whatsapp_manager::domain::{
    NumberLibrary, Pair, PhoneNumber, PlaceId, Rlibphonenumber, UserId,
};
use whatsapp_manager::engine::RawContact;
use whatsapp_manager::engine::sim::{SimConfig, SimEntry, SimNetwork};
use whatsapp_manager::store::{self, DatabaseOptions};

use crate::Opts;
use crate::backend::Target;
use crate::report::Row;

/// Each library parses each set this many times; the fastest round counts, since the two
/// cores are shared and a slower round measures the neighbours, not the library.
const ROUNDS: usize = 3;
/// Disagreements quoted in the notes, per set.
const QUOTED: usize = 5;

pub async fn run(opts: &Opts, target: &Target) -> anyhow::Result<Row> {
    let book = fetch_inputs(opts.contacts, target).await?;
    let random = random_numbers(opts.contacts);

    // First use builds each library's tables; that is start-up, not normalisation.
    for l in [legacy, rlib] {
        l("966512345678");
    }

    let mut row = Row::new("phones", target);
    let book_out = compare(&book.numbers);
    if book_out.current_accepted != book.persons {
        bail!(
            "the fetch's classifier found {} people, the library in use accepts {} of their \
             numbers: the inputs here are not the ones the fetch parses",
            book.persons,
            book_out.current_accepted
        );
    }
    book_out.report(
        &mut row,
        [
            "book_inputs",
            "book_phonenumber_seconds",
            "book_rlibphonenumber_seconds",
            "book_speedup",
            "book_phonenumber_accepted",
            "book_rlibphonenumber_accepted",
            "book_disagreements",
            "book_disagreements_valid_now",
        ],
    );
    row.metric("book_classify_seconds", book.classify.as_secs_f64(), "s");
    let random_out = compare(&random);
    random_out.report(
        &mut row,
        [
            "random_inputs",
            "random_phonenumber_seconds",
            "random_rlibphonenumber_seconds",
            "random_speedup",
            "random_phonenumber_accepted",
            "random_rlibphonenumber_accepted",
            "random_disagreements",
            "random_disagreements_valid_now",
        ],
    );
    for (set, out) in [("book", &book_out), ("random", &random_out)] {
        if !out.quoted.is_empty() {
            row.note(format!(
                "{set}: disagreements (input → phonenumber | rlibphonenumber): {}",
                out.quoted.join(", ")
            ));
        }
    }
    row.note(format!(
        "book = the numbers the fetch scenario's {} -entry phone book hands to \
         parse_international (person jids without their device suffix, LID chats' phone \
         jids); random = as many numbers of uniformly random digits after +2010, +9665, \
         +5491, +393 and +1",
        opts.contacts
    ))
    .note(format!(
        "seconds = the fastest of {ROUNDS} rounds of parse_international over the whole set; \
         book_classify_seconds = the fetch's classifier over every entry with the library in \
         use (jid splitting, filtering, numbers, names); *_valid_now = disagreements that \
         rlibphonenumber's patterns call valid, the rest it accepts for a possible length"
    ));
    Ok(row)
}

/// The `phonenumber` crate (0.3), which the server used before rlibphonenumber, exactly as
/// it was called there; kept here (a dev-dependency) so every run compares the two.
/// Its general descriptors carry no possible lengths (the metadata XML leaves them to
/// libphonenumber's build step, which this crate does not run), so the length branch almost
/// never accepts: in effect it took only numbers its patterns call valid.
struct LegacyPhonenumber;

impl NumberLibrary for LegacyPhonenumber {
    fn e164(plus_digits: &str) -> Option<String> {
        let parsed = phonenumber::parse(None, plus_digits).ok()?;
        // The length check first: it is a table lookup, and `is_valid`, which runs the
        // country's number patterns, is then only needed for lengths the metadata lacks.
        let possible_length = {
            let national = parsed.national().to_string();
            let len = national.len() as u16;
            phonenumber::metadata::DATABASE
                .by_code(&parsed.code().value())
                .is_some_and(|metas| {
                    metas
                        .iter()
                        .any(|m| m.descriptors().general().possible_length().contains(&len))
                })
        };
        if !possible_length && !parsed.is_valid() {
            return None;
        }
        Some(parsed.format().mode(phonenumber::Mode::E164).to_string())
    }
}

fn legacy(raw: &str) -> Option<PhoneNumber> {
    PhoneNumber::parse_international_with::<LegacyPhonenumber>(raw)
}

fn rlib(raw: &str) -> Option<PhoneNumber> {
    PhoneNumber::parse_international_with::<Rlibphonenumber>(raw)
}

/// One set through both libraries.
struct Compared {
    inputs: usize,
    old_seconds: f64,
    new_seconds: f64,
    old_accepted: u64,
    new_accepted: u64,
    disagreements: u64,
    /// Disagreements rlibphonenumber's metadata calls valid (the rest it accepts for their
    /// length alone).
    disagreements_valid: u64,
    /// Numbers the library the server uses accepts.
    current_accepted: u64,
    quoted: Vec<String>,
}

impl Compared {
    fn report(&self, row: &mut Row, names: [&'static str; 8]) {
        let [
            inputs,
            old_t,
            new_t,
            speedup,
            old_ok,
            new_ok,
            differ,
            differ_valid,
        ] = names;
        row.metric(inputs, self.inputs as f64, "")
            .metric(old_t, self.old_seconds, "s")
            .metric(new_t, self.new_seconds, "s")
            .metric(speedup, self.old_seconds / self.new_seconds, "×")
            .metric(old_ok, self.old_accepted as f64, "")
            .metric(new_ok, self.new_accepted as f64, "")
            .metric(differ, self.disagreements as f64, "")
            .metric(differ_valid, self.disagreements_valid as f64, "");
    }
}

/// Times both libraries over `inputs`, counts what each accepts and where they differ.
fn compare(inputs: &[String]) -> Compared {
    let (old_t, old) = fastest(inputs, legacy);
    let (new_t, new) = fastest(inputs, rlib);
    let accepted = |v: &[Option<PhoneNumber>]| v.iter().flatten().count() as u64;
    let mut disagreements = 0u64;
    let mut disagreements_valid = 0u64;
    let mut quoted = Vec::new();
    for ((raw, a), b) in inputs.iter().zip(&old).zip(&new) {
        if a != b {
            disagreements += 1;
            if valid_now(raw) {
                disagreements_valid += 1;
            }
            if quoted.len() < QUOTED {
                quoted.push(format!("{raw} → {} | {}", shown(a), shown(b)));
            }
        }
    }
    let current_accepted = inputs
        .iter()
        .filter(|r| PhoneNumber::parse_international(r).is_some())
        .count() as u64;
    Compared {
        inputs: inputs.len(),
        old_seconds: old_t.as_secs_f64(),
        new_seconds: new_t.as_secs_f64(),
        old_accepted: accepted(&old),
        new_accepted: accepted(&new),
        disagreements,
        disagreements_valid,
        current_accepted,
        quoted,
    }
}

/// rlibphonenumber's patterns (not only its lengths) accept the number.
fn valid_now(digits: &str) -> bool {
    rlibphonenumber::PhoneNumber::parse(format!("+{digits}"), None).is_ok_and(|p| p.is_valid())
}

fn shown(p: &Option<PhoneNumber>) -> &str {
    p.as_ref().map_or("-", PhoneNumber::as_str)
}

fn fastest(
    inputs: &[String],
    parse: fn(&str) -> Option<PhoneNumber>,
) -> (Duration, Vec<Option<PhoneNumber>>) {
    let mut best = Duration::MAX;
    let mut out = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let parsed: Vec<_> = inputs.iter().map(|r| parse(r)).collect();
        best = best.min(t.elapsed());
        out = parsed;
    }
    (best, out)
}

struct BookInputs {
    /// What the fetch hands to `parse_international`, one per entry that has a number.
    numbers: Vec<String>,
    /// Entries the fetch's classifier keeps as people.
    persons: u64,
    classify: Duration,
}

/// The phone book the fetch scenario's server generates for the same pair (1, 1), read the
/// way its fetch reads it.
async fn fetch_inputs(contacts: usize, target: &Target) -> anyhow::Result<BookInputs> {
    let dir = tempfile::tempdir()?;
    let url = target.fresh(dir.path(), "phones.db").await?;
    let db = store::open(&url, &DatabaseOptions::default())
        .await
        .context("a scratch database for the simulated phone")?;
    let cfg = SimConfig {
        contacts,
        ..SimConfig::default()
    };
    let net = SimNetwork::new(cfg, db, Arc::new(SystemClock));
    let pair = Pair::new(UserId::new_unchecked(1), PlaceId::new_unchecked(1));
    let book = net.phonebook(pair).await;
    let raws: Vec<RawContact> = book.entries.iter().map(SimEntry::raw).collect();
    let own = own_numbers(book.me.iter().map(String::as_str));
    let now_s = chrono::Utc::now().timestamp();
    let t = Instant::now();
    let classified = ChunkPreparer::new(own, now_s).classifier().classify(&raws);
    let classify = t.elapsed();
    let persons = classified
        .iter()
        .filter(|c| matches!(c, Classified::Person(_) | Classified::Own))
        .count() as u64;
    let numbers = raws
        .iter()
        .filter_map(|r| match person_user(&r.jid) {
            Some(user) => Some(user),
            None if r.jid.ends_with("@lid") => r.pn_jid.as_deref().and_then(person_user),
            None => None,
        })
        .map(str::to_owned)
        .collect();
    Ok(BookInputs {
        numbers,
        persons,
        classify,
    })
}

/// The user part of a person jid, as the fetch's classifier cuts it: `user[.agent][:device]`.
fn person_user(jid: &str) -> Option<&str> {
    let (user, server) = jid.trim().split_once('@')?;
    matches!(server, "s.whatsapp.net" | "c.us").then(|| user.split([':', '.']).next())?
}

/// `n` numbers of random digits behind prefixes where metadata moves: Egyptian and Saudi
/// mobiles, Argentina's mobile 9 before Buenos Aires, Italian mobiles, and NANP.
fn random_numbers(n: usize) -> Vec<String> {
    const PREFIXES: [(&str, usize); 5] = [
        ("2010", 8),
        ("9665", 8),
        ("54911", 8),
        ("393", 9),
        ("1", 10),
    ];
    let mut state = 0x0123_4567_89AB_CDEFu64;
    let mut next = move || {
        // splitmix64: repeatable runs, so two runs quote the same disagreements.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let (prefix, len) = PREFIXES[(next() % PREFIXES.len() as u64) as usize];
            let mut s = String::with_capacity(prefix.len() + len);
            s.push_str(prefix);
            for _ in 0..len {
                s.push(char::from(b'0' + (next() % 10) as u8));
            }
            s
        })
        .collect()
}
