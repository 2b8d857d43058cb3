//! The one place this worker's errors become HTTP responses, in Anthropic's envelope and
//! with the statuses and `error.type`s the native server uses.

use openma_core::DomainError;
use openma_types::{ErrorCodeDetails, ErrorDetail, ErrorEnvelope, ErrorTag};
use worker::{Response, Result};

/// An error on its way to the client.
pub struct ApiError {
    status: u16,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), code: None }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// The SDK's `ErrorType` for a status.
    fn error_type(&self) -> &'static str {
        match self.status {
            400 | 405 | 415 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    pub fn into_response(self, request_id: &str) -> Result<Response> {
        let body = ErrorEnvelope {
            tag: ErrorTag::Value,
            error: ErrorDetail {
                kind: self.error_type().to_owned(),
                message: self.message,
                details: self.code.map(|c| ErrorCodeDetails { error_code: c.to_owned() }),
                conflicting_memory_id: None,
            },
            request_id: Some(request_id.to_owned()),
        };
        let mut response = Response::from_json(&body)?.with_status(self.status);
        if self.status == 409 {
            // A conflict cannot succeed on a resend; the SDKs honour this header.
            response.headers_mut().set("x-should-retry", "false")?;
        }
        Ok(response)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let (status, message, code) = match e {
            DomainError::Invalid { message, code } => (400, message, code),
            DomainError::NotFound(message) => (404, message, None),
            DomainError::Gone { message, code } => (404, message, Some(code)),
            DomainError::TooLarge(message) => (413, message, None),
            DomainError::PaymentRequired(message) => (402, message, None),
            DomainError::QuotaExceeded { message, .. } => (429, message, Some("quota_exceeded")),
            DomainError::Conflict { message, code } => (409, message, code),
            DomainError::MemoryPrecondition(message) => (409, message, None),
            DomainError::MemoryPathConflict { message, .. } => (409, message, None),
            DomainError::Unavailable(message) => (503, message, None),
            DomainError::Store(e) => {
                worker::console_error!("storage failure: {e}");
                (500, "internal server error; the request id identifies it in the worker's log".to_owned(), None)
            }
        };
        ApiError { status, message, code }
    }
}

/// `req_` and 128 random bits, from Web Crypto.
pub fn new_request_id() -> String {
    format!("req_{}", hex(&random::<16>()))
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("Web Crypto is always present in workerd");
    b
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
