//! Form bodies (`application/x-www-form-urlencoded`) read into the JSON shape the routes take,
//! with PHP's bracket convention, which Laravel's `asForm()`, `http_build_query` and jQuery
//! all write: `ids[]=1&ids[]=2` is a list, `r[0][phone_number]=…` a list of objects,
//! `v[name]=…` an object. Every value stays a string; the routes take digits where they take
//! a number, and "true"/"false" where they take a yes/no.

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::error::AppError;

/// Nesting deeper than this is no request of ours; refusing it bounds the work.
const MAX_DEPTH: usize = 4;
/// A list index beyond this is refused rather than padded: `a[99999999]=x` must not allocate.
/// The longest list a route takes has 1,000 elements.
const MAX_INDEX: usize = 1_000;

pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The form as a JSON object, or `None` when the body is JSON after all (a client that
/// labels JSON as a form is read as it was before forms were accepted).
pub fn to_json(body: &[u8]) -> Option<Result<Value, AppError>> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return None;
    }
    Some(parse(body))
}

fn parse(body: &[u8]) -> Result<Value, AppError> {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(body) {
        if key.is_empty() {
            continue;
        }
        let path = key_path(&key)
            .ok_or_else(|| AppError::BadRequest(format!("Malformed form field name: {key}")))?;
        let Some((head, rest)) = path.split_first() else {
            continue;
        };
        let slot = root.entry(head.to_string()).or_insert(Value::Null);
        insert(slot, rest, value.into_owned())
            .map_err(|why| AppError::BadRequest(format!("Form field {key} {why}")))?;
    }
    Ok(Value::Object(root))
}

/// `a[b][]` → `["a", "b", ""]`; `None` for unbalanced brackets or too deep a name.
fn key_path(key: &str) -> Option<Vec<&str>> {
    let (head, mut rest) = match key.find('[') {
        None => return Some(vec![key]),
        Some(i) => (&key[..i], &key[i..]),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        path.push(&inner[..end]);
        rest = &inner[end + 1..];
        if path.len() > MAX_DEPTH + 1 {
            return None;
        }
    }
    Some(path)
}

/// One segment of a field name: a list element (`[]`, `[3]`) or an object key (`[name]`).
enum Segment<'a> {
    Push,
    Index(usize),
    Key(&'a str),
}

fn segment(s: &str) -> Segment<'_> {
    if s.is_empty() {
        Segment::Push
    } else if s.bytes().all(|b| b.is_ascii_digit()) {
        // Too long to parse is too large an index.
        Segment::Index(s.parse().unwrap_or(usize::MAX))
    } else {
        Segment::Key(s)
    }
}

fn insert(node: &mut Value, path: &[&str], value: String) -> Result<(), &'static str> {
    let Some((first, rest)) = path.split_first() else {
        return match node {
            // Given twice: the last value wins, as in PHP.
            Value::Null | Value::String(_) => {
                *node = Value::String(value);
                Ok(())
            }
            _ => Err("mixes a value and a list or object"),
        };
    };
    match segment(first) {
        Segment::Key(k) => {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let map = node
                .as_object_mut()
                .ok_or("mixes a list and named fields")?;
            insert(map.entry(k.to_owned()).or_insert(Value::Null), rest, value)
        }
        Segment::Push => {
            let list = as_list(node)?;
            list.push(Value::Null);
            let last = list.len() - 1;
            insert(&mut list[last], rest, value)
        }
        Segment::Index(i) => {
            if i > MAX_INDEX {
                return Err("has too large an index");
            }
            let list = as_list(node)?;
            if list.len() <= i {
                list.resize_with(i + 1, || Value::Null);
            }
            insert(&mut list[i], rest, value)
        }
    }
}

fn as_list(node: &mut Value) -> Result<&mut Vec<Value>, &'static str> {
    if node.is_null() {
        *node = Value::Array(Vec::new());
    }
    node.as_array_mut().ok_or("mixes a list and named fields")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn form(s: &str) -> Value {
        parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn plain_fields_are_strings() {
        assert_eq!(
            form("user_id=1&place_id=2&text=hello+world%21"),
            json!({"user_id": "1", "place_id": "2", "text": "hello world!"})
        );
    }

    #[test]
    fn brackets_make_lists_and_objects() {
        assert_eq!(
            form("contact_ids[]=1&contact_ids[]=2&variables[name]=Ali"),
            json!({"contact_ids": ["1", "2"], "variables": {"name": "Ali"}})
        );
        assert_eq!(
            form(
                "recipients%5B0%5D%5Bphone_number%5D=%2B966501234567&recipients[0][name]=A\
                 &recipients[1][contact_id]=12"
            ),
            json!({"recipients": [
                {"phone_number": "+966501234567", "name": "A"},
                {"contact_id": "12"}
            ]})
        );
        assert_eq!(
            form("tags[]=vip&custom_fields[city]=Riyadh"),
            json!({"tags": ["vip"], "custom_fields": {"city": "Riyadh"}})
        );
    }

    #[test]
    fn json_labelled_as_a_form_stays_json() {
        assert!(to_json(br#" {"user_id": 1}"#).is_none());
        assert!(to_json(b"user_id=1").is_some());
    }

    #[test]
    fn bad_names_are_refused_not_guessed() {
        assert!(parse(b"a[b=1").is_err());
        assert!(parse(b"[x]=1").is_err());
        assert!(parse(b"a[1][2][3][4][5]=1").is_err());
        assert!(parse(b"a[999999]=1").is_err());
        assert!(parse(b"a[99999999999999999999999]=1").is_err());
        assert!(parse(b"a[]=1&a[k]=2").is_err());
    }
}
