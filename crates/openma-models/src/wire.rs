//! The providers' wire formats without a transport: request bodies, SSE decoding and the
//! mapping of failures to [`ModelError`]s. The native clients send with reqwest; a runtime
//! that brings its own HTTP (the Cloudflare Workers' `fetch`) sends these same bodies and
//! decodes with these same decoders, so a model call means the same on both.

use std::fmt::Display;
use std::time::Duration;

use futures::Stream;
use openma_core::model::{ModelError, ModelRequest, ModelStream};
use serde_json::Value;

pub use crate::anthropic::ANTHROPIC_VERSION;
use crate::{anthropic, errors, openai, stream};

/// How long a stream may stay silent (before the response headers, or between events)
/// before it counts as a dead connection. Anthropic pings well within this; long
/// thinking on OpenAI-compatible servers may need more, hence configurable per client.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Error bodies need be read only this far: enough for the message, never a whole page.
pub const MAX_ERROR_BODY: usize = errors::MAX_ERROR_BODY;

/// A provider's wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Anthropic Messages, `POST {base}/v1/messages`.
    Anthropic,
    /// OpenAI-compatible Chat Completions, `POST {base}/v1/chat/completions`.
    OpenAi,
}

impl Wire {
    /// The provider's name in error messages.
    pub fn provider(self) -> &'static str {
        match self {
            Wire::Anthropic => "anthropic",
            Wire::OpenAi => "openai",
        }
    }

    /// The streaming endpoint under `base` (which may or may not end in `/v1`).
    pub fn url(self, base: &str) -> String {
        endpoint(base, if self == Wire::Anthropic { "messages" } else { "chat/completions" })
    }

    /// The streaming request body for `request`, with `model` as the provider's model id.
    pub fn body(self, request: &ModelRequest, model: &str) -> Value {
        match self {
            Wire::Anthropic => anthropic::request::body(request, model),
            Wire::OpenAi => openai::request::body(request, model),
        }
    }

    /// Decodes a 2xx response body. The stream ends with the message's last event or with
    /// exactly one error (a cut, malformed data, or an error the provider sent in-stream).
    pub fn decode<S, B, E>(self, bytes: S) -> ModelStream
    where
        S: Stream<Item = Result<B, E>> + Send + 'static,
        B: AsRef<[u8]> + Send + 'static,
        E: Display + Send + 'static,
    {
        let provider = self.provider();
        match self {
            Wire::Anthropic => stream::decode(provider, bytes, anthropic::decode::AnthropicDecoder::default(), DEFAULT_IDLE_TIMEOUT),
            Wire::OpenAi => stream::decode(provider, bytes, openai::decode::OpenAiDecoder::default(), DEFAULT_IDLE_TIMEOUT),
        }
    }

    /// A non-2xx answer as a [`ModelError`] (retryable or not, honouring `retry-after`).
    pub fn error(self, status: http::StatusCode, headers: &http::HeaderMap, body: &str) -> ModelError {
        errors::from_status(self.provider(), status, headers, body)
    }

    /// The HTTP exchange itself failed (no status): a network error, retried.
    pub fn unreachable(self, detail: impl Display) -> ModelError {
        ModelError::Transient {
            kind: openma_core::model::TransientKind::Network,
            message: format!("{}: {detail}", self.provider()),
            retry_after: None,
        }
    }
}

/// Replaces every occurrence of `secret` in the error's message.
pub fn redact(err: ModelError, secret: &str) -> ModelError {
    errors::redact(err, secret)
}

/// `base` + `path`, where `base` may or may not already end in `/v1` (OpenAI-compatible
/// servers are often configured as `http://host:port/v1`).
pub(crate) fn endpoint(base: &str, path_after_v1: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/{}", path_after_v1.trim_start_matches('/'))
}
