//! Contact groups of a pair, readable as soon as a session is ready.

pub mod dto;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use self::dto::{
    CreateGroupRequest, DeletedGroup, DeletedGroupResponse, Group, GroupContacts,
    GroupContactsResponse, GroupList, GroupListResponse, GroupPath, GroupResponse,
    ReplaceMembersRequest,
};
use super::AppState;
use super::contacts::dto::{Contact, ContactFilterQuery, ContactSearchQuery, contact_filter};
use super::contacts::export::csv_response;
use super::envelope::ErrorEnvelope;
use super::extract::PairQuery;
use super::extract::{Body, PageQuery, Pagination, Params, pair_from};
use super::openapi::tags;
use crate::auth::Caller;
use crate::domain::Pair;
use crate::http::error::{AppError, AppResult};
use crate::store::{ContactQuery, GroupChange, GroupRecord};

// The group send reads it from here.
pub(super) use super::contacts::recent_since;

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
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(page): Params<PageQuery>,
) -> AppResult<GroupListResponse> {
    let pair = pq.pair(caller)?;
    let (page, limit) = page.page_and_limit()?;
    let (groups, total) = st
        .store
        .list_groups(pair, page, limit, recent_since(&st))
        .await?;
    Ok(GroupListResponse::new(
        GroupList {
            groups: groups.iter().map(Group::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
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
    params(GroupPath, PairQuery, PageQuery, ContactSearchQuery, ContactFilterQuery),
    responses(
        (status = 200, description = "The group and one page of its contacts", body = GroupContactsResponse),
        (status = 400, description = "Bad `group_id`, `user_id`, `place_id`, `page`, `limit`, `search` or `search_type`", body = ErrorEnvelope),
        (status = 404, description = "No such group for this pair (another tenant's group is not found either)", body = ErrorEnvelope),
    )
)]
pub async fn contacts(
    State(st): State<AppState>,
    Path(path): Path<GroupPath>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(page): Params<PageQuery>,
    Params(search): Params<ContactSearchQuery>,
    Params(filters): Params<ContactFilterQuery>,
) -> AppResult<GroupContactsResponse> {
    let group_id = path.id()?;
    let pair = pq.pair(caller)?;
    let (page, limit) = page.page_and_limit()?;
    let filter = contact_filter(&search, &filters, st.clock.now().timestamp())?;
    let since = recent_since(&st);
    let group = st
        .store
        .group(pair, group_id, since)
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))?;
    let query = ContactQuery {
        filter,
        page,
        limit,
    };
    let (contacts, total) = st
        .store
        .search_contacts(pair, Some(&group), &query, since)
        .await?;
    Ok(GroupContactsResponse::new(
        GroupContacts {
            group: Group::from(&group),
            contacts: contacts.iter().map(Contact::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "Group contacts retrieved",
    ))
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
pub async fn export(
    State(st): State<AppState>,
    Path(path): Path<GroupPath>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(search): Params<ContactSearchQuery>,
    Params(filters): Params<ContactFilterQuery>,
) -> AppResult<Response> {
    let group_id = path.id()?;
    let pair = pq.pair(caller)?;
    let filter = contact_filter(&search, &filters, st.clock.now().timestamp())?;
    let group = st
        .store
        .group(pair, group_id, recent_since(&st))
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))?;
    let name = format!("group_{}_{}_{}.csv", pair.user_id, pair.place_id, group.id);
    Ok(csv_response(&st, pair, Some(group), filter, &name))
}

/// The answer to a change that did not happen, in the contract's words.
fn refused(change: GroupChange) -> AppResult<i64> {
    match change {
        GroupChange::Done(id) => Ok(id),
        GroupChange::UnknownContacts(ids) => {
            let shown: Vec<String> = ids.iter().take(20).map(i64::to_string).collect();
            let more = if ids.len() > 20 {
                format!(" and {} more", ids.len() - 20)
            } else {
                String::new()
            };
            Err(AppError::BadRequest(format!(
                "contact_ids are not contacts of this user and place: {}{more}",
                shown.join(", ")
            )))
        }
        GroupChange::NameTaken => Err(AppError::Conflict(
            "A group with this name already exists for this user and place".into(),
        )),
        GroupChange::NotFound => Err(AppError::NotFound("Group not found".into())),
        GroupChange::Automatic => Err(AppError::BadRequest(
            "Automatic groups cannot be edited or deleted: their members follow their rule".into(),
        )),
    }
}

async fn group_after_change(st: &AppState, pair: Pair, id: i64) -> AppResult<GroupRecord> {
    st.store
        .group(pair, id, recent_since(st))
        .await?
        .ok_or_else(|| AppError::NotFound("Group not found".into()))
}

/// # `POST /api/whatsapp/groups`
#[utoipa::path(
    post,
    path = "/groups",
    operation_id = "create_group",
    tag = tags::CONTACTS,
    summary = "Create a manual group of the pair's contacts",
    request_body = CreateGroupRequest,
    responses(
        (status = 201, description = "The new group", body = GroupResponse),
        (status = 400, description = "Bad `user_id`, `place_id`, `name`, `description` or `contact_ids`, or ids that are not the pair's contacts", body = ErrorEnvelope),
        (status = 409, description = "The pair already has a group of that name", body = ErrorEnvelope),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Body(b): Body<CreateGroupRequest>,
) -> AppResult<(StatusCode, GroupResponse)> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let name = b.name()?;
    let description = b.description()?;
    let ids = b.contact_ids()?;
    let change = st
        .store
        .create_manual_group(pair, &name, description.as_deref(), &ids, st.clock.now_ms())
        .await?;
    let id = refused(change)?;
    let group = group_after_change(&st, pair, id).await?;
    Ok((
        StatusCode::CREATED,
        GroupResponse::new(Group::from(&group), "Group created"),
    ))
}

/// # `PUT /api/whatsapp/groups/{group_id}/contacts`
#[utoipa::path(
    put,
    path = "/groups/{group_id}/contacts",
    operation_id = "replace_group_contacts",
    tag = tags::CONTACTS,
    summary = "Replace a manual group's members",
    params(GroupPath),
    request_body = ReplaceMembersRequest,
    responses(
        (status = 200, description = "The group with its new members", body = GroupResponse),
        (status = 400, description = "Bad `group_id`, `user_id`, `place_id` or `contact_ids`, ids that are not the pair's contacts, or an automatic group", body = ErrorEnvelope),
        (status = 404, description = "No such group for this pair", body = ErrorEnvelope),
    )
)]
pub async fn replace_members(
    State(st): State<AppState>,
    caller: Caller,
    Path(path): Path<GroupPath>,
    Body(b): Body<ReplaceMembersRequest>,
) -> AppResult<GroupResponse> {
    let group_id = path.id()?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let ids = b.contact_ids()?;
    let change = st
        .store
        .replace_group_members(pair, group_id, &ids, st.clock.now_ms())
        .await?;
    let id = refused(change)?;
    let group = group_after_change(&st, pair, id).await?;
    Ok(GroupResponse::new(
        Group::from(&group),
        "Group members replaced",
    ))
}

/// # `DELETE /api/whatsapp/groups/{group_id}`
#[utoipa::path(
    delete,
    path = "/groups/{group_id}",
    operation_id = "delete_group",
    tag = tags::CONTACTS,
    summary = "Delete a manual group (its contacts stay)",
    params(GroupPath, PairQuery),
    responses(
        (status = 200, description = "Deleted", body = DeletedGroupResponse),
        (status = 400, description = "Bad `group_id`, `user_id` or `place_id`, or an automatic group", body = ErrorEnvelope),
        (status = 404, description = "No such group for this pair", body = ErrorEnvelope),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    Path(path): Path<GroupPath>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
) -> AppResult<DeletedGroupResponse> {
    let group_id = path.id()?;
    let pair = pq.pair(caller)?;
    let id = refused(st.store.delete_manual_group(pair, group_id).await?)?;
    Ok(DeletedGroupResponse::new(
        DeletedGroup { id, deleted: true },
        "Group deleted",
    ))
}
