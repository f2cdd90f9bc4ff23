//! Domain newtypes, parsed once at the edge so the rest of the code never re-validates.

pub mod text;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A value the caller gave that the domain cannot take. The message names the field and is
/// meant for a person; `http/` decides how it is answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A positive `i64` identifier of the back office (`user_id`, `place_id`, `group_id`, ...).
pub fn parse_positive(field: &str, raw: Option<&Value>) -> Result<i64, Invalid> {
    let invalid = || Invalid(format!("{field} must be a positive integer"));
    match raw {
        None | Some(Value::Null) => Err(Invalid(format!("{field} is required"))),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v > 0 => Ok(v),
            _ => Err(invalid()),
        },
        // Back offices often post form values as strings; "123" is the same id as 123.
        Some(Value::String(s)) => parse_positive_str(field, s),
        Some(_) => Err(invalid()),
    }
}

/// Parses an id given as text (query string, path segment or JSON string).
pub fn parse_positive_str(field: &str, raw: &str) -> Result<i64, Invalid> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Invalid(format!("{field} is required")));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid(format!("{field} must be a positive integer")));
    }
    match s.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(Invalid(format!("{field} must be a positive integer"))),
    }
}

macro_rules! id_type {
    ($name:ident, $field:literal) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const FIELD: &'static str = $field;

            pub fn from_json(raw: Option<&Value>) -> Result<Self, Invalid> {
                parse_positive($field, raw).map(Self)
            }

            pub fn from_text(raw: Option<&str>) -> Result<Self, Invalid> {
                match raw {
                    None => Err(Invalid(format!("{} is required", $field))),
                    Some(s) => parse_positive_str($field, s).map(Self),
                }
            }

            /// For values that come from our own database.
            pub fn new_unchecked(v: i64) -> Self {
                Self(v)
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(UserId, "user_id");
id_type!(PlaceId, "place_id");
id_type!(GroupId, "group_id");

/// One linked WhatsApp number belongs to exactly one (user, place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub user_id: UserId,
    pub place_id: PlaceId,
}

impl Pair {
    pub fn new(user_id: UserId, place_id: PlaceId) -> Self {
        Self { user_id, place_id }
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}, place {}", self.user_id, self.place_id)
    }
}

/// `session_<user_id>_<place_id>_<unix_ms>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(pair: Pair, unix_ms: i64) -> Self {
        Self(format!(
            "session_{}_{}_{}",
            pair.user_id, pair.place_id, unix_ms
        ))
    }

    pub fn from_db(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The unix_ms suffix, used to keep ids of one pair strictly increasing.
    pub fn unix_ms(&self) -> Option<i64> {
        self.0.rsplit('_').next()?.parse().ok()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 (`+9665...`), only ever built by the phone-number library.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses the digits of an international number (a WhatsApp jid's user part, with or
    /// without `+`). Accepts numbers the metadata calls valid, and numbers whose length is
    /// possible for their country code: WhatsApp has already proven the number exists, and
    /// metadata lags behind newly opened ranges.
    pub fn parse_international(raw: &str) -> Option<Self> {
        Self::parse_international_with::<Rlibphonenumber>(raw)
    }

    /// [`parse_international`](Self::parse_international) over a chosen library: the
    /// benchmark runs the same inputs through each candidate.
    pub fn parse_international_with<L: NumberLibrary>(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if digits.is_empty() || digits.len() > 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        L::e164(&format!("+{digits}")).map(Self)
    }

    /// A number as a person types it: `+966 50 123 4567`, `00966-50-1234567`,
    /// `(966) 501234567`. Always international: a country code is required.
    pub fn parse_typed(raw: &str) -> Option<Self> {
        let trimmed = raw.trim();
        let (plus, rest) = match trimmed.strip_prefix('+') {
            Some(r) => (true, r),
            None => (false, trimmed),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return None,
            }
        }
        let digits = match digits.strip_prefix("00") {
            Some(d) if !plus => d.to_string(),
            _ => digits,
        };
        Self::parse_international(&digits)
    }

    pub fn from_db(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number without `+`, as WhatsApp writes it in jids.
    pub fn digits(&self) -> &str {
        self.0.trim_start_matches('+')
    }
}

/// What [`PhoneNumber::parse_international`] asks of a phone-number library. A trait so the
/// benchmark can hold the `phonenumber` crate, used before, to the same inputs
/// (BENCHMARKS.md, "Phone numbers").
pub trait NumberLibrary {
    /// `+<digits>` in E.164 when the library parses it and either its national number's
    /// length is possible for its country code or the metadata calls it valid.
    fn e164(plus_digits: &str) -> Option<String>;
}

/// rlibphonenumber: a port of Google's libphonenumber with its current metadata; about six
/// times faster than the `phonenumber` crate on the fetch's numbers.
pub struct Rlibphonenumber;

impl NumberLibrary for Rlibphonenumber {
    fn e164(plus_digits: &str) -> Option<String> {
        use rlibphonenumber::{NumberLengthType, PhoneNumberFormat};
        let parsed = rlibphonenumber::PhoneNumber::parse(plus_digits, None).ok()?;
        // The length check first: a bit mask per country code, where `is_valid` runs the
        // country's patterns; those are then only needed for lengths the metadata lacks.
        // A local-only length (a number without its area code) is not a whole number.
        let possible = matches!(
            parsed.is_possible_with_reason(),
            Ok(NumberLengthType::IsPossible)
        );
        if !possible && !parsed.is_valid() {
            return None;
        }
        Some(parsed.format_as(PhoneNumberFormat::E164).into_owned())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Initializing,
    QrReady,
    Authenticated,
    Ready,
    FetchingContacts,
    Disconnected,
    LoggedOut,
    Error,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 8] = [
        Self::Initializing,
        Self::QrReady,
        Self::Authenticated,
        Self::Ready,
        Self::FetchingContacts,
        Self::Disconnected,
        Self::LoggedOut,
        Self::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initializing => "initializing",
            Self::QrReady => "qr_ready",
            Self::Authenticated => "authenticated",
            Self::Ready => "ready",
            Self::FetchingContacts => "fetching_contacts",
            Self::Disconnected => "disconnected",
            Self::LoggedOut => "logged_out",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A session in one of these states needs a person to act (new QR or restart).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::LoggedOut | Self::Error)
    }

    /// The client is linked and usable.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Ready | Self::FetchingContacts)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A yes/no the caller gave: a JSON boolean, or the text a form body carries ("true",
/// "false", "1", "0"), since form values are always strings.
pub fn parse_flag(field: &str, raw: Option<&Value>) -> Result<Option<bool>, Invalid> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.trim() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(Invalid(format!("{field} must be true or false"))),
        },
        Some(_) => Err(Invalid(format!("{field} must be true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_accept_positive_integers_and_digit_strings() {
        assert_eq!(UserId::from_json(Some(&json!(123))).unwrap().get(), 123);
        assert_eq!(UserId::from_json(Some(&json!("42"))).unwrap().get(), 42);
        assert_eq!(PlaceId::from_text(Some("7")).unwrap().get(), 7);
    }

    #[test]
    fn ids_reject_everything_else_naming_the_field() {
        let bad = [
            json!(0),
            json!(-1),
            json!("12abc"),
            json!(1.5),
            json!(1.0),
            json!("9223372036854775808"),
            json!(true),
            json!([1]),
            json!({}),
            json!(""),
            json!("-3"),
            json!(" "),
        ];
        for v in bad {
            let err = UserId::from_json(Some(&v)).unwrap_err();
            assert!(err.to_string().contains("user_id"), "{v}: {err}");
        }
        assert!(
            PlaceId::from_json(None)
                .unwrap_err()
                .to_string()
                .contains("place_id is required")
        );
        assert!(PlaceId::from_json(Some(&Value::Null)).is_err());
        // 2^63 does not fit i64.
        assert!(UserId::from_json(Some(&json!(9223372036854775808u64))).is_err());
    }

    #[test]
    fn phone_numbers_normalise_to_e164() {
        let cases = [
            ("966512345678", Some("+966512345678")),
            ("+201012345678", Some("+201012345678")),
            ("5491123456789", Some("+5491123456789")),
            ("390612345678", Some("+390612345678")),
            ("14155552671", Some("+14155552671")),
            ("447911123456", Some("+447911123456")),
            ("12", None),
            ("abc", None),
            ("", None),
            ("9665123456789999999", None),
            ("0966512345678", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                PhoneNumber::parse_international(raw)
                    .as_ref()
                    .map(PhoneNumber::as_str),
                want,
                "{raw}"
            );
        }
    }

    #[test]
    fn a_possible_length_is_enough_where_the_patterns_lag() {
        let e164 = |raw: &str| PhoneNumber::parse_international(raw).map(|p| p.0);
        // +966 52… is in no Saudi range of libphonenumber's metadata (v9.0.42), but nine
        // national digits are a Saudi length: WhatsApp knowing the number is the proof.
        assert_eq!(e164("966525679357").as_deref(), Some("+966525679357"));
        // Seven digits after +1 are a number without its area code, dialable only locally.
        assert_eq!(e164("15552671"), None);
        // Eight national digits are no Saudi length at all.
        assert_eq!(e164("96651234567"), None);
        // No country has the calling code 999.
        assert_eq!(e164("999123456789"), None);
    }

    #[test]
    fn session_ids_follow_the_contract() {
        let pair = Pair::new(UserId::new_unchecked(123), PlaceId::new_unchecked(456));
        let id = SessionId::new(pair, 1_234_567_890);
        assert_eq!(id.as_str(), "session_123_456_1234567890");
        assert_eq!(id.unix_ms(), Some(1_234_567_890));
    }
}
