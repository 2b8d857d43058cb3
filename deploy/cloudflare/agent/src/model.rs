//! The model over `fetch`: the same request bodies, SSE decoding and error mapping as the
//! native clients (`openma_models::wire`), sent with the Workers' own HTTP. The provider is
//! chosen by model id as natively, from `ANTHROPIC_*` / `OPENAI_*` (keys are secrets).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use openma_core::model::{ModelError, ModelRequest, ModelStream};
use openma_models::wire::{self, Wire};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

/// A provider endpoint and its key.
pub struct ModelEndpoint {
    wire: Wire,
    base_url: String,
    api_key: String,
}

/// A text binding (a secret, or a var from wrangler.jsonc or `.dev.vars`), unless empty.
pub(crate) fn text(env: &Env, name: &str) -> Option<String> {
    let value = env.secret(name).map(|s| s.to_string()).or_else(|_| env.var(name).map(|v| v.to_string()));
    value.ok().filter(|s| !s.is_empty())
}

impl ModelEndpoint {
    /// The endpoint for `model` and the id to send it.
    pub fn for_model<'m>(env: &Env, model: &'m str) -> Result<(Self, &'m str), ModelError> {
        let anthropic = text(env, wire::ANTHROPIC_API_KEY);
        let openai = text(env, wire::OPENAI_API_KEY);
        let (wire, id) = wire::route(model, anthropic.is_some(), openai.is_some())?;
        let (key, base_var, default_base) = match wire {
            Wire::Anthropic => (anthropic, wire::ANTHROPIC_BASE_URL, wire::DEFAULT_ANTHROPIC_BASE_URL),
            Wire::OpenAi => (openai, wire::OPENAI_BASE_URL, wire::DEFAULT_OPENAI_BASE_URL),
        };
        let base_url = text(env, base_var).unwrap_or_else(|| default_base.to_owned());
        Ok((ModelEndpoint { wire, base_url, api_key: key.unwrap_or_default() }, id))
    }

    /// Sends the request; returns once the status is known. Every error message has the
    /// key redacted.
    pub async fn stream(&self, request: &ModelRequest, model: &str) -> Result<ModelStream, ModelError> {
        let wire = self.wire;
        let redact = |e| wire::redact(e, &self.api_key);
        let headers = Headers::new();
        let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| wire.unreachable(e));
        set("content-type", "application/json")?;
        set("accept", "text/event-stream")?;
        match wire {
            Wire::Anthropic => {
                set("x-api-key", &self.api_key)?;
                set("anthropic-version", wire::ANTHROPIC_VERSION)?;
            }
            Wire::OpenAi => set("authorization", &format!("Bearer {}", self.api_key))?,
        }
        let body = wire.body(request, model).to_string();
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
        let req = Request::new_with_init(&wire.url(&self.base_url), &init).map_err(|e| redact(wire.unreachable(e)))?;
        let mut resp = Fetch::Request(req).send().await.map_err(|e| redact(wire.unreachable(e)))?;
        let status = resp.status_code();
        if !(200..300).contains(&status) {
            let mut map = http::HeaderMap::new();
            for name in ["retry-after", "retry-after-ms"] {
                if let Some(v) = resp.headers().get(name).ok().flatten().and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                    map.insert(name, v);
                }
            }
            let mut text = resp.text().await.unwrap_or_default();
            text.truncate(wire::MAX_ERROR_BODY);
            let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            // workerd has no system clock for std: its Date.now()
            let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(worker::Date::now().as_millis());
            return Err(redact(wire.error(status, &map, &text, now)));
        }
        let bytes = resp.stream().map_err(|e| redact(wire.unreachable(e)))?.map(|chunk| chunk.map_err(|e| e.to_string()));
        let key = self.api_key.clone();
        Ok(wire.decode(Local(Box::pin(bytes))).map(move |item| item.map_err(|e| wire::redact(e, &key))).boxed())
    }
}

/// A JavaScript-backed stream, declared `Send` so the core's decoder takes it.
struct Local<S>(Pin<Box<S>>);

// SAFETY: workerd runs an isolate on one thread; the stream never leaves it.
unsafe impl<S> Send for Local<S> {}

impl<S: Stream> Stream for Local<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}
