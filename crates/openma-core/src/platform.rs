//! The domain operations, one method per API verb, over the ports.

use std::sync::Arc;

use openma_types::Timestamp;
use openma_types::agents::{Agent, CreateAgentRequest, UpdateAgentRequest};
use openma_types::environments::{CreateEnvironmentRequest, Environment, EnvironmentLimits, UpdateEnvironmentRequest};
use openma_types::sessions::{CreateSessionRequest, Session, SessionStatus, SessionUsage, UpdateSessionRequest};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::harness::tools::{Capabilities, check_capabilities};
use crate::paging::{MAX_LIMIT, Page, PageRequest};
use crate::ports::{Clock, DeleteOutcome, IdGen, ListQuery, Order, Position, SessionFilter, Store, TimeRange};
use crate::keys::Keys;
use crate::tenancy::{ApiKey, Tenant, TenantId};
use crate::{agents, environments, sessions, validate};

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

pub(crate) fn position_of(created_at: Timestamp, id: &str) -> Position {
    Position { created_at: created_at.as_micros(), id: id.to_owned() }
}

impl Platform {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdGen>) -> Self {
        Platform { store, clock, ids, capabilities: Capabilities::default(), secrets: None, blobs: None, sandbox_limits: None, prices: Default::default(), event_archives: Default::default() }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn page_request(&self, p: &ListParams, default_order: Order) -> DomainResult<(PageRequest, ListQuery)> {
        self.page_request_max(p, default_order, MAX_LIMIT)
    }

    pub(crate) fn page_request_max(&self, p: &ListParams, default_order: Order, max: u32) -> DomainResult<(PageRequest, ListQuery)> {
        let order = p.order.unwrap_or(default_order);
        let req = PageRequest::new(p.limit, order, p.page.as_deref(), max)?;
        let (store_order, after, _) = req.store_order();
        let query = ListQuery {
            limit: req.limit + 1,
            order: store_order,
            after,
            include_archived: p.include_archived,
            created: p.created,
        };
        Ok((req, query))
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

    pub async fn create_agent(&self, tenant: &TenantId, req: &CreateAgentRequest) -> DomainResult<Agent> {
        let agent = agents::new_agent(req, self.ids.new_id("agent"), self.now())?;
        check_capabilities(&agent.tools, self.capabilities)?;
        self.check_skills(tenant, &agent.skills, &agent.tools).await?;
        self.store.insert_agent(tenant, &agent).await?;
        self.announce_quietly(tenant, "agent.created", &agent.id).await;
        Ok(agent)
    }

    /// The agent's skills exist (each version too) and it can read them.
    async fn check_skills(&self, tenant: &TenantId, skills: &[openma_types::agents::Skill], tools: &[openma_types::agents::AgentTool]) -> DomainResult<()> {
        agents::check_skill_tools(skills, tools)?;
        for s in skills {
            self.get_skill_version(tenant, &s.skill_id, &s.version).await?;
        }
        Ok(())
    }

    pub async fn get_agent(&self, tenant: &TenantId, id: &str, version: Option<i64>) -> DomainResult<Agent> {
        let missing = || DomainError::not_found("agent", id);
        if !validate::looks_like_id(id, "agent_") {
            return Err(missing());
        }
        let current = self.store.get_agent(tenant, id).await?.ok_or_else(missing)?;
        match version {
            None => Ok(current),
            Some(v) if v < 1 => Err(DomainError::invalid("`version` must be at least 1")),
            Some(v) if v == current.version => Ok(current),
            Some(v) => {
                let mut old = self
                    .store
                    .get_agent_version(tenant, id, v)
                    .await?
                    .ok_or_else(|| DomainError::NotFound(format!("agent `{id}` has no version {v}")))?;
                old.archived_at = current.archived_at;
                Ok(old)
            }
        }
    }

    pub async fn update_agent(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> DomainResult<Agent> {
        if let Some(v) = req.version
            && v < 1
        {
            return Err(DomainError::invalid("`version` must be at least 1"));
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_agent(tenant, id, None).await?;
            if current.archived_at.is_some() {
                return Err(DomainError::invalid("archived agents cannot be updated"));
            }
            if let Some(v) = req.version
                && v != current.version
            {
                return Err(DomainError::conflict(format!(
                    "agent `{id}` is at version {}, not {v}; retrieve it and apply your change again",
                    current.version
                )));
            }
            let config = agents::apply_update(&current, req)?;
            check_capabilities(&config.tools, self.capabilities)?;
            self.check_skills(tenant, &config.skills, &config.tools).await?;
            if config == current.config() {
                return Ok(current);
            }
            let now = self.now().strictly_after(current.updated_at);
            let next = agents::with_config(config, current.id.clone(), current.version + 1, current.created_at, now);
            if self.store.update_agent(tenant, &next, current.version).await? {
                self.announce_quietly(tenant, "agent.updated", id).await;
                return Ok(next);
            }
            if req.version.is_some() {
                return Err(DomainError::conflict(format!("agent `{id}` was changed concurrently; retrieve it and retry")));
            }
        }
        Err(DomainError::conflict(format!("agent `{id}` is being changed concurrently; retry")))
    }

    pub async fn archive_agent(&self, tenant: &TenantId, id: &str) -> DomainResult<Agent> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_agent(tenant, id, None).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let mut next = current.clone();
            let now = self.now();
            next.archived_at = Some(now);
            next.updated_at = now.strictly_after(current.updated_at);
            if self.store.update_agent(tenant, &next, current.version).await? {
                self.announce_quietly(tenant, "agent.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("agent `{id}` is being changed concurrently; retry")))
    }

    pub async fn list_agents(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Agent>> {
        let (req, query) = self.page_request(p, Order::Desc)?;
        let rows = self.store.list_agents(tenant, &query).await?;
        Ok(req.finish(rows, |a| position_of(a.created_at, &a.id)))
    }

    /// Versions newest first; the cursor is the last version seen.
    pub async fn list_agent_versions(
        &self,
        tenant: &TenantId,
        id: &str,
        limit: Option<i64>,
        page: Option<&str>,
    ) -> DomainResult<Page<Agent>> {
        let current = self.get_agent(tenant, id, None).await?;
        let req = PageRequest::new(limit, Order::Desc, page, MAX_LIMIT)?;
        if req.cursor.as_ref().is_some_and(|c| c.position.id != id) {
            return Err(DomainError::invalid_code("invalid_page", "`page` cursor belongs to another agent"));
        }
        let below = req.cursor.as_ref().map(|c| c.position.created_at);
        let mut rows = self.store.list_agent_versions(tenant, id, below, req.limit + 1).await?;
        for r in &mut rows {
            r.archived_at = current.archived_at;
        }
        Ok(req.finish(rows, |a| Position { created_at: a.version, id: a.id.clone() }))
    }

    // ---- environments --------------------------------------------------------------

    pub async fn create_environment(&self, tenant: &TenantId, req: &CreateEnvironmentRequest) -> DomainResult<Environment> {
        let env = environments::new_environment(req, self.ids.new_id("env"), self.now(), self.sandbox_limits.as_ref())?;
        self.store.insert_environment(tenant, &env, false).await?;
        self.announce_quietly(tenant, "environment.created", &env.id).await;
        Ok(env)
    }

    pub async fn get_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
        let missing = || DomainError::not_found("environment", id);
        if !validate::looks_like_id(id, "env_") {
            return Err(missing());
        }
        self.store.get_environment(tenant, id).await?.ok_or_else(missing)
    }

    /// The environment used by sessions that name none, created on first need.
    pub async fn default_environment(&self, tenant: &TenantId) -> DomainResult<Environment> {
        for _ in 0..UPDATE_ATTEMPTS {
            if let Some(env) = self.store.get_default_environment(tenant).await? {
                return Ok(env);
            }
            let req = CreateEnvironmentRequest {
                name: "default".into(),
                config: None,
                description: Some("Used by sessions created without an environment_id.".into()),
                metadata: None,
                scope: None,
            };
            let env = environments::new_environment(&req, self.ids.new_id("env"), self.now(), None)?;
            match self.store.insert_environment(tenant, &env, true).await {
                Ok(()) => return Ok(env),
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::conflict("the default environment is being created concurrently; retry"))
    }

    pub async fn update_environment(
        &self,
        tenant: &TenantId,
        id: &str,
        req: &UpdateEnvironmentRequest,
    ) -> DomainResult<Environment> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_environment(tenant, id).await?;
            let now = self.now().strictly_after(current.updated_at);
            let next = environments::apply_update(&current, req, now, self.sandbox_limits.as_ref())?;
            if next == current {
                return Ok(next);
            }
            if self.store.update_environment(tenant, &next, current.updated_at).await? {
                self.announce_quietly(tenant, "environment.updated", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("environment `{id}` is being changed concurrently; retry")))
    }

    pub async fn archive_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_environment(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let now = self.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            if self.store.update_environment(tenant, &next, current.updated_at).await? {
                self.announce_quietly(tenant, "environment.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("environment `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_environment(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "env_") {
            return Err(DomainError::not_found("environment", id));
        }
        match self.store.delete_environment(tenant, id).await? {
            DeleteOutcome::Deleted => {
                self.announce_quietly(tenant, "environment.deleted", id).await;
                Ok(())
            }
            DeleteOutcome::NotFound => Err(DomainError::not_found("environment", id)),
            DeleteOutcome::Refused => Err(DomainError::conflict(format!(
                "environment `{id}` is used by sessions that are not terminated; archive or delete them first"
            ))),
        }
    }

    pub async fn list_environments(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Environment>> {
        let (req, query) = self.page_request(p, Order::Desc)?;
        let rows = self.store.list_environments(tenant, &query).await?;
        Ok(req.finish(rows, |e| position_of(e.created_at, &e.id)))
    }

    // ---- sessions ------------------------------------------------------------------

    /// Creates a session. `initial_events` are checked here; the caller hands the
    /// returned inputs to the session runtime.
    pub async fn create_session(
        &self,
        tenant: &TenantId,
        req: &CreateSessionRequest,
    ) -> DomainResult<(Session, Vec<crate::harness::input::Input>)> {
        sessions::check_create_fields(req)?;
        let initial = sessions::initial_inputs(req)?;
        let choice = sessions::agent_choice(req)?;
        let agent = self.get_agent(tenant, &choice.id, choice.version).await?;
        let current = if choice.version.is_some() { self.get_agent(tenant, &choice.id, None).await? } else { agent.clone() };
        if current.archived_at.is_some() {
            return Err(DomainError::invalid(format!("agent `{}` is archived and cannot start sessions", agent.id)));
        }
        let config = match &choice.overrides {
            Some(o) => sessions::apply_overrides(&agent, o)?,
            None => agent.config(),
        };
        check_capabilities(&config.tools, self.capabilities)?;
        self.check_skills(tenant, &config.skills, &config.tools).await?;
        let environment = match &req.environment_id {
            Some(id) => {
                let env = self.get_environment(tenant, id).await?;
                if env.archived_at.is_some() {
                    return Err(DomainError::invalid_code(
                        "environment_archived",
                        format!("environment `{id}` is archived and cannot start sessions"),
                    ));
                }
                env
            }
            None => self.default_environment(tenant).await?,
        };
        if let Some(b) = &req.budget {
            sessions::check_budget(b, &config.model.id)?;
        }
        let mut vault_ids = Vec::new();
        for id in req.vault_ids.iter().flatten() {
            let vault = self.get_vault(tenant, id).await?;
            if vault.archived_at.is_some() {
                return Err(DomainError::invalid(format!("vault `{id}` is archived")));
            }
            if !vault_ids.contains(id) {
                vault_ids.push(id.clone());
            }
        }
        self.check_file_blocks(tenant, &initial, "initial_events").await?;
        let resource_params = crate::files::resource_params(req.resources.as_deref().unwrap_or_default())?;
        let memory = self.attach_memory_stores(tenant, &resource_params.memory_stores).await?;
        let id = self.ids.new_id("sesn");
        let repositories = crate::repositories::resources(&resource_params.repositories, || self.ids.new_id("sesrsc"), self.now())?;
        let mounts = self.mount_copies(tenant, &id, &resource_params.files).await?;
        let now = self.now();
        let session = Session {
            id,
            tag: Default::default(),
            agent: sessions::snapshot(&agent.id, agent.version, config),
            environment_id: environment.id,
            title: req.title.clone(),
            metadata: req.metadata.clone().unwrap_or_default(),
            status: SessionStatus::Idle,
            stats: Default::default(),
            usage: SessionUsage::default(),
            resources: memory
                .into_iter()
                .map(openma_types::sessions::SessionResource::MemoryStore)
                .chain(repositories.into_iter().map(openma_types::sessions::SessionResource::GitHubRepository))
                .chain(mounts.iter().map(|(r, _)| openma_types::sessions::SessionResource::File(r.clone())))
                .collect(),
            vault_ids,
            outcome_evaluations: Vec::new(),
            budget: req.budget.clone(),
            deployment_id: None,
            created_at: now,
            updated_at: now,
            archived_at: None,
        };
        if let Err(e) = self.store.insert_session(tenant, &session).await {
            self.delete_session_files(tenant, &session.id).await?;
            return Err(e.into());
        }
        self.announce_quietly(tenant, "session.created", &session.id).await;
        Ok((sessions::present(session, now), initial))
    }

    pub(crate) async fn load_session(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        let missing = || DomainError::not_found("session", id);
        if !validate::looks_like_id(id, "sesn_") {
            return Err(missing());
        }
        self.store.get_session(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn get_session(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        Ok(sessions::present(self.load_session(tenant, id).await?, self.now()))
    }

    pub async fn update_session(&self, tenant: &TenantId, id: &str, req: &UpdateSessionRequest) -> DomainResult<Session> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_session(tenant, id).await?;
            let next = sessions::apply_update(&current, req, self.now())?;
            check_capabilities(&next.agent.tools, self.capabilities)?;
            if next == current {
                return Ok(sessions::present(next, self.now()));
            }
            if self.store.update_session(tenant, &next, current.updated_at).await? {
                self.announce_quietly(tenant, "session.updated", id).await;
                return Ok(sessions::present(next, self.now()));
            }
        }
        Err(DomainError::conflict(format!("session `{id}` is being changed concurrently; retry")))
    }

    /// Archiving ends a session for good: it becomes `terminated` and read-only.
    pub async fn archive_session(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_session(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(sessions::present(current, self.now()));
            }
            if matches!(current.status, SessionStatus::Running | SessionStatus::Rescheduling) {
                return Err(DomainError::invalid(
                    "a running session cannot be archived; send `user.interrupt` and wait for idle",
                ));
            }
            let now = self.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            next.status = SessionStatus::Terminated;
            if self.store.update_session(tenant, &next, current.updated_at).await? {
                self.announce_quietly(tenant, "session.archived", id).await;
                return Ok(sessions::present(next, now));
            }
        }
        Err(DomainError::conflict(format!("session `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_session(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "sesn_") {
            return Err(DomainError::not_found("session", id));
        }
        match self.store.delete_session(tenant, id).await? {
            DeleteOutcome::Deleted => {
                self.announce_quietly(tenant, "session.deleted", id).await;
                // its archived event log, if it has one (a missing blob is not an error)
                self.delete_blobs(std::iter::once(crate::event_log::archive_key(tenant, id))).await;
                self.delete_session_files(tenant, id).await
            }
            DeleteOutcome::NotFound => Err(DomainError::not_found("session", id)),
            DeleteOutcome::Refused => Err(DomainError::invalid(
                "a running session cannot be deleted; send `user.interrupt` and wait for idle",
            )),
        }
    }

    pub async fn list_sessions(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> DomainResult<Page<Session>> {
        if filter.agent_version.is_some() && filter.agent_id.is_none() {
            return Err(DomainError::invalid("`agent_version` filters only together with `agent_id`"));
        }
        let (req, query) = self.page_request(p, Order::Desc)?;
        let rows = self.store.list_sessions(tenant, &query, filter).await?;
        let now = self.now();
        Ok(req.finish(rows, |s| position_of(s.created_at, &s.id)).map(|s| sessions::present(s, now)))
    }
}

// ---- vaults and credentials ------------------------------------------------------------

impl Platform {
    fn secret_box(&self) -> DomainResult<&crate::secrets::SecretBox> {
        self.secrets.as_deref().ok_or_else(|| DomainError::invalid("secrets are not available: the server has no root secret"))
    }

    /// Re-seals every credential secret of the tenant under `secrets`' current root (the
    /// step of `openma secrets rotate` for vaults). Returns how many credentials changed.
    pub async fn reseal_credentials(&self, tenant: &TenantId, secrets: &crate::secrets::SecretBox) -> DomainResult<usize> {
        let mut done = 0;
        let all = |after: Option<Position>| ListQuery { limit: 100, order: Order::Asc, after, include_archived: true, created: TimeRange::default() };
        let mut vault_after = None;
        loop {
            let vaults = self.store.list_vaults(tenant, &all(vault_after.take())).await?;
            for v in &vaults {
                let mut cred_after = None;
                loop {
                    let creds = self.store.list_credentials(tenant, &v.id, &all(cred_after.take())).await?;
                    for c in &creds {
                        done += self.reseal_credential(tenant, secrets, c.clone()).await?;
                    }
                    match creds.last() {
                        Some(c) if creds.len() == 100 => cred_after = Some(position_of(c.credential.created_at, &c.credential.id)),
                        _ => break,
                    }
                }
            }
            match vaults.last() {
                Some(v) if vaults.len() == 100 => vault_after = Some(position_of(v.created_at, &v.id)),
                _ => return Ok(done),
            }
        }
    }

    async fn reseal_credential(&self, tenant: &TenantId, secrets: &crate::secrets::SecretBox, mut current: crate::vaults::StoredCredential) -> DomainResult<usize> {
        let nonce = || self.ids.nonce();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(next) = crate::vaults::reseal_credential(secrets, tenant, &current, &nonce)
                .map_err(|e| DomainError::invalid(format!("credential `{}`: {e}", current.credential.id)))?
            else {
                return Ok(0);
            };
            // guarded by the unchanged `updated_at`: a re-seal is not a change clients see
            if self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                return Ok(1);
            }
            match self.store.get_credential(tenant, &current.credential.vault_id, &current.credential.id).await? {
                Some(c) => current = c,
                None => return Ok(0),
            }
        }
        Err(DomainError::conflict(format!("credential `{}` is being changed concurrently; retry", current.credential.id)))
    }

    pub async fn create_vault(&self, tenant: &TenantId, req: &openma_types::vaults::CreateVaultRequest) -> DomainResult<openma_types::vaults::Vault> {
        let v = crate::vaults::new_vault(req, self.ids.new_id("vlt"), self.now())?;
        self.store.insert_vault(tenant, &v).await?;
        self.announce_quietly(tenant, "vault.created", &v.id).await;
        Ok(v)
    }

    pub async fn get_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<openma_types::vaults::Vault> {
        let missing = || DomainError::not_found("vault", id);
        if !validate::looks_like_id(id, "vlt_") {
            return Err(missing());
        }
        self.store.get_vault(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn update_vault(&self, tenant: &TenantId, id: &str, req: &openma_types::vaults::UpdateVaultRequest) -> DomainResult<openma_types::vaults::Vault> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_vault(tenant, id).await?;
            let next = crate::vaults::apply_vault_update(&current, req, self.now())?;
            if next == current || self.store.update_vault(tenant, &next, current.updated_at).await? {
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("vault `{id}` is being changed concurrently; retry")))
    }

    /// Archives a vault and every credential in it; their secrets are purged.
    pub async fn archive_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<openma_types::vaults::Vault> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_vault(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let now = self.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            if self.store.update_vault(tenant, &next, current.updated_at).await? {
                self.announce_quietly(tenant, "vault.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("vault `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "vlt_") || !self.store.delete_vault(tenant, id).await? {
            return Err(DomainError::not_found("vault", id));
        }
        self.announce_quietly(tenant, "vault.deleted", id).await;
        Ok(())
    }

    pub async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<openma_types::vaults::Vault>> {
        let (req, query) = self.page_request(p, Order::Desc)?;
        let rows = self.store.list_vaults(tenant, &query).await?;
        Ok(req.finish(rows, |v| position_of(v.created_at, &v.id)))
    }

    pub async fn create_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        req: &openma_types::vaults::CreateCredentialRequest,
    ) -> DomainResult<openma_types::vaults::Credential> {
        let vault = self.get_vault(tenant, vault_id).await?;
        if vault.archived_at.is_some() {
            return Err(DomainError::invalid(format!("vault `{vault_id}` is archived")));
        }
        let id = self.ids.new_id("vcrd");
        let nonce = || self.ids.nonce();
        let sealer = crate::vaults::Sealer { secrets: self.secret_box()?, tenant, credential_id: &id, nonce: &nonce };
        let stored = crate::vaults::new_credential(req, vault_id, self.now(), &sealer)?;
        match self.store.insert_credential(tenant, &stored, crate::vaults::CREDENTIALS_PER_VAULT).await {
            Ok(true) => {
                self.announce_credential(tenant, "vault_credential.created", vault_id, &id).await;
                Ok(stored.credential)
            }
            Ok(false) => Err(DomainError::invalid(format!(
                "vault `{vault_id}` already holds {} active credentials",
                crate::vaults::CREDENTIALS_PER_VAULT
            ))),
            Err(StoreError::Duplicate(_)) => Err(DomainError::conflict(
                "an active credential for this MCP server or environment variable already exists in this vault",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn load_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<crate::vaults::StoredCredential> {
        let missing = || DomainError::not_found("credential", id);
        if !validate::looks_like_id(vault_id, "vlt_") || !validate::looks_like_id(id, "vcrd_") {
            return Err(missing());
        }
        self.store.get_credential(tenant, vault_id, id).await?.ok_or_else(missing)
    }

    pub async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<openma_types::vaults::Credential> {
        Ok(self.load_credential(tenant, vault_id, id).await?.credential)
    }

    pub async fn update_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        id: &str,
        req: &openma_types::vaults::UpdateCredentialRequest,
    ) -> DomainResult<openma_types::vaults::Credential> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_credential(tenant, vault_id, id).await?;
            let nonce = || self.ids.nonce();
            let sealer = crate::vaults::Sealer { secrets: self.secret_box()?, tenant, credential_id: id, nonce: &nonce };
            let next = crate::vaults::apply_credential_update(&current, req, self.now(), &sealer)?;
            if next == current || self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                return Ok(next.credential);
            }
        }
        Err(DomainError::conflict(format!("credential `{id}` is being changed concurrently; retry")))
    }

    /// Archives a credential; its secrets are purged for good.
    pub async fn archive_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<openma_types::vaults::Credential> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_credential(tenant, vault_id, id).await?;
            if current.credential.archived_at.is_some() {
                return Ok(current.credential);
            }
            let now = self.now().strictly_after(current.credential.updated_at);
            let mut next = current.clone();
            next.credential.archived_at = Some(now);
            next.credential.updated_at = now;
            next.secrets.clear();
            if self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                self.announce_credential(tenant, "vault_credential.archived", vault_id, id).await;
                return Ok(next.credential);
            }
        }
        Err(DomainError::conflict(format!("credential `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<()> {
        self.load_credential(tenant, vault_id, id).await?;
        if !self.store.delete_credential(tenant, vault_id, id).await? {
            return Err(DomainError::not_found("credential", id));
        }
        self.announce_credential(tenant, "vault_credential.deleted", vault_id, id).await;
        Ok(())
    }

    pub async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> DomainResult<Page<openma_types::vaults::Credential>> {
        self.get_vault(tenant, vault_id).await?;
        let (req, query) = self.page_request(p, Order::Desc)?;
        let rows = self.store.list_credentials(tenant, vault_id, &query).await?;
        Ok(req.finish(rows, |c| position_of(c.credential.created_at, &c.credential.id)).map(|c| c.credential))
    }
}

// ---- quotas ------------------------------------------------------------------------------

impl Platform {
    /// Spend of the current calendar month (UTC), in micro-dollars.
    pub async fn month_spend_micros(&self, tenant: &TenantId) -> DomainResult<i64> {
        let now = self.now().to_string();
        let start: Timestamp = format!("{}-01T00:00:00Z", &now[..7]).parse().map_err(|_| DomainError::invalid("clock"))?;
        let rows = self
            .store
            .usage_report(tenant, &crate::ports::UsageQuery { group_by: Vec::new(), from: Some(start.as_micros()), to: None })
            .await?;
        Ok(rows.iter().map(|r| r.amount_micros).sum())
    }

    /// Refuses new work past the tenant's hard monthly spend limit (402) or while it has
    /// as many running sessions as allowed (429). `new_running` says whether the work
    /// would start a session that is not running now. Returns true when the soft monthly
    /// limit is exceeded (the caller warns).
    pub async fn check_quota(&self, tenant: &TenantId, new_running: bool) -> DomainResult<bool> {
        let limits = self.store.get_tenant_limits(tenant).await?;
        let mut soft_exceeded = false;
        if limits.monthly_hard_micros.is_some() || limits.monthly_soft_micros.is_some() {
            let spent = self.month_spend_micros(tenant).await?;
            if let Some(hard) = limits.monthly_hard_micros
                && spent >= hard
            {
                return Err(DomainError::PaymentRequired(format!(
                    "this tenant reached its monthly spend limit (${:.2} of ${:.2}); new sessions and turns are refused until the limit is raised or the month ends",
                    spent as f64 / 1e6,
                    hard as f64 / 1e6
                )));
            }
            soft_exceeded = limits.monthly_soft_micros.is_some_and(|soft| spent >= soft);
        }
        if new_running
            && let Some(max) = limits.max_running_sessions
            && self.store.count_running_sessions(tenant).await? >= max
        {
            return Err(DomainError::QuotaExceeded {
                message: format!("this tenant already runs {max} sessions at once, its limit; retry when one goes idle"),
                retry_after_secs: 5,
            });
        }
        Ok(soft_exceeded)
    }

    pub async fn set_tenant_limits(&self, tenant: &TenantId, limits: &crate::tenancy::TenantLimits) -> DomainResult<()> {
        Ok(self.store.set_tenant_limits(tenant, limits).await?)
    }

    pub async fn tenant_limits(&self, tenant: &TenantId) -> DomainResult<crate::tenancy::TenantLimits> {
        Ok(self.store.get_tenant_limits(tenant).await?)
    }
}
