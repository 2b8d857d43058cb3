//! Integrations: an agent published to Slack, GitHub or Linear. Each thread of the provider
//! (a Slack thread, an issue or pull request, a Linear agent session) maps to one session;
//! deliveries are remembered so that a retried or replayed one is processed once. The
//! signing secret and the credential (Slack bot token, GitHub App private key, Linear
//! token) are sealed at rest, each bound to its integration and field.

pub mod github;
pub mod linear;
pub mod signatures;
pub mod slack;
pub mod turns;

use openma_types::integrations::{CreateIntegrationRequest, Integration, IntegrationProvider, IntegrationTag};

use crate::error::{DomainError, DomainResult};
use crate::paging::Page;
use crate::platform::{ListParams, list_query, position_of};
use crate::ports::{AgentStore, Clock, EnvironmentStore, IdGen, IntegrationStore, Order};
use crate::secrets::{Binding, SecretBox, SecretError};
use crate::{Platform, StoreError, TenantId, validate};

const PURPOSE: &str = "integration";

/// The providers' APIs as the replies call them: the native server's HTTP client, or
/// `fetch` in a Worker.
#[async_trait::async_trait]
pub trait ProviderApi: Send + Sync {
    /// POSTs JSON with an `Authorization` header; the answer's JSON (a non-2xx is an error).
    async fn post_json(&self, url: &str, authorization: &str, body: &serde_json::Value) -> Result<serde_json::Value, String>;
    /// GETs JSON with an `Authorization` header; the answer's JSON (a non-2xx is an error).
    async fn get_json(&self, url: &str, authorization: &str) -> Result<serde_json::Value, String>;
    /// RSASSA-PKCS1-v1_5 with SHA-256 of `input` by a PKCS#8 RSA key (a GitHub App's JWT):
    /// ring natively, WebCrypto in a Worker.
    async fn sign_rs256(&self, pkcs8_der: &[u8], input: &[u8]) -> Result<Vec<u8>, String>;
}

pub const SLACK_API: &str = "https://slack.com/api";
pub const GITHUB_API: &str = "https://api.github.com";
pub const LINEAR_API: &str = "https://api.linear.app";
const SECRET_MAX: usize = 1_024;

/// An integration with what only the server keeps: its sealed secrets.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredIntegration {
    pub integration: Integration,
    pub sealed_signing_secret: String,
    /// The bot token (Slack), the App's private key (GitHub) or the API token (Linear).
    pub sealed_credential: String,
}

fn binding<'a>(tenant: &'a TenantId, id: &'a str, field: &'a str) -> Binding<'a> {
    Binding { purpose: PURPOSE, tenant, owner: id, field }
}

/// Checks that a stored integration's credential works against its provider (Slack
/// `auth.test`, GitHub `GET /app` with the App's JWT, Linear's `viewer`): what it answers as,
/// or why not. `now` is Unix seconds (the JWT's clock). The console's check button, natively
/// and on the Workers.
pub async fn check(api: &dyn ProviderApi, secrets: &SecretBox, tenant: &TenantId, stored: &StoredIntegration, now: i64) -> Result<String, String> {
    let (_, credential) = open_secrets(secrets, tenant, stored).map_err(|e| e.to_string())?;
    let i = &stored.integration;
    match i.provider {
        IntegrationProvider::Slack => slack::check(api, i, &credential).await,
        IntegrationProvider::Github => github::check(api, i, &credential, now).await,
        IntegrationProvider::Linear => linear::check(api, i, &credential).await,
    }
}

/// The signing secret and the credential of an integration (for the server's adapters only).
pub fn open_secrets(secrets: &SecretBox, tenant: &TenantId, s: &StoredIntegration) -> Result<(String, String), SecretError> {
    let id = &s.integration.id;
    let text = |b: Vec<u8>| String::from_utf8(b).map_err(|_| SecretError::Malformed);
    let signing = text(secrets.open(binding(tenant, id, "signing_secret"), &s.sealed_signing_secret)?)?;
    let credential = text(secrets.open(binding(tenant, id, "credential"), &s.sealed_credential)?)?;
    Ok((signing, credential))
}

fn provider_name(p: IntegrationProvider) -> &'static str {
    match p {
        IntegrationProvider::Slack => "slack",
        IntegrationProvider::Github => "github",
        IntegrationProvider::Linear => "linear",
    }
}

/// Refuses a key that does not apply to the integration's provider.
fn only_for(field: &str, set: bool, provider: &str, wanted: &str) -> DomainResult<()> {
    if set && provider != wanted {
        return Err(DomainError::invalid(format!("`{field}` applies to `{wanted}` integrations only, not `{provider}`")));
    }
    Ok(())
}

/// The provider's credential and settings, checked: `(credential, api default)`.
fn check_provider(req: &CreateIntegrationRequest) -> DomainResult<(String, &'static str)> {
    let provider = provider_name(req.provider);
    only_for("app_id", req.app_id.is_some(), provider, "github")?;
    only_for("app_slug", req.app_slug.is_some(), provider, "github")?;
    only_for("private_key", req.private_key.is_some(), provider, "github")?;
    only_for("trigger_label", req.trigger_label.is_some(), provider, "github")?;
    only_for("clone_repository", req.clone_repository.is_some(), provider, "github")?;
    let required = |field: &str, v: &Option<String>| -> DomainResult<String> {
        v.clone().ok_or_else(|| DomainError::invalid(format!("`{field}` is required for `{provider}` integrations")))
    };
    match req.provider {
        IntegrationProvider::Slack | IntegrationProvider::Linear => {
            let token = required("bot_token", &req.bot_token)?;
            check_secret("bot_token", &token)?;
            Ok((token, if req.provider == IntegrationProvider::Slack { SLACK_API } else { LINEAR_API }))
        }
        IntegrationProvider::Github => {
            if req.bot_token.is_some() {
                return Err(DomainError::invalid("`bot_token` does not apply to `github` integrations: they mint installation tokens with `private_key`"));
            }
            let app_id = required("app_id", &req.app_id)?;
            if app_id.is_empty() || app_id.len() > 20 || !app_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DomainError::invalid("`app_id` must be the App's numeric id"));
            }
            let slug = required("app_slug", &req.app_slug)?;
            if slug.is_empty() || slug.len() > 100 || !slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(DomainError::invalid("`app_slug` must be the App's slug (letters, digits and `-`)"));
            }
            if let Some(label) = &req.trigger_label {
                validate::length("trigger_label", label, 1, 100)?;
            }
            let key = required("private_key", &req.private_key)?;
            if !key.trim_start().starts_with("-----BEGIN") || !key.contains("PRIVATE KEY-----") || key.len() > 16_384 {
                return Err(DomainError::invalid("`private_key` must be the App's private key in PEM form"));
            }
            Ok((key, GITHUB_API))
        }
    }
}

/// The session a provider thread starts: its title, and metadata naming the thread (two
/// provider keys) and the integration (`integration_id`, which tells a SessionDO that its
/// answers go back to a thread).
pub fn thread_session_request(title: String, integration_id: &str, thread: [(&str, &str); 2]) -> openma_types::sessions::CreateSessionRequest {
    let metadata = thread.into_iter().chain([("integration_id", integration_id)]).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    openma_types::sessions::CreateSessionRequest { title: Some(title), metadata: Some(metadata), ..Default::default() }
}

/// The session of a provider thread is keyed by `integration/thread`.
pub fn slack_thread_key(channel: &str, thread_ts: &str) -> String {
    format!("{channel}/{thread_ts}")
}

fn check_secret(field: &str, value: &str) -> DomainResult<()> {
    if value.trim().is_empty() || value.len() > SECRET_MAX || value.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!("`{field}` must be 1-{SECRET_MAX} printable characters")));
    }
    Ok(())
}

/// The integrations of the tenants: created (secrets sealed), read, listed and deleted over
/// the [`IntegrationStore`] port; the native [`Platform`] and the Workers both run it.
pub struct Integrations<'a> {
    pub store: &'a dyn IntegrationStore,
    pub agents: &'a dyn AgentStore,
    pub environments: &'a dyn EnvironmentStore,
    /// `None` when the deployment has no root secret: creating is refused, reading works.
    pub secrets: Option<&'a SecretBox>,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
}

impl Integrations<'_> {
    /// The session of a provider thread: the one bound to it, else one `create` makes from
    /// `request()` (with the integration's agent and environment) and binds to it. Of two
    /// creations racing for a thread the first binding wins and `discard` removes the other.
    /// The session's id, and whether this call created it.
    pub async fn thread_session<E, Made, Gone>(
        &self,
        tenant: &TenantId,
        integration: &Integration,
        thread: &str,
        request: impl FnOnce() -> openma_types::sessions::CreateSessionRequest,
        create: impl FnOnce(openma_types::sessions::CreateSessionRequest) -> Made,
        discard: impl FnOnce(String) -> Gone,
    ) -> Result<(String, bool), E>
    where
        E: From<DomainError>,
        Made: std::future::Future<Output = Result<String, E>>,
        Gone: std::future::Future<Output = Result<(), E>>,
    {
        if let Some(sid) = self.store.integration_thread_session(&integration.id, thread).await.map_err(DomainError::from)? {
            return Ok((sid, false));
        }
        let mut req = request();
        req.agent_id = Some(integration.agent_id.clone());
        req.environment_id = integration.environment_id.clone();
        let made = create(req).await?;
        let bound = self.store.bind_integration_thread(tenant, &integration.id, thread, &made, self.clock.now()).await.map_err(DomainError::from)?;
        if bound != made {
            discard(made).await?;
            return Ok((bound, false));
        }
        Ok((bound, true))
    }

    pub async fn create(&self, tenant: &TenantId, req: &CreateIntegrationRequest) -> DomainResult<Integration> {
        check_secret("signing_secret", &req.signing_secret)?;
        let (credential, default_api) = check_provider(req)?;
        validate::max_length("name", req.name.as_deref(), 256)?;
        let api_base_url = req.api_base_url.clone().unwrap_or_else(|| default_api.to_owned());
        validate::http_url("api_base_url", &api_base_url)?;
        if self.agents.get_agent(tenant, &req.agent_id).await?.is_none() {
            return Err(DomainError::not_found("agent", &req.agent_id));
        }
        if let Some(env) = &req.environment_id
            && self.environments.get_environment(tenant, env).await?.is_none()
        {
            return Err(DomainError::not_found("environment", env));
        }
        let secrets = self.secrets.ok_or_else(|| DomainError::invalid("secrets are not available: the server has no root secret"))?;
        let id = self.ids.new_id("intg");
        let now = self.clock.now();
        let provider = provider_name(req.provider);
        let github = req.provider == IntegrationProvider::Github;
        let integration = Integration {
            tag: IntegrationTag::default(),
            events_path: format!("/integrations/{provider}/{id}/events"),
            interactivity_path: (req.provider == IntegrationProvider::Slack).then(|| format!("/integrations/slack/{id}/interactivity")),
            app_id: req.app_id.clone(),
            app_slug: req.app_slug.clone(),
            trigger_label: req.trigger_label.clone(),
            clone_repository: github.then(|| req.clone_repository.unwrap_or(true)),
            id: id.clone(),
            provider: req.provider,
            name: req.name.clone(),
            agent_id: req.agent_id.clone(),
            environment_id: req.environment_id.clone(),
            api_base_url: api_base_url.trim_end_matches('/').to_owned(),
            created_at: now,
            updated_at: now,
        };
        let stored = StoredIntegration {
            sealed_signing_secret: secrets.seal(binding(tenant, &id, "signing_secret"), req.signing_secret.as_bytes(), self.ids.nonce()),
            sealed_credential: secrets.seal(binding(tenant, &id, "credential"), credential.as_bytes(), self.ids.nonce()),
            integration: integration.clone(),
        };
        self.store.insert_integration(tenant, &stored).await?;
        Ok(integration)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<Integration> {
        match self.store.get_integration(tenant, id).await? {
            Some(s) => Ok(s.integration),
            None => Err(DomainError::not_found("integration", id)),
        }
    }

    pub async fn list(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Integration>> {
        let (req, query) = list_query(p, Order::Desc, crate::paging::MAX_LIMIT)?;
        let rows = self.store.list_integrations(tenant, &query).await?;
        Ok(req.finish(rows, |s| position_of(s.integration.created_at, &s.integration.id)).map(|s| s.integration))
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if self.store.delete_integration(tenant, id).await? { Ok(()) } else { Err(DomainError::not_found("integration", id)) }
    }

    /// Remembers a delivery; false when it was seen before (a retry or a replay).
    pub async fn first_delivery(&self, integration_id: &str, delivery_id: &str) -> DomainResult<bool> {
        Ok(self.store.record_integration_delivery(integration_id, delivery_id, self.clock.now()).await?)
    }

    /// An integration a delivery names (by id alone), of `provider`, with its tenant and its
    /// opened secrets `(signing secret, credential)`; `None` when there is no such integration.
    pub async fn for_delivery(&self, id: &str, provider: IntegrationProvider) -> DomainResult<Option<Delivered>> {
        let Some((tenant, stored)) = self.store.find_integration(id).await?.filter(|(_, s)| s.integration.provider == provider) else {
            return Ok(None);
        };
        let secrets = self.secrets.ok_or_else(|| DomainError::Unavailable("secrets are not available: the deployment has no root secret".into()))?;
        let (signing_secret, credential) =
            open_secrets(secrets, &tenant, &stored).map_err(|e| StoreError::Backend(format!("integration `{id}`: cannot open its secrets: {e}")))?;
        Ok(Some(Delivered { tenant, integration: stored.integration, signing_secret, credential }))
    }
}

/// An integration as its deliveries and replies use it: the secrets opened.
pub struct Delivered {
    pub tenant: TenantId,
    pub integration: Integration,
    pub signing_secret: String,
    /// The bot token (Slack), the App's private key (GitHub) or the API token (Linear).
    pub credential: String,
}

impl Platform {
    /// The integration operations on this platform's store.
    pub fn integrations(&self) -> Integrations<'_> {
        Integrations {
            store: &*self.store,
            agents: &*self.store,
            environments: &*self.store,
            secrets: self.secrets.as_deref(),
            clock: &*self.clock,
            ids: &*self.ids,
        }
    }

    pub async fn create_integration(&self, tenant: &TenantId, req: &CreateIntegrationRequest) -> DomainResult<Integration> {
        self.integrations().create(tenant, req).await
    }

    pub async fn get_integration(&self, tenant: &TenantId, id: &str) -> DomainResult<Integration> {
        self.integrations().get(tenant, id).await
    }

    pub async fn list_integrations(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Integration>> {
        self.integrations().list(tenant, p).await
    }

    pub async fn delete_integration(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.integrations().delete(tenant, id).await
    }

    /// Re-seals every integration secret of a tenant under `secrets`' current root
    /// (rotation). Returns how many integrations were re-sealed.
    pub async fn reseal_integration_secrets(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        let mut done = 0;
        let mut after = None;
        loop {
            let query = crate::ports::ListQuery { limit: 100, order: Order::Asc, after: after.take(), include_archived: true, created: crate::ports::TimeRange::default() };
            let page = self.store.list_integrations(tenant, &query).await?;
            for s in &page {
                let id = &s.integration.id;
                let fail = |e: SecretError| DomainError::invalid(format!("integration `{id}`: {e}"));
                let next = StoredIntegration {
                    integration: s.integration.clone(),
                    sealed_signing_secret: secrets.reseal(binding(tenant, id, "signing_secret"), &s.sealed_signing_secret, self.ids.nonce()).map_err(fail)?,
                    sealed_credential: secrets.reseal(binding(tenant, id, "credential"), &s.sealed_credential, self.ids.nonce()).map_err(fail)?,
                };
                if self.store.reseal_integration(tenant, &next).await? {
                    done += 1;
                }
            }
            match page.last() {
                Some(s) if page.len() == 100 => after = Some(position_of(s.integration.created_at, &s.integration.id)),
                _ => return Ok(done),
            }
        }
    }
}
