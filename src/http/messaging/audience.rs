//! Who a send leaves out: contacts who opted out (always), and numbers without a WhatsApp
//! account (when the send asks, `skip_not_on_whatsapp`).

use std::collections::HashSet;

use serde_json::Value;

use super::numbers::{check_all, ready_client};
use crate::domain::{Pair, PhoneNumber};
use crate::http::AppState;
use crate::http::error::{AppError, AppResult};
use crate::store::{ContactRecord, JobSkips};

/// `skip_not_on_whatsapp`: absent or `null` is `false`; anything but a boolean is refused.
pub(super) fn skip_flag(v: &Option<Value>) -> AppResult<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(AppError::BadRequest(
            "skip_not_on_whatsapp must be true or false".into(),
        )),
    }
}

/// A single send to someone who asked not to be messaged is refused, by contact or number.
pub(super) async fn refuse_opted_out(
    st: &AppState,
    pair: Pair,
    contact: Option<&ContactRecord>,
    phone: &str,
) -> AppResult<()> {
    if let Some(c) = contact.filter(|c| c.opted_out) {
        return Err(AppError::BadRequest(format!(
            "Contact {} opted out of messages; nothing is sent to it until the opt-out is \
             cleared (PATCH /api/whatsapp/contacts/{} with opted_out: false)",
            c.id, c.id
        )));
    }
    let hit = st
        .store
        .opted_out_numbers(pair, &[phone.to_owned()])
        .await?;
    if !hit.is_empty() {
        return Err(AppError::BadRequest(format!(
            "{phone} belongs to a contact who opted out of messages; nothing is sent to it \
             until the opt-out is cleared"
        )));
    }
    Ok(())
}

/// The numbers among these recipients that opted out: the contact's own flag, or a
/// contact of the pair with that number.
pub(super) async fn opted_out<'a>(
    st: &AppState,
    pair: Pair,
    recipients: impl Iterator<Item = (Option<&'a ContactRecord>, &'a str)>,
) -> AppResult<HashSet<String>> {
    let mut out = HashSet::new();
    let mut numbers = Vec::new();
    for (contact, phone) in recipients {
        if contact.is_some_and(|c| c.opted_out) {
            out.insert(phone.to_owned());
        } else {
            numbers.push(phone.to_owned());
        }
    }
    if !numbers.is_empty() {
        out.extend(st.store.opted_out_numbers(pair, &numbers).await?);
    }
    Ok(out)
}

/// The numbers among these that have no WhatsApp account, through the cached check.
pub(super) async fn not_on_whatsapp(
    st: &AppState,
    pair: Pair,
    phones: &[&str],
) -> AppResult<HashSet<String>> {
    let client = ready_client(st, pair).await?;
    let parsed: Vec<PhoneNumber> = phones
        .iter()
        .filter_map(|p| PhoneNumber::parse_international(p))
        .collect();
    let known = check_all(st, client.as_ref(), &parsed).await?;
    Ok(phones
        .iter()
        .filter(|p| {
            PhoneNumber::parse_international(p)
                .and_then(|n| known.get(&n))
                .is_none_or(|s| !s.on_whatsapp)
        })
        .map(|p| (*p).to_owned())
        .collect())
}

/// A send that leaves nobody is refused, as an empty group is.
pub(super) fn refuse_everyone_skipped(skips: JobSkips, what: &str) -> AppResult<()> {
    Err(AppError::BadRequest(format!(
        "Nobody to send to: every {what} was left out ({} opted out, {} not on WhatsApp)",
        skips.opted_out, skips.not_on_whatsapp
    )))
}
