//! What a back office sets on a contact (tags, custom fields) and the tags a search names:
//! the limits and the naming rule of each, whatever shape the request came in.

use serde_json::{Map, Value};

use crate::domain::Invalid;
use crate::domain::text::caller_name;

pub const MAX_TAGS: usize = 50;
pub const TAG_MAX_CHARS: usize = 50;
pub const MAX_CUSTOM_FIELDS: usize = 50;
pub const CUSTOM_FIELD_NAME_MAX_CHARS: usize = 50;
pub const CUSTOM_FIELD_VALUE_MAX_CHARS: usize = 1_000;

fn name(field: &str, raw: &str) -> Result<String, Invalid> {
    caller_name(field, raw).map_err(|e| Invalid(e.to_string()))
}

/// Up to 50 tags of 1 to 50 characters; trimmed, in NFC, duplicates dropped, order kept.
pub fn tags(raw: &Value) -> Result<Vec<String>, Invalid> {
    let invalid = || {
        Invalid(format!(
            "tags must be a list of at most {MAX_TAGS} strings of 1 to {TAG_MAX_CHARS} characters"
        ))
    };
    let Value::Array(items) = raw else {
        return Err(invalid());
    };
    if items.len() > MAX_TAGS {
        return Err(invalid());
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(t) if !t.trim().is_empty() && t.chars().count() <= TAG_MAX_CHARS => {
                let t = name("tags", t.trim())?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

/// Up to 50 fields; each value a string (at most 1,000 characters), number, boolean, or
/// `null` to remove the field.
pub fn custom_fields(raw: &Value) -> Result<Map<String, Value>, Invalid> {
    let Value::Object(fields) = raw else {
        return Err(Invalid(
            "custom_fields must be an object of field names to values".into(),
        ));
    };
    if fields.len() > MAX_CUSTOM_FIELDS {
        return Err(Invalid(format!(
            "custom_fields may hold at most {MAX_CUSTOM_FIELDS} fields"
        )));
    }
    let mut out = Map::with_capacity(fields.len());
    for (field, value) in fields {
        if field.trim().is_empty() || field.chars().count() > CUSTOM_FIELD_NAME_MAX_CHARS {
            return Err(Invalid(format!(
                "custom_fields names must be 1 to {CUSTOM_FIELD_NAME_MAX_CHARS} characters"
            )));
        }
        // The message does not repeat a refused name: it is what cannot be shown safely.
        let field = name("custom_fields names", field)?;
        let value = match value {
            Value::String(s) if s.chars().count() <= CUSTOM_FIELD_VALUE_MAX_CHARS => {
                Value::String(name(&format!("custom_fields.{field}"), s)?)
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => value.clone(),
            Value::String(_) | Value::Array(_) | Value::Object(_) => {
                return Err(Invalid(format!(
                    "custom_fields.{field} must be a string of at most \
                     {CUSTOM_FIELD_VALUE_MAX_CHARS} characters, a number, a boolean, or null"
                )));
            }
        };
        // Two spellings of one name (composed, decomposed) are one field: the last one wins,
        // as it would for a name sent twice.
        out.insert(field, value);
    }
    Ok(out)
}

/// The tags a search names, comma-separated: at most 50 of at most 50 characters; empty
/// items and surrounding spaces ignored, duplicates dropped.
pub fn tag_filter(raw: &str) -> Result<Vec<String>, Invalid> {
    let items: Vec<&str> = raw.split(',').collect();
    if items.len() > MAX_TAGS || items.iter().any(|t| t.chars().count() > TAG_MAX_CHARS) {
        return Err(Invalid(format!(
            "tags must be at most {MAX_TAGS} comma-separated tags of at most \
             {TAG_MAX_CHARS} characters"
        )));
    }
    let mut tags: Vec<String> = Vec::new();
    for t in items.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        // Stored tags are NFC: a filter typed decomposed must find them.
        let t = name("tags", t)?;
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const COMPOSED: &str = "caf\u{e9}";
    const DECOMPOSED: &str = "cafe\u{301}";

    #[test]
    fn tags_are_trimmed_composed_and_deduplicated_in_order() {
        let got = tags(&json!([" vip ", "riyadh", DECOMPOSED, "vip", COMPOSED])).unwrap();
        assert_eq!(got, ["vip", "riyadh", COMPOSED]);
        assert_eq!(tags(&json!([])).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn tags_outside_the_limits_or_not_strings_are_refused_naming_tags() {
        let too_many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        for bad in [
            json!("vip"),
            json!(null),
            json!([1]),
            json!(["  "]),
            json!(["x".repeat(TAG_MAX_CHARS + 1)]),
            json!(too_many),
        ] {
            let e = tags(&bad).unwrap_err();
            assert!(e.0.starts_with("tags must be a list"), "{bad}: {e}");
        }
        let e = tags(&json!(["a\u{202E}b"])).unwrap_err();
        assert!(e.0.starts_with("tags must not contain"), "{e}");
        let exactly: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(tags(&json!(exactly)).unwrap().len(), MAX_TAGS);
    }

    #[test]
    fn custom_fields_keep_scalars_and_null_and_merge_spellings_of_one_name() {
        let got = custom_fields(&json!({
            "city": "Riyadh", "visits": 3, "vip": true, "old": null,
            COMPOSED: "first", DECOMPOSED: "second",
        }))
        .unwrap();
        assert_eq!(got["city"], "Riyadh");
        assert_eq!(got["visits"], 3);
        assert_eq!(got["vip"], true);
        assert_eq!(got["old"], Value::Null);
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(got.contains_key(COMPOSED));
    }

    #[test]
    fn custom_fields_outside_the_limits_are_refused_naming_the_field() {
        let cases = [
            (json!(["city"]), "custom_fields must be an object"),
            (json!({"": 1}), "custom_fields names must be"),
            (
                json!({"x".repeat(CUSTOM_FIELD_NAME_MAX_CHARS + 1): 1}),
                "custom_fields names must be",
            ),
            (json!({"city": ["a"]}), "custom_fields.city must be"),
            (json!({"city": {"a": 1}}), "custom_fields.city must be"),
            (
                json!({"city": "x".repeat(CUSTOM_FIELD_VALUE_MAX_CHARS + 1)}),
                "custom_fields.city must be",
            ),
            (
                json!({"city": "a\nb"}),
                "custom_fields.city must not contain",
            ),
            (
                json!({"a\u{0}b": 1}),
                "custom_fields names must not contain",
            ),
        ];
        for (bad, want) in cases {
            let e = custom_fields(&bad).unwrap_err();
            assert!(e.0.starts_with(want), "{bad}: {e}");
        }
        let too_many: Map<String, Value> = (0..=MAX_CUSTOM_FIELDS)
            .map(|i| (format!("f{i}"), json!(i)))
            .collect();
        let e = custom_fields(&Value::Object(too_many)).unwrap_err();
        assert_eq!(e.0, "custom_fields may hold at most 50 fields");
    }

    #[test]
    fn a_tag_filter_splits_on_commas_and_ignores_empty_items() {
        assert_eq!(
            tag_filter(&format!("vip, riyadh,,vip,{DECOMPOSED}")).unwrap(),
            ["vip", "riyadh", COMPOSED]
        );
        assert_eq!(tag_filter("").unwrap(), Vec::<String>::new());
        for bad in [
            "x".repeat(TAG_MAX_CHARS + 1),
            vec!["a"; MAX_TAGS + 1].join(","),
        ] {
            let e = tag_filter(&bad).unwrap_err();
            assert!(e.0.starts_with("tags must be at most"), "{e}");
        }
        assert!(tag_filter("a\u{202E}b").unwrap_err().0.contains("tags"));
    }
}
