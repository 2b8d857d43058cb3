//! Picks the provider for a model id, so agents can name `claude-…`, `anthropic/…`,
//! `openai/gpt-…` or a bare id of an OpenAI-compatible server, and the harness holds a
//! single [`ModelClient`].

use async_trait::async_trait;
use openma_core::model::{ModelClient, ModelError, ModelRequest, ModelStream};

use crate::wire::Wire;
use crate::{AnthropicClient, OpenAiClient, http_client};

pub use crate::wire::{ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, DEFAULT_ANTHROPIC_BASE_URL, DEFAULT_OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_BASE_URL};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    OpenAi,
}

impl Provider {
    /// The environment variable that configures this provider's key.
    pub fn api_key_env(self) -> &'static str {
        match self {
            Provider::Anthropic => ANTHROPIC_API_KEY,
            Provider::OpenAi => OPENAI_API_KEY,
        }
    }
}

/// A [`ModelClient`] over the configured providers. `Debug` shows which providers are
/// configured and their base URLs, never their keys.
#[derive(Clone, Debug, Default)]
pub struct ModelRouter {
    anthropic: Option<AnthropicClient>,
    openai: Option<OpenAiClient>,
}

impl ModelRouter {
    /// A router with no provider: every call fails as `NotConfigured`.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_anthropic(mut self, client: AnthropicClient) -> Self {
        self.anthropic = Some(client);
        self
    }

    pub fn with_openai(mut self, client: OpenAiClient) -> Self {
        self.openai = Some(client);
        self
    }

    /// Providers from `ANTHROPIC_API_KEY`/`ANTHROPIC_BASE_URL` and
    /// `OPENAI_API_KEY`/`OPENAI_BASE_URL`; a provider without a key is left out.
    pub fn from_env() -> reqwest::Result<Self> {
        Ok(Self::from_lookup(|name| std::env::var(name).ok(), http_client()?))
    }

    /// [`Self::from_env`] over any variable lookup (tests, config files). Empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, http: reqwest::Client) -> Self {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let anthropic = var(ANTHROPIC_API_KEY).map(|key| {
            let base = var(ANTHROPIC_BASE_URL).unwrap_or_else(|| DEFAULT_ANTHROPIC_BASE_URL.to_owned());
            AnthropicClient::new(base, key, http.clone())
        });
        let openai = var(OPENAI_API_KEY).map(|key| {
            let base = var(OPENAI_BASE_URL).unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
            OpenAiClient::new(base, key, http.clone())
        });
        Self { anthropic, openai }
    }

    pub fn anthropic(&self) -> Option<&AnthropicClient> {
        self.anthropic.as_ref()
    }

    pub fn openai(&self) -> Option<&OpenAiClient> {
        self.openai.as_ref()
    }

    /// The provider for `model` and the id to send it. `openai/m`, `openai:m`,
    /// `anthropic/m` and `anthropic:m` name the provider; `claude…` is Anthropic's; any
    /// other id goes to the OpenAI-compatible endpoint when one is configured, else to
    /// Anthropic. Fails as `NotConfigured`, naming the variable to set, when the chosen
    /// provider has no key.
    pub fn route<'m>(&self, model: &'m str) -> Result<(Provider, &'m str), ModelError> {
        let (wire, id) = crate::wire::route(model, self.anthropic.is_some(), self.openai.is_some())?;
        let provider = match wire {
            Wire::Anthropic => Provider::Anthropic,
            Wire::OpenAi => Provider::OpenAi,
        };
        Ok((provider, id))
    }
}

#[async_trait]
impl ModelClient for ModelRouter {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let (provider, id) = self.route(&request.model)?;
        match (provider, &self.anthropic, &self.openai) {
            (Provider::Anthropic, Some(client), _) => client.stream_model(&request, id).await,
            (Provider::OpenAi, _, Some(client)) => client.stream_model(&request, id).await,
            _ => unreachable!("route checks the provider is configured"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(anthropic: bool, openai: bool) -> ModelRouter {
        let http = reqwest::Client::builder().build().unwrap();
        ModelRouter::from_lookup(
            |name| match name {
                ANTHROPIC_API_KEY if anthropic => Some("sk-ant-secret".into()),
                OPENAI_API_KEY if openai => Some("sk-oai-secret".into()),
                OPENAI_BASE_URL => Some("http://localhost:1/v1".into()),
                _ => None,
            },
            http,
        )
    }

    #[test]
    fn routes_by_prefix_and_family() {
        crate::install_tls_provider();
        let both = router(true, true);
        assert_eq!(both.route("openai/gpt-4o").unwrap(), (Provider::OpenAi, "gpt-4o"));
        assert_eq!(both.route("openai:gpt-4o").unwrap(), (Provider::OpenAi, "gpt-4o"));
        assert_eq!(both.route("anthropic/claude-x").unwrap(), (Provider::Anthropic, "claude-x"));
        assert_eq!(both.route("claude-sonnet-4-5").unwrap(), (Provider::Anthropic, "claude-sonnet-4-5"));
        assert_eq!(both.route("llama3").unwrap(), (Provider::OpenAi, "llama3"));
        assert_eq!(router(true, false).route("llama3").unwrap(), (Provider::Anthropic, "llama3"));
        // `openaifoo` is not a prefix.
        assert_eq!(router(true, false).route("openaifoo").unwrap(), (Provider::Anthropic, "openaifoo"));
        assert_eq!(both.openai().unwrap().base_url(), "http://localhost:1/v1");
        assert_eq!(both.anthropic().unwrap().base_url(), DEFAULT_ANTHROPIC_BASE_URL);
    }

    #[test]
    fn missing_provider_names_the_variable() {
        crate::install_tls_provider();
        let err = router(true, false).route("openai/gpt-4o").unwrap_err();
        assert!(matches!(err, ModelError::Permanent { kind: openma_core::model::PermanentKind::NotConfigured, .. }));
        assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
        let err = router(false, true).route("claude-x").unwrap_err();
        assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");
        let err = router(false, false).route("llama3").unwrap_err();
        assert!(err.to_string().contains("OPENAI_API_KEY") && err.to_string().contains("ANTHROPIC_API_KEY"));
    }

    #[test]
    fn debug_never_shows_keys() {
        crate::install_tls_provider();
        let text = format!("{:?}", router(true, true));
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("localhost:1"));
    }
}
