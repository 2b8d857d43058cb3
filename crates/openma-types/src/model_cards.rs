//! Model cards (BYOK): a tenant's own model provider configuration. The API key is
//! write-only: it exists only in request types, as [`WriteOnly`]; responses carry a short
//! hint (its last characters) so keys can be told apart, never the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;
use crate::vaults::WriteOnly;

literal!(ModelCardTag = "model_card");

/// The wire format a card's endpoint speaks. The `*_compatible` kinds are other servers
/// speaking that format, and need a `base_url`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModelProvider {
    Anthropic,
    AnthropicCompatible,
    Openai,
    OpenaiCompatible,
}

impl ModelProvider {
    /// Speaks Anthropic Messages (otherwise OpenAI Chat Completions).
    pub fn is_anthropic(self) -> bool {
        matches!(self, ModelProvider::Anthropic | ModelProvider::AnthropicCompatible)
    }

    pub fn needs_base_url(self) -> bool {
        matches!(self, ModelProvider::AnthropicCompatible | ModelProvider::OpenaiCompatible)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelCard {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: ModelCardTag,
    pub name: String,
    pub provider: ModelProvider,
    /// The endpoint's origin (a trailing `/v1` is tolerated); `null` means the provider's
    /// public API.
    pub base_url: Option<String>,
    /// Extra headers sent with every request to the provider.
    pub headers: BTreeMap<String, String>,
    /// Model ids this card serves (as agents name them).
    pub models: Vec<String>,
    /// Serves every model no card of the tenant lists.
    pub is_default: bool,
    pub metadata: Metadata,
    /// The last characters of the API key, to tell keys apart; `null` once archived.
    pub api_key_hint: Option<String>,
    /// openma extension: this card's prices, each from its `effective_from` on (absent
    /// when it has none; the deployment's prices apply then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<ModelPriceOverride>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

/// openma extension: what the models of a card cost from a moment on, in micro-dollars
/// per million tokens. A price in effect already cannot change: a new price takes a
/// later `effective_from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelPriceOverride {
    /// The model id it prices; absent: every model the card serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub input_per_mtok_micros: u64,
    pub output_per_mtok_micros: u64,
    /// Absent: 0.1× the input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_mtok_micros: Option<u64>,
    /// Absent: 1.25× the input rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok_micros: Option<u64>,
    /// When it starts to apply; on a request, absent means now. Never in the past.
    #[serde(default)]
    pub effective_from: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateModelCardRequest {
    pub name: String,
    pub provider: ModelProvider,
    pub api_key: WriteOnly,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    /// openma extension: the card's prices.
    #[serde(default)]
    pub prices: Option<Vec<ModelPriceOverride>>,
}

/// Only what is sent changes; `api_key` replaces the key, omitted keeps it. The provider
/// cannot change (archive the card and create another).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateModelCardRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// Accepted only when it is the card's provider already.
    #[serde(default)]
    pub provider: Option<ModelProvider>,
    #[serde(default)]
    pub api_key: Option<WriteOnly>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub base_url: Option<Option<String>>,
    /// Replaces the whole set of custom headers.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub is_default: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
    /// openma extension: replaces the card's prices; those in effect already must be sent
    /// unchanged.
    #[serde(default)]
    pub prices: Option<Vec<ModelPriceOverride>>,
}
