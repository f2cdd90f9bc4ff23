//! Every contact of a pair, or one group's, as a CSV file streamed in chunks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::dto::{ContactFilterQuery, ContactSearchQuery, contact_filter};
use super::recent_since;
use crate::auth::Caller;
use crate::clock::{rfc3339_ms, rfc3339_secs};
use crate::domain::Pair;
use crate::http::AppState;
use crate::http::envelope::ErrorEnvelope;
use crate::http::error::AppResult;
use crate::http::extract::PairQuery;
use crate::http::extract::Params;
use crate::http::openapi::tags;
use crate::store::prelude::*;
use crate::store::{ContactFilter, ContactRecord, GroupRecord};

/// Rows read per query while exporting: a few hundred kilobytes of CSV at a time.
const EXPORT_CHUNK: i64 = 1_000;
/// What spreadsheet programs need to read the file as UTF-8 (Arabic names) rather than as
/// the system's legacy code page.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// # `GET /api/whatsapp/contacts/export.csv`
#[utoipa::path(
    get,
    path = "/contacts/export.csv",
    operation_id = "export_contacts",
    tag = tags::CONTACTS,
    summary = "Every contact of the pair (narrowed by the search filters) as CSV",
    description = "UTF-8 with a byte-order mark, so spreadsheet programs show Arabic names. \
        Streamed: any size is read in chunks. Columns: id, phone_number, name, push_name, \
        is_business, last_interaction, tags (separated by `; `), custom_fields (JSON), \
        opted_out, opted_out_at.",
    params(PairQuery, ContactSearchQuery, ContactFilterQuery),
    responses(
        (status = 200, description = "The CSV file", content_type = "text/csv", body = String),
        (status = 400, description = "A bad parameter; the message names it", body = ErrorEnvelope),
    )
)]
pub async fn export_all(
    State(st): State<AppState>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(search): Params<ContactSearchQuery>,
    Params(filters): Params<ContactFilterQuery>,
) -> AppResult<Response> {
    let pair = pq.pair(caller)?;
    let filter = contact_filter(&search, &filters, st.clock.now().timestamp())?;
    let name = format!("contacts_{}_{}.csv", pair.user_id, pair.place_id);
    Ok(csv_response(&st, pair, None, filter, &name))
}

struct ExportState {
    store: Arc<dyn Database>,
    pair: Pair,
    group: Option<GroupRecord>,
    filter: ContactFilter,
    recent_since: i64,
    after_id: i64,
    started: bool,
    done: bool,
}

/// The CSV of the pair's contacts (of `group` only, when given) that match `filter`.
pub(in crate::http) fn csv_response(
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

const CSV_HEADER: [&str; 10] = [
    "id",
    "phone_number",
    "name",
    "push_name",
    "is_business",
    "last_interaction",
    "tags",
    "custom_fields",
    "opted_out",
    "opted_out_at",
];

fn contact_cells(c: &ContactRecord) -> [String; 10] {
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
        c.opted_out.to_string(),
        c.opted_out_at.and_then(rfc3339_ms).unwrap_or_default(),
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
