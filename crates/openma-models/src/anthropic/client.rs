//! The HTTP client (reqwest) of this adapter.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use openma_core::model::{ModelClient, ModelError, ModelRequest, ModelStream};
use secrecy::SecretString;

use super::{ANTHROPIC_VERSION, decode, request};
use crate::http::{self, DEFAULT_IDLE_TIMEOUT};

/// A client of one Anthropic-compatible endpoint.
#[derive(Clone)]
pub struct AnthropicClient {
    base_url: String,
    api_key: SecretString,
    http: reqwest::Client,
    idle_timeout: Duration,
    /// Extra headers of every request (a model card's custom headers).
    headers: reqwest::header::HeaderMap,
}

impl AnthropicClient {
    /// `base_url` is the origin, e.g. `https://api.anthropic.com` (a trailing `/v1` is
    /// tolerated). Build `http` with [`crate::http_client`] for sensible timeouts.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<SecretString>, http: reqwest::Client) -> Self {
        Self { base_url: base_url.into(), api_key: api_key.into(), http, idle_timeout: DEFAULT_IDLE_TIMEOUT, headers: Default::default() }
    }

    /// How long the stream may stay silent before the call fails as a network error.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Headers sent with every request, before the client's own (which win on a clash).
    pub fn with_headers(mut self, headers: reqwest::header::HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stream `request` with `model` as the provider's model id (the router strips its
    /// prefixes before calling this).
    pub(crate) async fn stream_model(&self, request: &ModelRequest, model: &str) -> Result<ModelStream, ModelError> {
        let body = request::body(request, model);
        let call = self
            .http
            .post(http::endpoint(&self.base_url, "messages"))
            .headers(self.headers.clone())
            .header("x-api-key", http::secret_header("anthropic", &self.api_key)?)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("accept", "text/event-stream")
            .json(&body);
        http::open_stream("anthropic", call, decode::AnthropicDecoder::default(), self.idle_timeout, &self.api_key)
            .await
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        self.stream_model(&request, &request.model).await
    }
}

impl fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("idle_timeout", &self.idle_timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}
