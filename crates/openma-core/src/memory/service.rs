//! The memory verbs over the [`MemoryStorage`] port: stores, memories addressed by path
//! (with optimistic `content_sha256` preconditions) and the versions that record every
//! write. Shared by the native server (through [`crate::Platform`]) and the Workers, on D1.

use openma_types::memory::{
    Actor, CreateMemoryRequest, CreateMemoryStoreRequest, Memory, MemoryListItem, MemoryOperation, MemoryStore,
    MemoryVersion, PreconditionKind, UpdateMemoryRequest, UpdateMemoryStoreRequest,
};

use super::ListBound;
use crate::error::{DomainError, DomainResult};
use crate::paging::{DEFAULT_LIMIT, MAX_LIMIT, Page};
use crate::platform::{ListParams, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Announcer, Clock, IdGen, MemoryStorage, MemoryWrite, Order, VersionFilter};
use crate::tenancy::TenantId;
use crate::validate;

/// The parameters of a memory listing, as parsed at the edge.
#[derive(Clone, Debug, Default)]
pub struct MemoryListParams {
    pub path_prefix: Option<String>,
    pub depth: Option<i64>,
    pub limit: Option<i64>,
    pub page: Option<String>,
    /// `view=full`: memories carry their content.
    pub full: bool,
}

fn view(mut m: Memory, full: bool) -> Memory {
    if !full {
        m.content = None;
    }
    m
}

fn version_view(mut v: MemoryVersion, full: bool) -> MemoryVersion {
    if !full {
        v.content = None;
    }
    v
}

fn path_conflict(path: &str, id: String) -> DomainError {
    DomainError::MemoryPathConflict {
        message: format!("a memory already exists at `{path}` in this store (`{id}`)"),
        conflicting_memory_id: id,
    }
}

/// The memory operations, bound to one set of adapters.
pub struct Memories<'a> {
    pub store: &'a dyn MemoryStorage,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    pub announcer: &'a dyn Announcer,
}

impl Memories<'_> {
    pub async fn create_memory_store(&self, tenant: &TenantId, req: &CreateMemoryStoreRequest) -> DomainResult<MemoryStore> {
        let s = super::new_store(req, self.ids.new_id("memstore"), self.clock.now())?;
        self.store.insert_memory_store(tenant, &s).await?;
        self.announcer.announce(tenant, "memory_store.created", &s.id).await;
        Ok(s)
    }

    pub async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<MemoryStore> {
        let missing = || DomainError::not_found("memory store", id);
        if !validate::looks_like_id(id, "memstore_") {
            return Err(missing());
        }
        self.store.get_memory_store(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn update_memory_store(&self, tenant: &TenantId, id: &str, req: &UpdateMemoryStoreRequest) -> DomainResult<MemoryStore> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_memory_store(tenant, id).await?;
            let next = super::apply_store_update(&current, req, self.clock.now())?;
            if next == current || self.store.update_memory_store(tenant, &next, current.updated_at).await? {
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("memory store `{id}` is being changed concurrently; retry")))
    }

    /// Archiving is permanent: the store becomes read-only. Archiving twice is a no-op.
    pub async fn archive_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<MemoryStore> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_memory_store(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let next = MemoryStore { archived_at: Some(now), updated_at: now, ..current.clone() };
            if self.store.update_memory_store(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "memory_store.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("memory store `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "memstore_") || !self.store.delete_memory_store(tenant, id).await? {
            return Err(DomainError::not_found("memory store", id));
        }
        self.announcer.announce(tenant, "memory_store.deleted", id).await;
        Ok(())
    }

    pub async fn list_memory_stores(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<MemoryStore>> {
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_memory_stores(tenant, &query).await?;
        Ok(req.finish(rows, |s| position_of(s.created_at, &s.id)))
    }

    /// The store, refusing writes when it is archived.
    async fn writable_store(&self, tenant: &TenantId, id: &str) -> DomainResult<MemoryStore> {
        let s = self.get_memory_store(tenant, id).await?;
        if s.archived_at.is_some() {
            return Err(DomainError::invalid(format!("memory store `{id}` is archived: its memories are read-only")));
        }
        Ok(s)
    }

    pub async fn create_memory(
        &self,
        tenant: &TenantId,
        store_id: &str,
        req: &CreateMemoryRequest,
        by: &Actor,
        full: bool,
    ) -> DomainResult<Memory> {
        self.writable_store(tenant, store_id).await?;
        super::check_path(&req.path)?;
        let content = req.content.as_deref().ok_or_else(|| DomainError::invalid("`content` is required (`\"\"` for an empty memory)"))?;
        super::check_content(content)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let now = self.clock.now();
            let m = Memory {
                id: self.ids.new_id("mem"),
                tag: Default::default(),
                memory_store_id: store_id.to_owned(),
                path: req.path.clone(),
                content: Some(content.to_owned()),
                content_sha256: super::sha256_hex(content),
                content_size_bytes: content.len() as i64,
                memory_version_id: self.ids.new_id("memver"),
                created_at: now,
                updated_at: now,
            };
            let v = super::write_version(&m, MemoryOperation::Created, m.memory_version_id.clone(), by);
            match self.store.insert_memory(tenant, &m, &v, super::MEMORIES_PER_STORE).await? {
                MemoryWrite::Done => return Ok(view(m, full)),
                MemoryWrite::PathTaken(id) => return Err(path_conflict(&m.path, id)),
                MemoryWrite::StoreFull => {
                    return Err(DomainError::invalid(format!(
                        "memory store `{store_id}` already holds {} memories, its limit; existing memories stay editable",
                        super::MEMORIES_PER_STORE
                    )));
                }
                MemoryWrite::StoreClosed => {
                    self.writable_store(tenant, store_id).await?;
                }
                // the memory that held the path went away meanwhile
                MemoryWrite::Stale => {}
            }
        }
        Err(DomainError::conflict(format!("the path `{}` is being changed concurrently; retry", req.path)))
    }

    async fn load_memory(&self, tenant: &TenantId, store_id: &str, id: &str) -> DomainResult<Memory> {
        let missing = || DomainError::not_found("memory", id);
        if !validate::looks_like_id(store_id, "memstore_") || !validate::looks_like_id(id, "mem_") {
            return Err(missing());
        }
        self.store.get_memory(tenant, store_id, id).await?.ok_or_else(missing)
    }

    pub async fn get_memory(&self, tenant: &TenantId, store_id: &str, id: &str, full: bool) -> DomainResult<Memory> {
        self.get_memory_store(tenant, store_id).await?;
        Ok(view(self.load_memory(tenant, store_id, id).await?, full))
    }

    /// Changes a memory's content, path, or both. A request that matches the stored memory
    /// changes nothing and succeeds, whatever its precondition says.
    pub async fn update_memory(
        &self,
        tenant: &TenantId,
        store_id: &str,
        id: &str,
        req: &UpdateMemoryRequest,
        by: &Actor,
        full: bool,
    ) -> DomainResult<Memory> {
        if let Some(p) = &req.path {
            super::check_path(p)?;
        }
        if let Some(c) = &req.content {
            super::check_content(c)?;
        }
        let expected_sha = match &req.precondition {
            None => None,
            Some(p) => match p.kind {
                PreconditionKind::ContentSha256 => {
                    let sha = p.content_sha256.as_deref().ok_or_else(|| {
                        DomainError::invalid("`precondition.content_sha256` is required with `type: content_sha256`")
                    })?;
                    super::check_sha256("precondition.content_sha256", sha)?;
                    Some(sha)
                }
            },
        };
        for _ in 0..UPDATE_ATTEMPTS {
            self.writable_store(tenant, store_id).await?;
            let current = self.load_memory(tenant, store_id, id).await?;
            let path = req.path.clone().unwrap_or_else(|| current.path.clone());
            let content = req.content.clone().or_else(|| current.content.clone()).unwrap_or_default();
            if path == current.path && Some(&content) == current.content.as_ref() {
                return Ok(view(current, full));
            }
            if let Some(sha) = expected_sha
                && sha != current.content_sha256
            {
                return Err(DomainError::MemoryPrecondition(format!(
                    "memory `{id}` has content_sha256 `{}`, not `{sha}`; nothing was changed",
                    current.content_sha256
                )));
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let next = Memory {
                path,
                content_sha256: super::sha256_hex(&content),
                content_size_bytes: content.len() as i64,
                content: Some(content),
                memory_version_id: self.ids.new_id("memver"),
                updated_at: now,
                ..current.clone()
            };
            let v = super::write_version(&next, MemoryOperation::Modified, next.memory_version_id.clone(), by);
            match self.store.update_memory(tenant, &next, &v, &current.memory_version_id).await? {
                MemoryWrite::Done => return Ok(view(next, full)),
                MemoryWrite::PathTaken(other) => return Err(path_conflict(&next.path, other)),
                MemoryWrite::StoreClosed | MemoryWrite::Stale | MemoryWrite::StoreFull => {}
            }
        }
        Err(DomainError::conflict(format!("memory `{id}` is being changed concurrently; retry")))
    }

    /// Deletes a memory; its versions stay, the last one `deleted`.
    pub async fn delete_memory(
        &self,
        tenant: &TenantId,
        store_id: &str,
        id: &str,
        expected_sha: Option<&str>,
        by: &Actor,
    ) -> DomainResult<()> {
        if let Some(sha) = expected_sha {
            super::check_sha256("expected_content_sha256", sha)?;
        }
        for _ in 0..UPDATE_ATTEMPTS {
            self.writable_store(tenant, store_id).await?;
            let current = self.load_memory(tenant, store_id, id).await?;
            if let Some(sha) = expected_sha
                && sha != current.content_sha256
            {
                return Err(DomainError::MemoryPrecondition(format!(
                    "memory `{id}` has content_sha256 `{}`, not `{sha}`; nothing was deleted",
                    current.content_sha256
                )));
            }
            let gone = Memory { updated_at: self.clock.now().strictly_after(current.updated_at), ..current.clone() };
            let v = super::write_version(&gone, MemoryOperation::Deleted, self.ids.new_id("memver"), by);
            match self.store.delete_memory(tenant, &v, &current.memory_version_id).await? {
                MemoryWrite::Done => return Ok(()),
                _ => continue,
            }
        }
        Err(DomainError::conflict(format!("memory `{id}` is being changed concurrently; retry")))
    }

    /// Memories in path order; with `depth=1`, deeper ones rolled up into their directory.
    pub async fn list_memories(&self, tenant: &TenantId, store_id: &str, p: &MemoryListParams) -> DomainResult<Page<MemoryListItem>> {
        self.get_memory_store(tenant, store_id).await?;
        let prefix = p.path_prefix.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "/".to_owned());
        super::check_prefix(&prefix)?;
        let depth = match p.depth {
            None | Some(0) => 0,
            Some(1) => 1,
            Some(d) => return Err(DomainError::invalid(format!("`depth` must be 0 (everything below the prefix) or 1 (direct children), got {d}"))),
        };
        let limit = match p.limit {
            None => DEFAULT_LIMIT,
            Some(l) if l >= 1 && l <= i64::from(MAX_LIMIT) => l as u32,
            Some(l) => return Err(DomainError::invalid(format!("`limit` must be between 1 and {MAX_LIMIT}, got {l}"))),
        };
        let limit = if p.full { limit.min(super::FULL_VIEW_MAX_LIMIT) } else { limit } as usize;
        let mut bound = p.page.as_deref().filter(|s| !s.is_empty()).map(super::decode_bound).transpose()?;
        let mut items = Vec::new();
        let mut last_dir = None;
        // roll-ups swallow rows, so a page may take several reads; each read moves past the last
        while items.len() <= limit {
            let fetch = (limit + 1 - items.len()) as u32;
            let rows = self.store.list_memories(tenant, store_id, &prefix, bound.as_ref(), fetch, p.full).await?;
            let exhausted = rows.len() < fetch as usize;
            let Some(last_path) = rows.last().map(|m| m.path.clone()) else { break };
            let got = super::roll_up(&prefix, depth, rows, &mut last_dir);
            bound = Some(match &last_dir {
                Some(d) if last_path.starts_with(d.as_str()) => ListBound::past_dir(d),
                _ => ListBound::After(last_path),
            });
            items.extend(got);
            if exhausted {
                break;
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next_page = if more { items.last().map(|(_, b)| super::encode_bound(b)) } else { None };
        Ok(Page { data: items.into_iter().map(|(i, _)| i).collect(), next_page, prev_page: None })
    }

    pub async fn get_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, full: bool) -> DomainResult<MemoryVersion> {
        self.get_memory_store(tenant, store_id).await?;
        let missing = || DomainError::not_found("memory version", id);
        if !validate::looks_like_id(id, "memver_") {
            return Err(missing());
        }
        let v = self.store.get_memory_version(tenant, store_id, id).await?.ok_or_else(missing)?;
        Ok(version_view(v, full))
    }

    /// A store's versions, newest first.
    pub async fn list_memory_versions(
        &self,
        tenant: &TenantId,
        store_id: &str,
        filter: &VersionFilter,
        p: &ListParams,
        full: bool,
    ) -> DomainResult<Page<MemoryVersion>> {
        self.get_memory_store(tenant, store_id).await?;
        let ids = [("memory_id", &filter.memory_id), ("api_key_id", &filter.api_key_id), ("session_id", &filter.session_id),
            ("service_account_id", &filter.service_account_id)];
        for (name, value) in ids {
            if value.as_deref().is_some_and(|v| v.contains('\0')) {
                return Err(DomainError::invalid(format!("`{name}` must not contain NUL")));
            }
        }
        // pages that carry contents hold at most 20 versions; an out-of-range limit stays a 400
        let cap = i64::from(super::FULL_VIEW_MAX_LIMIT);
        let limit = match p.limit {
            Some(l) if full && (1..=i64::from(MAX_LIMIT)).contains(&l) => Some(l.min(cap)),
            None if full => Some(cap),
            other => other,
        };
        let p = ListParams { limit, include_archived: true, ..p.clone() };
        let (req, query) = list_query(&p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_memory_versions(tenant, store_id, filter, &query, full).await?;
        Ok(req.finish(rows, |v| position_of(v.created_at, &v.id)))
    }

    /// Erases a version's content, digest and path for good. The version holding a live
    /// memory's current content cannot be redacted: that content is still the memory.
    pub async fn redact_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, by: &Actor) -> DomainResult<MemoryVersion> {
        let v = self.get_memory_version(tenant, store_id, id, true).await?;
        if v.redacted_at.is_some() {
            return Ok(v);
        }
        if let Some(live) = self.store.get_memory(tenant, store_id, &v.memory_id).await?
            && live.memory_version_id == v.id
        {
            return Err(DomainError::conflict(format!(
                "memory version `{id}` holds the current content of memory `{}`; update or delete the memory first",
                v.memory_id
            )));
        }
        let r = super::redact(&v, by, self.clock.now());
        if !self.store.redact_memory_version(tenant, &r).await? {
            return Err(DomainError::not_found("memory version", id));
        }
        Ok(r)
    }
}
