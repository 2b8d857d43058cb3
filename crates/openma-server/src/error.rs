//! The one place errors become HTTP responses: status, `error.type`, message, the
//! `request-id`, and `x-should-retry: false` on conflicts (so the SDKs do not resend a
//! request that cannot succeed).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openma_core::http_error::{HttpError, INTERNAL_MESSAGE, error_type};
use openma_core::{DomainError, StoreError};
use openma_types::{ErrorCodeDetails, ErrorDetail, ErrorEnvelope, ErrorTag};

use crate::extract::current_request_id;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<&'static str>,
    /// For 429: when the client may try again.
    pub retry_after: Option<std::time::Duration>,
    /// An `error.type` more precise than the status's (the memory conflicts).
    pub kind: Option<&'static str>,
    /// For `memory_path_conflict_error`: the memory that holds the path.
    pub conflicting_memory_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), code: None, retry_after: None, kind: None, conflicting_memory_id: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("rate limit exceeded for this API key; retry in {secs} s"),
            code: Some("rate_limited"),
            retry_after: Some(std::time::Duration::from_secs(secs)),
            kind: None,
            conflicting_memory_id: None,
        }
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_MESSAGE)
    }
}

/// The status, type, code and retry hint every deployment shares (`openma_core::http_error`).
impl From<HttpError> for ApiError {
    fn from(h: HttpError) -> Self {
        ApiError {
            status: StatusCode::from_u16(h.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: h.message,
            code: h.code,
            retry_after: h.retry_after_secs.map(std::time::Duration::from_secs),
            kind: Some(h.kind),
            conflicting_memory_id: h.conflicting_memory_id,
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match &e {
            DomainError::Store(StoreError::Duplicate(what)) => {
                tracing::warn!(request_id = %current_request_id(), %what, "unexpected duplicate")
            }
            DomainError::Store(e) => tracing::error!(request_id = %current_request_id(), error = %e, "storage failure"),
            _ => {}
        }
        HttpError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let kind = self.kind.unwrap_or_else(|| error_type(self.status.as_u16()));
        let body = ErrorEnvelope {
            tag: ErrorTag::Value,
            error: ErrorDetail {
                kind: kind.to_owned(),
                message: self.message,
                details: self.code.map(|c| ErrorCodeDetails { error_code: c.to_owned() }),
                conflicting_memory_id: self.conflicting_memory_id,
            },
            request_id: Some(request_id),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::CONFLICT {
            response.headers_mut().insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if let Some(wait) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().to_string())
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // the rest of the body is not read: the connection cannot carry another request
            response.headers_mut().insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Unknown routes answer with the envelope too.
pub async fn route_not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}
