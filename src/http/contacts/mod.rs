//! The pair's contacts: one by id, its tags and custom fields, search across all of them, and
//! CSV exports (all, or one group's).

pub mod dto;
pub mod export;

use axum::extract::{Path, State};

use self::dto::{
    Contact, ContactDetail, ContactFilterQuery, ContactPatchRequest, ContactPath, ContactResponse,
    ContactSearch, ContactSearchQuery, ContactSearchResponse, contact_filter,
};
use super::AppState;
use super::envelope::ErrorEnvelope;
use super::extract::PairQuery;
use super::extract::{Body, PageQuery, Pagination, Params};
use super::openapi::tags;
use crate::auth::Caller;
use crate::http::error::{AppError, AppResult};
use crate::store::{AutoRule, ContactQuery};

/// Contacts active at or after this unix second are in the "last 90 days" group.
pub(super) fn recent_since(st: &AppState) -> i64 {
    st.clock.now().timestamp() - AutoRule::RECENT_DAYS * 86_400
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
    Path(path): Path<ContactPath>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
) -> AppResult<ContactResponse> {
    let contact_id = path.id()?;
    let pair = pq.pair(caller)?;
    let c = st
        .store
        .contact(pair, contact_id)
        .await?
        .ok_or_else(|| AppError::NotFound("Contact not found".into()))?;
    Ok(ContactResponse::new(
        ContactDetail::from(&c),
        "Contact retrieved",
    ))
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
    Path(path): Path<ContactPath>,
    Body(b): Body<ContactPatchRequest>,
) -> AppResult<ContactResponse> {
    let contact_id = path.id()?;
    let pair = super::extract::pair_from(caller, &b.user_id, &b.place_id)?;
    let patch = b.patch()?;
    let c = st
        .store
        .update_contact(pair, contact_id, &patch, st.clock.now_ms())
        .await?
        .ok_or_else(|| AppError::NotFound("Contact not found".into()))?;
    Ok(ContactResponse::new(
        ContactDetail::from(&c),
        "Contact updated",
    ))
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
pub async fn search(
    State(st): State<AppState>,
    caller: Caller,
    Params(pq): Params<PairQuery>,
    Params(page): Params<PageQuery>,
    Params(search): Params<ContactSearchQuery>,
    Params(filters): Params<ContactFilterQuery>,
) -> AppResult<ContactSearchResponse> {
    let pair = pq.pair(caller)?;
    let (page, limit) = page.page_and_limit()?;
    let filter = contact_filter(&search, &filters, st.clock.now().timestamp())?;
    let query = ContactQuery {
        filter,
        page,
        limit,
    };
    let (contacts, total) = st
        .store
        .search_contacts(pair, None, &query, recent_since(&st))
        .await?;
    Ok(ContactSearchResponse::new(
        ContactSearch {
            contacts: contacts.iter().map(Contact::from).collect(),
            pagination: Pagination::new(page, limit, total),
        },
        "Contacts retrieved",
    ))
}
