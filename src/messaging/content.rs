//! What a message says, checked before anything is queued: a text (or a template's), an
//! image URL, and the values of its `{name}`-style placeholders. Nothing here knows HTTP: a
//! [`ContentError`] names the field and the rule, and `http/` answers it.

use std::fmt;

use serde_json::{Map, Value};

use super::image::{self, FetchError, ImageError};
use super::media::MediaRequest;
use super::templates::{self, RECIPIENT_VARIABLES, Recipient};
use super::{MAX_TEXT_CHARS, new_message_id};
use crate::domain::text::{TextError, caller_name};
use crate::store::{ContactRecord, MessageKind, NewMessage};

/// Values a request may give for placeholders, at most this many.
pub const MAX_VARIABLES: usize = 50;
pub const VARIABLE_VALUE_MAX_CHARS: usize = 1_000;
/// A variable's name: ASCII letters, digits and `_`, like a placeholder's.
pub const VARIABLE_NAME_MAX_CHARS: usize = 50;
/// The name a request gives a bare number (`{name}` in its text).
pub const RECIPIENT_NAME_MAX_CHARS: usize = 100;

/// Why a message's content cannot be used. Each message names the field.
#[derive(Debug)]
pub enum ContentError {
    /// A field in the wrong shape or over its limit.
    Invalid(String),
    /// The image URL is refused or could not be fetched.
    Image(ImageError),
    /// `media.url` is refused or could not be fetched.
    Media(FetchError),
    /// `media.media_id` names no upload the sender may use (unknown, expired, another's).
    NoUpload(String),
    /// Placeholders nobody gives a value for; `recipient` is where one recipient's own
    /// variables were looked at (`recipients[3]`).
    NoValue {
        names: Vec<String>,
        recipient: Option<String>,
    },
}

impl fmt::Display for ContentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) => f.write_str(m),
            Self::Image(e @ (ImageError::InvalidUrl | ImageError::Refused(_))) => e.fmt(f),
            Self::Image(e) => write!(f, "image_url cannot be used: {e}"),
            Self::Media(e @ (FetchError::InvalidUrl | FetchError::Refused(_))) => e.fmt(f),
            Self::Media(e) => write!(f, "media.url cannot be used: {e}"),
            Self::NoUpload(id) => write!(
                f,
                "media.media_id {id:?} is not an upload of this user: unknown, or expired \
                 (uploads are kept 24 hours)"
            ),
            Self::NoValue { names, recipient } => {
                let names: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
                write!(f, "text uses {} with no value", names.join(", "))?;
                if let Some(r) = recipient {
                    write!(f, " for {r}")?;
                }
                f.write_str(": give it in variables")
            }
        }
    }
}

impl std::error::Error for ContentError {}

impl From<TextError> for ContentError {
    fn from(e: TextError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<FetchError> for ContentError {
    fn from(e: FetchError) -> Self {
        Self::Media(e)
    }
}

impl From<ImageError> for ContentError {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

fn invalid(message: impl Into<String>) -> ContentError {
    ContentError::Invalid(message.into())
}

/// The content fields as a request gave them, unchecked.
#[derive(Clone, Copy, Default)]
pub struct ContentInput<'a> {
    pub text: Option<&'a Value>,
    /// The earlier service's name for `text`.
    pub message: Option<&'a Value>,
    pub image_url: Option<&'a Value>,
    pub media: Option<&'a Value>,
    pub template_id: Option<&'a Value>,
    pub variables: Option<&'a Value>,
}

/// What to send, checked: a text (or a template's) and/or an image.
#[derive(Debug, Clone)]
pub struct Content {
    pub text: Option<String>,
    pub image_url: Option<String>,
    /// A file of any kind (`media`); `image_url` is its shortcut for an image.
    pub media: Option<MediaRequest>,
    pub template_id: Option<String>,
    pub variables: Map<String, Value>,
}

fn text_field(raw: Option<&Value>, field: &str) -> Result<Option<String>, ContentError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(invalid(format!("{field} must not be empty")))
        }
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(invalid(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters"
        ))),
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

/// The values of placeholders; `field` is where the object sits in the request
/// (`variables`, `recipients[3].variables`).
pub fn variables(raw: Option<&Value>, field: &str) -> Result<Map<String, Value>, ContentError> {
    let refused = || {
        invalid(format!(
            "{field} must be an object of at most {MAX_VARIABLES} names to strings (at most \
             {VARIABLE_VALUE_MAX_CHARS} characters), numbers or booleans"
        ))
    };
    match raw {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) if m.len() <= MAX_VARIABLES => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                // Names are ASCII word characters: already composed, nothing invisible.
                let name_ok = !k.is_empty()
                    && k.len() <= VARIABLE_NAME_MAX_CHARS
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                let value = match v {
                    Value::String(s)
                        if name_ok && s.chars().count() <= VARIABLE_VALUE_MAX_CHARS =>
                    {
                        Value::String(caller_name(&format!("{field}.{k}"), s)?)
                    }
                    Value::Number(_) | Value::Bool(_) if name_ok => v.clone(),
                    _ => return Err(refused()),
                };
                out.insert(k.clone(), value);
            }
            Ok(out)
        }
        Some(_) => Err(refused()),
    }
}

/// The name a request gives one recipient, for its `{name}`.
pub fn recipient_name(raw: Option<&Value>, field: &str) -> Result<Option<String>, ContentError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(n)) if n.chars().count() <= RECIPIENT_NAME_MAX_CHARS => {
            Ok(Some(caller_name(field, n)?))
        }
        Some(_) => Err(invalid(format!(
            "{field} must be a string of at most {RECIPIENT_NAME_MAX_CHARS} characters"
        ))),
    }
}

impl Content {
    /// Checks the fields; `text` (or `message`, or `template_id`) or `image_url` is required.
    /// The image URL is only checked as a URL here; [`super::Outbox::images`] fetches it.
    pub fn parse(input: ContentInput<'_>) -> Result<Self, ContentError> {
        let text = text_field(input.text, "text")?;
        let message = text_field(input.message, "message")?;
        if text.is_some() && message.is_some() {
            return Err(invalid("Give text or message (the same field), not both"));
        }
        let mut text = text.or(message);
        let media = match input.media {
            None | Some(Value::Null) => None,
            Some(raw) => Some(MediaRequest::parse(raw)?),
        };
        if let Some(m) = &media {
            let caption = text_field(
                m.caption
                    .as_ref()
                    .map(|c| Value::String(c.clone()))
                    .as_ref(),
                "media.caption",
            )?;
            if caption.is_some() && text.is_some() {
                return Err(invalid("Give text or media.caption, not both"));
            }
            text = text.or(caption);
        }
        let template = match input.template_id {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(templates::find(id.trim()).ok_or_else(|| {
                invalid(format!(
                    "template_id {id:?} is not a template; GET /api/whatsapp/templates lists them"
                ))
            })?),
            Some(_) => return Err(invalid("template_id must be a string")),
        };
        if let Some(t) = template {
            if text.is_some() {
                return Err(invalid("Give text or template_id, not both"));
            }
            text = Some(t.text.to_owned());
        }
        let image_url = match input.image_url {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(image::check_url(u)?.to_string()),
            Some(_) => return Err(ImageError::InvalidUrl.into()),
        };
        if image_url.is_some() && media.is_some() {
            return Err(invalid(
                "Give image_url or media, not both (image_url is media of type image)",
            ));
        }
        if media.as_ref().is_some_and(|m| m.voice_note) && text.is_some() {
            return Err(invalid(
                "A voice note has no caption: leave out media.caption and text",
            ));
        }
        if text.is_none() && image_url.is_none() && media.is_none() {
            return Err(invalid(
                "text is required (or template_id, or media, or an image_url)",
            ));
        }
        Ok(Self {
            text,
            image_url,
            media,
            template_id: template.map(|t| t.id.to_owned()),
            variables: variables(input.variables, "variables")?,
        })
    }

    pub fn kind(&self) -> MessageKind {
        if let Some(m) = &self.media {
            m.kind
        } else if self.image_url.is_some() {
            MessageKind::Image
        } else {
            MessageKind::Text
        }
    }

    /// The placeholders of the text, in order of first use.
    pub fn placeholders(&self) -> Vec<String> {
        self.text
            .as_deref()
            .map(templates::placeholders)
            .unwrap_or_default()
    }

    /// Placeholders that no recipient has, the request gives no value for, and are not
    /// among `known` (custom fields, one recipient's own variables).
    pub fn unknown_placeholders(&self, known: &[&str]) -> Vec<String> {
        self.placeholders()
            .into_iter()
            .filter(|p| {
                !RECIPIENT_VARIABLES.contains(&p.as_str())
                    && !self.variables.contains_key(p)
                    && !known.contains(&p.as_str())
            })
            .collect()
    }

    /// Refuses a text whose placeholders would stay unfilled; `recipient` names whose
    /// variables were looked at, when they were one recipient's.
    pub fn refuse_unknown(
        &self,
        known: &[&str],
        recipient: Option<&str>,
    ) -> Result<(), ContentError> {
        let names = self.unknown_placeholders(known);
        if names.is_empty() {
            return Ok(());
        }
        Err(ContentError::NoValue {
            names,
            recipient: recipient.map(str::to_owned),
        })
    }

    /// The message for one recipient, its placeholders filled: from the contact (if it is
    /// one), the request's `name` for a bare number, then `variables`. `optional` are custom
    /// fields other recipients of the same send have: empty rather than left as written.
    pub fn message_for(
        &self,
        contact: Option<&ContactRecord>,
        phone: &str,
        name: Option<&str>,
        variables: &Map<String, Value>,
        optional: &[&str],
        min_gap_ms: i64,
    ) -> NewMessage {
        let recipient = Recipient {
            name: contact.and_then(|c| c.name.as_deref()).or(name),
            push_name: contact.and_then(|c| c.push_name.as_deref()),
            phone,
            custom_fields: contact.map(|c| &c.custom_fields),
        };
        let body = self
            .text
            .as_deref()
            .map(|t| templates::fill(t, &recipient, variables, optional).0);
        NewMessage {
            contact_id: contact.map(|c| c.id),
            recipient: phone.to_owned(),
            recipient_name: recipient.name.map(str::to_owned),
            kind: self.kind(),
            body,
            image_url: self.image_url.clone(),
            template_id: self.template_id.clone(),
            wa_message_id: new_message_id(),
            min_gap_ms,
            media: match &self.media {
                Some(m) => m.fields(),
                None => crate::store::MediaFields {
                    url: self.image_url.clone(),
                    ..Default::default()
                },
            },
        }
    }
}

/// What a dry run finds about the content for one recipient (or none): the problems a send
/// would refuse, warnings, and the text as the recipient would get it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DryRun {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub preview: Option<String>,
    /// The placeholders the text uses.
    pub variables: Vec<String>,
}

impl DryRun {
    /// `recipient`: the contact (if the recipient is one) and the number, when one was given.
    /// `image_problem`: why the image URL could not be fetched, if it could not.
    pub fn check(
        c: &Content,
        recipient: Option<(Option<&ContactRecord>, &str)>,
        image_problem: Option<String>,
    ) -> Self {
        let mut out = Self {
            variables: c.placeholders(),
            ..Self::default()
        };
        let contact = recipient.and_then(|(c, _)| c);
        let fields: Vec<&str> = contact
            .map(|c| c.custom_fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if let Err(e) = c.refuse_unknown(&fields, None) {
            out.errors.push(e.to_string());
        }
        if out.variables.iter().any(|u| u == "name") && contact.is_none() {
            out.warnings.push(
                "{name} is filled from the contact's name; a bare number has none, so it \
                 stays empty"
                    .into(),
            );
        }
        out.errors.extend(image_problem);
        if let Some(text) = &c.text {
            let phone = recipient.map_or("", |(_, p)| p);
            let msg = c.message_for(contact, phone, None, &c.variables, &[], 0);
            let filled = msg.body.unwrap_or_else(|| text.clone());
            if filled.chars().count() > MAX_TEXT_CHARS {
                out.errors.push(format!(
                    "text is longer than {MAX_TEXT_CHARS} characters once its variables are filled"
                ));
            }
            out.preview = Some(filled);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Content, ContentError> {
        Content::parse(ContentInput {
            text: v.get("text"),
            message: v.get("message"),
            image_url: v.get("image_url"),
            media: v.get("media"),
            template_id: v.get("template_id"),
            variables: v.get("variables"),
        })
    }

    fn refused(v: Value) -> String {
        match parse(v.clone()) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("{v} was taken: {c:?}"),
        }
    }

    #[test]
    fn a_text_comes_from_text_message_or_a_template_and_only_one_of_them() {
        assert_eq!(
            parse(json!({"message": "hi"})).unwrap().text.as_deref(),
            Some("hi")
        );
        let t = parse(json!({"template_id": " welcome "})).unwrap();
        assert_eq!(t.template_id.as_deref(), Some("welcome"));
        assert!(t.text.unwrap().contains("{name}"));
        assert!(refused(json!({"text": "a", "message": "b"})).contains("text or message"));
        assert!(
            refused(json!({"text": "a", "template_id": "welcome"})).contains("text or template_id")
        );
        assert!(refused(json!({"template_id": "nope"})).contains("is not a template"));
        assert!(refused(json!({})).contains("text is required"));
        assert!(refused(json!({"text": "  "})).contains("text must not be empty"));
        assert!(refused(json!({"message": 5})).contains("message must be a string"));
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert!(refused(json!({"text": long})).contains("at most 4096"));
    }

    #[test]
    fn an_image_alone_is_content_and_a_bad_url_is_named() {
        let c = parse(json!({"image_url": "https://example.com/a.png"})).unwrap();
        assert_eq!(c.kind(), MessageKind::Image);
        assert_eq!(
            parse(json!({"text": "x"})).unwrap().kind(),
            MessageKind::Text
        );
        assert!(refused(json!({"image_url": "ftp://example.com/a.png"})).contains("image_url"));
        assert!(refused(json!({"image_url": 3})).contains("image_url"));
    }

    #[test]
    fn variables_are_short_named_scalars_within_their_limits() {
        let c = parse(json!({"text": "x", "variables": {"a_1": "v", "n": 2, "b": true}})).unwrap();
        assert_eq!(c.variables.len(), 3);
        for bad in [
            json!({"bad name": "v"}),
            json!({"a": {"nested": 1}}),
            json!({"a": "v".repeat(VARIABLE_VALUE_MAX_CHARS + 1)}),
            json!(
                (0..=MAX_VARIABLES)
                    .map(|i| (format!("v{i}"), json!(i)))
                    .collect::<Map<_, _>>()
            ),
            json!(["a"]),
        ] {
            assert!(
                refused(json!({"text": "x", "variables": bad})).starts_with("variables must be"),
                "{bad}"
            );
        }
        let e = variables(Some(&json!({"a": "x\u{202e}y"})), "recipients[2].variables");
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("recipients[2].variables.a")
        );
    }

    #[test]
    fn a_placeholder_nobody_fills_is_refused_by_name() {
        let c = parse(json!({"text": "Hi {name}, {offer} in {city}", "variables": {"offer": "1"}}))
            .unwrap();
        assert_eq!(c.unknown_placeholders(&[]), ["city"]);
        assert!(c.refuse_unknown(&["city"], None).is_ok());
        assert_eq!(
            c.refuse_unknown(&[], Some("recipients[1]"))
                .unwrap_err()
                .to_string(),
            "text uses {city} with no value for recipients[1]: give it in variables"
        );
    }

    #[test]
    fn a_dry_run_previews_the_filled_text_and_reports_what_a_send_would_refuse() {
        let c = parse(json!({"text": "Hello {name} {x}"})).unwrap();
        let run = DryRun::check(&c, Some((None, "+966501234567")), None);
        assert_eq!(run.variables, ["name", "x"]);
        assert_eq!(run.errors.len(), 1, "{run:?}");
        assert!(run.errors[0].contains("{x}"));
        assert_eq!(run.warnings.len(), 1, "a bare number has no name: {run:?}");
        assert_eq!(run.preview.as_deref(), Some("Hello  {x}"));

        let long = format!("{{v}}{}", "x".repeat(MAX_TEXT_CHARS - 3));
        let c = parse(json!({"text": long, "variables": {"v": "too long now"}})).unwrap();
        let run = DryRun::check(&c, None, Some("image_url cannot be used: 404".into()));
        assert_eq!(run.errors.len(), 2, "{run:?}");
        assert!(run.errors[0].starts_with("image_url"), "{run:?}");
        assert!(
            run.errors[1].contains("once its variables are filled"),
            "{run:?}"
        );
    }
}
