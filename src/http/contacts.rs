//! Finding contacts across a pair, and exporting them (all, or one group's) as CSV.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{Query, pagination_json};
use super::groups::{MAX_TAGS, TAG_MAX_CHARS, contact_json, recent_since};
use super::openapi::{
    ContactFilterQuery, ContactSearchQuery, ContactSearchResponse, ErrorEnvelope, GroupPath,
    PageQuery, PairQuery, tags,
};
use super::{AppState, envelope};
use crate::clock::rfc3339_secs;
use crate::domain::text::caller_name;
use crate::domain::{GroupId, Pair, parse_positive_str};
use crate::http::error::{AppError, AppResult};
use crate::store::{ContactFilter, ContactQuery, ContactRecord, GroupRecord, SearchType, Store};

pub const SEARCH_MAX_CHARS: usize = 200;
/// Ten years: enough for any "days since" a person means, small enough to never overflow.
pub const MAX_DAYS: i64 = 3_650;
/// Rows read per query while exporting: a few hundred kilobytes of CSV at a time.
const EXPORT_CHUNK: i64 = 1_000;
/// What spreadsheet programs need to read the file as UTF-8 (Arabic names) rather than as
/// the system's legacy code page.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The filters every contact listing accepts: `search` with `search_type`, `is_business`,
/// `last_interaction_days` (active within N days), `inactive_days` (no activity for N days,
/// or never), `tags` (comma-separated; a contact must carry all of them).
pub fn contact_filter(q: &Query, now_s: i64) -> AppResult<ContactFilter> {
    let search_type = match q.get("search_type").map(str::trim) {
        None | Some("") | Some("all") => SearchType::All,
        Some("name") => SearchType::Name,
        Some("phone") => SearchType::Phone,
        Some(_) => {
            return Err(AppError::BadRequest(
                "search_type must be one of: name, phone, all".into(),
            ));
        }
    };
    // `q` is the earlier service's name for `search`: its clients send it, and ignoring it
    // would answer every contact to a search.
    let search = match (q.get("search"), q.get("q")) {
        (Some(s), Some(alias)) if s.trim() != alias.trim() => {
            return Err(AppError::BadRequest(
                "Give search or q (the same parameter), not both".into(),
            ));
        }
        (Some(s), _) => Some(("search", s)),
        (None, Some(s)) => Some(("q", s)),
        (None, None) => None,
    };
    let search = match search.map(|(field, s)| (field, s.trim())) {
        Some((field, s)) if s.chars().count() > SEARCH_MAX_CHARS => {
            return Err(AppError::BadRequest(format!(
                "{field} must be at most {SEARCH_MAX_CHARS} characters"
            )));
        }
        Some((_, s)) if !s.is_empty() => Some(s.to_owned()),
        _ => None,
    };
    // Exact values only: the OpenAPI document promises as much, and the fuzz test holds us to it.
    let is_business = match q.get("is_business") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(AppError::BadRequest(
                "is_business must be true or false".into(),
            ));
        }
    };
    let days = |field: &str| -> AppResult<Option<i64>> {
        match q.get(field) {
            None => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(d) if (1..=MAX_DAYS).contains(&d) && s.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Some(now_s - d * 86_400))
                }
                _ => Err(AppError::BadRequest(format!(
                    "{field} must be a whole number of days between 1 and {MAX_DAYS}"
                ))),
            },
        }
    };
    let active_since = days("last_interaction_days")?;
    let inactive_since = days("inactive_days")?;
    let mut tags: Vec<String> = Vec::new();
    if let Some(raw) = q.get("tags") {
        let items: Vec<&str> = raw.split(',').collect();
        if items.len() > MAX_TAGS || items.iter().any(|t| t.chars().count() > TAG_MAX_CHARS) {
            return Err(AppError::BadRequest(format!(
                "tags must be at most {MAX_TAGS} comma-separated tags of at most \
                 {TAG_MAX_CHARS} characters"
            )));
        }
        for t in items.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            // Stored tags are NFC: a filter typed decomposed must find them.
            let t = caller_name("tags", t)?;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
    }
    Ok(ContactFilter {
        search,
        search_type,
        is_business,
        active_since,
        inactive_since,
        tags,
    })
}

/// # `GET /api/whatsapp/contacts/search`
#[utoipa::path(
    get,
    path = "/contacts/search",
    operation_id = "search_contacts",
    tag = tags::CONTACTS,
    summary = "The pair's contacts matching every filter given, most recently active first",
    params(PairQuery, PageQuery, ContactSearchQuery, ContactFilterQuery),
    responses(
        (status = 200, description = "One page of matching contacts", body = ContactSearchResponse),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn search(State(st): State<AppState>, q: Query) -> AppResult<Response> {
    let pair = q.pair()?;
    let (page, limit) = q.pagination()?;
    let filter = contact_filter(&q, st.clock.now().timestamp())?;
    let query = ContactQuery {
        filter,
        page,
        limit,
    };
    let (contacts, total) = st
        .store
        .search_contacts(pair, None, &query, recent_since(&st))
        .await?;
    Ok(envelope::ok(
        json!({
            "contacts": contacts.iter().map(contact_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
        "Contacts retrieved",
    ))
}

/// # `GET /api/whatsapp/contacts/export.csv`
#[utoipa::path(
    get,
    path = "/contacts/export.csv",
    operation_id = "export_contacts",
    tag = tags::CONTACTS,
    summary = "Every contact of the pair (narrowed by the search filters) as CSV",
    description = "UTF-8 with a byte-order mark, so spreadsheet programs show Arabic names. \
        Streamed: any size is read in chunks. Columns: id, phone_number, name, push_name, \
        is_business, last_interaction, tags (separated by `; `), custom_fields (JSON).",
    params(PairQuery, ContactSearchQuery, ContactFilterQuery),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv", body = String),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn export_all(State(st): State<AppState>, q: Query) -> AppResult<Response> {
    let pair = q.pair()?;
    let filter = contact_filter(&q, st.clock.now().timestamp())?;
    let name = format!("contacts_{}_{}.csv", pair.user_id, pair.place_id);
    Ok(csv_response(&st, pair, None, filter, &name))
}

/// # `GET /api/whatsapp/groups/{group_id}/export.csv`
#[utoipa::path(
    get,
    path = "/groups/{group_id}/export.csv",
    operation_id = "export_group",
    tag = tags::CONTACTS,
    summary = "A group's members as CSV",
    description = "Same format as `/contacts/export.csv`; the search filters narrow it too.",
    params(GroupPath, PairQuery, ContactSearchQuery, ContactFilterQuery),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv", body = String),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
        (status = 404, description = "No such group for this pair", body = ErrorEnvelope),
    )
)]
pub async fn export_group(
    State(st): State<AppState>,
    Path(group_id): Path<String>,
    q: Query,
) -> AppResult<Response> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = q.pair()?;
    let filter = contact_filter(&q, st.clock.now().timestamp())?;
    let group = st
        .store
        .group(pair, group_id, recent_since(&st))
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))?;
    let name = format!("group_{}_{}_{}.csv", pair.user_id, pair.place_id, group.id);
    Ok(csv_response(&st, pair, Some(group), filter, &name))
}

struct ExportState {
    store: Arc<dyn Store>,
    pair: Pair,
    group: Option<GroupRecord>,
    filter: ContactFilter,
    recent_since: i64,
    after_id: i64,
    started: bool,
    done: bool,
}

fn csv_response(
    st: &AppState,
    pair: Pair,
    group: Option<GroupRecord>,
    filter: ContactFilter,
    file_name: &str,
) -> Response {
    let state = ExportState {
        store: st.store.clone(),
        pair,
        group,
        filter,
        recent_since: recent_since(st),
        after_id: 0,
        started: false,
        done: false,
    };
    // A database error halfway ends the stream with an error, so the client sees a cut
    // transfer rather than a file that looks complete.
    let chunks = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let mut out = Vec::new();
        if !s.started {
            s.started = true;
            out.extend_from_slice(UTF8_BOM);
            out.extend_from_slice(&csv_row(&CSV_HEADER.map(String::from)));
        }
        let rows = match s
            .store
            .contacts_after(
                s.pair,
                s.group.as_ref(),
                &s.filter,
                s.recent_since,
                s.after_id,
                EXPORT_CHUNK,
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("❌ CSV export for {:?} stopped: {e:#}", s.pair);
                s.done = true;
                return Some((Err(std::io::Error::other("the export stopped")), s));
            }
        };
        if (rows.len() as i64) < EXPORT_CHUNK {
            s.done = true;
        }
        if let Some(last) = rows.last() {
            s.after_id = last.id;
        }
        for c in &rows {
            out.extend_from_slice(&csv_row(&contact_cells(c)));
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(out)), s))
    });
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

const CSV_HEADER: [&str; 8] = [
    "id",
    "phone_number",
    "name",
    "push_name",
    "is_business",
    "last_interaction",
    "tags",
    "custom_fields",
];

fn contact_cells(c: &ContactRecord) -> [String; 8] {
    [
        c.id.to_string(),
        c.phone_number.clone(),
        text_cell(c.name.as_deref().unwrap_or("")),
        text_cell(c.push_name.as_deref().unwrap_or("")),
        c.is_business.to_string(),
        c.last_message_at.and_then(rfc3339_secs).unwrap_or_default(),
        text_cell(&c.tags.join("; ")),
        if c.custom_fields.is_empty() {
            String::new()
        } else {
            text_cell(&serde_json::Value::Object(c.custom_fields.clone()).to_string())
        },
    ]
}

/// Names come from strangers' phones: one starting with `=`, `+`, `-` or `@` would run as a
/// formula when the file is opened in a spreadsheet, so it is prefixed with a quote.
fn text_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

/// One CSV line (RFC 4180 quoting, CRLF ends).
fn csv_row(cells: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail, and a record of plain strings is always valid.
    if let Err(e) = w.write_record(cells) {
        tracing::error!("❌ Cannot write a CSV row: {e}");
    }
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_with_separators_are_quoted_and_formulas_defused() {
        let row = csv_row(&[
            "1".into(),
            "a, b".into(),
            "say \"hi\"".into(),
            "two\nlines".into(),
            text_cell("=HYPERLINK(\"x\")"),
            text_cell("أحمد"),
        ]);
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "1,\"a, b\",\"say \"\"hi\"\"\",\"two\nlines\",\"'=HYPERLINK(\"\"x\"\")\",أحمد\r\n"
        );
    }
}
