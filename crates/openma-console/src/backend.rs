//! What the console needs from the deployment it runs in: accounts and console sessions,
//! randomness, sign-in throttling and the domain operations its pages show and its forms
//! make. The native server implements it over its `Platform`, the Workers over D1 and
//! their services; every rule the pages apply stays in this crate.

use async_trait::async_trait;
use openma_core::accounts::{ConsoleSession, Role, User};
use openma_core::files::FileListParams;
use openma_core::platform::{ListParams, MemoryListParams};
use openma_core::ports::{SessionFilter, UsageQuery, UsageRow, VersionFilter};
use openma_core::http_error::HttpError;
use openma_core::paging::Page;
use openma_core::{ApiKey, TenantId};
use openma_types::Timestamp;
use openma_types::agents::{Agent, CreateAgentRequest, UpdateAgentRequest};
use openma_types::environments::{Environment, EnvironmentBuild};
use openma_types::files::FileMetadata;
use openma_types::integrations::{CreateIntegrationRequest, Integration};
use openma_types::memory::{Actor, MemoryListItem, MemoryStore, MemoryVersion};
use openma_types::model_cards::{CreateModelCardRequest, ModelCard};
use openma_types::sessions::{CreateSessionRequest, Session};
use openma_types::skills::Skill;
use openma_types::vaults::{CreateCredentialRequest, Credential, Vault};

/// What a backend's operations fail with: the status and message the API would answer.
pub type Result<T> = std::result::Result<T, HttpError>;

#[async_trait]
pub trait Backend: Send + Sync {
    // -- platform --
    fn now(&self) -> Timestamp;
    /// 16 bytes from the deployment's secure random source.
    fn random_bytes(&self) -> [u8; 16];
    /// Whether another sign-in attempt for this (normalised) e-mail may be checked now, or
    /// how many seconds to wait.
    async fn sign_in_allowed(&self, email: &str) -> std::result::Result<(), u64>;
    /// [`crate::sign_in::verify_password`], off the request's thread where the runtime has one.
    async fn verify_password(&self, hash: String, password: String) -> bool;

    // -- accounts (`openma_core::accounts`) --
    async fn find_user(&self, email: &str) -> Result<Option<User>>;
    async fn memberships(&self, user_id: &str) -> Result<Vec<(TenantId, Role)>>;
    async fn start_console_session(&self, token: &str, user_id: &str, tenant: &TenantId, csrf: &str, ttl_secs: i64) -> Result<()>;
    async fn console_session(&self, token: &str) -> Result<Option<ConsoleSession>>;
    async fn switch_console_tenant(&self, token: &str, user_id: &str, tenant: &TenantId) -> Result<()>;
    async fn end_console_session(&self, token: &str) -> Result<()>;

    // -- agents and sessions --
    async fn list_agents(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<Agent>>;
    async fn get_agent(&self, tenant: &TenantId, id: &str) -> Result<Agent>;
    async fn list_agent_versions(&self, tenant: &TenantId, id: &str, limit: u32) -> Result<Vec<Agent>>;
    async fn create_agent(&self, tenant: &TenantId, req: &CreateAgentRequest) -> Result<Agent>;
    async fn update_agent(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> Result<Agent>;
    /// A session made as `POST /v1/sessions` makes it (quotas, resources, first turn).
    async fn create_session(&self, tenant: &TenantId, req: CreateSessionRequest) -> Result<Session>;
    async fn list_sessions(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> Result<Page<Session>>;
    async fn get_session(&self, tenant: &TenantId, id: &str) -> Result<Session>;
    /// The session's first `limit` events, in their wire shape.
    async fn list_events(&self, tenant: &TenantId, id: &str, limit: u32) -> Result<Vec<serde_json::Value>>;

    // -- API keys --
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;
    async fn create_api_key(&self, tenant: &TenantId, name: &str) -> Result<(ApiKey, String)>;
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> Result<()>;

    // -- resources --
    async fn list_environments(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<Environment>>;
    async fn get_environment(&self, tenant: &TenantId, id: &str) -> Result<Environment>;
    /// The environment's package build, or None where packages are installed by each
    /// session's sandbox instead (the Workers' containers).
    async fn environment_build(&self, tenant: &TenantId, id: &str) -> Result<Option<EnvironmentBuild>>;
    async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<Vault>>;
    async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> Result<Page<Credential>>;
    async fn create_credential(&self, tenant: &TenantId, vault_id: &str, req: &CreateCredentialRequest) -> Result<Credential>;
    async fn list_files(&self, tenant: &TenantId, p: &FileListParams) -> Result<Page<FileMetadata>>;
    async fn list_memory_stores(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<MemoryStore>>;
    async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> Result<MemoryStore>;
    async fn list_memories(&self, tenant: &TenantId, store_id: &str, p: &MemoryListParams) -> Result<Page<MemoryListItem>>;
    async fn list_memory_versions(&self, tenant: &TenantId, store_id: &str, filter: &VersionFilter, p: &ListParams) -> Result<Page<MemoryVersion>>;
    async fn redact_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, by: &Actor) -> Result<MemoryVersion>;
    async fn list_skills(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<Skill>>;
    async fn list_model_cards(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<ModelCard>>;
    async fn create_model_card(&self, tenant: &TenantId, req: &CreateModelCardRequest) -> Result<ModelCard>;
    async fn usage_report(&self, tenant: &TenantId, q: &UsageQuery) -> Result<Vec<UsageRow>>;

    // -- integrations --
    async fn list_integrations(&self, tenant: &TenantId, p: &ListParams) -> Result<Page<Integration>>;
    /// Creates an integration as the API does (its `api_base_url` checked as a destination).
    async fn create_integration(&self, tenant: &TenantId, req: &CreateIntegrationRequest) -> Result<Integration>;
    /// Calls the provider with the integration's credential: what it says, or why it failed.
    async fn check_integration(&self, tenant: &TenantId, id: &str) -> std::result::Result<String, String>;
    async fn delete_integration(&self, tenant: &TenantId, id: &str) -> Result<()>;
}
