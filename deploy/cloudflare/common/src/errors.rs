//! The one place this worker's errors become HTTP responses. Status, `error.type`, code
//! and retry hint come from the core (`openma_core::http_error`), as on the native server.

use openma_core::DomainError;
use openma_core::http_error::HttpError;
use worker::{Response, Result};

/// An error on its way to the client, with what only the log may see.
pub struct ApiError {
    reply: HttpError,
    /// A storage failure's details: logged with the request id, never sent.
    log: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError { reply: HttpError::new(status, message), log: None }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// `429 rate_limit_error` (code `rate_limited`) with `retry-after`, as natively.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut reply = HttpError::new(429, format!("rate limit exceeded for this API key; retry in {retry_after_secs} s"));
        reply.code = Some("rate_limited");
        reply.retry_after_secs = Some(retry_after_secs);
        ApiError { reply, log: None }
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.reply.message
    }

    pub fn into_response(self, request_id: &str) -> Result<Response> {
        if let Some(detail) = &self.log {
            worker::console_error!("{request_id}: storage failure: {detail}");
        }
        let e = self.reply;
        let mut response = Response::from_json(&e.envelope(request_id))?.with_status(e.status);
        if e.should_not_retry() {
            // The SDKs honour this header: a conflict cannot succeed on a resend.
            response.headers_mut().set("x-should-retry", "false")?;
        }
        if let Some(secs) = e.retry_after_secs {
            response.headers_mut().set("retry-after", &secs.to_string())?;
        }
        Ok(response)
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let log = match &e {
            DomainError::Store(s) => Some(s.to_string()),
            _ => None,
        };
        ApiError { reply: HttpError::from(e), log }
    }
}

/// What the web console shows of an error; a storage failure's details go to the log.
impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        if let Some(detail) = &e.log {
            worker::console_error!("console: storage failure: {detail}");
        }
        e.reply
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
