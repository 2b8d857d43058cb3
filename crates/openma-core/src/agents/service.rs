//! The agent verbs over the [`AgentStore`] port: create, retrieve (any version), update
//! (a new version per real change, optimistic concurrency), archive and the two lists.
//! Shared by the native server (through [`crate::Platform`]) and the Workers, which keep
//! agents in D1.

use async_trait::async_trait;
use openma_types::agents::{Agent, AgentTool, CreateAgentRequest, Skill, UpdateAgentRequest};

use crate::error::{DomainError, DomainResult};
use crate::harness::tools::{Capabilities, check_capabilities};
use crate::paging::{MAX_LIMIT, Page, PageRequest};
use crate::platform::{ListParams, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{AgentStore, Announcer, Clock, IdGen, Order, Position};
use crate::tenancy::TenantId;
use crate::validate;

/// The deployment's skill registry, as agents see it.
#[async_trait]
pub trait SkillCheck: Send + Sync {
    /// The agent's skills exist (each version too) and the tenant can read them.
    async fn check_skills(&self, tenant: &TenantId, skills: &[Skill], tools: &[AgentTool]) -> DomainResult<()>;
}

/// The agent operations, bound to one set of adapters.
pub struct Agents<'a> {
    pub store: &'a dyn AgentStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    /// Optional features of this deployment (tools that need them are refused without).
    pub capabilities: Capabilities,
    pub skills: &'a dyn SkillCheck,
    pub announcer: &'a dyn Announcer,
}

impl Agents<'_> {
    pub async fn create(&self, tenant: &TenantId, req: &CreateAgentRequest) -> DomainResult<Agent> {
        let agent = super::new_agent(req, self.ids.new_id("agent"), self.clock.now())?;
        check_capabilities(&agent.tools, self.capabilities)?;
        self.skills.check_skills(tenant, &agent.skills, &agent.tools).await?;
        self.store.insert_agent(tenant, &agent).await?;
        self.announcer.announce(tenant, "agent.created", &agent.id).await;
        Ok(agent)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str, version: Option<i64>) -> DomainResult<Agent> {
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

    pub async fn update(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> DomainResult<Agent> {
        if let Some(v) = req.version
            && v < 1
        {
            return Err(DomainError::invalid("`version` must be at least 1"));
        }
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(tenant, id, None).await?;
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
            let config = super::apply_update(&current, req)?;
            check_capabilities(&config.tools, self.capabilities)?;
            self.skills.check_skills(tenant, &config.skills, &config.tools).await?;
            if config == current.config() {
                return Ok(current);
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let next = super::with_config(config, current.id.clone(), current.version + 1, current.created_at, now);
            if self.store.update_agent(tenant, &next, current.version).await? {
                self.announcer.announce(tenant, "agent.updated", id).await;
                return Ok(next);
            }
            if req.version.is_some() {
                return Err(DomainError::conflict(format!("agent `{id}` was changed concurrently; retrieve it and retry")));
            }
        }
        Err(DomainError::conflict(format!("agent `{id}` is being changed concurrently; retry")))
    }

    pub async fn archive(&self, tenant: &TenantId, id: &str) -> DomainResult<Agent> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(tenant, id, None).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let mut next = current.clone();
            let now = self.clock.now();
            next.archived_at = Some(now);
            next.updated_at = now.strictly_after(current.updated_at);
            if self.store.update_agent(tenant, &next, current.version).await? {
                self.announcer.announce(tenant, "agent.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("agent `{id}` is being changed concurrently; retry")))
    }

    pub async fn list(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Agent>> {
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_agents(tenant, &query).await?;
        Ok(req.finish(rows, |a| position_of(a.created_at, &a.id)))
    }

    /// Versions newest first; the cursor is the last version seen.
    pub async fn list_versions(&self, tenant: &TenantId, id: &str, limit: Option<i64>, page: Option<&str>) -> DomainResult<Page<Agent>> {
        let current = self.get(tenant, id, None).await?;
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
}
