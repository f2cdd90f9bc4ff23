//! Message templates and `{variable}` filling, per recipient.
//!
//! A placeholder is `{word}` (letters, digits, `_`). Per recipient: `name` (saved name, else
//! push name, else empty), `first_name`, `push_name`, `phone`, and each of the contact's
//! custom fields by its name; then the request's `variables`, which also serve as defaults.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub struct Template {
    pub id: &'static str,
    pub name: &'static str,
    pub language: &'static str,
    pub category: Category,
    pub text: &'static str,
    pub description: &'static str,
}

/// What a template is for, so a back office can group them in its picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Welcoming or thanking a customer.
    Greeting,
    /// An offer.
    Marketing,
    /// An appointment or a date to remember.
    Reminder,
}

impl Category {
    pub const ALL: [Category; 3] = [Self::Greeting, Self::Marketing, Self::Reminder];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greeting => "greeting",
            Self::Marketing => "marketing",
            Self::Reminder => "reminder",
        }
    }
}

pub const TEMPLATES: &[Template] = &[
    Template {
        id: "welcome",
        name: "Welcome",
        language: "en",
        category: Category::Greeting,
        text: "Hello {name}, welcome! We're glad to have you with us.",
        description: "A first message to a new customer.",
    },
    Template {
        id: "welcome_ar",
        name: "ترحيب",
        language: "ar",
        category: Category::Greeting,
        text: "مرحباً {name}، أهلاً وسهلاً بك! يسعدنا تواصلك معنا.",
        description: "A first message to a new customer, in Arabic.",
    },
    Template {
        id: "promotion",
        name: "Promotion",
        language: "en",
        category: Category::Marketing,
        text: "Hi {name}! {offer} Valid until {valid_until}.",
        description: "An offer; give `offer` and `valid_until` in `variables`.",
    },
    Template {
        id: "promotion_ar",
        name: "عرض خاص",
        language: "ar",
        category: Category::Marketing,
        text: "مرحباً {name}! {offer} العرض ساري حتى {valid_until}.",
        description: "An offer, in Arabic; give `offer` and `valid_until` in `variables`.",
    },
    Template {
        id: "reminder",
        name: "Appointment reminder",
        language: "en",
        category: Category::Reminder,
        text: "Hi {name}, this is a reminder of your appointment on {date} at {time}.",
        description: "Give `date` and `time` in `variables`.",
    },
    Template {
        id: "thank_you",
        name: "Thank you",
        language: "en",
        category: Category::Greeting,
        text: "Thank you {name} for your visit! We hope to see you again soon.",
        description: "After a visit or a purchase.",
    },
];

pub fn find(id: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.id == id)
}

/// Variables every recipient has (possibly empty).
pub const RECIPIENT_VARIABLES: [&str; 4] = ["name", "first_name", "push_name", "phone"];

/// The placeholders of a text, in order of first use.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (_, name, _) in tokens(text) {
        if seen.insert(name) {
            out.push(name.to_owned());
        }
    }
    out
}

/// (start, name, end) of every `{name}`.
fn tokens(text: &str) -> Vec<(usize, &str, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'{' {
            let start = i;
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'}' && j > start + 1 && j - start - 1 <= 50 {
                out.push((start, &text[start + 1..j], j + 1));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// What one recipient fills in.
#[derive(Debug, Clone, Default)]
pub struct Recipient<'a> {
    pub name: Option<&'a str>,
    pub push_name: Option<&'a str>,
    pub phone: &'a str,
    pub custom_fields: Option<&'a Map<String, Value>>,
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Fills every placeholder it has a value for. A recipient variable, or one of `optional`
/// (custom fields other recipients of the same send have), without a value becomes empty
/// rather than a literal `{name}`; the others are returned and left as written.
pub fn fill(
    text: &str,
    r: &Recipient<'_>,
    variables: &Map<String, Value>,
    optional: &[&str],
) -> (String, Vec<String>) {
    let display = r
        .name
        .filter(|n| !n.trim().is_empty())
        .or(r.push_name.filter(|n| !n.trim().is_empty()));
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut last = 0;
    for (start, name, end) in tokens(text) {
        out.push_str(&text[last..start]);
        let own = match name {
            "name" => display.map(str::to_owned),
            "first_name" => display
                .and_then(|d| d.split_whitespace().next())
                .map(str::to_owned),
            "push_name" => r.push_name.map(str::to_owned),
            "phone" => Some(r.phone.to_owned()),
            other => r
                .custom_fields
                .and_then(|f| f.get(other))
                .and_then(value_text),
        };
        match own.or_else(|| variables.get(name).and_then(value_text)) {
            Some(v) => out.push_str(&v),
            None if RECIPIENT_VARIABLES.contains(&name) || optional.contains(&name) => {}
            None => {
                out.push_str(&text[start..end]);
                missing.push(name.to_owned());
            }
        }
        last = end;
    }
    out.push_str(&text[last..]);
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_per_recipient_with_defaults_from_the_request() {
        let mut fields = Map::new();
        fields.insert("city".into(), Value::String("Riyadh".into()));
        let mut vars = Map::new();
        vars.insert("offer".into(), Value::String("20% off".into()));
        vars.insert("city".into(), Value::String("Jeddah".into()));
        let r = Recipient {
            name: Some("Ahmed Ali"),
            push_name: Some("Ahmed"),
            phone: "+966501234567",
            custom_fields: Some(&fields),
        };
        let (text, missing) = fill(
            "Hi {first_name} ({name}) in {city}: {offer} {nope} {phone} {}",
            &r,
            &vars,
            &[],
        );
        assert_eq!(
            text,
            "Hi Ahmed (Ahmed Ali) in Riyadh: 20% off {nope} +966501234567 {}"
        );
        assert_eq!(missing, ["nope"]);

        let nameless = Recipient {
            phone: "+966501234567",
            ..Recipient::default()
        };
        assert_eq!(
            fill("Hello {name}, {city}", &nameless, &vars, &[]).0,
            "Hello , Jeddah"
        );
        assert_eq!(placeholders("{a} {b} {a} {x y}"), ["a", "b"]);
    }
}
