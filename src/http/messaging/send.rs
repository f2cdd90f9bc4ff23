//! The sends: one message, a group's members, a list of recipients. Each is checked whole,
//! then queued in one write, and answered at once (202).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::answers::{
    BulkJob, BulkJobResponse, GroupJob, GroupJobResponse, QueuedMessage, QueuedMessageResponse,
};
use super::audience::{
    not_on_whatsapp, opted_out, refuse_everyone_skipped, refuse_opted_out, skip_flag,
};
use super::dto::{
    BulkSendRequest, GroupSendRequest, MAX_BULK_DELAY_SECONDS, MAX_BULK_RECIPIENTS,
    SendMessageRequest,
};
use super::{
    Target, contact_id, field_names, number, present, probe_media, queued_job, resolve, sendable,
    single_target,
};
use crate::auth::Caller;
use crate::domain::{GroupId, parse_positive_str};
use crate::http::AppState;
use crate::http::envelope::ErrorEnvelope;
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{Body, pair_from};
use crate::http::groups::dto::GroupPath;
use crate::http::groups::recent_since;
use crate::http::openapi::tags;
use crate::messaging::content::{self, Content, ContentInput};
use crate::store::{ContactFilter, JobKind, JobSkips, NewJob, NewMessage};

/// Members read per query when a group send is queued.
const GROUP_CHUNK: i64 = 5_000;

impl SendMessageRequest {
    fn content(&self) -> ContentInput<'_> {
        ContentInput {
            text: self.text.as_ref(),
            message: self.message.as_ref(),
            image_url: self.image_url.as_ref(),
            media: self.media.as_ref(),
            template_id: self.template_id.as_ref(),
            variables: self.variables.as_ref(),
        }
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
    Body(b): Body<SendMessageRequest>,
) -> AppResult<(StatusCode, QueuedMessageResponse)> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let target = single_target(&b.contact_id, &b.phone_number, &b.to)?;
    let mut c = Content::parse(b.content())?;
    sendable(&st, pair).await?;
    let (contact, phone) = resolve(&st, pair, &target).await?;
    refuse_opted_out(&st, pair, contact.as_ref(), &phone).await?;
    c.refuse_unknown(&field_names(contact.as_ref()), None)?;
    probe_media(&st, pair, &mut c).await?;
    let msg = c.message_for(contact.as_ref(), &phone, None, &c.variables, &[], 0);
    let (_, queued) = st.outbox.enqueue(pair, None, &[msg]).await?;
    let stored = queued
        .first()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the message was not queued")))?;
    Ok((
        StatusCode::ACCEPTED,
        QueuedMessageResponse::new(QueuedMessage::from(stored), "Message queued"),
    ))
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
    Body(b): Body<GroupSendRequest>,
) -> AppResult<(StatusCode, GroupJobResponse)> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let skip_missing = skip_flag(&b.skip_not_on_whatsapp)?;
    let mut c = Content::parse(ContentInput {
        text: b.text.as_ref(),
        message: b.message.as_ref(),
        image_url: b.image_url.as_ref(),
        media: b.media.as_ref(),
        template_id: b.template_id.as_ref(),
        variables: b.variables.as_ref(),
    })?;
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
    let mut skipped = JobSkips::default();
    let stop = opted_out(
        &st,
        pair,
        members.iter().map(|m| (Some(m), m.phone_number.as_str())),
    )
    .await?;
    let before = members.len();
    members.retain(|m| !stop.contains(&m.phone_number));
    skipped.opted_out = (before - members.len()) as i64;
    if skip_missing && !members.is_empty() {
        let phones: Vec<&str> = members.iter().map(|m| m.phone_number.as_str()).collect();
        let missing = not_on_whatsapp(&st, pair, &phones).await?;
        let before = members.len();
        members.retain(|m| !missing.contains(&m.phone_number));
        skipped.not_on_whatsapp = (before - members.len()) as i64;
    }
    if members.is_empty() {
        refuse_everyone_skipped(skipped, "member of the group")?;
    }
    // A custom field some member has counts as known; the others get it empty.
    let fields = field_names(&members);
    c.refuse_unknown(&fields, None)?;
    probe_media(&st, pair, &mut c).await?;
    let messages: Vec<NewMessage> = members
        .iter()
        .map(|m| c.message_for(Some(m), &m.phone_number, None, &c.variables, &fields, 0))
        .collect();
    let (job_id, queued) = st
        .outbox
        .enqueue(
            pair,
            Some(NewJob {
                skipped,
                ..NewJob::new(JobKind::Group, Some(group.id))
            }),
            &messages,
        )
        .await?;
    let job = queued_job(&st, pair, job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        GroupJobResponse::new(
            GroupJob::new(&job, &queued),
            format!("Message to {} contacts queued", messages.len()),
        ),
    ))
}

struct BulkRecipient {
    target: Target,
    name: Option<String>,
    variables: Map<String, Value>,
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

impl BulkSendRequest {
    fn content(&self) -> ContentInput<'_> {
        ContentInput {
            text: self.text.as_ref(),
            message: self.message.as_ref(),
            image_url: self.image_url.as_ref(),
            media: self.media.as_ref(),
            template_id: self.template_id.as_ref(),
            variables: self.variables.as_ref(),
        }
    }

    /// `recipients`, or the earlier service's `contacts`: the same list under another name.
    fn recipients(&self) -> AppResult<Vec<BulkRecipient>> {
        let (list, raw) = match (present(&self.recipients), present(&self.contacts)) {
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
            .map(|(i, item)| bulk_recipient(item, &format!("{list}[{i}]")))
            .collect()
    }

    /// The job's own gap between messages: `delay_seconds`, or the earlier service's `delay`
    /// in milliseconds, with the same limit.
    fn delay_ms(&self) -> AppResult<i64> {
        let max_ms = MAX_BULK_DELAY_SECONDS * 1000.0;
        match (present(&self.delay_seconds), present(&self.delay)) {
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
}

/// One bulk recipient: a number, a contact id, or an object; `field` is where it sits.
fn bulk_recipient(item: &Value, field: &str) -> AppResult<BulkRecipient> {
    match item {
        Value::String(p) => Ok(BulkRecipient {
            target: Target::Number(number(p, field)?),
            name: None,
            variables: Map::new(),
        }),
        Value::Number(_) => Ok(BulkRecipient {
            target: Target::Contact(contact_id(item, field)?),
            name: None,
            variables: Map::new(),
        }),
        Value::Object(o) => {
            let target = match (
                o.get("contact_id").filter(|v| !v.is_null()),
                o.get("phone_number").filter(|v| !v.is_null()),
            ) {
                (Some(c), None) => Target::Contact(contact_id(c, &format!("{field}.contact_id"))?),
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
            let name = content::recipient_name(o.get("name"), &format!("{field}.name"))?;
            let variables = content::variables(o.get("variables"), &format!("{field}.variables"))?;
            Ok(BulkRecipient {
                target,
                name,
                variables,
            })
        }
        _ => Err(AppError::BadRequest(format!(
            "{field} must be a phone number, a contact id, or an object with phone_number or \
             contact_id"
        ))),
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
    Body(b): Body<BulkSendRequest>,
) -> AppResult<(StatusCode, BulkJobResponse)> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let recipients = b.recipients()?;
    let mut c = Content::parse(b.content())?;
    let min_gap_ms = b.delay_ms()?;
    let skip_missing = skip_flag(&b.skip_not_on_whatsapp)?;
    sendable(&st, pair).await?;
    let mut resolved = Vec::with_capacity(recipients.len());
    for r in &recipients {
        let (contact, phone) = resolve(&st, pair, &r.target).await?;
        resolved.push((contact, phone));
    }
    let fields = field_names(resolved.iter().filter_map(|(c, _)| c.as_ref()));
    let list = if present(&b.recipients).is_some() {
        "recipients"
    } else {
        "contacts"
    };
    for (i, r) in recipients.iter().enumerate() {
        let mut known: Vec<&str> = r.variables.keys().map(String::as_str).collect();
        known.extend(fields.iter().copied());
        c.refuse_unknown(&known, Some(&format!("{list}[{i}]")))?;
    }
    probe_media(&st, pair, &mut c).await?;
    let mut seen = std::collections::HashSet::new();
    let mut messages = Vec::with_capacity(recipients.len());
    for (r, (contact, phone)) in recipients.iter().zip(&resolved) {
        if !seen.insert(phone.clone()) {
            continue;
        }
        let mut vars = c.variables.clone();
        vars.extend(r.variables.clone());
        messages.push(c.message_for(
            contact.as_ref(),
            phone,
            r.name.as_deref(),
            &vars,
            &fields,
            min_gap_ms,
        ));
    }
    let duplicates = recipients.len() - messages.len();
    let stop = opted_out(
        &st,
        pair,
        resolved.iter().map(|(c, p)| (c.as_ref(), p.as_str())),
    )
    .await?;
    let mut opted_out_numbers: Vec<String> = Vec::new();
    messages.retain(|m| {
        let keep = !stop.contains(&m.recipient);
        if !keep {
            opted_out_numbers.push(m.recipient.clone());
        }
        keep
    });
    let mut missing_numbers: Vec<String> = Vec::new();
    if skip_missing && !messages.is_empty() {
        let phones: Vec<&str> = messages.iter().map(|m| m.recipient.as_str()).collect();
        let missing = not_on_whatsapp(&st, pair, &phones).await?;
        messages.retain(|m| {
            let keep = !missing.contains(&m.recipient);
            if !keep {
                missing_numbers.push(m.recipient.clone());
            }
            keep
        });
    }
    let skipped = JobSkips {
        opted_out: opted_out_numbers.len() as i64,
        not_on_whatsapp: missing_numbers.len() as i64,
    };
    if messages.is_empty() {
        refuse_everyone_skipped(skipped, "recipient")?;
    }
    let (job_id, queued) = st
        .outbox
        .enqueue(
            pair,
            Some(NewJob {
                skipped,
                ..NewJob::new(JobKind::Bulk, None)
            }),
            &messages,
        )
        .await?;
    let job = queued_job(&st, pair, job_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        BulkJobResponse::new(
            BulkJob::new(&job, &queued, duplicates).skipped(opted_out_numbers, missing_numbers),
            format!("{} messages queued", messages.len()),
        ),
    ))
}
