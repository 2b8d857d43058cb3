//! How an error travels over HTTP — status, the SDK's `error.type`, message, code and
//! retry hint — decided once for every deployment (the native server's `ApiError` and
//! the Workers' responses are both built from an [`HttpError`]).

use openma_types::{ErrorCodeDetails, ErrorDetail, ErrorEnvelope, ErrorTag};

use crate::error::{DomainError, StoreError};

/// What a storage failure is told: the details go to the deployment's log only.
pub const INTERNAL_MESSAGE: &str = "internal server error; the request id identifies it in the server log";

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    /// The SDK's `ErrorType`.
    pub kind: &'static str,
    pub message: String,
    /// `error.details.error_code`.
    pub code: Option<&'static str>,
    /// `retry-after`, in seconds.
    pub retry_after_secs: Option<u64>,
    /// For `memory_path_conflict_error`: the memory that holds the path.
    pub conflicting_memory_id: Option<String>,
}

/// The SDK's `ErrorType` for a status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        HttpError { status, kind: error_type(status), message: message.into(), code: None, retry_after_secs: None, conflicting_memory_id: None }
    }

    fn with_code(self, code: Option<&'static str>) -> Self {
        HttpError { code, ..self }
    }

    /// A conflict cannot succeed on a resend: answered with `x-should-retry: false`.
    pub fn should_not_retry(&self) -> bool {
        self.status == 409
    }

    /// The body: Anthropic's error envelope.
    pub fn envelope(&self, request_id: &str) -> ErrorEnvelope {
        ErrorEnvelope {
            tag: ErrorTag::Value,
            error: ErrorDetail {
                kind: self.kind.to_owned(),
                message: self.message.clone(),
                details: self.code.map(|c| ErrorCodeDetails { error_code: c.to_owned() }),
                conflicting_memory_id: self.conflicting_memory_id.clone(),
            },
            request_id: Some(request_id.to_owned()),
        }
    }
}

/// Storage failures become a bare 500 (or a 409 for an unexpected duplicate); the caller
/// logs [`DomainError::Store`] before converting, with its request id.
impl From<DomainError> for HttpError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { message, code } => HttpError::new(400, message).with_code(code),
            DomainError::NotFound(message) => HttpError::new(404, message),
            DomainError::Gone { message, code } => HttpError::new(404, message).with_code(Some(code)),
            DomainError::TooLarge(message) => HttpError::new(413, message),
            DomainError::PaymentRequired(message) => HttpError::new(402, message),
            DomainError::QuotaExceeded { message, retry_after_secs } => {
                HttpError { retry_after_secs: Some(retry_after_secs), ..HttpError::new(429, message).with_code(Some("quota_exceeded")) }
            }
            DomainError::Conflict { message, code } => HttpError::new(409, message).with_code(code),
            DomainError::MemoryPrecondition(message) => HttpError { kind: "memory_precondition_failed_error", ..HttpError::new(409, message) },
            DomainError::MemoryPathConflict { message, conflicting_memory_id } => HttpError {
                kind: "memory_path_conflict_error",
                conflicting_memory_id: Some(conflicting_memory_id),
                ..HttpError::new(409, message)
            },
            DomainError::Unavailable(message) => HttpError { retry_after_secs: Some(1), ..HttpError::new(503, message) },
            DomainError::Store(StoreError::Duplicate(_)) => HttpError::new(409, "the object already exists"),
            DomainError::Store(StoreError::Backend(_)) => HttpError::new(500, INTERNAL_MESSAGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_error_has_one_status_and_type() {
        let cases = [
            (DomainError::invalid_code("invalid_page", "bad"), 400, "invalid_request_error", Some("invalid_page")),
            (DomainError::not_found("agent", "agent_x"), 404, "not_found_error", None),
            (DomainError::Gone { message: "gone".into(), code: "file_expired" }, 404, "not_found_error", Some("file_expired")),
            (DomainError::conflict("raced"), 409, "conflict_error", None),
            (DomainError::MemoryPrecondition("sha".into()), 409, "memory_precondition_failed_error", None),
            (DomainError::QuotaExceeded { message: "full".into(), retry_after_secs: 7 }, 429, "rate_limit_error", Some("quota_exceeded")),
            (DomainError::PaymentRequired("limit".into()), 402, "billing_error", None),
            (DomainError::Store(StoreError::Backend("disk on fire".into())), 500, "api_error", None),
        ];
        for (e, status, kind, code) in cases {
            let h = HttpError::from(e);
            assert_eq!((h.status, h.kind, h.code), (status, kind, code), "{h:?}");
            assert!(!h.message.contains("disk on fire"));
        }
        let h = HttpError::from(DomainError::QuotaExceeded { message: "full".into(), retry_after_secs: 7 });
        assert_eq!(h.retry_after_secs, Some(7));
        let env = serde_json::to_value(HttpError::new(401, "no key").envelope("req_1")).unwrap();
        assert_eq!(env, serde_json::json!({"type": "error", "error": {"type": "authentication_error", "message": "no key"}, "request_id": "req_1"}));
    }
}
