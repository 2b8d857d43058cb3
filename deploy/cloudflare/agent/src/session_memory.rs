//! The session's memory stores in its sandbox (`/mnt/memory/<slug>`), kept in step with
//! D1 around every sandbox tool call, as the native server keeps them: before a tool runs,
//! changes made through the API are laid into the mounts; after a tool that may write, what
//! the agent changed in a read-write mount is saved as memory versions by the session. The
//! plans and the saving are the core's (`openma_core::memory_mounts`), shared with the
//! native server; the files travel through the sandbox protocol's `…/memory` requests.
//!
//! What the mounts held after the last sync is kept in the object's memory. An object that
//! starts afresh, or a sandbox server that opened the session afresh (a new container, a
//! restored snapshot), has the mounts laid again whole from the stores: a change the agent
//! made that was never saved (its tool cut short by an interrupt or an eviction) is lost.

use std::collections::HashMap;

use openma_core::memory::Memories;
use openma_core::memory_mounts::{self, Lay, Snapshot};
use openma_core::TenantId;
use openma_types::sandbox::{MemoryFile, MemoryLay, MemoryMount};
use openma_worker_common::adapters::{WorkerClock, WorkerIds};
use openma_worker_common::d1::D1;

use crate::sandbox::{Refusal, Sandbox};
use crate::session::{Meta, SessionDO};

/// What each mounted store held after the last sync, by store id; `None` until the mounts
/// are laid whole in the sandbox this object talks to.
pub type Synced = Option<HashMap<String, Snapshot>>;

fn other(e: impl std::fmt::Display) -> Refusal {
    Refusal::Other(e.to_string())
}

/// Brings every mount of the session up to its store (all of it, and the mounts recorded,
/// when the sandbox may not have them).
pub async fn pull(object: &SessionDO, sandbox: &Sandbox, meta: &Meta) -> Result<(), Refusal> {
    let mounts = memory_mounts::mounts(&meta.session.resources);
    if mounts.is_empty() {
        return Ok(());
    }
    let db = D1::new(object.env.d1("DB").map_err(other)?);
    let memories = Memories { store: &db, clock: &WorkerClock, ids: &WorkerIds, announcer: &db };
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let known = object.memory.borrow().clone();
    let replace = known.is_none();
    let mut snapshots = known.unwrap_or_default();
    let mut lay = MemoryLay { mounts: mounts.iter().map(|m| MemoryMount { slug: m.slug.clone(), writable: m.writable }).collect(), replace, ..Default::default() };
    let mut steps = Vec::new();
    for m in &mounts {
        let snapshot = snapshots.entry(m.store_id.clone()).or_default();
        for step in memory_mounts::to_lay(&memories, &tenant, &m.store_id, snapshot).await.map_err(other)? {
            match &step {
                Lay::Write { path, content, .. } => lay.writes.push(MemoryFile { slug: m.slug.clone(), path: path.clone(), content: Some(content.clone()), problem: None }),
                Lay::Remove { path } => lay.removes.push(MemoryFile { slug: m.slug.clone(), path: path.clone(), ..Default::default() }),
            }
            steps.push((m.store_id.clone(), step));
        }
    }
    if replace || !steps.is_empty() {
        sandbox.lay_memory(&lay).await?;
    }
    for (store_id, step) in steps {
        step.record(snapshots.entry(store_id).or_default());
    }
    *object.memory.borrow_mut() = Some(snapshots);
    Ok(())
}

/// Saves what the agent changed in the session's read-write mounts. Nothing when the mounts
/// were not laid (the tool then had none to change).
pub async fn push(object: &SessionDO, sandbox: &Sandbox, meta: &Meta) -> Result<(), Refusal> {
    let writable: Vec<_> = memory_mounts::mounts(&meta.session.resources).into_iter().filter(|m| m.writable).collect();
    let Some(mut snapshots) = object.memory.borrow().clone().filter(|_| !writable.is_empty()) else { return Ok(()) };
    let db = D1::new(object.env.d1("DB").map_err(other)?);
    let memories = Memories { store: &db, clock: &WorkerClock, ids: &WorkerIds, announcer: &db };
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    for m in &writable {
        let files = sandbox.memory_files(&m.slug).await?;
        let local = files.into_iter().map(|f| (f.path, f.content.ok_or_else(|| f.problem.unwrap_or_else(|| "has no content".into())))).collect();
        let snapshot = snapshots.entry(m.store_id.clone()).or_default();
        for why in memory_mounts::save_changes(&memories, &tenant, &meta.session.id, &m.store_id, snapshot, local).await {
            worker::console_warn!("memory: session {}: a change in {} was not saved: {why}", meta.session.id, m.store_id);
        }
    }
    // a sync that started meanwhile from nothing (the server reopened the session) wins
    if object.memory.borrow().is_some() {
        *object.memory.borrow_mut() = Some(snapshots);
    }
    Ok(())
}
