//! The log: messages and their counts, one group or bulk send's progress, and a retry.

use axum::extract::{Path, State};

use super::answers::{
    ByType, Job, JobResponse, LastDay, Message, MessageList, MessageListResponse, MessageResponse,
    MessageStats, MessageStatsResponse, PacingInfo,
};
use super::dto::{JobPath, MessageFilterQuery, MessagePath};
use crate::auth::Caller;
use crate::domain::{GroupId, parse_positive_str};
use crate::http::AppState;
use crate::http::envelope::ErrorEnvelope;
use crate::http::error::{AppError, AppResult};
use crate::http::extract::{Body, Pagination, Params};
use crate::http::extract::{PageQuery, PairQuery, PairRequest};
use crate::http::openapi::tags;
use crate::messaging::pacing::DAY_MS;
use crate::store::{Direction, MessageFilter, MessageKind, MessageStatus, RetryOutcome};

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

/// The filter, each value checked; errors name the parameter as it was given.
fn message_filter(q: &MessageFilterQuery) -> AppResult<MessageFilter> {
    let status = match q.status.as_deref() {
        None => None,
        // The earlier service's name for a message not sent yet.
        Some("pending") => Some(MessageStatus::Queued),
        Some(s) => Some(MessageStatus::parse(s).ok_or_else(|| {
            AppError::BadRequest(
                "status must be one of: queued, sending, sent, delivered, read, played, failed"
                    .into(),
            )
        })?),
    };
    let kind = match either(("type", &q.r#type), ("message_type", &q.message_type))? {
        None => None,
        Some((field, s)) => Some(MessageKind::parse(s).ok_or_else(|| {
            AppError::BadRequest(format!(
                "{field} must be one of: text, image, document, video, audio, sticker, other"
            ))
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
    let direction = match q.direction.as_deref() {
        None => None,
        Some(d) => Some(
            Direction::parse(d)
                .ok_or_else(|| AppError::BadRequest("direction must be in or out".into()))?,
        ),
    };
    Ok(MessageFilter {
        direction,
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
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(pg): Params<PageQuery>,
    Params(f): Params<MessageFilterQuery>,
) -> AppResult<MessageListResponse> {
    let pair = pq.pair(caller)?;
    let (page, limit) = pg.page_and_limit()?;
    let filter = message_filter(&f)?;
    let (messages, total) = st
        .outbox
        .store()
        .list_messages(pair, &filter, page, limit)
        .await?;
    Ok(MessageListResponse::new(
        MessageList {
            messages: messages.iter().map(Message::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
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
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(f): Params<MessageFilterQuery>,
) -> AppResult<MessageStatsResponse> {
    let pair = pq.pair(caller)?;
    let filter = message_filter(&f)?;
    let store = st.outbox.store();
    let counts = store.message_counts(pair, &filter).await?;
    let now = st.clock.now_ms();
    let (sent_24h, _) = store.sent_since(pair, now - DAY_MS).await?;
    let pacing = st.outbox.pacing();
    let cap = i64::from(pacing.daily_cap);
    Ok(MessageStatsResponse::new(
        MessageStats {
            total: counts.total(),
            queued: counts.queued,
            sending: counts.sending,
            sent: counts.sent,
            delivered: counts.delivered,
            read: counts.read,
            played: counts.played,
            failed: counts.failed,
            by_type: ByType {
                text: counts.text,
                image: counts.image,
                document: counts.document,
                video: counts.video,
                audio: counts.audio,
            },
            last_24_hours: LastDay {
                sent: sent_24h,
                daily_cap: cap,
                remaining: (cap - sent_24h).max(0),
            },
            pacing: PacingInfo {
                interval_seconds: pacing.interval.as_secs_f64(),
                jitter_seconds: pacing.jitter.as_secs_f64(),
                daily_cap: cap,
            },
        },
        "Message statistics retrieved",
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
    Path(path): Path<JobPath>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
) -> AppResult<JobResponse> {
    let job_id = parse_positive_str("job_id", &path.job_id)?;
    let pair = pq.pair(caller)?;
    let job = st
        .outbox
        .store()
        .job(pair, job_id)
        .await?
        .ok_or_else(|| AppError::NotFound("Job not found".into()))?;
    Ok(JobResponse::new(Job::from(&job), "Job retrieved"))
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
    Path(path): Path<MessagePath>,
    Body(b): Body<PairRequest>,
) -> AppResult<MessageResponse> {
    let id = parse_positive_str("message_id", &path.message_id)?;
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
            Ok(MessageResponse::new(
                Message::from(&*m),
                "Message queued again",
            ))
        }
    }
}
