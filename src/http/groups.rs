//! Contact groups of a pair, readable as soon as a session is ready.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{Query, pagination_json};
use super::openapi::{
    ContactSearchQuery, ErrorEnvelope, GroupContactsResponse, GroupListResponse, GroupPath,
    PageQuery, PairQuery, tags,
};
use super::{AppState, envelope};
use crate::clock::{rfc3339_ms, rfc3339_secs};
use crate::domain::{GroupId, parse_positive_str};
use crate::error::{AppError, AppResult};
use crate::store::{AutoRule, ContactQuery, ContactRecord, GroupRecord, SearchType};

fn recent_since(st: &AppState) -> i64 {
    st.clock.now().timestamp() - AutoRule::RECENT_DAYS * 86_400
}

fn group_json(g: &GroupRecord) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "type": if g.auto_rule.is_some() { "auto" } else { "manual" },
        "contact_count": g.contact_count,
        "filter_applied": g.auto_rule.map(AutoRule::filter),
        "created_at": rfc3339_ms(g.created_at),
        "updated_at": rfc3339_ms(g.updated_at),
    })
}

fn contact_json(c: &ContactRecord) -> Value {
    json!({
        "id": c.id,
        "phone_number": c.phone_number,
        "name": c.name,
        "push_name": c.push_name,
        "is_business": c.is_business,
        "last_interaction": c.last_message_at.and_then(rfc3339_secs),
        "tags": c.tags,
    })
}

/// # `GET /api/whatsapp/groups`
#[utoipa::path(
    get,
    path = "/groups",
    operation_id = "list_groups",
    tag = tags::CONTACTS,
    summary = "The pair's contact groups, automatic ones first",
    params(PairQuery, PageQuery),
    responses(
        (status = 200, description = "One page of groups", body = GroupListResponse),
        (status = 400, description = "Bad `user_id`, `place_id`, `page` or `limit`", body = ErrorEnvelope),
    )
)]
pub async fn list(State(st): State<AppState>, q: Query) -> AppResult<Response> {
    let pair = q.pair()?;
    let (page, limit) = q.pagination()?;
    let (groups, total) = st
        .store
        .list_groups(pair, page, limit, recent_since(&st))
        .await?;
    Ok(envelope::ok(
        json!({
            "groups": groups.iter().map(group_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
        "Groups retrieved",
    ))
}

/// # `GET /api/whatsapp/groups/{group_id}/contacts`
#[utoipa::path(
    get,
    path = "/groups/{group_id}/contacts",
    operation_id = "group_contacts",
    tag = tags::CONTACTS,
    summary = "A group and one page of its contacts, most recently active first",
    params(GroupPath, PairQuery, PageQuery, ContactSearchQuery),
    responses(
        (status = 200, description = "The group and one page of its contacts", body = GroupContactsResponse),
        (status = 400, description = "Bad `group_id`, `user_id`, `place_id`, `page`, `limit`, `search` or `search_type`", body = ErrorEnvelope),
        (status = 404, description = "No such group for this pair (another tenant's group is not found either)", body = ErrorEnvelope),
    )
)]
pub async fn contacts(
    State(st): State<AppState>,
    Path(group_id): Path<String>,
    q: Query,
) -> AppResult<Response> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = q.pair()?;
    let (page, limit) = q.pagination()?;
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
    let search = q
        .get("search")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(AppError::BadRequest(
            "search must be at most 200 characters".into(),
        ));
    }
    let since = recent_since(&st);
    let group = st
        .store
        .group(pair, group_id, since)
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))?;
    let query = ContactQuery {
        search,
        search_type,
        page,
        limit,
    };
    let (contacts, total) = st.store.group_contacts(&group, &query, since).await?;
    Ok(envelope::ok(
        json!({
            "group": group_json(&group),
            "contacts": contacts.iter().map(contact_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
        "Group contacts retrieved",
    ))
}
