//! Messaging: sends are queued in the outbox (answered at once, 202) and go out at each
//! number's pace; logs, stats, retry, dry-run checks, an image URL probe and templates.
//! What a message may say is [`crate::messaging::content`]'s to decide; here are the routes.

pub(crate) mod answers;
mod audience;
mod checks;
pub mod dto;
mod logs;
mod numbers;
mod send;
mod uploads;

pub use checks::*;
pub use logs::*;
pub use numbers::*;
pub use send::*;
pub use uploads::*;

use serde_json::Value;

use super::AppState;
use crate::domain::{Pair, PhoneNumber, parse_positive_str};
use crate::http::error::{AppError, AppResult};
use crate::messaging::content::{Content, ContentError};
use crate::messaging::media::{self, MediaRequest, MediaSource};
use crate::session::SessionError;
use crate::store::{ContactRecord, JobRecord};

/// Every content problem is the caller's: the message names the field.
impl From<ContentError> for AppError {
    fn from(e: ContentError) -> Self {
        match e {
            ContentError::NoUpload(_) => Self::NotFound(e.to_string()),
            e => Self::BadRequest(e.to_string()),
        }
    }
}

/// The pair's session if messages may be queued for it (the rule is the session layer's).
async fn sendable(st: &AppState, pair: Pair) -> AppResult<()> {
    let snap = st
        .manager
        .snapshot(pair)
        .await?
        .ok_or(SessionError::NoSession)?;
    Ok(snap.sendable()?)
}

/// Looks at the message's file once at request time, so a file that cannot work is refused
/// now rather than failing every message later: downloads a URL, reads an upload's record.
async fn probe_media(st: &AppState, pair: Pair, c: &mut Content) -> AppResult<()> {
    if let Some(url) = &c.image_url {
        st.outbox
            .images()
            .fetch(url)
            .await
            .map_err(ContentError::from)?;
    }
    if let Some(m) = &mut c.media {
        look_at_media(st, pair, m).await?;
    }
    Ok(())
}

/// What the file of `media` is: its upload's record (which the pair's user must be allowed
/// to use) or a download of its URL under the kind's rules.
async fn look_at_media(st: &AppState, pair: Pair, m: &mut MediaRequest) -> AppResult<()> {
    match m.source.clone() {
        MediaSource::Upload(id) => {
            let up = st
                .outbox
                .uploads()
                .upload(&id, st.clock.now_ms())
                .await?
                .filter(|u| u.usable_by(pair.user_id))
                .ok_or(ContentError::NoUpload(id))?;
            m.uploaded(&up)?;
        }
        MediaSource::Url(url) => {
            let f = st
                .outbox
                .images()
                .fetch_as(&url, m.kind, media::cap(m.kind))
                .await
                .map_err(ContentError::from)?;
            m.downloaded(&f.mime, f.bytes.len(), &f.final_url);
        }
    }
    Ok(())
}

/// The job just queued, as the answer shows it.
async fn queued_job(st: &AppState, pair: Pair, job_id: Option<i64>) -> AppResult<JobRecord> {
    let id = job_id.ok_or_else(|| AppError::Internal(anyhow::anyhow!("a job was not created")))?;
    st.outbox
        .store()
        .job(pair, id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("queued job {id} not found")))
}

/// A recipient as given: a contact of the pair, or a number.
enum Target {
    Contact(i64),
    Number(PhoneNumber),
}

fn number(raw: &str, field: &str) -> AppResult<PhoneNumber> {
    PhoneNumber::parse_typed(raw).ok_or_else(|| {
        AppError::BadRequest(format!(
            "{field} must be a phone number with its country code, like +966501234567"
        ))
    })
}

/// A contact id as a JSON number or, as forms and some back offices send it, a string of digits.
fn contact_id(raw: &Value, field: &str) -> AppResult<i64> {
    let id = match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_positive_str(field, s).ok(),
        _ => None,
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => Err(AppError::BadRequest(format!(
            "{field} must be a contact id (a positive integer)"
        ))),
    }
}

/// One recipient of `send-message` (or a dry run): `contact_id`, or `phone_number` (or its
/// other name `to`).
fn single_target(
    contact: &Option<Value>,
    phone_number: &Option<Value>,
    to: &Option<Value>,
) -> AppResult<Target> {
    let number_raw = match (phone_number, to) {
        (Some(p), None) | (None, Some(p)) if !p.is_null() => Some(p),
        (Some(p), Some(t)) if !p.is_null() || !t.is_null() => {
            return Err(AppError::BadRequest(
                "Give phone_number or to (the same field), not both".into(),
            ));
        }
        _ => None,
    };
    match (present(contact), number_raw) {
        (Some(_), Some(_)) => Err(AppError::BadRequest(
            "Give contact_id or phone_number, not both".into(),
        )),
        (Some(c), None) => Ok(Target::Contact(contact_id(c, "contact_id")?)),
        (None, Some(Value::String(p))) => Ok(Target::Number(number(p, "phone_number")?)),
        (None, Some(_)) => Err(AppError::BadRequest(
            "phone_number must be a phone number with its country code, like +966501234567".into(),
        )),
        (None, None) => Err(AppError::BadRequest(
            "A recipient is required: contact_id or phone_number".into(),
        )),
    }
}

async fn resolve(
    st: &AppState,
    pair: Pair,
    target: &Target,
) -> AppResult<(Option<ContactRecord>, String)> {
    match target {
        Target::Contact(id) => {
            let c = st.store.contact(pair, *id).await?.ok_or_else(|| {
                AppError::NotFound(format!("Contact {id} not found for this user and place"))
            })?;
            let phone = c.phone_number.clone();
            Ok((Some(c), phone))
        }
        Target::Number(p) => Ok((None, p.as_str().to_owned())),
    }
}

/// A field that was given: not absent, not `null`.
fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

/// The custom-field names of these contacts: a placeholder one of them has counts as known.
fn field_names<'a>(contacts: impl IntoIterator<Item = &'a ContactRecord>) -> Vec<&'a str> {
    let names: std::collections::BTreeSet<&str> = contacts
        .into_iter()
        .flat_map(|c| c.custom_fields.keys().map(String::as_str))
        .collect();
    names.into_iter().collect()
}
