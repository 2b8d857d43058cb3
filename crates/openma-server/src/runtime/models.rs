//! Which provider client serves a tenant's model request: the tenant's model card for the
//! model (BYOK) when there is one, else the server's environment-configured router.
//!
//! The card is looked up on every request, so an update, archive or delete takes effect on
//! the next request without a restart, on every node. Provider clients are cached per card
//! and rebuilt when its `updated_at` moves; a decrypted key lives only inside its client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use openma_core::model::{ModelClient, ModelError, ModelRequest, ModelStream, PermanentKind, TransientKind};
use openma_core::model_cards::{StoredModelCard, open_key, provider_model_id, resolve};
use openma_core::{Platform, TenantId};
use openma_types::model_cards::ModelPriceOverride;
use openma_models::{AnthropicClient, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_OPENAI_BASE_URL, OpenAiClient};
use openma_types::Timestamp;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Cached clients beyond this are dropped all at once (cards are few; this bounds the
/// memory that deleted cards' clients could hold).
const MAX_CACHED: usize = 1024;

struct Cached {
    updated_at: Timestamp,
    client: Arc<dyn ModelClient>,
}

/// The model clients of every tenant.
pub struct ModelClients {
    platform: Platform,
    /// The router over `ANTHROPIC_*`/`OPENAI_*`: serves models no card covers.
    fallback: Arc<dyn ModelClient>,
    http: reqwest::Client,
    cards: Mutex<HashMap<(TenantId, String), Cached>>,
    /// The prices of the card that served each tenant's latest request for a model (empty:
    /// no card served it, or the card has no prices): what its ledger rows are priced with.
    prices: Mutex<HashMap<(TenantId, String), Vec<ModelPriceOverride>>>,
}

impl ModelClients {
    pub fn new(platform: Platform, fallback: Arc<dyn ModelClient>, http: reqwest::Client) -> Self {
        ModelClients { platform, fallback, http, cards: Mutex::new(HashMap::new()), prices: Mutex::new(HashMap::new()) }
    }

    /// The card prices for the tenant's latest request to `model` (see `prices`).
    pub fn card_prices(&self, tenant: &TenantId, model: &str) -> Vec<ModelPriceOverride> {
        let prices = self.prices.lock().expect("card prices");
        prices.get(&(tenant.clone(), model.to_owned())).cloned().unwrap_or_default()
    }

    fn remember_prices(&self, tenant: &TenantId, model: &str, card: Option<&StoredModelCard>) {
        let mut prices = self.prices.lock().expect("card prices");
        let key = (tenant.clone(), model.to_owned());
        match card.filter(|c| !c.card.prices.is_empty()) {
            Some(c) => {
                if prices.len() >= MAX_CACHED {
                    prices.clear();
                }
                prices.insert(key, c.card.prices.clone());
            }
            None => {
                prices.remove(&key);
            }
        }
    }

    /// The client a session of `tenant` calls.
    pub fn for_tenant(self: &Arc<Self>, tenant: &TenantId) -> Arc<dyn ModelClient> {
        Arc::new(TenantModels { clients: self.clone(), tenant: tenant.clone() })
    }

    /// Drops the cached clients (and with them the opened keys) of the tenant's cards that
    /// are archived or deleted.
    fn forget_retired(&self, tenant: &TenantId, live: &[StoredModelCard]) {
        let mut cache = self.cards.lock().expect("model client cache");
        cache.retain(|(t, id), _| t != tenant || live.iter().any(|c| c.card.id == *id));
    }

    /// The card's client, built (with its key opened) on first use or after a change.
    fn card_client(&self, tenant: &TenantId, card: &StoredModelCard) -> Result<Arc<dyn ModelClient>, ModelError> {
        let key = (tenant.clone(), card.card.id.clone());
        let mut cache = self.cards.lock().expect("model client cache");
        if let Some(c) = cache.get(&key)
            && c.updated_at == card.card.updated_at
        {
            return Ok(c.client.clone());
        }
        let client = self.build(tenant, card)?;
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, Cached { updated_at: card.card.updated_at, client: client.clone() });
        Ok(client)
    }

    fn build(&self, tenant: &TenantId, stored: &StoredModelCard) -> Result<Arc<dyn ModelClient>, ModelError> {
        let card = &stored.card;
        let unusable = |why: String| ModelError::Permanent {
            kind: PermanentKind::NotConfigured,
            message: format!("model card `{}` cannot be used: {why}", card.id),
        };
        let secrets = self.platform.secrets.as_deref().ok_or_else(|| unusable("the server has no root secret".into()))?;
        let api_key = open_key(secrets, tenant, stored)
            .map_err(|e| unusable(format!("its API key cannot be decrypted ({e}); set the key again with an update")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &card.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unusable(format!("header name `{name}` is invalid")))?;
            let value = HeaderValue::from_str(value).map_err(|_| unusable(format!("the value of header `{name}` is invalid")))?;
            headers.insert(name, value);
        }
        let client: Arc<dyn ModelClient> = if card.provider.is_anthropic() {
            let base = card.base_url.clone().unwrap_or_else(|| DEFAULT_ANTHROPIC_BASE_URL.to_owned());
            Arc::new(AnthropicClient::new(base, api_key, self.http.clone()).with_headers(headers))
        } else {
            let base = card.base_url.clone().unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
            Arc::new(OpenAiClient::new(base, api_key, self.http.clone()).with_headers(headers))
        };
        Ok(client)
    }
}

/// One tenant's view: resolves the card for each request's model.
struct TenantModels {
    clients: Arc<ModelClients>,
    tenant: TenantId,
}

#[async_trait]
impl ModelClient for TenantModels {
    async fn stream(&self, mut request: ModelRequest) -> Result<ModelStream, ModelError> {
        let live = self.clients.platform.store.active_model_cards(&self.tenant).await.map_err(|e| ModelError::Transient {
            kind: TransientKind::ServerError,
            message: format!("cannot read this tenant's model cards: {e}"),
            retry_after: None,
        })?;
        self.clients.forget_retired(&self.tenant, &live);
        self.clients.remember_prices(&self.tenant, &request.model, resolve(&live, &request.model));
        let Some(card) = resolve(&live, &request.model) else {
            return self.clients.fallback.stream(request).await;
        };
        let client = self.clients.card_client(&self.tenant, card)?;
        request.model = provider_model_id(card.card.provider, &request.model).to_owned();
        client.stream(request).await
    }
}
