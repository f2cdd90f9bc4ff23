//! The group routes' requests and answers, as served and as documented.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::clock::rfc3339_ms;
use crate::domain::text::{TextKind, caller_name, caller_text, is_blank};
use crate::domain::{GroupId, Invalid, parse_positive_str};
use crate::http::contacts::dto::Contact;
use crate::http::envelope::success;
use crate::http::extract::Pagination;
use crate::http::schema::{always_true, positive_id_in_body};
use crate::store::{AutoRule, GroupRecord};

pub const GROUP_NAME_MAX_CHARS: usize = 100;
pub const GROUP_DESCRIPTION_MAX_CHARS: usize = 500;
/// Members given in one request.
pub const MAX_MEMBERS: usize = 1_000;

/// A contact group of the pair. The two automatic ones ("جميع الارقام", every number, and
/// "اخر الارقام (90 يوم)", numbers active in the last 90 days) are created when the
/// session first becomes ready.
#[derive(Serialize, ToSchema)]
pub struct Group {
    id: i64,
    name: String,
    #[schema(required = true)]
    description: Option<String>,
    #[serde(rename = "type")]
    kind: GroupKind,
    contact_count: i64,
    /// The rule of an automatic group; `null` for a manual one.
    #[schema(required = true)]
    filter_applied: Option<GroupFilter>,
    // `None` only for a time RFC 3339 cannot write, which the store never holds.
    #[schema(value_type = String, format = DateTime)]
    created_at: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Option<String>,
}

impl From<&GroupRecord> for Group {
    fn from(g: &GroupRecord) -> Self {
        Self {
            id: g.id,
            name: g.name.clone(),
            description: g.description.clone(),
            kind: if g.auto_rule.is_some() {
                GroupKind::Auto
            } else {
                GroupKind::Manual
            },
            contact_count: g.contact_count,
            filter_applied: g.auto_rule.map(GroupFilter::from),
            created_at: rfc3339_ms(g.created_at),
            updated_at: rfc3339_ms(g.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Auto,
    Manual,
}

/// `{"rule": "all"}` or `{"rule": "last_interaction_within_days", "days": 90}`.
#[derive(Serialize, ToSchema)]
pub struct GroupFilter {
    rule: GroupRule,
    /// Only with `last_interaction_within_days`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    days: Option<i64>,
}

impl From<AutoRule> for GroupFilter {
    fn from(rule: AutoRule) -> Self {
        match rule {
            AutoRule::All => Self {
                rule: GroupRule::All,
                days: None,
            },
            AutoRule::Recent90Days => Self {
                rule: GroupRule::LastInteractionWithinDays,
                days: Some(AutoRule::RECENT_DAYS),
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupRule {
    All,
    LastInteractionWithinDays,
}

#[derive(Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<Group>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct GroupContacts {
    pub group: Group,
    pub contacts: Vec<Contact>,
    pub pagination: Pagination,
}

#[derive(Serialize, ToSchema)]
pub struct DeletedGroup {
    pub id: i64,
    #[schema(schema_with = always_true)]
    pub deleted: bool,
}

success!(GroupListResponse, GroupList);
success!(GroupContactsResponse, GroupContacts);
success!(GroupResponse, Group);
success!(DeletedGroupResponse, DeletedGroup);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The group's id.
    #[param(value_type = i64, minimum = 1, example = 1)]
    group_id: String,
}

impl GroupPath {
    pub fn id(&self) -> Result<i64, Invalid> {
        parse_positive_str(GroupId::FIELD, &self.group_id)
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateGroupRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = group_name_schema, required = true)]
    name: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = group_description_schema)]
    description: Option<Value>,
    /// Ids of the pair's contacts; duplicates count once.
    #[serde(default)]
    #[schema(schema_with = contact_id_list, required = true)]
    contact_ids: Option<Value>,
}

impl CreateGroupRequest {
    pub fn name(&self) -> Result<String, Invalid> {
        match &self.name {
            None | Some(Value::Null) => Err(Invalid("name is required".into())),
            // The limit counts what was sent, spaces included, as the document says. A name
            // of only invisible characters would show as no name at all.
            Some(Value::String(s)) if !is_blank(s) && s.chars().count() <= GROUP_NAME_MAX_CHARS => {
                caller_name("name", s.trim()).map_err(|e| Invalid(e.to_string()))
            }
            Some(_) => Err(Invalid(format!(
                "name must be a string of 1 to {GROUP_NAME_MAX_CHARS} characters"
            ))),
        }
    }

    pub fn description(&self) -> Result<Option<String>, Invalid> {
        match &self.description {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= GROUP_DESCRIPTION_MAX_CHARS => {
                let d = caller_text("description", s.trim(), TextKind::Prose)
                    .map_err(|e| Invalid(e.to_string()))?;
                Ok(Some(d).filter(|d| !d.is_empty()))
            }
            Some(_) => Err(Invalid(format!(
                "description must be a string of at most {GROUP_DESCRIPTION_MAX_CHARS} characters"
            ))),
        }
    }

    pub fn contact_ids(&self) -> Result<Vec<i64>, Invalid> {
        contact_ids(self.contact_ids.as_ref())
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ReplaceMembersRequest {
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
    /// The group's members from now on: ids of the pair's contacts.
    #[serde(default)]
    #[schema(schema_with = contact_id_list, required = true)]
    contact_ids: Option<Value>,
}

impl ReplaceMembersRequest {
    pub fn contact_ids(&self) -> Result<Vec<i64>, Invalid> {
        contact_ids(self.contact_ids.as_ref())
    }
}

/// 1 to 1,000 positive integer ids (numbers or digit strings), duplicates dropped, order kept.
fn contact_ids(raw: Option<&Value>) -> Result<Vec<i64>, Invalid> {
    let invalid = || {
        Invalid(format!(
            "contact_ids must be a list of 1 to {MAX_MEMBERS} contact ids (positive integers)"
        ))
    };
    let items = match raw {
        None | Some(Value::Null) => return Err(Invalid("contact_ids is required".into())),
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
            _ => item.as_i64().filter(|id| *id > 0),
        };
        let id = id.ok_or_else(invalid)?;
        if seen.insert(id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn group_name_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(GROUP_NAME_MAX_CHARS))
        .pattern(Some(r"\S"))
        .description(Some(
            "Unique among the pair's groups; surrounding spaces are dropped.",
        ))
        .examples([serde_json::json!("VIP customers")])
        .build()
}

fn group_description_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .max_length(Some(GROUP_DESCRIPTION_MAX_CHARS))
        .build()
}

/// 1 to 1,000 contact ids, each a positive integer or its digits as a string.
fn contact_id_list() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(positive_id_in_body()))
        .min_items(Some(1))
        .max_items(Some(MAX_MEMBERS))
        .examples([serde_json::json!([1, 2, 3])])
        .into()
}
