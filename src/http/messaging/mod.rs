//! Messaging: sends are queued in the outbox (answered at once, 202) and go out at each
//! number's pace; logs, stats, retry, dry-run checks, an image URL probe and templates.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub mod dto;

use dto::MessageFilterQuery;

use super::extract::{Body, Params, Query, pagination_json, pair_from};
use super::groups::recent_since;
use super::openapi::*;
use super::{AppState, envelope};
use crate::auth::Caller;
use crate::clock::rfc3339_ms;
use crate::domain::text::caller_name;
use crate::domain::{GroupId, Pair, PhoneNumber, SessionStatus, parse_positive_str};
use crate::http::error::{AppError, AppResult};
use crate::messaging::image::{self, ImageError};
use crate::messaging::pacing::DAY_MS;
use crate::messaging::templates::{self, RECIPIENT_VARIABLES, Recipient};
use crate::messaging::{MAX_TEXT_CHARS, new_message_id};
use crate::store::{
    ContactFilter, ContactRecord, JobKind, JobRecord, MessageFilter, MessageKind, MessageRecord,
    MessageStatus, NewMessage, RetryOutcome,
};

pub const MAX_BULK_RECIPIENTS: usize = 100;
pub const MAX_VARIABLES: usize = 50;
pub const VARIABLE_VALUE_MAX_CHARS: usize = 1_000;
/// A bulk send's own delay between messages may slow the pace down to this, not past it.
pub const MAX_BULK_DELAY_SECONDS: f64 = 3_600.0;
/// Members read per query when a group send is queued.
const GROUP_CHUNK: i64 = 5_000;

// ----- Shared checks -----

/// The pair's session if messages may be queued for it: linked, even if reconnecting. A
/// session that was never linked, was unlinked, or stopped with an error cannot send.
async fn sendable(st: &AppState, pair: Pair) -> AppResult<()> {
    let snap = st.manager.snapshot(pair).await?.ok_or_else(|| {
        AppError::NotFound("No WhatsApp session found. Please initialize a session first.".into())
    })?;
    let status = snap.status();
    let linked = snap.record.phone_number.is_some();
    let ok = match status {
        SessionStatus::Ready
        | SessionStatus::FetchingContacts
        | SessionStatus::Disconnected
        | SessionStatus::Authenticated => true,
        SessionStatus::Initializing => linked,
        _ => false,
    };
    if !ok {
        return Err(AppError::BadRequest(format!(
            "Session is not ready to send messages. Current status: {status}. Please wait for \
             the session to be ready, or link it again with /api/whatsapp/init."
        )));
    }
    if status.is_ready() && !snap.client_alive() {
        return Err(AppError::Unavailable(
            "WhatsApp client is not available. Please restart the session and try again.".into(),
        ));
    }
    Ok(())
}

/// What to send, as the request gave it, checked.
struct Content {
    text: Option<String>,
    image_url: Option<String>,
    template_id: Option<String>,
    variables: Map<String, Value>,
}

impl Content {
    fn kind(&self) -> MessageKind {
        if self.image_url.is_some() {
            MessageKind::Image
        } else {
            MessageKind::Text
        }
    }
}

#[derive(Deserialize, Default)]
pub struct ContentFields {
    #[serde(default)]
    text: Option<Value>,
    /// The earlier service's name for `text`.
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    image_url: Option<Value>,
    #[serde(default)]
    template_id: Option<Value>,
    #[serde(default)]
    variables: Option<Value>,
}

fn text_field(raw: Option<&Value>, field: &str) -> AppResult<Option<String>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(AppError::BadRequest(format!("{field} must not be empty")))
        }
        Some(Value::String(s)) if s.chars().count() <= MAX_TEXT_CHARS => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(AppError::BadRequest(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters"
        ))),
        Some(_) => Err(AppError::BadRequest(format!("{field} must be a string"))),
    }
}

/// `field` is where the object sits in the request (`variables`, `recipients[3].variables`).
fn variables(raw: Option<&Value>, field: &str) -> AppResult<Map<String, Value>> {
    let invalid = || {
        AppError::BadRequest(format!(
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
                    && k.len() <= 50
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                let value = match v {
                    Value::String(s)
                        if name_ok && s.chars().count() <= VARIABLE_VALUE_MAX_CHARS =>
                    {
                        Value::String(caller_name(&format!("{field}.{k}"), s)?)
                    }
                    Value::Number(_) | Value::Bool(_) if name_ok => v.clone(),
                    _ => return Err(invalid()),
                };
                out.insert(k.clone(), value);
            }
            Ok(out)
        }
        Some(_) => Err(invalid()),
    }
}

/// Checks the content fields; `text` (or `template_id`) or `image_url` is required.
fn content(f: &ContentFields) -> AppResult<Content> {
    let text = text_field(f.text.as_ref(), "text")?;
    let message = text_field(f.message.as_ref(), "message")?;
    if text.is_some() && message.is_some() {
        return Err(AppError::BadRequest(
            "Give text or message (the same field), not both".into(),
        ));
    }
    let mut text = text.or(message);
    let template_id = match &f.template_id {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => match templates::find(id.trim()) {
            Some(t) => Some(t),
            None => {
                return Err(AppError::BadRequest(format!(
                    "template_id {id:?} is not a template; GET /api/whatsapp/templates lists them"
                )));
            }
        },
        Some(_) => return Err(AppError::BadRequest("template_id must be a string".into())),
    };
    if let Some(t) = template_id {
        if text.is_some() {
            return Err(AppError::BadRequest(
                "Give text or template_id, not both".into(),
            ));
        }
        text = Some(t.text.to_owned());
    }
    let image_url = match &f.image_url {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(image::check_url(u).map_err(bad_image)?.to_string()),
        Some(_) => return Err(AppError::BadRequest(ImageError::InvalidUrl.to_string())),
    };
    if text.is_none() && image_url.is_none() {
        return Err(AppError::BadRequest(
            "text is required (or template_id, or an image_url)".into(),
        ));
    }
    Ok(Content {
        text,
        image_url,
        template_id: template_id.map(|t| t.id.to_owned()),
        variables: variables(f.variables.as_ref(), "variables")?,
    })
}

fn bad_image(e: ImageError) -> AppError {
    match e {
        ImageError::InvalidUrl | ImageError::Refused(_) => AppError::BadRequest(e.to_string()),
        other => AppError::BadRequest(format!("image_url cannot be used: {other}")),
    }
}

/// Placeholders that no recipient has and the request gives no value for.
fn unknown_placeholders(c: &Content, extra_known: &[&str]) -> Vec<String> {
    c.text
        .as_deref()
        .map(templates::placeholders)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            !RECIPIENT_VARIABLES.contains(&p.as_str())
                && !c.variables.contains_key(p)
                && !extra_known.contains(&p.as_str())
        })
        .collect()
}

fn refuse_unknown(unknown: &[String]) -> AppResult<()> {
    if unknown.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = unknown.iter().map(|u| format!("{{{u}}}")).collect();
    Err(AppError::BadRequest(format!(
        "text uses {} with no value: give it in variables",
        names.join(", ")
    )))
}

/// Downloads the image once at request time, so a URL that cannot work is refused now
/// rather than failing every message later.
async fn probe_image(st: &AppState, c: &Content) -> AppResult<()> {
    if let Some(url) = &c.image_url {
        st.outbox.images().fetch(url).await.map_err(bad_image)?;
    }
    Ok(())
}

fn new_message(
    c: &Content,
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
    let body = c
        .text
        .as_deref()
        .map(|t| templates::fill(t, &recipient, variables, optional).0);
    NewMessage {
        contact_id: contact.map(|c| c.id),
        recipient: phone.to_owned(),
        recipient_name: recipient.name.map(str::to_owned),
        kind: c.kind(),
        body,
        image_url: c.image_url.clone(),
        template_id: c.template_id.clone(),
        wa_message_id: new_message_id(),
        min_gap_ms,
    }
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

pub fn message_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "job_id": m.job_id,
        "contact_id": m.contact_id,
        "recipient": m.recipient,
        "recipient_name": m.recipient_name,
        "type": m.kind.as_str(),
        "text": m.body,
        "image_url": m.image_url,
        "template_id": m.template_id,
        "status": m.status.as_str(),
        "whatsapp_message_id": (m.status == MessageStatus::Sent).then_some(&m.wa_message_id),
        "error": m.error,
        "attempts": m.attempts,
        "created_at": rfc3339_ms(m.created_at),
        "updated_at": rfc3339_ms(m.updated_at),
        "sent_at": m.sent_at.and_then(rfc3339_ms),
        "failed_at": m.failed_at.and_then(rfc3339_ms),
    })
}

fn job_json(j: &JobRecord) -> Value {
    let done = j.counts.sent + j.counts.failed;
    json!({
        "job_id": j.id,
        "type": j.kind.as_str(),
        "group_id": j.group_id,
        "total": j.total,
        "queued": j.counts.queued,
        "sending": j.counts.sending,
        "sent": j.counts.sent,
        "failed": j.counts.failed,
        "progress": if j.total > 0 { done * 100 / j.total } else { 100 },
        "completed": done >= j.total,
        "created_at": rfc3339_ms(j.created_at),
    })
}

/// The WhatsApp ids of queued messages, in their order: what the earlier service's clients
/// keep to match later events (`message.sent` carries it as `whatsapp_message_id`).
fn whatsapp_ids(queued: &[MessageRecord]) -> Vec<&str> {
    queued.iter().map(|m| m.wa_message_id.as_str()).collect()
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

// ----- Routes -----

#[derive(Deserialize)]
pub struct SendBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default)]
    contact_id: Option<Value>,
    #[serde(default)]
    phone_number: Option<Value>,
    /// Another name for `phone_number`.
    #[serde(default)]
    to: Option<Value>,
    #[serde(flatten)]
    content: ContentFields,
}

fn single_target(b: &SendBody) -> AppResult<Target> {
    let number_raw = match (&b.phone_number, &b.to) {
        (Some(p), None) | (None, Some(p)) if !p.is_null() => Some(p),
        (Some(p), Some(t)) if !p.is_null() || !t.is_null() => {
            return Err(AppError::BadRequest(
                "Give phone_number or to (the same field), not both".into(),
            ));
        }
        _ => None,
    };
    let contact = b.contact_id.as_ref().filter(|c| !c.is_null());
    match (contact, number_raw) {
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

/// # `POST /api/whatsapp/send-message`
#[utoipa::path(
    post,
    path = "/send-message",
    operation_id = "send_message",
    tag = tags::MESSAGING,
    summary = "Queue a message to one contact or number",
    description = "The message is stored first and sent by the number's worker at its pace \
        (see `GET /messages/stats`), only while the session is `ready`; it survives restarts. \
        `text` (or `template_id`) may use `{name}`-style variables. An `image_url` is \
        downloaded now to check it (http/https, `image/*`, at most 10 MB, 30 s) and again \
        when sent.",
    request_body = SendMessageRequest,
    responses(
        (status = 202, description = "Queued", body = QueuedMessageResponse),
        (status = 400, description = "A bad field (the message names it), an image URL that cannot be used, or a session that cannot send", body = ErrorEnvelope),
        (status = 404, description = "No session for the pair, or no such contact", body = ErrorEnvelope),
        (status = 503, description = "The session's WhatsApp client is gone; restart the session", body = ErrorEnvelope),
    )
)]
pub async fn send_message(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<SendBody>,
) -> AppResult<Response> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let target = single_target(&b)?;
    let c = content(&b.content)?;
    sendable(&st, pair).await?;
    let (contact, phone) = resolve(&st, pair, &target).await?;
    let fields: Vec<&str> = contact
        .as_ref()
        .map(|c| c.custom_fields.keys().map(String::as_str).collect())
        .unwrap_or_default();
    refuse_unknown(&unknown_placeholders(&c, &fields))?;
    probe_image(&st, &c).await?;
    let msg = new_message(&c, contact.as_ref(), &phone, None, &c.variables, &[], 0);
    let (_, queued) = st.outbox.enqueue(pair, None, &[msg]).await?;
    let stored = queued
        .first()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the message was not queued")))?;
    let mut data = message_json(stored);
    // The earlier service's clients read the WhatsApp id from the answer; it is chosen now,
    // so it is known before the message goes out.
    data["message_id"] = json!(stored.wa_message_id);
    Ok(envelope::with_status(
        StatusCode::ACCEPTED,
        data,
        "Message queued",
    ))
}

#[derive(Deserialize)]
pub struct GroupSendBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(flatten)]
    content: ContentFields,
}

/// # `POST /api/whatsapp/groups/{group_id}/send-message`
#[utoipa::path(
    post,
    path = "/groups/{group_id}/send-message",
    operation_id = "send_group_message",
    tag = tags::MESSAGING,
    summary = "Queue a message to every member of a group, as a job",
    description = "Answers at once with a `job_id`; `GET /messages/jobs/{job_id}` shows its \
        progress. Variables are filled per member (its name, push name, number, custom fields).",
    params(GroupPath),
    request_body = GroupSendRequest,
    responses(
        (status = 202, description = "Queued as a job", body = GroupJobResponse),
        (status = 400, description = "A bad field, an empty group, or a session that cannot send", body = ErrorEnvelope),
        (status = 404, description = "No session for the pair, or no such group", body = ErrorEnvelope),
        (status = 503, description = "The session's WhatsApp client is gone; restart the session", body = ErrorEnvelope),
    )
)]
pub async fn send_group(
    State(st): State<AppState>,
    caller: Caller,
    Path(group_id): Path<String>,
    Body(b): Body<GroupSendBody>,
) -> AppResult<Response> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let c = content(&b.content)?;
    let since = recent_since(&st);
    let group = st
        .store
        .group(pair, group_id, since)
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))?;
    sendable(&st, pair).await?;
    let mut members = Vec::new();
    let mut after = 0;
    loop {
        let chunk = st
            .store
            .contacts_after(
                pair,
                Some(&group),
                &ContactFilter::default(),
                since,
                after,
                GROUP_CHUNK,
            )
            .await?;
        let done = (chunk.len() as i64) < GROUP_CHUNK;
        after = chunk.last().map_or(after, |c| c.id);
        members.extend(chunk);
        if done {
            break;
        }
    }
    if members.is_empty() {
        return Err(AppError::BadRequest(
            "The group has no contacts to send to".into(),
        ));
    }
    // A custom field some member has counts as known; the others get it empty.
    let fields: std::collections::BTreeSet<&str> = members
        .iter()
        .flat_map(|m| m.custom_fields.keys().map(String::as_str))
        .collect();
    let fields: Vec<&str> = fields.into_iter().collect();
    refuse_unknown(&unknown_placeholders(&c, &fields))?;
    probe_image(&st, &c).await?;
    let messages: Vec<NewMessage> = members
        .iter()
        .map(|m| new_message(&c, Some(m), &m.phone_number, None, &c.variables, &fields, 0))
        .collect();
    let (job_id, queued) = st
        .outbox
        .enqueue(pair, Some((JobKind::Group, Some(group.id))), &messages)
        .await?;
    let job = queued_job(&st, pair, job_id).await?;
    let mut data = job_json(&job);
    data["message_ids"] = json!(whatsapp_ids(&queued));
    Ok(envelope::with_status(
        StatusCode::ACCEPTED,
        data,
        &format!("Message to {} contacts queued", messages.len()),
    ))
}

#[derive(Deserialize)]
pub struct BulkBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default)]
    recipients: Option<Value>,
    /// The earlier service's name for `recipients`.
    #[serde(default)]
    contacts: Option<Value>,
    #[serde(default)]
    delay_seconds: Option<Value>,
    /// The earlier service's delay, in milliseconds.
    #[serde(default)]
    delay: Option<Value>,
    #[serde(flatten)]
    content: ContentFields,
}

struct BulkRecipient {
    target: Target,
    name: Option<String>,
    variables: Map<String, Value>,
}

/// `recipients`, or the earlier service's `contacts`: the same list under another name.
fn bulk_recipients(b: &BulkBody) -> AppResult<Vec<BulkRecipient>> {
    let (list, raw) = match (present(&b.recipients), present(&b.contacts)) {
        (Some(_), Some(_)) => {
            return Err(AppError::BadRequest(
                "Give recipients or contacts (the same field), not both".into(),
            ));
        }
        (None, Some(c)) => ("contacts", c),
        (Some(r), None) => ("recipients", r),
        (None, None) => return Err(AppError::BadRequest("recipients is required".into())),
    };
    let items = match raw {
        Value::Array(items) if !items.is_empty() && items.len() <= MAX_BULK_RECIPIENTS => items,
        _ => {
            return Err(AppError::BadRequest(format!(
                "{list} must be a list of 1 to {MAX_BULK_RECIPIENTS} phone numbers, contact \
                 ids, or objects with phone_number or contact_id"
            )));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("{list}[{i}]");
            match item {
                Value::String(p) => Ok(BulkRecipient {
                    target: Target::Number(number(p, &field)?),
                    name: None,
                    variables: Map::new(),
                }),
                Value::Number(_) => Ok(BulkRecipient {
                    target: Target::Contact(contact_id(item, &field)?),
                    name: None,
                    variables: Map::new(),
                }),
                Value::Object(o) => {
                    let target = match (
                        o.get("contact_id").filter(|v| !v.is_null()),
                        o.get("phone_number").filter(|v| !v.is_null()),
                    ) {
                        (Some(c), None) => {
                            Target::Contact(contact_id(c, &format!("{field}.contact_id"))?)
                        }
                        (None, Some(Value::String(p))) => {
                            Target::Number(number(p, &format!("{field}.phone_number"))?)
                        }
                        _ => {
                            return Err(AppError::BadRequest(format!(
                                "{field} needs exactly one of contact_id or phone_number"
                            )));
                        }
                    };
                    // The recipient's `{name}` in the text: a template variable like the rest.
                    let name = match o.get("name") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(n)) if n.chars().count() <= 100 => {
                            Some(caller_name(&format!("{field}.name"), n)?)
                        }
                        Some(_) => {
                            return Err(AppError::BadRequest(format!(
                                "{field}.name must be a string of at most 100 characters"
                            )));
                        }
                    };
                    let variables = variables(o.get("variables"), &format!("{field}.variables"))?;
                    Ok(BulkRecipient {
                        target,
                        name,
                        variables,
                    })
                }
                _ => Err(AppError::BadRequest(format!(
                    "{field} must be a phone number, a contact id, or an object with \
                     phone_number or contact_id"
                ))),
            }
        })
        .collect()
}

/// A field that was given: not absent, not `null`.
fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !v.is_null())
}

/// A non-negative decimal number, as JSON or, as forms send it, in digits (`"1.5"`). Only
/// plain digits: no sign, exponent, `inf` or `NaN`, whatever Rust's float parser takes.
fn decimal(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
            let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            if digits(int) && digits(frac) {
                s.parse().ok()
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The job's own gap between messages: `delay_seconds`, or the earlier service's `delay` in
/// milliseconds, with the same limit.
fn bulk_delay_ms(b: &BulkBody) -> AppResult<i64> {
    let max_ms = MAX_BULK_DELAY_SECONDS * 1000.0;
    match (present(&b.delay_seconds), present(&b.delay)) {
        (Some(_), Some(_)) => Err(AppError::BadRequest(
            "Give delay_seconds or delay (in milliseconds), not both".into(),
        )),
        (Some(v), None) => match decimal(v) {
            Some(d) if (0.0..=MAX_BULK_DELAY_SECONDS).contains(&d) => Ok((d * 1000.0) as i64),
            _ => Err(AppError::BadRequest(format!(
                "delay_seconds must be a number from 0 to {MAX_BULK_DELAY_SECONDS}"
            ))),
        },
        (None, Some(v)) => match decimal(v) {
            Some(ms) if (0.0..=max_ms).contains(&ms) => Ok(ms as i64),
            _ => Err(AppError::BadRequest(format!(
                "delay must be a number of milliseconds from 0 to {max_ms}"
            ))),
        },
        (None, None) => Ok(0),
    }
}

/// # `POST /api/whatsapp/send-bulk-messages`
#[utoipa::path(
    post,
    path = "/send-bulk-messages",
    operation_id = "send_bulk_messages",
    tag = tags::MESSAGING,
    summary = "Queue one message to 1..100 recipients, as a job",
    description = "Recipients are numbers, contact ids, or objects `{phone_number | contact_id, \
        name?, variables?}`. The same number twice gets one message. `delay_seconds` may slow \
        this job below the number's pace, never speed it up. Nothing is queued when any \
        recipient is invalid.",
    request_body = BulkSendRequest,
    responses(
        (status = 202, description = "Queued as a job", body = BulkJobResponse),
        (status = 400, description = "A bad field or recipient (the message names it), or a session that cannot send", body = ErrorEnvelope),
        (status = 404, description = "No session for the pair, or a contact id that is not the pair's", body = ErrorEnvelope),
        (status = 503, description = "The session's WhatsApp client is gone; restart the session", body = ErrorEnvelope),
    )
)]
pub async fn send_bulk(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<BulkBody>,
) -> AppResult<Response> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let recipients = bulk_recipients(&b)?;
    let c = content(&b.content)?;
    let min_gap_ms = bulk_delay_ms(&b)?;
    sendable(&st, pair).await?;
    let mut resolved = Vec::with_capacity(recipients.len());
    for r in &recipients {
        let (contact, phone) = resolve(&st, pair, &r.target).await?;
        resolved.push((contact, phone));
    }
    let fields: Vec<&str> = resolved
        .iter()
        .filter_map(|(c, _)| c.as_ref())
        .flat_map(|c| c.custom_fields.keys().map(String::as_str))
        .collect();
    for (i, r) in recipients.iter().enumerate() {
        let mut known: Vec<&str> = r.variables.keys().map(String::as_str).collect();
        known.extend(fields.iter().copied());
        let unknown = unknown_placeholders(&c, &known);
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|u| format!("{{{u}}}")).collect();
            return Err(AppError::BadRequest(format!(
                "text uses {} with no value for recipients[{i}]: give it in variables",
                names.join(", ")
            )));
        }
    }
    probe_image(&st, &c).await?;
    let mut seen = std::collections::HashSet::new();
    let mut messages = Vec::with_capacity(recipients.len());
    for (r, (contact, phone)) in recipients.iter().zip(&resolved) {
        if !seen.insert(phone.clone()) {
            continue;
        }
        let mut vars = c.variables.clone();
        vars.extend(r.variables.clone());
        messages.push(new_message(
            &c,
            contact.as_ref(),
            phone,
            r.name.as_deref(),
            &vars,
            &fields,
            min_gap_ms,
        ));
    }
    let skipped = recipients.len() - messages.len();
    let (job_id, queued) = st
        .outbox
        .enqueue(pair, Some((JobKind::Bulk, None)), &messages)
        .await?;
    let job = queued_job(&st, pair, job_id).await?;
    let mut data = job_json(&job);
    data["message_ids"] = json!(whatsapp_ids(&queued));
    data["duplicates_skipped"] = json!(skipped);
    Ok(envelope::with_status(
        StatusCode::ACCEPTED,
        data,
        &format!("{} messages queued", messages.len()),
    ))
}

/// # `GET /api/whatsapp/messages/jobs/{job_id}`
#[utoipa::path(
    get,
    path = "/messages/jobs/{job_id}",
    operation_id = "message_job",
    tag = tags::MESSAGING,
    summary = "Progress of a group or bulk send",
    params(JobPath, PairQuery),
    responses(
        (status = 200, description = "The job's counts", body = JobResponse),
        (status = 400, description = "Bad `job_id`, `user_id` or `place_id`", body = ErrorEnvelope),
        (status = 404, description = "No such job for this pair", body = ErrorEnvelope),
    )
)]
pub async fn job(
    State(st): State<AppState>,
    Path(job_id): Path<String>,
    q: Query,
) -> AppResult<Response> {
    let job_id = parse_positive_str("job_id", &job_id)?;
    let pair = q.pair()?;
    let job = st
        .outbox
        .store()
        .job(pair, job_id)
        .await?
        .ok_or_else(|| AppError::NotFound("Job not found".into()))?;
    Ok(envelope::ok(job_json(&job), "Job retrieved"))
}

/// `date_from` / `date_to`: RFC 3339, or a day (`2026-11-25`, the whole day for `date_to`).
fn date_param(given: Option<(&str, &str)>, end_of_day: bool) -> AppResult<Option<i64>> {
    let Some((field, raw)) = given else {
        return Ok(None);
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.timestamp_millis()));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        let ms = t.and_utc().timestamp_millis();
        return Ok(Some(if end_of_day { ms + DAY_MS } else { ms }));
    }
    Err(AppError::BadRequest(format!(
        "{field} must be a date (2026-11-25) or an RFC 3339 time (2026-11-25T10:00:00Z)"
    )))
}

/// A filter given under our name or the earlier service's, with the name it came under (the
/// one an error about its value names). Both names with different values is refused rather
/// than one silently winning.
fn either<'a>(
    (name, ours): (&'static str, &'a Option<String>),
    (alias, theirs): (&'static str, &'a Option<String>),
) -> AppResult<Option<(&'static str, &'a str)>> {
    match (ours, theirs) {
        (Some(a), Some(b)) if a != b => Err(AppError::BadRequest(format!(
            "{name} and {alias} are the same parameter: give one, or the same value in both"
        ))),
        (Some(v), _) => Ok(Some((name, v))),
        (None, Some(v)) => Ok(Some((alias, v))),
        (None, None) => Ok(None),
    }
}

fn message_filter(q: &MessageFilterQuery) -> AppResult<MessageFilter> {
    let status = match q.status.as_deref() {
        None => None,
        // The earlier service's name for a message not sent yet.
        Some("pending") => Some(MessageStatus::Queued),
        Some(s) => Some(MessageStatus::parse(s).ok_or_else(|| {
            AppError::BadRequest("status must be one of: queued, sending, sent, failed".into())
        })?),
    };
    let kind =
        match either(("type", &q.r#type), ("message_type", &q.message_type))? {
            None => None,
            Some((field, s)) => Some(MessageKind::parse(s).ok_or_else(|| {
                AppError::BadRequest(format!("{field} must be one of: text, image"))
            })?),
        };
    let recipient = match either(
        ("recipient", &q.recipient),
        ("recipient_number", &q.recipient_number),
    )? {
        None => None,
        Some((field, r)) => {
            let digits: String = r.chars().filter(char::is_ascii_digit).collect();
            let allowed = r
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
            if digits.is_empty() || digits.len() > 17 || !allowed {
                return Err(AppError::BadRequest(format!(
                    "{field} must be a phone number or a part of one (digits)"
                )));
            }
            Some(digits)
        }
    };
    let job_id = match &q.job_id {
        None => None,
        Some(j) => Some(parse_positive_str("job_id", j)?),
    };
    let group_id = match &q.group_id {
        None => None,
        Some(g) => Some(parse_positive_str(GroupId::FIELD, g)?),
    };
    let from_ms = date_param(
        either(("date_from", &q.date_from), ("from_date", &q.from_date))?,
        false,
    )?;
    let to_ms = date_param(
        either(("date_to", &q.date_to), ("to_date", &q.to_date))?,
        true,
    )?;
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f > t
    {
        return Err(AppError::BadRequest(
            "date_from must not be after date_to".into(),
        ));
    }
    Ok(MessageFilter {
        status,
        kind,
        from_ms,
        to_ms,
        recipient,
        job_id,
        group_id,
    })
}

/// # `GET /api/whatsapp/messages`
#[utoipa::path(
    get,
    path = "/messages",
    operation_id = "list_messages",
    tag = tags::MESSAGING,
    summary = "The pair's message log, newest first",
    params(PairQuery, PageQuery, MessageFilterQuery),
    responses(
        (status = 200, description = "One page of messages", body = MessageListResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn list(
    State(st): State<AppState>,
    q: Query,
    Params(f): Params<MessageFilterQuery>,
) -> AppResult<Response> {
    let pair = q.pair()?;
    let (page, limit) = q.pagination()?;
    let filter = message_filter(&f)?;
    let (messages, total) = st
        .outbox
        .store()
        .list_messages(pair, &filter, page, limit)
        .await?;
    Ok(envelope::ok(
        json!({
            "messages": messages.iter().map(message_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
        "Messages retrieved",
    ))
}

/// # `GET /api/whatsapp/messages/stats`
#[utoipa::path(
    get,
    path = "/messages/stats",
    operation_id = "message_stats",
    tag = tags::MESSAGING,
    summary = "Counts of the pair's messages, and where it stands against its pace and cap",
    params(PairQuery, MessageFilterQuery),
    responses(
        (status = 200, description = "The counts", body = MessageStatsResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn stats(
    State(st): State<AppState>,
    q: Query,
    Params(f): Params<MessageFilterQuery>,
) -> AppResult<Response> {
    let pair = q.pair()?;
    let filter = message_filter(&f)?;
    let store = st.outbox.store();
    let counts = store.message_counts(pair, &filter).await?;
    let now = st.clock.now_ms();
    let (sent_24h, _) = store.sent_since(pair, now - DAY_MS).await?;
    let pacing = st.outbox.pacing();
    let cap = i64::from(pacing.daily_cap);
    Ok(envelope::ok(
        json!({
            "total": counts.total(),
            "queued": counts.queued,
            "sending": counts.sending,
            "sent": counts.sent,
            "failed": counts.failed,
            "by_type": { "text": counts.text, "image": counts.image },
            "last_24_hours": {
                "sent": sent_24h,
                "daily_cap": cap,
                "remaining": (cap - sent_24h).max(0),
            },
            "pacing": {
                "interval_seconds": pacing.interval.as_secs_f64(),
                "jitter_seconds": pacing.jitter.as_secs_f64(),
                "daily_cap": cap,
            },
        }),
        "Message statistics retrieved",
    ))
}

/// # `POST /api/whatsapp/messages/{message_id}/retry`
#[utoipa::path(
    post,
    path = "/messages/{message_id}/retry",
    operation_id = "retry_message",
    tag = tags::MESSAGING,
    summary = "Send a failed message again",
    description = "It goes back to the queue under the same WhatsApp id, so a message that did \
        reach the recipient is not shown twice.",
    params(MessagePath),
    request_body = PairRequest,
    responses(
        (status = 200, description = "Queued again", body = MessageResponse),
        (status = 400, description = "Bad `message_id`, `user_id` or `place_id`, or the message has not failed", body = ErrorEnvelope),
        (status = 404, description = "No such message for this pair", body = ErrorEnvelope),
    )
)]
pub async fn retry(
    State(st): State<AppState>,
    caller: Caller,
    Path(message_id): Path<String>,
    Body(b): Body<super::extract::PairBody>,
) -> AppResult<Response> {
    let id = parse_positive_str("message_id", &message_id)?;
    let pair = b.pair(caller)?;
    match st
        .outbox
        .store()
        .retry_message(pair, id, st.clock.now_ms())
        .await?
    {
        RetryOutcome::NotFound => Err(AppError::NotFound("Message not found".into())),
        RetryOutcome::NotFailed(s) => Err(AppError::BadRequest(format!(
            "Only failed messages can be retried. Current status: {}",
            s.as_str()
        ))),
        RetryOutcome::Queued(m) => {
            st.outbox.wake(pair);
            Ok(envelope::ok(message_json(&m), "Message queued again"))
        }
    }
}

/// # `POST /api/whatsapp/validate-message`
#[utoipa::path(
    post,
    path = "/validate-message",
    operation_id = "validate_message",
    tag = tags::MESSAGING,
    summary = "Check a message without sending it",
    description = "Runs every check a send runs (content, variables, recipient, image URL) and \
        shows the text as the recipient would get it. Problems are listed in `errors`, with \
        `valid: false`; nothing is queued. An `image_url` the server may not fetch at all (a \
        private or local address, credentials in the URL) is refused with 400 instead, \
        before any connection.",
    request_body = ValidateMessageRequest,
    responses(
        (status = 200, description = "The checks' result", body = ValidationResponse),
        (status = 400, description = "Bad `user_id` or `place_id`, or an `image_url` on a private or local address", body = ErrorEnvelope),
    )
)]
pub async fn validate(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<SendBody>,
) -> AppResult<Response> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let c = match content(&b.content) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let has_target = b.contact_id.as_ref().is_some_and(|v| !v.is_null())
        || b.phone_number.as_ref().is_some_and(|v| !v.is_null())
        || b.to.as_ref().is_some_and(|v| !v.is_null());
    let mut resolved: Option<(Option<ContactRecord>, String)> = None;
    if has_target {
        match single_target(&b) {
            Ok(t) => match resolve(&st, pair, &t).await {
                Ok(r) => resolved = Some(r),
                Err(AppError::Internal(e)) => return Err(AppError::Internal(e)),
                Err(e) => errors.push(e.to_string()),
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Err(e) = sendable(&st, pair).await {
        match e {
            AppError::Internal(e) => return Err(AppError::Internal(e)),
            other => warnings.push(format!("Not sendable now: {other}")),
        }
    }
    let mut preview = None;
    let mut used = Vec::new();
    let mut image_info = Value::Null;
    if let Some(c) = &c {
        used = c
            .text
            .as_deref()
            .map(templates::placeholders)
            .unwrap_or_default();
        let fields: Vec<&str> = resolved
            .as_ref()
            .and_then(|(c, _)| c.as_ref())
            .map(|c| c.custom_fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if let Err(e) = refuse_unknown(&unknown_placeholders(c, &fields)) {
            errors.push(e.to_string());
        }
        if used.iter().any(|u| u == "name") && resolved.as_ref().is_none_or(|(c, _)| c.is_none()) {
            warnings.push(
                "{name} is filled from the contact's name; a bare number has none, so it \
                 stays empty"
                    .into(),
            );
        }
        if let Some(url) = &c.image_url {
            match st.outbox.images().fetch(url).await {
                Ok(img) => {
                    image_info = json!({"content_type": img.mime, "size_bytes": img.bytes.len()})
                }
                // Not a finding about the message: a URL the server will not fetch at all.
                Err(e @ ImageError::Refused(_)) => return Err(bad_image(e)),
                Err(e) => errors.push(format!("image_url cannot be used: {e}")),
            }
        }
        if let Some(text) = &c.text {
            let (contact, phone) = resolved
                .as_ref()
                .map(|(c, p)| (c.as_ref(), p.as_str()))
                .unwrap_or((None, ""));
            let msg = new_message(c, contact, phone, None, &c.variables, &[], 0);
            let filled = msg.body.unwrap_or_else(|| text.clone());
            if filled.chars().count() > MAX_TEXT_CHARS {
                errors.push(format!(
                    "text is longer than {MAX_TEXT_CHARS} characters once its variables are filled"
                ));
            }
            preview = Some(filled);
        }
    }
    let length = preview.as_ref().map(|p| p.chars().count());
    Ok(envelope::ok(
        json!({
            "valid": errors.is_empty(),
            "errors": errors,
            "warnings": warnings,
            "preview": preview,
            "length": length,
            "max_length": MAX_TEXT_CHARS,
            "type": c.as_ref().map(|c| c.kind().as_str()),
            "variables": used,
            "recipient": resolved.as_ref().map(|(_, p)| p),
            "image": image_info,
        }),
        "Message checked",
    ))
}

#[derive(Deserialize)]
pub struct ImageUrlBody {
    #[serde(default)]
    image_url: Option<Value>,
    /// Another name for `image_url`.
    #[serde(default)]
    url: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
}

/// # `POST /api/whatsapp/test-image-url`
#[utoipa::path(
    post,
    path = "/test-image-url",
    operation_id = "test_image_url",
    tag = tags::MESSAGING,
    summary = "Download an image URL as a send would, and say whether it can be used",
    description = "http/https only, public addresses only (on every redirect too), an \
        `image/*` answer, at most 10 MB, 30 s. A URL that cannot be used answers 200 with \
        `valid: false` and the reason; one on a private or local address, or with credentials, \
        is refused with 400 before any connection.",
    request_body = TestImageRequest,
    responses(
        (status = 200, description = "The probe's result", body = ImageProbeResponse),
        (status = 400, description = "`image_url` missing, not an http(s) URL, or on a private or local address", body = ErrorEnvelope),
    )
)]
pub async fn test_image_url(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<ImageUrlBody>,
) -> AppResult<Response> {
    // The pair is optional here, but when given it must be one the caller may act on.
    if b.user_id.is_some() || b.place_id.is_some() {
        pair_from(caller, &b.user_id, &b.place_id)?;
    }
    let raw = match (&b.image_url, &b.url) {
        (Some(Value::String(u)), None) | (None, Some(Value::String(u))) => u.clone(),
        (None, None) | (Some(Value::Null), None) | (None, Some(Value::Null)) => {
            return Err(AppError::BadRequest("image_url is required".into()));
        }
        _ => return Err(AppError::BadRequest(ImageError::InvalidUrl.to_string())),
    };
    image::check_url(&raw).map_err(bad_image)?;
    let started = std::time::Instant::now();
    let result = match st.outbox.images().fetch(&raw).await {
        // Refused before any connection: nothing about what answers there is told.
        Err(e @ ImageError::Refused(_)) => return Err(bad_image(e)),
        other => other,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let data = match result {
        Ok(img) => json!({
            "valid": true,
            "url": raw,
            "final_url": img.final_url,
            "content_type": img.mime,
            "size_bytes": img.bytes.len(),
            "elapsed_ms": elapsed_ms,
            "error": null,
        }),
        Err(e) => json!({
            "valid": false,
            "url": raw,
            "final_url": null,
            "content_type": null,
            "size_bytes": null,
            "elapsed_ms": elapsed_ms,
            "error": e.to_string(),
        }),
    };
    let message = if data["valid"] == true {
        "The image URL can be used"
    } else {
        "The image URL cannot be used"
    };
    Ok(envelope::ok(data, message))
}

/// # `GET /api/whatsapp/templates`
#[utoipa::path(
    get,
    path = "/templates",
    operation_id = "list_templates",
    tag = tags::MESSAGING,
    summary = "Message templates and the variables they use",
    description = "Send one with `template_id`. `{name}`, `{first_name}`, `{push_name}` and \
        `{phone}` are filled per recipient, as are the contact's custom fields by name; other \
        variables come from the request's `variables`.",
    responses(
        (status = 200, description = "The templates", body = TemplateListResponse),
    )
)]
pub async fn list_templates() -> AppResult<Response> {
    let list: Vec<Value> = templates::TEMPLATES
        .iter()
        .map(|t| {
            json!({
                "id": t.id,
                "name": t.name,
                "language": t.language,
                "text": t.text,
                // The earlier service's name for the text.
                "content": t.text,
                "category": t.category.as_str(),
                "variables": templates::placeholders(t.text),
                "description": t.description,
            })
        })
        .collect();
    Ok(envelope::ok(
        json!({ "templates": list, "recipient_variables": RECIPIENT_VARIABLES }),
        "Templates retrieved",
    ))
}
