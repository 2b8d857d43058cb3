//! The environment verbs over the [`EnvironmentStore`] port: create, retrieve, update
//! (optimistic concurrency on `updated_at`), archive, delete (refused while a live session
//! uses it), list, and the tenant's default environment. Shared by the native server
//! (through [`crate::Platform`]) and the Workers, which keep environments in D1.

use openma_types::environments::{CreateEnvironmentRequest, Environment, EnvironmentLimits, UpdateEnvironmentRequest};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::paging::{MAX_LIMIT, Page};
use crate::platform::{ListParams, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Announcer, Clock, DeleteOutcome, EnvironmentStore, IdGen, Order};
use crate::tenancy::TenantId;
use crate::validate;

/// The environment operations, bound to one set of adapters.
pub struct Environments<'a> {
    pub store: &'a dyn EnvironmentStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    /// The sandbox limits of this deployment: `config.limits` may not exceed them. None:
    /// unbounded.
    pub sandbox_limits: Option<&'a EnvironmentLimits>,
    pub announcer: &'a dyn Announcer,
}

impl Environments<'_> {
    pub async fn create(&self, tenant: &TenantId, req: &CreateEnvironmentRequest) -> DomainResult<Environment> {
        let env = super::new_environment(req, self.ids.new_id("env"), self.clock.now(), self.sandbox_limits)?;
        self.store.insert_environment(tenant, &env, false).await?;
        self.announcer.announce(tenant, "environment.created", &env.id).await;
        Ok(env)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
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
            let env = super::new_environment(&req, self.ids.new_id("env"), self.clock.now(), None)?;
            match self.store.insert_environment(tenant, &env, true).await {
                Ok(()) => return Ok(env),
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::conflict("the default environment is being created concurrently; retry"))
    }

    pub async fn update(&self, tenant: &TenantId, id: &str, req: &UpdateEnvironmentRequest) -> DomainResult<Environment> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(tenant, id).await?;
            let now = self.clock.now().strictly_after(current.updated_at);
            let next = super::apply_update(&current, req, now, self.sandbox_limits)?;
            if next == current {
                return Ok(next);
            }
            if self.store.update_environment(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "environment.updated", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("environment `{id}` is being changed concurrently; retry")))
    }

    pub async fn archive(&self, tenant: &TenantId, id: &str) -> DomainResult<Environment> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            if self.store.update_environment(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "environment.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("environment `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "env_") {
            return Err(DomainError::not_found("environment", id));
        }
        match self.store.delete_environment(tenant, id).await? {
            DeleteOutcome::Deleted => {
                self.announcer.announce(tenant, "environment.deleted", id).await;
                Ok(())
            }
            DeleteOutcome::NotFound => Err(DomainError::not_found("environment", id)),
            DeleteOutcome::Refused => Err(DomainError::conflict(format!(
                "environment `{id}` is used by sessions that are not terminated; archive or delete them first"
            ))),
        }
    }

    pub async fn list(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Environment>> {
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_environments(tenant, &query).await?;
        Ok(req.finish(rows, |e| position_of(e.created_at, &e.id)))
    }
}
