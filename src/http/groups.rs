//! Contact groups of a pair, readable as soon as a session is ready.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Body, Query, pagination_json, pair_from};
use super::openapi::{
    ContactFilterQuery, ContactPatchRequest, ContactPath, ContactResponse, ContactSearchQuery,
    CreateGroupRequest, DeletedGroupResponse, ErrorEnvelope, GroupContactsResponse,
    GroupListResponse, GroupPath, GroupResponse, PageQuery, PairQuery, ReplaceMembersRequest, tags,
};
use super::{AppState, envelope};
use crate::auth::Caller;
use crate::clock::{rfc3339_ms, rfc3339_secs};
use crate::domain::text::{TextKind, caller_name, caller_text, is_blank};
use crate::domain::{GroupId, Pair, parse_positive_str};
use crate::http::error::{AppError, AppResult};
use crate::store::{AutoRule, ContactPatch, ContactQuery, ContactRecord, GroupChange, GroupRecord};

pub const GROUP_NAME_MAX_CHARS: usize = 100;
pub const GROUP_DESCRIPTION_MAX_CHARS: usize = 500;
/// Members given in one request.
pub const MAX_MEMBERS: usize = 1_000;
pub const MAX_TAGS: usize = 50;
pub const TAG_MAX_CHARS: usize = 50;
pub const MAX_CUSTOM_FIELDS: usize = 50;
pub const CUSTOM_FIELD_NAME_MAX_CHARS: usize = 50;
pub const CUSTOM_FIELD_VALUE_MAX_CHARS: usize = 1_000;

pub(super) fn recent_since(st: &AppState) -> i64 {
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

pub(super) fn contact_json(c: &ContactRecord) -> Value {
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
    params(GroupPath, PairQuery, PageQuery, ContactSearchQuery, ContactFilterQuery),
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
    let filter = super::contacts::contact_filter(&q, st.clock.now().timestamp())?;
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
    Ok(envelope::ok(
        json!({
            "group": group_json(&group),
            "contacts": contacts.iter().map(contact_json).collect::<Vec<_>>(),
            "pagination": pagination_json(page, limit, total),
        }),
        "Group contacts retrieved",
    ))
}

#[derive(Deserialize)]
pub struct CreateGroupBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    description: Option<Value>,
    #[serde(default)]
    contact_ids: Option<Value>,
}

#[derive(Deserialize)]
pub struct MembersBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default)]
    contact_ids: Option<Value>,
}

fn group_name(raw: Option<&Value>) -> AppResult<String> {
    match raw {
        None | Some(Value::Null) => Err(AppError::BadRequest("name is required".into())),
        // The limit counts what was sent, spaces included, as the document says. A name of
        // only invisible characters would show as no name at all.
        Some(Value::String(s)) if !is_blank(s) && s.chars().count() <= GROUP_NAME_MAX_CHARS => {
            Ok(caller_name("name", s.trim())?)
        }
        Some(_) => Err(AppError::BadRequest(format!(
            "name must be a string of 1 to {GROUP_NAME_MAX_CHARS} characters"
        ))),
    }
}

fn group_description(raw: Option<&Value>) -> AppResult<Option<String>> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= GROUP_DESCRIPTION_MAX_CHARS => {
            let d = caller_text("description", s.trim(), TextKind::Prose)?;
            Ok(Some(d).filter(|d| !d.is_empty()))
        }
        Some(_) => Err(AppError::BadRequest(format!(
            "description must be a string of at most {GROUP_DESCRIPTION_MAX_CHARS} characters"
        ))),
    }
}

/// 1 to 1,000 positive integer ids (numbers or digit strings), duplicates dropped, order kept.
fn contact_ids(raw: Option<&Value>) -> AppResult<Vec<i64>> {
    let invalid = || {
        AppError::BadRequest(format!(
            "contact_ids must be a list of 1 to {MAX_MEMBERS} contact ids (positive integers)"
        ))
    };
    let items = match raw {
        None | Some(Value::Null) => {
            return Err(AppError::BadRequest("contact_ids is required".into()));
        }
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_MEMBERS => items,
        Some(_) => return Err(invalid()),
    };
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        // The earlier service's clients send ids as strings ("12"), and form bodies can
        // carry nothing else.
        let id = match item {
            Value::String(s) => parse_positive_str("contact_ids", s).ok(),
            _ => item.as_i64(),
        };
        match id {
            Some(id) if id > 0 => {
                if seen.insert(id) {
                    ids.push(id);
                }
            }
            _ => return Err(invalid()),
        }
    }
    Ok(ids)
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
    Body(b): Body<CreateGroupBody>,
) -> AppResult<Response> {
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let name = group_name(b.name.as_ref())?;
    let description = group_description(b.description.as_ref())?;
    let ids = contact_ids(b.contact_ids.as_ref())?;
    let change = st
        .store
        .create_manual_group(pair, &name, description.as_deref(), &ids, st.clock.now_ms())
        .await?;
    let id = refused(change)?;
    let group = group_after_change(&st, pair, id).await?;
    Ok(envelope::with_status(
        StatusCode::CREATED,
        group_json(&group),
        "Group created",
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
    Path(group_id): Path<String>,
    Body(b): Body<MembersBody>,
) -> AppResult<Response> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let ids = contact_ids(b.contact_ids.as_ref())?;
    let change = st
        .store
        .replace_group_members(pair, group_id, &ids, st.clock.now_ms())
        .await?;
    let id = refused(change)?;
    let group = group_after_change(&st, pair, id).await?;
    Ok(envelope::ok(group_json(&group), "Group members replaced"))
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
    Path(group_id): Path<String>,
    q: Query,
) -> AppResult<Response> {
    let group_id = parse_positive_str(GroupId::FIELD, &group_id)?;
    let pair = q.pair()?;
    let id = refused(st.store.delete_manual_group(pair, group_id).await?)?;
    Ok(envelope::ok(
        json!({ "id": id, "deleted": true }),
        "Group deleted",
    ))
}

/// # `GET /api/whatsapp/contacts/{contact_id}`
#[utoipa::path(
    get,
    path = "/contacts/{contact_id}",
    operation_id = "get_contact",
    tag = tags::CONTACTS,
    summary = "One contact of the pair",
    params(ContactPath, PairQuery),
    responses(
        (status = 200, description = "The contact", body = ContactResponse),
        (status = 400, description = "Bad `contact_id`, `user_id` or `place_id`", body = ErrorEnvelope),
        (status = 404, description = "No such contact for this pair (another tenant's contact is not found either)", body = ErrorEnvelope),
    )
)]
pub async fn contact(
    State(st): State<AppState>,
    Path(contact_id): Path<String>,
    q: Query,
) -> AppResult<Response> {
    let contact_id = parse_positive_str("contact_id", &contact_id)?;
    let pair = q.pair()?;
    let c = st
        .store
        .contact(pair, contact_id)
        .await?
        .ok_or_else(|| AppError::NotFound("Contact not found".into()))?;
    Ok(envelope::ok(contact_detail_json(&c), "Contact retrieved"))
}

/// A contact as shown alone: the list fields and its custom fields.
fn contact_detail_json(c: &ContactRecord) -> Value {
    let mut v = contact_json(c);
    v["custom_fields"] = Value::Object(c.custom_fields.clone());
    v
}

#[derive(Deserialize)]
pub struct ContactPatchBody {
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    place_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    tags: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    custom_fields: Option<Value>,
}

/// `Some` whenever the field was sent, `null` included (plain `Option` reads `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Up to 50 tags of 1 to 50 characters; trimmed, duplicates dropped, order kept.
fn tags(raw: &Value) -> AppResult<Vec<String>> {
    let invalid = || {
        AppError::BadRequest(format!(
            "tags must be a list of at most {MAX_TAGS} strings of 1 to {TAG_MAX_CHARS} characters"
        ))
    };
    let Value::Array(items) = raw else {
        return Err(invalid());
    };
    if items.len() > MAX_TAGS {
        return Err(invalid());
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(t) if !t.trim().is_empty() && t.chars().count() <= TAG_MAX_CHARS => {
                let t = caller_name("tags", t.trim())?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

/// Up to 50 fields; each value a string (at most 1,000 characters), number, boolean, or
/// `null` to remove the field.
fn custom_fields(raw: &Value) -> AppResult<serde_json::Map<String, Value>> {
    let Value::Object(fields) = raw else {
        return Err(AppError::BadRequest(
            "custom_fields must be an object of field names to values".into(),
        ));
    };
    if fields.len() > MAX_CUSTOM_FIELDS {
        return Err(AppError::BadRequest(format!(
            "custom_fields may hold at most {MAX_CUSTOM_FIELDS} fields"
        )));
    }
    let mut out = serde_json::Map::with_capacity(fields.len());
    for (name, value) in fields {
        if name.trim().is_empty() || name.chars().count() > CUSTOM_FIELD_NAME_MAX_CHARS {
            return Err(AppError::BadRequest(format!(
                "custom_fields names must be 1 to {CUSTOM_FIELD_NAME_MAX_CHARS} characters"
            )));
        }
        // The message does not repeat a refused name: it is what cannot be shown safely.
        let name = caller_name("custom_fields names", name)?;
        let value = match value {
            Value::String(s) if s.chars().count() <= CUSTOM_FIELD_VALUE_MAX_CHARS => {
                Value::String(caller_name(&format!("custom_fields.{name}"), s)?)
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => value.clone(),
            Value::String(_) | Value::Array(_) | Value::Object(_) => {
                return Err(AppError::BadRequest(format!(
                    "custom_fields.{name} must be a string of at most \
                     {CUSTOM_FIELD_VALUE_MAX_CHARS} characters, a number, a boolean, or null"
                )));
            }
        };
        // Two spellings of one name (composed, decomposed) are one field: the last one wins,
        // as it would for a name sent twice.
        out.insert(name, value);
    }
    Ok(out)
}

/// # `PATCH /api/whatsapp/contacts/{contact_id}`
#[utoipa::path(
    patch,
    path = "/contacts/{contact_id}",
    operation_id = "update_contact",
    tag = tags::CONTACTS,
    summary = "Set a contact's tags and custom fields (fetches never erase them)",
    description = "`tags` replaces the contact's tags. `custom_fields` is merged into the \
        contact's fields: a field set to `null` is removed. At least one of the two is required.",
    params(ContactPath),
    request_body = ContactPatchRequest,
    responses(
        (status = 200, description = "The contact as it is now", body = ContactResponse),
        (status = 400, description = "Bad `contact_id`, `user_id`, `place_id`, `tags` or `custom_fields`, or neither given", body = ErrorEnvelope),
        (status = 404, description = "No such contact for this pair", body = ErrorEnvelope),
    )
)]
pub async fn update_contact(
    State(st): State<AppState>,
    caller: Caller,
    Path(contact_id): Path<String>,
    Body(b): Body<ContactPatchBody>,
) -> AppResult<Response> {
    let contact_id = parse_positive_str("contact_id", &contact_id)?;
    let pair = pair_from(caller, &b.user_id, &b.place_id)?;
    let patch = ContactPatch {
        // An explicit `null` is refused like any other wrong type: leave the field out instead.
        tags: b.tags.as_ref().map(tags).transpose()?,
        custom_fields: b.custom_fields.as_ref().map(custom_fields).transpose()?,
    };
    if patch.tags.is_none() && patch.custom_fields.is_none() {
        return Err(AppError::BadRequest(
            "Give tags, custom_fields, or both".into(),
        ));
    }
    let c = st
        .store
        .update_contact(pair, contact_id, &patch, st.clock.now_ms())
        .await?
        .ok_or_else(|| AppError::NotFound("Contact not found".into()))?;
    Ok(envelope::ok(contact_detail_json(&c), "Contact updated"))
}
