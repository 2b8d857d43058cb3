//! Model cards (BYOK): a tenant's own provider configurations, and the rule that picks the
//! card for a model.
//!
//! A card's API key is sealed at once (its own purpose, bound to the tenant, the card and
//! the field) and only the server opens it, to call the provider. Responses show a hint of
//! its last characters. Archiving a card purges its key; deleting a card removes it, and
//! is always allowed: sessions do not hold cards, they resolve one on every model request.
//!
//! Resolution, for a tenant and an agent's model id: the unarchived card that lists the
//! model, else the tenant's unarchived default card, else none (the server's environment
//! keys then serve the request). A model id is listed by at most one unarchived card of a
//! tenant; should a race let two list it, the oldest card wins.

use std::collections::{BTreeMap, BTreeSet};

use openma_types::model_cards::{CreateModelCardRequest, ModelCard, ModelPriceOverride, ModelProvider, UpdateModelCardRequest};
use openma_types::{Metadata, Timestamp};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::paging::Page;
use crate::platform::{ListParams, Platform, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Clock, IdGen, ModelCardStore, Order};
use crate::secrets::{Binding, SecretBox, SecretError};
use crate::tenancy::TenantId;
use crate::validate;

/// Unarchived cards a tenant may hold.
pub const CARDS_PER_TENANT: i64 = 100;
/// Custom headers per card, and their sizes.
pub const MAX_HEADERS: usize = 32;
const MAX_HEADER_NAME: usize = 128;
const MAX_HEADER_VALUE: usize = 4096;
/// Model ids per card, and their length.
pub const MAX_MODELS: usize = 100;
const MAX_MODEL_ID: usize = 256;
const MAX_KEY: usize = 4096;
/// A key shorter than this gets no hint: four characters of it would be too much of it.
const HINT_MIN_KEY: usize = 12;
const HINT_CHARS: usize = 4;
pub const PURPOSE: &str = "model_card_api_key";
const FIELD: &str = "api_key";

/// Headers a card may not set: credentials go in `api_key`, and the rest belong to the
/// connection or to the request the client builds.
const RESERVED_HEADERS: &[&str] = &[
    "authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "host", "content-length", "content-type",
    "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect", "accept",
    "accept-encoding", "anthropic-version",
];

/// A card with what only the server keeps: its sealed key (`None` once archived).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredModelCard {
    pub card: ModelCard,
    pub sealed_key: Option<String>,
}

/// Seals the key of one card.
pub struct KeySealer<'a> {
    pub secrets: &'a SecretBox,
    pub tenant: &'a TenantId,
    pub card_id: &'a str,
    pub nonce: &'a (dyn Fn() -> [u8; 12] + Sync),
}

impl KeySealer<'_> {
    fn seal(&self, key: &str) -> String {
        self.secrets.seal(binding(self.tenant, self.card_id), key.as_bytes(), (self.nonce)())
    }
}

fn binding<'a>(tenant: &'a TenantId, card_id: &'a str) -> Binding<'a> {
    Binding { purpose: PURPOSE, tenant, owner: card_id, field: FIELD }
}

/// Opens a card's key (for the server's own calls to the provider only).
pub fn open_key(secrets: &SecretBox, tenant: &TenantId, c: &StoredModelCard) -> Result<String, SecretError> {
    let sealed = c.sealed_key.as_deref().ok_or(SecretError::Malformed)?;
    let bytes = secrets.open(binding(tenant, &c.card.id), sealed)?;
    String::from_utf8(bytes).map_err(|_| SecretError::Malformed)
}

/// The card re-sealed under `secrets`' current root (rotation); `None` when it holds no key.
pub fn reseal_key(secrets: &SecretBox, tenant: &TenantId, c: &StoredModelCard, nonce: [u8; 12]) -> Result<Option<StoredModelCard>, SecretError> {
    let Some(sealed) = &c.sealed_key else { return Ok(None) };
    let mut next = c.clone();
    next.sealed_key = Some(secrets.reseal(binding(tenant, &c.card.id), sealed, nonce)?);
    Ok(Some(next))
}

/// The card serving `model` among a tenant's unarchived cards (oldest first).
pub fn resolve<'c>(cards: &'c [StoredModelCard], model: &str) -> Option<&'c StoredModelCard> {
    let live = || cards.iter().filter(|c| c.card.archived_at.is_none());
    live().find(|c| c.card.models.iter().any(|m| m == model)).or_else(|| live().find(|c| c.card.is_default))
}

/// The model id to send a card's provider: a provider prefix of the card's own wire
/// format (`anthropic/`, `openai:`, …) is dropped, anything else is sent as the agent names it.
pub fn provider_model_id(provider: ModelProvider, model: &str) -> &str {
    let family = if provider.is_anthropic() { "anthropic" } else { "openai" };
    model.strip_prefix(family).and_then(|r| r.strip_prefix(['/', ':'])).filter(|r| !r.is_empty()).unwrap_or(model)
}

fn check_key(key: &str) -> DomainResult<()> {
    if key.trim().is_empty() {
        return Err(DomainError::invalid("`api_key` must not be empty"));
    }
    if key.len() > MAX_KEY {
        return Err(DomainError::invalid(format!("`api_key` must be at most {MAX_KEY} bytes")));
    }
    if !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(DomainError::invalid("`api_key` must be printable ASCII without spaces (it is sent in an HTTP header)"));
    }
    Ok(())
}

fn hint(key: &str) -> Option<String> {
    (key.len() >= HINT_MIN_KEY).then(|| key[key.len() - HINT_CHARS..].to_owned())
}

fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Validates custom headers and returns them with lower-case names.
fn check_headers(headers: &BTreeMap<String, String>) -> DomainResult<BTreeMap<String, String>> {
    if headers.len() > MAX_HEADERS {
        return Err(DomainError::invalid(format!("`headers` may hold at most {MAX_HEADERS} headers")));
    }
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if !is_token(name) || name.len() > MAX_HEADER_NAME {
            return Err(DomainError::invalid(format!("`headers` name `{name}` is not a valid HTTP header name (at most {MAX_HEADER_NAME} characters)")));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") || lower.starts_with("sec-") {
            return Err(DomainError::invalid(format!(
                "`headers` may not set `{name}`: the API key goes in `api_key`, and connection headers are the server's"
            )));
        }
        if value.len() > MAX_HEADER_VALUE || !value.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(DomainError::invalid(format!(
                "`headers` value of `{name}` must be printable ASCII of at most {MAX_HEADER_VALUE} bytes"
            )));
        }
        if out.insert(lower, value.clone()).is_some() {
            return Err(DomainError::invalid(format!("`headers` names `{name}` twice (header names are case-insensitive)")));
        }
    }
    Ok(out)
}

fn check_models(models: &[String]) -> DomainResult<()> {
    if models.len() > MAX_MODELS {
        return Err(DomainError::invalid(format!("`models` may list at most {MAX_MODELS} model ids")));
    }
    let mut seen = BTreeSet::new();
    for m in models {
        validate::length("models[]", m, 1, MAX_MODEL_ID)?;
        if m.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::invalid(format!("`models` entry `{m}` must not contain whitespace")));
        }
        if !seen.insert(m.as_str()) {
            return Err(DomainError::invalid(format!("`models` lists `{m}` twice")));
        }
    }
    Ok(())
}

/// Prices per card, and the largest price (a million dollars per million tokens).
pub const MAX_PRICES: usize = 100;
const MAX_PRICE_MICROS: u64 = 1_000_000_000_000;

/// Validates a card's new price list against its current one (empty on create) at `now`:
/// absent `effective_from` becomes `now`; prices in effect already (from `now` or before)
/// must come back unchanged, and new ones may not start in the past, so that no price ever
/// applies retroactively.
fn check_prices(next: &[ModelPriceOverride], current: &[ModelPriceOverride], now: Timestamp) -> DomainResult<Vec<ModelPriceOverride>> {
    if next.len() > MAX_PRICES {
        return Err(DomainError::invalid(format!("`prices` may hold at most {MAX_PRICES} entries")));
    }
    let mut out = Vec::with_capacity(next.len());
    let mut seen = BTreeSet::new();
    for (i, p) in next.iter().enumerate() {
        let mut p = p.clone();
        let from = *p.effective_from.get_or_insert(now);
        if let Some(m) = &p.model {
            validate::length(&format!("prices[{i}].model"), m, 1, MAX_MODEL_ID)?;
        }
        let rates = [
            ("input_per_mtok_micros", Some(p.input_per_mtok_micros)),
            ("output_per_mtok_micros", Some(p.output_per_mtok_micros)),
            ("cache_read_per_mtok_micros", p.cache_read_per_mtok_micros),
            ("cache_write_per_mtok_micros", p.cache_write_per_mtok_micros),
        ];
        for (name, v) in rates {
            if v.is_some_and(|v| v > MAX_PRICE_MICROS) {
                return Err(DomainError::invalid(format!("`prices[{i}].{name}` must be at most {MAX_PRICE_MICROS} micro-dollars")));
            }
        }
        if !seen.insert((p.model.clone(), from)) {
            return Err(DomainError::invalid(format!("`prices` has two entries for the same model and `effective_from` ({from})")));
        }
        if from < now && !current.contains(&p) {
            return Err(DomainError::invalid(format!(
                "`prices[{i}].effective_from` ({from}) is in the past: a price cannot apply retroactively; omit it to start now"
            )));
        }
        out.push(p);
    }
    if let Some(gone) = current.iter().find(|c| c.effective_from.is_some_and(|f| f <= now) && !out.contains(c)) {
        return Err(DomainError::invalid(format!(
            "`prices` must keep the price in effect since {} unchanged: past usage was priced with it; add a new entry with a later `effective_from` instead",
            gone.effective_from.unwrap_or(now)
        )));
    }
    Ok(out)
}

/// The rules that involve several fields at once.
fn check_card(c: &ModelCard) -> DomainResult<()> {
    match &c.base_url {
        Some(url) => validate::http_url("base_url", url)?,
        None if c.provider.needs_base_url() => {
            return Err(DomainError::invalid("`base_url` is required for the `anthropic_compatible` and `openai_compatible` providers"));
        }
        None => {}
    }
    if c.models.is_empty() && !c.is_default {
        return Err(DomainError::invalid("`models` must list at least one model id unless the card is the default (`is_default: true`)"));
    }
    Ok(())
}

pub fn new_card(req: &CreateModelCardRequest, now: Timestamp, sealer: &KeySealer<'_>) -> DomainResult<StoredModelCard> {
    validate::length("name", &req.name, 1, 255)?;
    check_key(&req.api_key.0)?;
    let headers = check_headers(&req.headers.clone().unwrap_or_default())?;
    let models = req.models.clone().unwrap_or_default();
    check_models(&models)?;
    let metadata = req.metadata.clone().unwrap_or_default();
    validate::metadata(&metadata)?;
    let card = ModelCard {
        id: sealer.card_id.to_owned(),
        tag: Default::default(),
        name: req.name.clone(),
        provider: req.provider,
        base_url: req.base_url.clone(),
        headers,
        models,
        is_default: req.is_default.unwrap_or(false),
        metadata,
        api_key_hint: hint(&req.api_key.0),
        prices: check_prices(req.prices.as_deref().unwrap_or_default(), &[], now)?,
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    check_card(&card)?;
    Ok(StoredModelCard { card, sealed_key: Some(sealer.seal(&req.api_key.0)) })
}

pub fn apply_update(current: &StoredModelCard, req: &UpdateModelCardRequest, now: Timestamp, sealer: &KeySealer<'_>) -> DomainResult<StoredModelCard> {
    if current.card.archived_at.is_some() {
        return Err(DomainError::invalid("archived model cards cannot be updated"));
    }
    if req.provider.is_some_and(|p| p != current.card.provider) {
        return Err(DomainError::invalid("a model card's `provider` cannot change; archive it and create another"));
    }
    let mut next = current.clone();
    let c = &mut next.card;
    if let Some(n) = &req.name {
        validate::length("name", n, 1, 255)?;
        c.name = n.clone();
    }
    if let Some(url) = &req.base_url {
        c.base_url = url.clone();
    }
    if let Some(h) = &req.headers {
        c.headers = check_headers(h)?;
    }
    if let Some(m) = &req.models {
        check_models(m)?;
        c.models = m.clone();
    }
    if let Some(d) = req.is_default {
        c.is_default = d;
    }
    if let Some(p) = &req.prices {
        c.prices = check_prices(p, &current.card.prices, now)?;
    }
    if let Some(patch) = &req.metadata {
        c.metadata = match patch {
            Some(p) => validate::patch_metadata(&c.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    check_card(c)?;
    if let Some(key) = &req.api_key {
        check_key(&key.0)?;
        // a key sent again unchanged still gets a fresh seal: the row cannot tell
        c.api_key_hint = hint(&key.0);
        next.sealed_key = Some(sealer.seal(&key.0));
    }
    if next != *current {
        next.card.updated_at = now.strictly_after(current.card.updated_at);
    }
    Ok(next)
}

/// Refuses a card that lists a model another unarchived card of the tenant lists.
fn check_models_free(card: &ModelCard, others: &[StoredModelCard]) -> DomainResult<()> {
    for o in others.iter().filter(|o| o.card.id != card.id && o.card.archived_at.is_none()) {
        if let Some(m) = card.models.iter().find(|m| o.card.models.contains(m)) {
            return Err(DomainError::conflict(format!("model `{m}` is already served by model card `{}`", o.card.id)));
        }
    }
    Ok(())
}

fn default_taken(e: StoreError) -> DomainError {
    match e {
        StoreError::Duplicate(_) => DomainError::conflict("this tenant already has a default model card; unset its `is_default` first"),
        e => e.into(),
    }
}

// ---- the model card operations ---------------------------------------------------------

/// The model card operations, bound to one set of adapters: the native server's (through
/// [`Platform`]) and the Workers', on D1.
pub struct ModelCards<'a> {
    pub store: &'a dyn ModelCardStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    /// Seals the keys; None: a deployment without a root secret refuses them.
    pub secrets: Option<&'a SecretBox>,
}

impl ModelCards<'_> {
    fn card_secrets(&self) -> DomainResult<&SecretBox> {
        self.secrets.ok_or_else(|| DomainError::invalid("secrets are not available: the server has no root secret"))
    }

    pub async fn create(&self, tenant: &TenantId, req: &CreateModelCardRequest) -> DomainResult<ModelCard> {
        let id = self.ids.new_id("mdlc");
        let nonce = || self.ids.nonce();
        let sealer = KeySealer { secrets: self.card_secrets()?, tenant, card_id: &id, nonce: &nonce };
        let stored = new_card(req, self.clock.now(), &sealer)?;
        check_models_free(&stored.card, &self.store.active_model_cards(tenant).await?)?;
        match self.store.insert_model_card(tenant, &stored, CARDS_PER_TENANT).await {
            Ok(true) => Ok(stored.card),
            Ok(false) => Err(DomainError::invalid(format!("this tenant already holds {CARDS_PER_TENANT} model cards; archive one first"))),
            Err(e) => Err(default_taken(e)),
        }
    }

    async fn load(&self, tenant: &TenantId, id: &str) -> DomainResult<StoredModelCard> {
        let missing = || DomainError::not_found("model card", id);
        if !validate::looks_like_id(id, "mdlc_") {
            return Err(missing());
        }
        self.store.get_model_card(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<ModelCard> {
        Ok(self.load(tenant, id).await?.card)
    }

    pub async fn update(&self, tenant: &TenantId, id: &str, req: &UpdateModelCardRequest) -> DomainResult<ModelCard> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            let nonce = || self.ids.nonce();
            let sealer = KeySealer { secrets: self.card_secrets()?, tenant, card_id: id, nonce: &nonce };
            let next = apply_update(&current, req, self.clock.now(), &sealer)?;
            if next == current {
                return Ok(next.card);
            }
            if next.card.models != current.card.models {
                check_models_free(&next.card, &self.store.active_model_cards(tenant).await?)?;
            }
            if self.store.update_model_card(tenant, &next, current.card.updated_at).await.map_err(default_taken)? {
                return Ok(next.card);
            }
        }
        Err(DomainError::conflict(format!("model card `{id}` is being changed concurrently; retry")))
    }

    /// Archives a card: it serves no more requests, stops being the default, and its key
    /// is purged for good.
    pub async fn archive(&self, tenant: &TenantId, id: &str) -> DomainResult<ModelCard> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            if current.card.archived_at.is_some() {
                return Ok(current.card);
            }
            let now = self.clock.now().strictly_after(current.card.updated_at);
            let mut next = current.clone();
            next.card.archived_at = Some(now);
            next.card.updated_at = now;
            next.card.is_default = false;
            next.card.api_key_hint = None;
            next.sealed_key = None;
            if self.store.update_model_card(tenant, &next, current.card.updated_at).await? {
                return Ok(next.card);
            }
        }
        Err(DomainError::conflict(format!("model card `{id}` is being changed concurrently; retry")))
    }

    /// Deletes a card and its sealed key. Sessions whose agents used it fall back to the
    /// next card that matches (or the server's keys) on their next model request.
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "mdlc_") || !self.store.delete_model_card(tenant, id).await? {
            return Err(DomainError::not_found("model card", id));
        }
        Ok(())
    }

    pub async fn list(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<ModelCard>> {
        let (req, query) = list_query(p, Order::Desc, crate::paging::MAX_LIMIT)?;
        let rows = self.store.list_model_cards(tenant, &query).await?;
        Ok(req.finish(rows, |c| position_of(c.card.created_at, &c.card.id)).map(|c| c.card))
    }

    /// The card that serves `model` for this tenant, if any (see the module doc).
    pub async fn resolve(&self, tenant: &TenantId, model: &str) -> DomainResult<Option<StoredModelCard>> {
        let cards = self.store.active_model_cards(tenant).await?;
        Ok(resolve(&cards, model).cloned())
    }

    /// Re-seals every model card key of a tenant under `secrets`' current root (rotation).
    /// Returns how many keys were re-sealed.
    pub async fn reseal_keys(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        let mut done = 0;
        for card in self.store.active_model_cards(tenant).await? {
            let mut current = card;
            for attempt in 0.. {
                let Some(next) = reseal_key(secrets, tenant, &current, self.ids.nonce())
                    .map_err(|e| DomainError::invalid(format!("model card `{}`: {e}", current.card.id)))?
                else {
                    break;
                };
                // the guard is the unchanged `updated_at`: a re-seal is not a change a client sees
                if self.store.update_model_card(tenant, &next, current.card.updated_at).await? {
                    done += 1;
                    break;
                }
                if attempt + 1 >= UPDATE_ATTEMPTS {
                    return Err(DomainError::conflict(format!("model card `{}` is being changed concurrently; retry", current.card.id)));
                }
                match self.store.get_model_card(tenant, &current.card.id).await? {
                    Some(c) if c.card.archived_at.is_none() => current = c,
                    _ => break,
                }
            }
        }
        Ok(done)
    }
}

// ---- on the platform --------------------------------------------------------------------

impl Platform {
    pub fn model_cards(&self) -> ModelCards<'_> {
        ModelCards { store: &*self.store, clock: &*self.clock, ids: &*self.ids, secrets: self.secrets.as_deref() }
    }

    pub async fn create_model_card(&self, tenant: &TenantId, req: &CreateModelCardRequest) -> DomainResult<ModelCard> {
        self.model_cards().create(tenant, req).await
    }

    pub async fn get_model_card(&self, tenant: &TenantId, id: &str) -> DomainResult<ModelCard> {
        self.model_cards().get(tenant, id).await
    }

    pub async fn update_model_card(&self, tenant: &TenantId, id: &str, req: &UpdateModelCardRequest) -> DomainResult<ModelCard> {
        self.model_cards().update(tenant, id, req).await
    }

    pub async fn archive_model_card(&self, tenant: &TenantId, id: &str) -> DomainResult<ModelCard> {
        self.model_cards().archive(tenant, id).await
    }

    pub async fn delete_model_card(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.model_cards().delete(tenant, id).await
    }

    pub async fn list_model_cards(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<ModelCard>> {
        self.model_cards().list(tenant, p).await
    }

    pub async fn resolve_model_card(&self, tenant: &TenantId, model: &str) -> DomainResult<Option<StoredModelCard>> {
        self.model_cards().resolve(tenant, model).await
    }

    pub async fn reseal_model_card_keys(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        self.model_cards().reseal_keys(tenant, secrets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::vaults::WriteOnly;

    fn card(id: &str, models: &[&str], is_default: bool) -> StoredModelCard {
        let t = Timestamp::from_micros(1);
        StoredModelCard {
            card: ModelCard {
                id: id.into(),
                tag: Default::default(),
                name: id.into(),
                provider: ModelProvider::Anthropic,
                base_url: None,
                headers: BTreeMap::new(),
                models: models.iter().map(|m| m.to_string()).collect(),
                is_default,
                metadata: Metadata::new(),
                api_key_hint: None,
                prices: Vec::new(),
                created_at: t,
                updated_at: t,
                archived_at: None,
            },
            sealed_key: None,
        }
    }

    #[test]
    fn a_listed_model_beats_the_default_and_archived_cards_serve_nothing() {
        let mut cards = vec![card("mdlc_d", &[], true), card("mdlc_a", &["claude-x"], false)];
        assert_eq!(resolve(&cards, "claude-x").unwrap().card.id, "mdlc_a");
        assert_eq!(resolve(&cards, "other").unwrap().card.id, "mdlc_d");
        cards[0].card.archived_at = Some(Timestamp::from_micros(2));
        assert!(resolve(&cards, "other").is_none());
        cards[1].card.archived_at = Some(Timestamp::from_micros(2));
        assert!(resolve(&cards, "claude-x").is_none());
    }

    #[test]
    fn only_the_cards_own_provider_prefix_is_dropped() {
        assert_eq!(provider_model_id(ModelProvider::OpenaiCompatible, "openai/gpt-4o"), "gpt-4o");
        assert_eq!(provider_model_id(ModelProvider::Openai, "meta/llama"), "meta/llama");
        assert_eq!(provider_model_id(ModelProvider::Anthropic, "anthropic:claude-x"), "claude-x");
        assert_eq!(provider_model_id(ModelProvider::Anthropic, "openai/gpt-4o"), "openai/gpt-4o");
    }

    #[test]
    fn keys_are_sealed_to_their_card_and_hinted_by_four_characters() {
        let secrets = SecretBox::new(crate::secrets::RootSecret::from_bytes([3; 32]), vec![]);
        let tenant = TenantId::from_trusted("tenant_a");
        let nonce = || [9u8; 12];
        let sealer = KeySealer { secrets: &secrets, tenant: &tenant, card_id: "mdlc_1", nonce: &nonce };
        let key = "sk-card-key-0123456789-wxyz";
        let req = CreateModelCardRequest {
            name: "n".into(),
            provider: ModelProvider::OpenaiCompatible,
            api_key: WriteOnly(key.into()),
            base_url: Some("http://127.0.0.1:9/v1".into()),
            headers: Some(BTreeMap::from([("X-Team".into(), "blue".into())])),
            models: Some(vec!["m".into()]),
            is_default: None,
            metadata: None,
            prices: None,
        };
        let stored = new_card(&req, Timestamp::from_micros(1), &sealer).unwrap();
        assert_eq!(stored.card.api_key_hint.as_deref(), Some("wxyz"));
        assert_eq!(stored.card.headers.get("x-team").map(String::as_str), Some("blue"));
        assert!(!stored.sealed_key.as_deref().unwrap().contains(key));
        assert_eq!(open_key(&secrets, &tenant, &stored).unwrap(), key);
        let mut moved = stored.clone();
        moved.card.id = "mdlc_2".into();
        assert!(open_key(&secrets, &tenant, &moved).is_err(), "a key copied to another card does not open");
        let short = CreateModelCardRequest { api_key: WriteOnly("short-key".into()), ..req.clone() };
        assert_eq!(new_card(&short, Timestamp::from_micros(1), &sealer).unwrap().card.api_key_hint, None);
    }

    #[test]
    fn credentials_and_connection_headers_are_refused() {
        for name in ["Authorization", "x-api-key", "Host", "Content-Length", "Connection", "Proxy-Foo", "bad name", ""] {
            let h = BTreeMap::from([(name.to_owned(), "v".to_owned())]);
            assert!(check_headers(&h).is_err(), "{name}");
        }
        let bad_value = BTreeMap::from([("x-a".to_owned(), "a\r\nb".to_owned())]);
        assert!(check_headers(&bad_value).is_err());
        let twice = BTreeMap::from([("X-A".to_owned(), "1".to_owned()), ("x-a".to_owned(), "2".to_owned())]);
        assert!(check_headers(&twice).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_HEADERS).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
        assert!(check_headers(&many).is_err());
        assert!(check_headers(&BTreeMap::from([("anthropic-beta".to_owned(), "x".to_owned())])).is_ok());
    }

    fn price(from: Option<i64>, input: u64) -> ModelPriceOverride {
        ModelPriceOverride {
            model: None,
            input_per_mtok_micros: input,
            output_per_mtok_micros: input,
            cache_read_per_mtok_micros: None,
            cache_write_per_mtok_micros: None,
            effective_from: from.map(Timestamp::from_micros),
        }
    }

    #[test]
    fn card_prices_start_now_or_later_and_past_ones_never_change() {
        let now = Timestamp::from_micros(1_000);
        // absent `effective_from` starts now; a past one is refused
        let set = check_prices(&[price(None, 5), price(Some(2_000), 6)], &[], now).unwrap();
        assert_eq!(set[0].effective_from, Some(now));
        assert!(check_prices(&[price(Some(999), 5)], &[], now).is_err());
        assert!(check_prices(&[price(Some(2_000), 5), price(Some(2_000), 6)], &[], now).is_err(), "duplicate moment");
        assert!(check_prices(&[price(None, MAX_PRICE_MICROS + 1)], &[], now).is_err());
        // later: the price in effect must be kept as it was; a future one may change or go
        let later = Timestamp::from_micros(1_500);
        assert!(check_prices(&[price(Some(2_000), 7)], &set, later).is_err(), "dropping the price in effect");
        assert!(check_prices(&[price(Some(1_000), 9), price(Some(2_000), 6)], &set, later).is_err(), "repricing the past");
        let kept = check_prices(&[set[0].clone(), price(Some(3_000), 7)], &set, later).unwrap();
        assert_eq!(kept.len(), 2);
        // after the future price took effect, it is history too
        assert!(check_prices(&[set[0].clone()], &set, Timestamp::from_micros(2_000)).is_err());
    }
}
