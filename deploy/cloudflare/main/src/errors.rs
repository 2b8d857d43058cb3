//! Errors in Anthropic's envelope, the same shape the native server returns.

use openma_types::{ErrorDetail, ErrorEnvelope, ErrorTag};
use worker::{Response, Result};

/// An error on its way to the client.
pub struct ApiError {
    status: u16,
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: 404, kind: "not_found_error", message: message.into() }
    }

    pub fn into_response(self, request_id: &str) -> Result<Response> {
        let body = ErrorEnvelope {
            tag: ErrorTag::Value,
            error: ErrorDetail { kind: self.kind.to_owned(), message: self.message, details: None, conflicting_memory_id: None },
            request_id: Some(request_id.to_owned()),
        };
        Ok(Response::from_json(&body)?.with_status(self.status))
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
