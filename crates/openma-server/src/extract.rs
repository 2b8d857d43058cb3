//! Request parsing at the edge: JSON bodies and query strings into typed values, with
//! errors that name the offending field. Also the per-request id.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served (`req_…`), or `req_unknown` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| "req_unknown".to_owned())
}

/// Gives every request an id, visible to handlers and logs and returned as `request-id`.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = format!("req_{}", ulid::Ulid::new());
    let mut response = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = id.parse() {
        response.headers_mut().insert("request-id", v);
    }
    response
}

/// A JSON body. An empty body reads as `{}` (the SDKs send empty POSTs with a JSON
/// content type); errors name the field path.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("could not read the request body: {}", e.body_text())))?;
        openma_core::edge::json_body(&bytes).map(ApiJson).map_err(ApiError::from)
    }
}

/// A query string, with the SDK's bracket forms (`statuses[]=…`, `created_at[gte]=…`).
/// Unknown parameters (such as the SDK's `beta=true`) are ignored.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        openma_core::edge::query(query).map(ApiQuery).map_err(ApiError::from)
    }
}

/// A path parameter; malformed percent-encoding becomes a 404 in the error envelope,
/// since no object can have such an id.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::not_found(format!("no such object: {}", e.body_text())))
    }
}
