//! The session verbs over the [`SessionStore`] port: create (resolving the agent snapshot,
//! environment, vaults and resources), retrieve, update, archive, delete and list. Shared
//! by the native server (through [`crate::Platform`]) and the Workers, which keep session
//! rows in D1; what a deployment does with files and archived logs is behind
//! [`SessionAttachments`].

use async_trait::async_trait;
use openma_types::files::{FileResource, FileResourceParams};
use openma_types::sessions::{CreateSessionRequest, Session, SessionResource, SessionStatus, SessionUsage, UpdateSessionRequest};

use crate::agents::{Agents, SkillCheck};
use crate::environments::Environments;
use crate::error::{DomainError, DomainResult};
use crate::files::StoredFile;
use crate::harness::input::Input;
use crate::harness::tools::{Capabilities, check_capabilities};
use crate::memory::Memories;
use crate::paging::{MAX_LIMIT, Page};
use crate::platform::{ListParams, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Announcer, Clock, DeleteOutcome, IdGen, Order, SessionFilter, SessionStore};
use crate::tenancy::TenantId;
use crate::vaults::Vaults;
use crate::{memory_mounts, repositories, validate};

/// What a session holds besides its row: file blocks in its input, the session-scoped
/// copies of the files it mounts, and its archived event log. The native server keeps
/// them in its file store and blob store; a deployment without files refuses them.
#[async_trait]
pub trait SessionAttachments: Send + Sync {
    /// Every `file_id` the inputs name is a readable file of the tenant.
    async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[Input], where_: &str) -> DomainResult<()>;
    /// Makes the session-scoped copies of the files a new session mounts.
    async fn mount_copies(&self, tenant: &TenantId, session_id: &str, params: &[FileResourceParams]) -> DomainResult<Vec<(FileResource, StoredFile)>>;
    /// Deletes what a deleted (or never created) session's files and archived log held.
    async fn release(&self, tenant: &TenantId, session_id: &str) -> DomainResult<()>;
}

/// The session operations, bound to one set of adapters.
pub struct Sessions<'a> {
    pub store: &'a dyn SessionStore,
    pub agents: Agents<'a>,
    pub environments: Environments<'a>,
    pub vaults: Vaults<'a>,
    pub memories: Memories<'a>,
    pub skills: &'a dyn SkillCheck,
    pub attachments: &'a dyn SessionAttachments,
    pub capabilities: Capabilities,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    pub announcer: &'a dyn Announcer,
}

impl Sessions<'_> {
    /// Creates a session. `initial_events` are checked here; the caller hands the
    /// returned inputs to the session runtime.
    pub async fn create(&self, tenant: &TenantId, req: &CreateSessionRequest) -> DomainResult<(Session, Vec<Input>)> {
        super::check_create_fields(req)?;
        let initial = super::initial_inputs(req)?;
        let choice = super::agent_choice(req)?;
        let agent = self.agents.get(tenant, &choice.id, choice.version).await?;
        let current = if choice.version.is_some() { self.agents.get(tenant, &choice.id, None).await? } else { agent.clone() };
        if current.archived_at.is_some() {
            return Err(DomainError::invalid(format!("agent `{}` is archived and cannot start sessions", agent.id)));
        }
        let config = match &choice.overrides {
            Some(o) => super::apply_overrides(&agent, o)?,
            None => agent.config(),
        };
        check_capabilities(&config.tools, self.capabilities)?;
        self.skills.check_skills(tenant, &config.skills, &config.tools).await?;
        let environment = match &req.environment_id {
            Some(id) => {
                let env = self.environments.get(tenant, id).await?;
                if env.archived_at.is_some() {
                    return Err(DomainError::invalid_code(
                        "environment_archived",
                        format!("environment `{id}` is archived and cannot start sessions"),
                    ));
                }
                env
            }
            None => self.environments.default_environment(tenant).await?,
        };
        // the model could not tell the tools of two servers of one name apart
        let openma_types::environments::EnvironmentConfig::Cloud(c) = &environment.config;
        if let Some(clash) = c.mcp_servers.iter().find(|s| config.mcp_servers.iter().any(|a| a.name == s.name)) {
            return Err(DomainError::invalid(format!(
                "the agent's `mcp_servers` and environment `{}`'s `config.mcp_servers` both name a server `{}`; rename one of them",
                environment.id, clash.name
            )));
        }
        if let Some(b) = &req.budget {
            super::check_budget(b, &config.model.id)?;
        }
        let mut vault_ids = Vec::new();
        for id in req.vault_ids.iter().flatten() {
            let vault = self.vaults.get_vault(tenant, id).await?;
            if vault.archived_at.is_some() {
                return Err(DomainError::invalid(format!("vault `{id}` is archived")));
            }
            if !vault_ids.contains(id) {
                vault_ids.push(id.clone());
            }
        }
        self.attachments.check_file_blocks(tenant, &initial, "initial_events").await?;
        let resource_params = crate::files::resource_params(req.resources.as_deref().unwrap_or_default())?;
        let memory = memory_mounts::attach_memory_stores(&self.memories, tenant, &resource_params.memory_stores).await?;
        let id = self.ids.new_id("sesn");
        let repositories = repositories::resources(&resource_params.repositories, || self.ids.new_id("sesrsc"), self.clock.now())?;
        let mounts = self.attachments.mount_copies(tenant, &id, &resource_params.files).await?;
        let now = self.clock.now();
        let session = Session {
            id,
            tag: Default::default(),
            agent: super::snapshot(&agent.id, agent.version, config),
            environment_id: environment.id,
            title: req.title.clone(),
            metadata: req.metadata.clone().unwrap_or_default(),
            status: SessionStatus::Idle,
            stats: Default::default(),
            usage: SessionUsage::default(),
            resources: memory
                .into_iter()
                .map(SessionResource::MemoryStore)
                .chain(repositories.into_iter().map(SessionResource::GitHubRepository))
                .chain(mounts.iter().map(|(r, _)| SessionResource::File(r.clone())))
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
            self.attachments.release(tenant, &session.id).await?;
            return Err(e.into());
        }
        self.announcer.announce(tenant, "session.created", &session.id).await;
        Ok((super::present(session, now), initial))
    }

    /// The stored session as it is (no running time added).
    pub async fn load(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        let missing = || DomainError::not_found("session", id);
        if !validate::looks_like_id(id, "sesn_") {
            return Err(missing());
        }
        self.store.get_session(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        Ok(super::present(self.load(tenant, id).await?, self.clock.now()))
    }

    pub async fn update(&self, tenant: &TenantId, id: &str, req: &UpdateSessionRequest) -> DomainResult<Session> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            let next = super::apply_update(&current, req, self.clock.now())?;
            check_capabilities(&next.agent.tools, self.capabilities)?;
            if next == current {
                return Ok(super::present(next, self.clock.now()));
            }
            if self.store.update_session(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "session.updated", id).await;
                return Ok(super::present(next, self.clock.now()));
            }
        }
        Err(DomainError::conflict(format!("session `{id}` is being changed concurrently; retry")))
    }

    /// Archiving ends a session for good: it becomes `terminated` and read-only.
    pub async fn archive(&self, tenant: &TenantId, id: &str) -> DomainResult<Session> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(super::present(current, self.clock.now()));
            }
            if matches!(current.status, SessionStatus::Running | SessionStatus::Rescheduling) {
                return Err(DomainError::invalid(
                    "a running session cannot be archived; send `user.interrupt` and wait for idle",
                ));
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            next.status = SessionStatus::Terminated;
            if self.store.update_session(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "session.archived", id).await;
                return Ok(super::present(next, now));
            }
        }
        Err(DomainError::conflict(format!("session `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "sesn_") {
            return Err(DomainError::not_found("session", id));
        }
        match self.store.delete_session(tenant, id).await? {
            DeleteOutcome::Deleted => {
                self.announcer.announce(tenant, "session.deleted", id).await;
                self.attachments.release(tenant, id).await
            }
            DeleteOutcome::NotFound => Err(DomainError::not_found("session", id)),
            DeleteOutcome::Refused => Err(DomainError::invalid(
                "a running session cannot be deleted; send `user.interrupt` and wait for idle",
            )),
        }
    }

    pub async fn list(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> DomainResult<Page<Session>> {
        if filter.agent_version.is_some() && filter.agent_id.is_none() {
            return Err(DomainError::invalid("`agent_version` filters only together with `agent_id`"));
        }
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_sessions(tenant, &query, filter).await?;
        let now = self.clock.now();
        Ok(req.finish(rows, |s| position_of(s.created_at, &s.id)).map(|s| super::present(s, now)))
    }
}
