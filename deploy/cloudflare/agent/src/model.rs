//! The model over `fetch`: the same request bodies, SSE decoding and error mapping as the
//! native clients (`openma_models::wire`), sent with the Workers' own HTTP. The provider is
//! the tenant's model card for the model (BYOK, keys sealed in D1), else chosen by model id
//! as natively, from `ANTHROPIC_*` / `OPENAI_*` (keys are secrets).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use openma_core::model::{ModelError, ModelRequest, ModelStream, PermanentKind, TransientKind};
use openma_core::model_cards;
use openma_core::ports::ModelCardStore;
use openma_core::secrets::{RootSecret, SecretBox};
use openma_core::TenantId;
use openma_worker_common::d1::D1;
use openma_models::wire::{self, Wire};
use worker::{Env, Fetch, Headers, Method, Request, RequestInit};

/// A provider endpoint, its key, and the extra headers of a model card.
pub struct ModelEndpoint {
    wire: Wire,
    base_url: String,
    api_key: String,
    headers: Vec<(String, String)>,
    /// The model card's prices (its overrides of the deployment's), for the ledger.
    pub prices: Vec<openma_types::model_cards::ModelPriceOverride>,
}

pub(crate) use openma_worker_common::text;

impl ModelEndpoint {
    /// The endpoint for a tenant's `model` and the id to send it: the tenant's model card
    /// for the model (BYOK; read on every call, so a change applies to the next one), else
    /// this worker's own provider keys. As natively (`runtime/models.rs`).
    pub async fn for_tenant(env: &Env, tenant: &TenantId, model: &str) -> Result<(Self, String), ModelError> {
        let db = D1::new(env.d1("DB").map_err(|e| unreadable(e.to_string()))?);
        let cards = db.active_model_cards(tenant).await.map_err(|e| unreadable(e.to_string()))?;
        let Some(stored) = model_cards::resolve(&cards, model) else {
            return Self::from_env(env, model).map(|(e, id)| (e, id.to_owned()));
        };
        let card = &stored.card;
        let unusable = |why: String| ModelError::Permanent { kind: PermanentKind::NotConfigured, message: format!("model card `{}` cannot be used: {why}", card.id) };
        let root = text(env, "PLATFORM_ROOT_SECRET")
            .and_then(|t| RootSecret::from_text(&t))
            .ok_or_else(|| unusable("openma-agent has no PLATFORM_ROOT_SECRET (put the same secret as on openma-main)".into()))?;
        let api_key = model_cards::open_key(&SecretBox::new(root, vec![]), tenant, stored)
            .map_err(|e| unusable(format!("its API key cannot be decrypted ({e}); set the key again with an update")))?;
        let (wire, default_base) = if card.provider.is_anthropic() {
            (Wire::Anthropic, wire::DEFAULT_ANTHROPIC_BASE_URL)
        } else {
            (Wire::OpenAi, wire::DEFAULT_OPENAI_BASE_URL)
        };
        let base_url = card.base_url.clone().unwrap_or_else(|| default_base.to_owned());
        let headers = card.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let id = model_cards::provider_model_id(card.provider, model).to_owned();
        Ok((ModelEndpoint { wire, base_url, api_key, headers, prices: card.prices.clone() }, id))
    }

    /// The endpoint of this worker's own keys for `model`, and the id to send it.
    fn from_env<'m>(env: &Env, model: &'m str) -> Result<(Self, &'m str), ModelError> {
        let anthropic = text(env, wire::ANTHROPIC_API_KEY);
        let openai = text(env, wire::OPENAI_API_KEY);
        let (wire, id) = wire::route(model, anthropic.is_some(), openai.is_some())?;
        let (key, base_var, default_base) = match wire {
            Wire::Anthropic => (anthropic, wire::ANTHROPIC_BASE_URL, wire::DEFAULT_ANTHROPIC_BASE_URL),
            Wire::OpenAi => (openai, wire::OPENAI_BASE_URL, wire::DEFAULT_OPENAI_BASE_URL),
        };
        let base_url = text(env, base_var).unwrap_or_else(|| default_base.to_owned());
        Ok((ModelEndpoint { wire, base_url, api_key: key.unwrap_or_default(), headers: Vec::new(), prices: Vec::new() }, id))
    }

    /// Sends the request; returns once the status is known. Every error message has the
    /// key redacted.
    pub async fn stream(&self, request: &ModelRequest, model: &str) -> Result<ModelStream, ModelError> {
        let wire = self.wire;
        let redact = |e| wire::redact(e, &self.api_key);
        let headers = Headers::new();
        let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| wire.unreachable(e));
        // a card's own headers first: the ones below may not be overridden (the core
        // refuses them on the card, as natively)
        for (name, value) in &self.headers {
            set(name, value)?;
        }
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

/// The tenant's cards could not be read: worth a retry.
fn unreadable(why: String) -> ModelError {
    ModelError::Transient { kind: TransientKind::ServerError, message: format!("cannot read this tenant's model cards: {why}"), retry_after: None }
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
