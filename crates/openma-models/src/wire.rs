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

/// The variables that configure the providers, natively and on Workers alike.
pub const ANTHROPIC_API_KEY: &str = "ANTHROPIC_API_KEY";
pub const ANTHROPIC_BASE_URL: &str = "ANTHROPIC_BASE_URL";
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
pub const OPENAI_BASE_URL: &str = "OPENAI_BASE_URL";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com";

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

    /// A non-2xx answer as a [`ModelError`] (retryable or not, honouring `retry-after`,
    /// which may be an HTTP date: `now` is the caller's clock).
    pub fn error(self, status: http::StatusCode, headers: &http::HeaderMap, body: &str, now: std::time::SystemTime) -> ModelError {
        errors::from_status_at(self.provider(), status, headers, body, now)
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

/// The wire and the id to send for `model`. `openai/m`, `openai:m`, `anthropic/m` and
/// `anthropic:m` name the provider; `claude…` is Anthropic's; any other id goes to the
/// OpenAI-compatible endpoint when one is configured, else to Anthropic. Fails as
/// `NotConfigured`, naming the variable to set, when the chosen provider has no key.
pub fn route(model: &str, anthropic: bool, openai: bool) -> Result<(Wire, &str), ModelError> {
    let not_configured = |message: String| ModelError::Permanent { kind: openma_core::model::PermanentKind::NotConfigured, message };
    let prefixed = |p: &str| model.strip_prefix(p).and_then(|r| r.strip_prefix(['/', ':']));
    let (wire, id) = if let Some(id) = prefixed("openai") {
        (Wire::OpenAi, id)
    } else if let Some(id) = prefixed("anthropic") {
        (Wire::Anthropic, id)
    } else if model.starts_with("claude") {
        (Wire::Anthropic, model)
    } else if openai {
        (Wire::OpenAi, model)
    } else if anthropic {
        (Wire::Anthropic, model)
    } else {
        return Err(not_configured(format!("no model provider is configured for model `{model}`: set {OPENAI_API_KEY} or {ANTHROPIC_API_KEY}")));
    };
    let (configured, key) = match wire {
        Wire::Anthropic => (anthropic, ANTHROPIC_API_KEY),
        Wire::OpenAi => (openai, OPENAI_API_KEY),
    };
    if !configured {
        return Err(not_configured(format!("model `{model}` needs the {wire:?} provider, which is not configured: set {key}")));
    }
    Ok((wire, id))
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
