//! Memory stores mounted into session sandboxes, kept in step with the store around every
//! sandbox tool call: before it runs, changes made through the API are written into the
//! mount; when it ends, what the agent changed in a read-write mount is saved as memory
//! versions attributed to the session — so a write is a version by the time the tool
//! result exists, and an API write is seen by the next tool call.
//!
//! The sandbox tools are wrapped ([`MemorySynced`]); the plans themselves are the core's
//! (`openma_core::memory_mounts`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use openma_core::memory::{self, ListBound};
use openma_core::memory_mounts::{Known, Pull, Push, Snapshot, plan_pull, plan_push};
use openma_core::{DomainError, Platform, TenantId};
use openma_sandbox::{MemoryMount, Sandboxes};
use openma_types::memory::{Actor, CreateMemoryRequest, MemoryAccess, MemoryStoreResource, UpdateMemoryRequest};
use openma_types::sessions::{Session, SessionResource};
use serde_json::Value;

/// Rows read per store query while listing a store.
const LIST_PAGE: u32 = 1_000;

/// One mounted store of a session.
#[derive(Clone, Debug)]
struct Mount {
    store_id: String,
    slug: String,
    writable: bool,
}

fn mounts_of(session: &Session) -> Vec<Mount> {
    session
        .resources
        .iter()
        .filter_map(|r| match r {
            SessionResource::MemoryStore(m) => Some(mount_of(m)),
            SessionResource::File(_) | SessionResource::GitHubRepository(_) => None,
        })
        .collect()
}

fn mount_of(m: &MemoryStoreResource) -> Mount {
    let slug = m.mount_path.rsplit('/').next().unwrap_or_default().to_owned();
    Mount { store_id: m.memory_store_id.clone(), slug, writable: m.access == MemoryAccess::ReadWrite }
}

/// Prepares the sandbox of a new session for its memory stores (before any tool runs).
pub fn prepare(sandboxes: &Sandboxes, session: &Session) -> std::io::Result<()> {
    let mounts: Vec<MemoryMount> = mounts_of(session).into_iter().map(|m| MemoryMount { slug: m.slug, writable: m.writable }).collect();
    if mounts.is_empty() {
        return Ok(());
    }
    sandboxes.set_memory_mounts(&session.id, &mounts)
}

/// What each session's mounts held after their last sync.
pub struct MemorySync {
    platform: Platform,
    sandboxes: Sandboxes,
    /// By session: its mounts (fixed for the session's life) and their snapshots.
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionState>>>>,
}

#[derive(Default)]
struct SessionState {
    mounts: Option<Vec<Mount>>,
    snapshots: HashMap<String, Snapshot>,
}

fn backend(e: impl std::fmt::Display) -> DomainError {
    DomainError::Store(openma_core::StoreError::Backend(e.to_string()))
}

/// `/a/b.md` ↔ `a/b.md`
fn rel_of(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl MemorySync {
    pub fn new(platform: Platform, sandboxes: Sandboxes) -> Self {
        MemorySync { platform, sandboxes, sessions: Mutex::default() }
    }

    fn state(&self, session_id: &str) -> Arc<tokio::sync::Mutex<SessionState>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).entry(session_id.to_owned()).or_default().clone()
    }

    /// Forgets a deleted session.
    pub fn forget(&self, session_id: &str) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
    }

    async fn mounts(&self, tenant: &TenantId, session_id: &str, state: &mut SessionState) -> Result<Vec<Mount>, DomainError> {
        if let Some(m) = &state.mounts {
            return Ok(m.clone());
        }
        let mounts = mounts_of(&self.platform.get_session(tenant, session_id).await?);
        state.mounts = Some(mounts.clone());
        Ok(mounts)
    }

    /// Brings every mount of the session up to its store.
    pub async fn pull(&self, tenant: &TenantId, session_id: &str) -> Result<(), DomainError> {
        let state = self.state(session_id);
        let mut state = state.lock().await;
        for m in self.mounts(tenant, session_id, &mut state).await? {
            let snapshot = state.snapshots.entry(m.store_id.clone()).or_default();
            self.pull_one(tenant, session_id, &m, snapshot).await?;
        }
        Ok(())
    }

    /// Saves what the agent changed in the session's read-write mounts.
    pub async fn push(&self, tenant: &TenantId, session_id: &str) -> Result<(), DomainError> {
        let state = self.state(session_id);
        let mut state = state.lock().await;
        for m in self.mounts(tenant, session_id, &mut state).await? {
            if !m.writable {
                continue;
            }
            let snapshot = state.snapshots.entry(m.store_id.clone()).or_default();
            self.push_one(tenant, session_id, &m, snapshot).await?;
        }
        Ok(())
    }

    async fn store_view(&self, tenant: &TenantId, store_id: &str) -> Result<BTreeMap<String, Known>, DomainError> {
        let mut out = BTreeMap::new();
        let mut bound: Option<ListBound> = None;
        loop {
            let rows = self.platform.store.list_memories(tenant, store_id, "/", bound.as_ref(), LIST_PAGE, false).await?;
            let more = rows.len() == LIST_PAGE as usize;
            bound = rows.last().map(|m| ListBound::After(m.path.clone()));
            for m in rows {
                out.insert(m.path, Known { memory_id: m.id, sha256: m.content_sha256 });
            }
            if !more {
                return Ok(out);
            }
        }
    }

    async fn pull_one(&self, tenant: &TenantId, session_id: &str, m: &Mount, snapshot: &mut Snapshot) -> Result<(), DomainError> {
        let store = self.store_view(tenant, &m.store_id).await?;
        for step in plan_pull(&store, snapshot) {
            match step {
                Pull::Write { path, memory_id } => {
                    let Some(mem) = self.platform.store.get_memory(tenant, &m.store_id, &memory_id).await? else { continue };
                    let content = mem.content.unwrap_or_default();
                    let (sandboxes, sid, slug, rel, writable) = (self.sandboxes.clone(), session_id.to_owned(), m.slug.clone(), rel_of(&path).to_owned(), m.writable);
                    let written = tokio::task::spawn_blocking(move || sandboxes.write_memory_file(&sid, &slug, &rel, content.as_bytes(), writable))
                        .await
                        .map_err(backend)?;
                    match written {
                        Ok(()) => {
                            snapshot.insert(path, Known { memory_id: mem.id, sha256: mem.content_sha256 });
                        }
                        Err(e) => tracing::warn!(session_id, store = %m.store_id, %path, error = %e, "cannot write a memory into the mount"),
                    }
                }
                Pull::Remove { path } => {
                    if let Err(e) = self.sandboxes.remove_memory_file(session_id, &m.slug, rel_of(&path)) {
                        tracing::warn!(session_id, store = %m.store_id, %path, error = %e, "cannot remove a deleted memory from the mount");
                    }
                    snapshot.remove(&path);
                }
            }
        }
        Ok(())
    }

    async fn push_one(&self, tenant: &TenantId, session_id: &str, m: &Mount, snapshot: &mut Snapshot) -> Result<(), DomainError> {
        let (sandboxes, sid, slug) = (self.sandboxes.clone(), session_id.to_owned(), m.slug.clone());
        // read every file now: the agent's view at the end of its tool call
        let local: Vec<(String, Result<String, String>)> = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut out = Vec::new();
            for f in sandboxes.memory_files(&sid, &slug)? {
                let path = format!("/{}", f.rel);
                let content = match sandboxes.read_memory_file(&sid, &slug, &f.rel, memory::CONTENT_MAX_BYTES as u64) {
                    Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned()),
                    Ok(None) => Err(format!("is larger than {} bytes", memory::CONTENT_MAX_BYTES)),
                    Err(e) => Err(e.to_string()),
                };
                out.push((path, content));
            }
            Ok(out)
        })
        .await
        .map_err(backend)?
        .map_err(backend)?;
        let mut contents: HashMap<String, String> = HashMap::new();
        let mut shas: BTreeMap<String, String> = BTreeMap::new();
        for (path, content) in local {
            match content {
                Ok(c) => {
                    shas.insert(path.clone(), memory::sha256_hex(&c));
                    contents.insert(path, c);
                }
                Err(why) => {
                    // not a memory the store can hold; what it held at this path stays
                    tracing::warn!(session_id, store = %m.store_id, %path, %why, "a file in the memory mount was not saved");
                    if let Some(k) = snapshot.get(&path) {
                        shas.insert(path, k.sha256.clone());
                    }
                }
            }
        }
        let by = Actor::SessionActor { session_id: session_id.to_owned() };
        for step in plan_push(&shas, snapshot) {
            let result = match &step {
                Push::Create { path } => self.save(tenant, m, path, &contents[path], None, &by).await,
                Push::Update { path, memory_id } => self.save(tenant, m, path, &contents[path], Some(memory_id), &by).await,
                Push::Delete { path, memory_id } => {
                    match self.platform.delete_memory(tenant, &m.store_id, memory_id, None, &by).await {
                        Ok(()) | Err(DomainError::NotFound(_)) => {
                            snapshot.remove(path);
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match (result, step) {
                (Ok(k), Push::Create { path } | Push::Update { path, .. }) => {
                    snapshot.insert(path, k);
                }
                (Err(e), step) => tracing::warn!(session_id, store = %m.store_id, ?step, error = %e, "a change in the memory mount was not saved"),
                (Ok(_), Push::Delete { .. }) => {}
            }
        }
        Ok(())
    }

    /// Writes one memory as the session: an update of `id` when given and still there,
    /// else a create (a path taken meanwhile through the API is updated instead).
    async fn save(&self, tenant: &TenantId, m: &Mount, path: &str, content: &str, id: Option<&String>, by: &Actor) -> Result<Known, DomainError> {
        let update = |id: String| async move {
            let req = UpdateMemoryRequest { content: Some(content.to_owned()), path: None, precondition: None };
            self.platform.update_memory(tenant, &m.store_id, &id, &req, by, false).await
        };
        if let Some(id) = id {
            match update(id.clone()).await {
                Ok(mem) => return Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 }),
                Err(DomainError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let req = CreateMemoryRequest { path: path.to_owned(), content: Some(content.to_owned()) };
        match self.platform.create_memory(tenant, &m.store_id, &req, by, false).await {
            Ok(mem) => Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 }),
            Err(DomainError::MemoryPathConflict { conflicting_memory_id, .. }) => {
                let mem = update(conflicting_memory_id).await?;
                Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 })
            }
            Err(e) => Err(e),
        }
    }
}

/// A sandbox tool with the session's memory mounts synced around it.
pub struct MemorySynced {
    pub inner: Arc<dyn Tool>,
    pub sync: Arc<MemorySync>,
}

#[async_trait]
impl Tool for MemorySynced {
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        if let Err(e) = self.sync.pull(&ctx.tenant, &ctx.session_id).await {
            tracing::warn!(session_id = %ctx.session_id, error = %e, "cannot bring the memory mounts up to date");
        }
        let out = self.inner.run(ctx, input).await;
        if !self.inner.read_only()
            && let Err(e) = self.sync.push(&ctx.tenant, &ctx.session_id).await
        {
            tracing::warn!(session_id = %ctx.session_id, error = %e, "cannot save changes in the memory mounts");
        }
        out
    }
}
