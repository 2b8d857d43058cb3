//! The memory store operations on this platform's adapters: see [`crate::memory::Memories`].

use openma_types::memory::{
    Actor, CreateMemoryRequest, CreateMemoryStoreRequest, Memory, MemoryListItem, MemoryStore, MemoryVersion,
    UpdateMemoryRequest, UpdateMemoryStoreRequest,
};

use super::{ListParams, Platform};
use crate::error::DomainResult;
use crate::memory::Memories;
pub use crate::memory::MemoryListParams;
use crate::paging::Page;
use crate::ports::VersionFilter;
use crate::tenancy::TenantId;

impl Platform {
    /// The memory operations on this platform's store, with its webhooks.
    pub fn memories(&self) -> Memories<'_> {
        Memories { store: &*self.store, clock: &*self.clock, ids: &*self.ids, announcer: self }
    }

    pub async fn create_memory_store(&self, tenant: &TenantId, req: &CreateMemoryStoreRequest) -> DomainResult<MemoryStore> {
        self.memories().create_memory_store(tenant, req).await
    }

    pub async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<MemoryStore> {
        self.memories().get_memory_store(tenant, id).await
    }

    pub async fn update_memory_store(&self, tenant: &TenantId, id: &str, req: &UpdateMemoryStoreRequest) -> DomainResult<MemoryStore> {
        self.memories().update_memory_store(tenant, id, req).await
    }

    /// Archiving is permanent: the store becomes read-only. Archiving twice is a no-op.
    pub async fn archive_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<MemoryStore> {
        self.memories().archive_memory_store(tenant, id).await
    }

    pub async fn delete_memory_store(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        self.memories().delete_memory_store(tenant, id).await
    }

    pub async fn list_memory_stores(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<MemoryStore>> {
        self.memories().list_memory_stores(tenant, p).await
    }

    pub async fn get_memory(&self, tenant: &TenantId, store_id: &str, id: &str, full: bool) -> DomainResult<Memory> {
        self.memories().get_memory(tenant, store_id, id, full).await
    }

    /// Memories in path order; with `depth=1`, deeper ones rolled up into their directory.
    pub async fn list_memories(&self, tenant: &TenantId, store_id: &str, p: &MemoryListParams) -> DomainResult<Page<MemoryListItem>> {
        self.memories().list_memories(tenant, store_id, p).await
    }

    pub async fn get_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, full: bool) -> DomainResult<MemoryVersion> {
        self.memories().get_memory_version(tenant, store_id, id, full).await
    }

    /// Erases a version's content, digest and path for good. The version holding a live
    /// memory's current content cannot be redacted: that content is still the memory.
    pub async fn redact_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, by: &Actor) -> DomainResult<MemoryVersion> {
        self.memories().redact_memory_version(tenant, store_id, id, by).await
    }

    pub async fn create_memory(
        &self,
        tenant: &TenantId,
        store_id: &str,
        req: &CreateMemoryRequest,
        by: &Actor,
        full: bool,
    ) -> DomainResult<Memory> {
        self.memories().create_memory(tenant, store_id, req, by, full).await
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
        self.memories().update_memory(tenant, store_id, id, req, by, full).await
    }

    /// Deletes a memory; its versions stay, the last one `deleted`.
    pub async fn delete_memory(&self, tenant: &TenantId, store_id: &str, id: &str, expected_sha: Option<&str>, by: &Actor) -> DomainResult<()> {
        self.memories().delete_memory(tenant, store_id, id, expected_sha, by).await
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
        self.memories().list_memory_versions(tenant, store_id, filter, p, full).await
    }
}
