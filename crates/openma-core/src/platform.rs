//! The domain operations, one method per API verb, over the ports.

use std::sync::Arc;

use openma_types::Timestamp;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams, SortOrder};
use openma_types::agents::{Agent, AgentTool, CreateAgentRequest, Skill, UpdateAgentRequest};
use openma_types::environments::{CreateEnvironmentRequest, Environment, EnvironmentLimits, UpdateEnvironmentRequest};
use openma_types::sessions::{CreateSessionRequest, Session, UpdateSessionRequest};

use crate::error::{DomainError, DomainResult};
use crate::harness::tools::Capabilities;
use crate::paging::{Page, PageRequest};
use crate::ports::{Announcer, Clock, IdGen, ListQuery, Order, Position, SessionFilter, Store, TimeRange};
use crate::keys::Keys;
use crate::tenancy::{ApiKey, Tenant, TenantId};
use crate::agents::{Agents, SkillCheck};
use crate::environments::Environments;
use crate::vaults::Vaults;
use crate::sessions::{SessionAttachments, Sessions};

mod memory;
pub use memory::MemoryListParams;

/// How many times an update is retried when a concurrent writer won the race.
pub(crate) const UPDATE_ATTEMPTS: usize = 8;

/// Parameters common to every list endpoint, as parsed at the edge.
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub order: Option<Order>,
    pub page: Option<String>,
    pub include_archived: bool,
    pub created: TimeRange,
}

/// The platform's domain services, bound to one set of adapters.
#[derive(Clone)]
pub struct Platform {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
    /// Optional features this deployment provides (e.g. a search backend).
    pub capabilities: Capabilities,
    /// Encryption of secrets at rest; set by the server once the root secret is verified.
    pub secrets: Option<Arc<crate::secrets::SecretBox>>,
    /// File contents; set by the server (files are refused without one).
    pub blobs: Option<Arc<dyn crate::ports::BlobStore>>,
    /// The sandbox limits of this server: an environment's `config.limits` may not exceed
    /// them. None: unbounded (no sandbox configured).
    pub sandbox_limits: Option<EnvironmentLimits>,
    /// The deployment's prices (the built-in list unless the config overrides it).
    pub prices: Arc<crate::pricing::PriceSchedule>,
    /// Archived event logs read lately, decoded.
    pub event_archives: Arc<crate::event_log::ArchiveCache>,
}

impl ListParams {
    /// The parameters of a list request, from its parsed query string.
    pub fn from_query(page: PageParams, archived: &ArchivedParam, created: &CreatedFilter, order: Option<SortOrder>) -> Self {
        ListParams {
            limit: page.limit,
            order: order.map(Order::from),
            page: page.page,
            include_archived: archived.include_archived.unwrap_or(false),
            created: TimeRange::from(created),
        }
    }
}

pub(crate) fn position_of(created_at: Timestamp, id: &str) -> Position {
    Position { created_at: created_at.as_micros(), id: id.to_owned() }
}

/// The page a list request asks for, and the store query that fetches it (one row more
/// than the page, to tell whether another follows).
pub(crate) fn list_query(p: &ListParams, default_order: Order, max: u32) -> DomainResult<(PageRequest, ListQuery)> {
    let order = p.order.unwrap_or(default_order);
    let req = PageRequest::new(p.limit, order, p.page.as_deref(), max)?;
    let (store_order, after, _) = req.store_order();
    let query = ListQuery { limit: req.limit + 1, order: store_order, after, include_archived: p.include_archived, created: p.created };
    Ok((req, query))
}

/// The native deployment's skill registry.
#[async_trait::async_trait]
impl SkillCheck for Platform {
    async fn check_skills(&self, tenant: &TenantId, skills: &[Skill], tools: &[AgentTool]) -> DomainResult<()> {
        self.skills().check_skills(tenant, skills, tools).await
    }
}

/// The native deployment's webhooks.
#[async_trait::async_trait]
impl Announcer for Platform {
    async fn announce_with(&self, tenant: &TenantId, kind: &str, object_id: &str, extra: serde_json::Map<String, serde_json::Value>) {
        self.webhooks().announce_with(tenant, kind, object_id, extra).await
    }

    async fn announce_all(&self, tenant: &TenantId, kinds: &[&str], object_id: &str) {
        self.webhooks().announce_all(tenant, kinds, object_id).await
    }
}

impl Platform {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>) -> Self {
        Platform { store, clock, ids, capabilities: Capabilities::default(), secrets: None, blobs: None, sandbox_limits: None, prices: Default::default(), event_archives: Default::default() }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- tenants and API keys -------------------------------------------------------

    /// The tenant and key operations on this platform's store.
    pub fn keys(&self) -> Keys<'_> {
        Keys { store: &*self.store, clock: &*self.clock, ids: &*self.ids }
    }

    pub async fn create_tenant(&self, name: &str) -> DomainResult<Tenant> {
        self.keys().create_tenant(name).await
    }

    /// Returns the named tenant, creating it on first use.
    pub async fn ensure_tenant(&self, name: &str) -> DomainResult<Tenant> {
        self.keys().ensure_tenant(name).await
    }

    pub async fn find_tenant(&self, id_or_name: &str) -> DomainResult<Tenant> {
        self.store.find_tenant(id_or_name).await?.ok_or_else(|| DomainError::not_found("tenant", id_or_name))
    }

    pub async fn list_tenants(&self) -> DomainResult<Vec<Tenant>> {
        Ok(self.store.list_tenants().await?)
    }

    /// Issues a new key. The secret is returned once and never stored.
    pub async fn create_api_key(&self, tenant: &TenantId, name: &str) -> DomainResult<(ApiKey, String)> {
        self.keys().create_api_key(tenant, name).await
    }

    /// Registers a key whose secret the operator chose (`OPENMA_BOOTSTRAP_API_KEY`).
    pub async fn ensure_api_key(&self, tenant: &TenantId, name: &str, secret: &str) -> DomainResult<ApiKey> {
        self.keys().ensure_api_key(tenant, name, secret).await
    }

    /// The tenant and key id of a presented key; `None` for an unknown or revoked key.
    pub async fn authenticate(&self, secret: &str) -> DomainResult<Option<(TenantId, String)>> {
        self.keys().authenticate(secret).await
    }

    pub async fn list_api_keys(&self, tenant: &TenantId) -> DomainResult<Vec<ApiKey>> {
        self.keys().list_api_keys(tenant).await
    }

    pub async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.keys().revoke_api_key(tenant, id).await
    }

    // ---- agents --------------------------------------------------------------------

    /// The agent operations on this platform's store, with its skills and webhooks.
    pub fn agents(&self) -> Agents<'_> {
        Agents { store: &*self.store, clock: &*self.clock, ids: &*self.ids, capabilities: self.capabilities, skills: self, announcer: self }
    }

    pub async fn create_agent(&self, tenant: &TenantId, req: &CreateAgentRequest) -> DomainResult<Agent> {
        self.agents().create(tenant, req).await
    }

    pub async fn get_agent(&self, tenant: &TenantId, id: &str, version: Option<i64>) -> DomainResult<Agent> {
        self.agents().get(tenant, id, version).await
    }

    pub async fn update_agent(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> DomainResult<Agent> {
        self.agents().update(tenant, id, req).await
    }

    pub async fn archive_agent(&self, tenant: &TenantId, id: &str) -> DomainResult<Agent> {
        self.agents().archive(tenant, id).await
    }

    pub async fn list_agents(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Agent>> {
        self.agents().list(tenant, p).await
    }

    /// Versions newest first; the cursor is the last version seen.
    pub async fn list_agent_versions(
        &self,
        tenant: &TenantId,
        id: &str,
        limit: Option<i64>,
        page: Option<&str>,
    ) -> DomainResult<Page<Agent>> {
        self.agents().list_versions(tenant, id, limit, page).await
    }

    // ---- environments --------------------------------------------------------------

    /// The environment operations on this platform's store, with its sandbox limits and webhooks.
    pub fn environments(&self) -> Environments<'_> {
        Environments { store: &*self.store, clock: &*self.clock, ids: &*self.ids, sandbox_limits: self.sandbox_limits.as_ref(), announcer: self }
    }

    pub async fn create_environment(&self, tenant: &TenantId, req: &CreateEnvironmentRequest) -> DomainResult<Environment> {
        self.environments().create(tenant, req).await
    }

    pub async fn get_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
        self.environments().get(tenant, id).await
    }

    /// The environment used by sessions that name none, created on first need.
    pub async fn default_environment(&self, tenant: &TenantId) -> DomainResult<Environment> {
        self.environments().default_environment(tenant).await
    }

    pub async fn update_environment(&self, tenant: &TenantId, id: &str, req: &UpdateEnvironmentRequest) -> DomainResult<Environment> {
        self.environments().update(tenant, id, req).await
    }

    pub async fn archive_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
        self.environments().archive(tenant, id).await
    }

    pub async fn delete_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.environments().delete(tenant, id).await
    }

    pub async fn list_environments(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Environment>> {
        self.environments().list(tenant, p).await
    }

    // ---- sessions ------------------------------------------------------------------

    /// The session operations on this platform's stores.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            store: &*self.store,
            agents: self.agents(),
            environments: self.environments(),
            vaults: self.vaults(),
            memories: self.memories(),
            skills: self,
            attachments: self,
            capabilities: self.capabilities,
            clock: &*self.clock,
            ids: &*self.ids,
            announcer: self,
        }
    }

    /// Creates a session. `initial_events` are checked here; the caller hands the
    /// returned inputs to the session runtime.
    pub async fn create_session(
        &self,
        tenant: &TenantId,
        req: &CreateSessionRequest,
    ) -> DomainResult<(Session, Vec<crate::harness::input::Input>)> {
        self.sessions().create(tenant, req).await
    }

    pub async fn get_session(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        self.sessions().get(tenant, id).await
    }

    pub async fn update_session(&self, tenant: &TenantId, id: &str, req: &UpdateSessionRequest) -> DomainResult<Session> {
        self.sessions().update(tenant, id, req).await
    }

    /// Archiving ends a session for good: it becomes `terminated` and read-only.
    pub async fn archive_session(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        self.sessions().archive(tenant, id).await
    }

    pub async fn delete_session(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.sessions().delete(tenant, id).await
    }

    pub async fn list_sessions(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> DomainResult<Page<Session>> {
        self.sessions().list(tenant, p, filter).await
    }
}

/// The native deployment's files and blobs: what a session mounts and what is left of a
/// deleted one.
#[async_trait::async_trait]
impl SessionAttachments for Platform {
    async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[crate::harness::input::Input], where_: &str) -> DomainResult<()> {
        Platform::check_file_blocks(self, tenant, inputs, where_).await
    }

    async fn mount_copies(
        &self,
        tenant: &TenantId,
        session_id: &str,
        params: &[openma_types::files::FileResourceParams],
    ) -> DomainResult<Vec<(openma_types::files::FileResource, crate::files::StoredFile)>> {
        Platform::mount_copies(self, tenant, session_id, params).await
    }

    async fn release(&self, tenant: &TenantId, session_id: &str) -> DomainResult<()> {
        // its archived event log, if it has one (a missing blob is not an error)
        self.delete_blobs(std::iter::once(crate::event_log::archive_key(tenant, session_id))).await;
        self.delete_session_files(tenant, session_id).await
    }
}

// ---- vaults and credentials ------------------------------------------------------------

impl Platform {
    /// The vault operations on this platform's store, with its root secret and webhooks.
    pub fn vaults(&self) -> Vaults<'_> {
        Vaults { store: &*self.store, clock: &*self.clock, ids: &*self.ids, secrets: self.secrets.as_deref(), announcer: self }
    }

    /// Re-seals every credential secret of the tenant under `secrets`' current root (the
    /// step of `openma secrets rotate` for vaults). Returns how many credentials changed.
    pub async fn reseal_credentials(&self, tenant: &TenantId, secrets: &crate::secrets::SecretBox) -> DomainResult<usize> {
        self.vaults().reseal_credentials(tenant, secrets).await
    }

    pub async fn create_vault(&self, tenant: &TenantId, req: &openma_types::vaults::CreateVaultRequest) -> DomainResult<openma_types::vaults::Vault> {
        self.vaults().create_vault(tenant, req).await
    }

    pub async fn get_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<openma_types::vaults::Vault> {
        self.vaults().get_vault(tenant, id).await
    }

    pub async fn update_vault(&self, tenant: &TenantId, id: &str, req: &openma_types::vaults::UpdateVaultRequest) -> DomainResult<openma_types::vaults::Vault> {
        self.vaults().update_vault(tenant, id, req).await
    }

    /// Archives a vault and every credential in it; their secrets are purged.
    pub async fn archive_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<openma_types::vaults::Vault> {
        self.vaults().archive_vault(tenant, id).await
    }

    pub async fn delete_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.vaults().delete_vault(tenant, id).await
    }

    pub async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<openma_types::vaults::Vault>> {
        self.vaults().list_vaults(tenant, p).await
    }

    pub async fn create_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        req: &openma_types::vaults::CreateCredentialRequest,
    ) -> DomainResult<openma_types::vaults::Credential> {
        self.vaults().create_credential(tenant, vault_id, req).await
    }

    pub async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<openma_types::vaults::Credential> {
        self.vaults().get_credential(tenant, vault_id, id).await
    }

    pub async fn update_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        id: &str,
        req: &openma_types::vaults::UpdateCredentialRequest,
    ) -> DomainResult<openma_types::vaults::Credential> {
        self.vaults().update_credential(tenant, vault_id, id, req).await
    }

    /// Archives a credential; its secrets are purged for good.
    pub async fn archive_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<openma_types::vaults::Credential> {
        self.vaults().archive_credential(tenant, vault_id, id).await
    }

    pub async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<()> {
        self.vaults().delete_credential(tenant, vault_id, id).await
    }

    pub async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> DomainResult<Page<openma_types::vaults::Credential>> {
        self.vaults().list_credentials(tenant, vault_id, p).await
    }
}

// ---- quotas ------------------------------------------------------------------------------

impl Platform {
    /// Spend of the current calendar month (UTC), in micro-dollars.
    pub async fn month_spend_micros(&self, tenant: &TenantId) -> DomainResult<i64> {
        crate::quota::month_spend_micros(&*self.store, tenant, self.now()).await
    }

    /// [`crate::quota::check`] with the tenant's limits from the database.
    pub async fn check_quota(&self, tenant: &TenantId, new_running: bool) -> DomainResult<bool> {
        let limits = self.store.get_tenant_limits(tenant).await?;
        crate::quota::check(&limits, &*self.store, &*self.store, tenant, self.now(), new_running).await
    }

    pub async fn set_tenant_limits(&self, tenant: &TenantId, limits: &crate::tenancy::TenantLimits) -> DomainResult<()> {
        Ok(self.store.set_tenant_limits(tenant, limits).await?)
    }

    pub async fn tenant_limits(&self, tenant: &TenantId) -> DomainResult<crate::tenancy::TenantLimits> {
        Ok(self.store.get_tenant_limits(tenant).await?)
    }
}
