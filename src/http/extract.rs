//! Extractors that turn every malformed request into *our* error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Caller;
use crate::domain::{Pair, PlaceId, UserId};
use crate::http::error::AppError;

/// Who is calling, as the auth middleware decided. Routes outside that middleware have no
/// caller, and anything asking for one there is refused rather than let through.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .copied()
            .ok_or_else(|| AppError::Unauthorized("An API key is required".into()))
    }
}

/// A request body: JSON, or `application/x-www-form-urlencoded` (the earlier service's
/// clients post forms: Laravel's `asForm()`, jQuery's `$.post`) read into the same JSON shape
/// (see [`super::form`]), so both follow the same rules. JSON is parsed whatever the content
/// type says (back offices are not always careful with headers); an empty body is `{}`, so a
/// missing field is named, not "EOF".
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let form = super::form::is_form(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge("Request body is too large".into())
            } else {
                AppError::BadRequest(format!("Could not read the request body: {r}"))
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let value: Value = match form.then(|| super::form::to_json(bytes)).flatten() {
            Some(v) => v?,
            None => serde_json::from_slice(bytes)
                .map_err(|e| AppError::BadRequest(format!("Malformed JSON body: {e}")))?,
        };
        if !value.is_object() {
            return Err(AppError::BadRequest(
                "Request body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| AppError::BadRequest(format!("Invalid request body: {e}")))
    }
}

/// A JSON object body read under `limit` bytes and parsed straight into `T`, with no
/// intermediate `Value`: for bodies too large to hold twice (the sim's phone books).
/// A form body (`form`) is read the same way, then into the JSON shape (see [`super::form`]).
pub async fn large_body<T: DeserializeOwned>(
    body: axum::body::Body,
    limit: usize,
    form: bool,
) -> Result<T, AppError> {
    use http_body_util::BodyExt;
    let too_large =
        || AppError::PayloadTooLarge(format!("Request body is larger than {limit} bytes"));
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                AppError::BadRequest(format!("Could not read the request body: {e}"))
            }
        })?
        .to_bytes();
    if let Some(value) = form.then(|| super::form::to_json(&bytes)).flatten() {
        return serde_json::from_value(value?)
            .map_err(|e| AppError::BadRequest(format!("Invalid request body: {e}")));
    }
    let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        // serde reads a struct from an array too: refuse anything but an object first.
        Some(b'{') => &bytes,
        Some(_) => {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    Ok(_) => AppError::BadRequest("Request body must be a JSON object".into()),
                    Err(e) => AppError::BadRequest(format!("Malformed JSON body: {e}")),
                },
            );
        }
    };
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            AppError::BadRequest(format!("Invalid request body: {e}"))
        }
        _ => AppError::BadRequest(format!("Malformed JSON body: {e}")),
    })
}

/// The query string read into a route's parameter type `T` (a struct of `Option<String>`
/// fields that also derives `IntoParams`, so the document lists what is read). Values stay
/// text here and are parsed, with messages naming the field, by the type's own methods.
/// Parameters the route does not know never get this far: [`super::params::refuse_unknown`]
/// answers 400 first, from the same `IntoParams` declarations.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let mut seen = serde_json::Map::new();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            // The first value wins, like most frameworks do.
            seen.entry(k.into_owned())
                .or_insert_with(|| Value::String(v.into_owned()));
        }
        // Through JSON values rather than serde's plain string deserializer, which cannot
        // fill the `Option<String>` fields these types are made of.
        T::deserialize(Value::Object(seen))
            .map(Params)
            .map_err(|e| AppError::BadRequest(format!("Invalid query: {e}")))
    }
}

/// `user_id` and `place_id` of a query string: the pair a route reads.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PairQuery {
    /// The back office's user: a positive 64-bit integer.
    #[param(value_type = i64, minimum = 1, example = 1, required = true)]
    user_id: Option<String>,
    /// The user's place (shop, branch): a positive 64-bit integer.
    #[param(value_type = i64, minimum = 1, example = 1, required = true)]
    place_id: Option<String>,
}

impl PairQuery {
    /// The pair named, if the caller may act on it.
    pub fn pair(&self, caller: Caller) -> Result<Pair, AppError> {
        Ok(caller.scope(Pair::new(
            UserId::from_text(self.user_id.as_deref())?,
            PlaceId::from_text(self.place_id.as_deref())?,
        ))?)
    }
}

/// `page` and `limit` of a listing.
#[derive(serde::Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    limit: Option<String>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 1_000;

    /// `page` ≥ 1 (default 1) and `limit` in 1..=1000 (default 50).
    pub fn page_and_limit(&self) -> Result<(i64, i64), AppError> {
        page_and_limit(self.page.as_deref(), self.limit.as_deref())
    }
}

impl utoipa::IntoParams for PageQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let integer = |max: Option<i64>, default: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(super::schema::int64())
                .minimum(Some(1))
                .maximum(max)
                .default(Some(default.into()))
                .build()
        };
        vec![
            super::schema::optional_query("page", "Page number, from 1.", integer(None, 1)),
            super::schema::optional_query(
                "limit",
                "Items per page.",
                integer(Some(Self::MAX_LIMIT), Self::DEFAULT_LIMIT),
            ),
        ]
    }
}

fn page_and_limit(page: Option<&str>, limit: Option<&str>) -> Result<(i64, i64), AppError> {
    let page = match page {
        None => 1,
        Some(s) => crate::domain::parse_positive_str("page", s)?,
    };
    let limit = match limit {
        None => PageQuery::DEFAULT_LIMIT,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(v) if (1..=PageQuery::MAX_LIMIT).contains(&v) => v,
            _ => {
                return Err(AppError::BadRequest(format!(
                    "limit must be an integer between 1 and {}",
                    PageQuery::MAX_LIMIT
                )));
            }
        },
    };
    Ok((page, limit))
}

/// The pair a request acts on.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct PairRequest {
    #[serde(default)]
    #[schema(schema_with = super::schema::positive_id_in_body, required = true)]
    pub user_id: Option<Value>,
    #[serde(default)]
    #[schema(schema_with = super::schema::positive_id_in_body, required = true)]
    pub place_id: Option<Value>,
}

impl PairRequest {
    pub fn pair(&self, caller: Caller) -> Result<Pair, AppError> {
        pair_from(caller, &self.user_id, &self.place_id)
    }
}

/// The pair of a JSON body, if the caller may act on it.
pub fn pair_from(
    caller: Caller,
    user_id: &Option<Value>,
    place_id: &Option<Value>,
) -> Result<Pair, AppError> {
    Ok(caller.scope(Pair::new(
        UserId::from_json(user_id.as_ref())?,
        PlaceId::from_json(place_id.as_ref())?,
    ))?)
}

/// Where a page sits in a listing. `has_next` and `has_prev` are the earlier service's
/// names, kept for its clients.
#[derive(serde::Serialize, utoipa::ToSchema, Debug, Clone, Copy)]
pub struct Pagination {
    #[schema(minimum = 1)]
    pub page: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: i64,
    #[schema(minimum = 0)]
    pub total: i64,
    #[schema(minimum = 0)]
    pub pages: i64,
    /// Whether a page follows this one.
    pub has_next: bool,
    /// Whether a page comes before this one.
    pub has_prev: bool,
}

impl Pagination {
    pub fn new(page: i64, limit: i64, total: i64) -> Self {
        let pages = (total + limit - 1) / limit;
        Self {
            page,
            limit,
            total,
            pages,
            has_next: page < pages,
            has_prev: page > 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Filter {
        a: Option<String>,
        b: Option<String>,
    }

    #[tokio::test]
    async fn params_fill_optional_fields_and_the_first_value_wins() {
        let (mut parts, ()) = axum::http::Request::builder()
            .uri("/x?a=1&a=2")
            .body(())
            .unwrap()
            .into_parts();
        let Params(f) = Params::<Filter>::from_request_parts(&mut parts, &())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.a.as_deref(), Some("1"));
        assert_eq!(f.b, None);
    }
}
