//! No silently ignored query parameter: a name a route does not take answers 400 naming it,
//! so a misspelt or foreign filter (`serach=`, the earlier service's names we never took) can
//! never widen a listing or a send. What a route takes is what its OpenAPI operation lists,
//! which comes from the same `IntoParams` types its handler reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};

use super::error::AppError;

/// The query parameter names of every documented route, by method and path template.
#[derive(Clone, Default)]
pub struct KnownParams(Arc<HashMap<(Method, String), HashSet<String>>>);

impl KnownParams {
    pub fn from_doc(doc: &OpenApi) -> Self {
        let mut map = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let ops: [(Method, Option<&Operation>); 5] = [
                (Method::GET, item.get.as_ref()),
                (Method::POST, item.post.as_ref()),
                (Method::PUT, item.put.as_ref()),
                (Method::PATCH, item.patch.as_ref()),
                (Method::DELETE, item.delete.as_ref()),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let names = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                map.insert((method, path.clone()), names);
            }
        }
        Self(Arc::new(map))
    }

    /// The first parameter of `query` that the route does not take. `None` for routes outside
    /// the document (the documentation pages themselves).
    fn unknown(&self, method: &Method, path: &str, query: &str) -> Option<String> {
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        let known = self.0.get(&(method, path.to_owned()))?;
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| k)
            .find(|k| !k.is_empty() && !known.contains(k.as_ref()))
            .map(|k| k.into_owned())
    }
}

pub async fn refuse_unknown(
    State(known): State<KnownParams>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(path), Some(query)) = (matched, req.uri().query())
        && let Some(name) = known.unknown(req.method(), path.as_str(), query)
    {
        return AppError::BadRequest(format!("unknown query parameter: {name}")).into_response();
    }
    next.run(req).await
}
