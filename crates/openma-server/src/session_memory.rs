//! Memory stores mounted into session sandboxes, kept in step with the store around every
//! sandbox tool call: before it runs, changes made through the API are written into the
//! mount; when it ends, what the agent changed in a read-write mount is saved as memory
//! versions attributed to the session — so a write is a version by the time the tool
//! result exists, and an API write is seen by the next tool call.
//!
//! The sandbox tools are wrapped ([`MemorySynced`]); the plans themselves are the core's
//! (`openma_core::memory_mounts`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use openma_core::memory;
use openma_core::memory_mounts::{self, Lay, Mount, Snapshot};
use openma_core::{DomainError, Platform, TenantId};
use openma_sandbox::{MemoryMount, Sandboxes};
use openma_types::sessions::Session;
use serde_json::Value;

/// Prepares the sandbox of a new session for its memory stores (before any tool runs).
pub fn prepare(sandboxes: &Sandboxes, session: &Session) -> std::io::Result<()> {
    let mounts: Vec<MemoryMount> =
        memory_mounts::mounts(&session.resources).into_iter().map(|m| MemoryMount { slug: m.slug, writable: m.writable }).collect();
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
        let mounts = memory_mounts::mounts(&self.platform.get_session(tenant, session_id).await?.resources);
        state.mounts = Some(mounts.clone());
        Ok(mounts)
    }

    /// Brings every mount of the session up to its store.
    pub async fn pull(&self, tenant: &TenantId, session_id: &str) -> Result<(), DomainError> {
        let state = self.state(session_id);
        let mut state = state.lock().await;
        for m in self.mounts(tenant, session_id, &mut state).await? {
            let snapshot = state.snapshots.entry(m.store_id.clone()).or_default();
            for step in memory_mounts::to_lay(&self.platform.memories(), tenant, &m.store_id, snapshot).await? {
                let done = match &step {
                    Lay::Write { path, content, .. } => {
                        let (sandboxes, sid, slug, rel, bytes, writable) =
                            (self.sandboxes.clone(), session_id.to_owned(), m.slug.clone(), rel_of(path).to_owned(), content.clone().into_bytes(), m.writable);
                        tokio::task::spawn_blocking(move || sandboxes.write_memory_file(&sid, &slug, &rel, &bytes, writable)).await.map_err(backend)?
                    }
                    Lay::Remove { path } => self.sandboxes.remove_memory_file(session_id, &m.slug, rel_of(path)),
                };
                match done {
                    Ok(()) => step.record(snapshot),
                    Err(e) => tracing::warn!(session_id, store = %m.store_id, ?step, error = %e, "cannot lay a memory into the mount"),
                }
            }
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
            let (sandboxes, sid, slug) = (self.sandboxes.clone(), session_id.to_owned(), m.slug.clone());
            // read every file now: the agent's view at the end of its tool call
            let local = tokio::task::spawn_blocking(move || sandboxes.memory_texts(&sid, &slug, memory::CONTENT_MAX_BYTES))
                .await
                .map_err(backend)?
                .map_err(backend)?;
            for why in memory_mounts::save_changes(&self.platform.memories(), tenant, session_id, &m.store_id, snapshot, local).await {
                tracing::warn!(session_id, store = %m.store_id, %why, "a change in the memory mount was not saved");
            }
        }
        Ok(())
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
