//! The session's memory stores in its sandbox (`/mnt/memory/<slug>`), kept in step with
//! D1 around every sandbox tool call, as the native server keeps them: before a tool runs,
//! changes made through the API are laid into the mounts; after a tool that may write, what
//! the agent changed in a read-write mount is saved as memory versions by the session. The
//! plans and the saving are the core's (`openma_core::memory_mounts`), shared with the
//! native server; the files travel through the sandbox protocol's `…/memory` requests.
//!
//! What the mounts held after the last sync is kept in the object's storage, so an object
//! that restarts goes on from it: a change a tool made that was never saved (its tool cut
//! short by an interrupt or an eviction) is saved after the next writing tool, as natively.
//! A sandbox server that opened the session afresh (a new container, a restored snapshot)
//! has the mounts laid again whole from the stores.

use std::collections::HashMap;

use openma_core::memory_mounts::{self, Lay, Snapshot};
use openma_core::TenantId;
use openma_types::sandbox::{MemoryFile, MemoryLay, MemoryMount, MemoryPath};
use openma_worker_common::d1::D1;

use crate::sandbox::{Refusal, Sandbox};
use crate::session::{Meta, SessionDO};

/// Storage key: what each mounted store held after the last sync, by store id (JSON); absent
/// until the mounts are laid whole in the sandbox server's session.
pub const SYNCED: &str = "memory_synced";

type Synced = HashMap<String, Snapshot>;

fn other(e: impl std::fmt::Display) -> Refusal {
    Refusal::Other(e.to_string())
}

async fn synced(object: &SessionDO) -> Result<Option<Synced>, Refusal> {
    let Some(json) = object.state.storage().get::<String>(SYNCED).await.map_err(other)? else { return Ok(None) };
    serde_json::from_str(&json).map(Some).map_err(other)
}

async fn keep(object: &SessionDO, synced: &Synced) -> Result<(), Refusal> {
    object.state.storage().put(SYNCED, serde_json::to_string(synced).map_err(other)?).await.map_err(other)
}

/// Forgets the last sync: the server's session is new, its mounts empty.
pub async fn forget(object: &SessionDO) -> worker::Result<()> {
    object.state.storage().delete(SYNCED).await.map(drop)
}

/// Brings every mount of the session up to its store (all of it, and the mounts recorded,
/// when the sandbox may not have them).
pub async fn pull(object: &SessionDO, sandbox: &Sandbox, meta: &Meta) -> Result<(), Refusal> {
    let mounts = memory_mounts::mounts(&meta.session.resources);
    if mounts.is_empty() {
        return Ok(());
    }
    let db = D1::new(object.env.d1("DB").map_err(other)?);
    let memories = db.memories();
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let known = synced(object).await?;
    let replace = known.is_none();
    let mut snapshots = known.unwrap_or_default();
    let mut lay = MemoryLay { mounts: mounts.iter().map(|m| MemoryMount { slug: m.slug.clone(), writable: m.writable }).collect(), replace, ..Default::default() };
    let mut steps = Vec::new();
    for m in &mounts {
        let snapshot = snapshots.entry(m.store_id.clone()).or_default();
        for step in memory_mounts::to_lay(&memories, &tenant, &m.store_id, snapshot).await.map_err(other)? {
            match &step {
                Lay::Write { path, content, .. } => lay.writes.push(MemoryFile { slug: m.slug.clone(), path: path.clone(), content: Some(content.clone()), problem: None }),
                Lay::Remove { path } => lay.removes.push(MemoryPath { slug: m.slug.clone(), path: path.clone() }),
            }
            steps.push((m.store_id.clone(), step));
        }
    }
    if replace || !steps.is_empty() {
        sandbox.lay_memory(&lay).await?;
        for (store_id, step) in steps {
            step.record(snapshots.entry(store_id).or_default());
        }
        keep(object, &snapshots).await?;
    }
    Ok(())
}

/// Saves what the agent changed in the session's read-write mounts. Nothing when the mounts
/// were not laid (the tool then had none to change).
pub async fn push(object: &SessionDO, sandbox: &Sandbox, meta: &Meta) -> Result<(), Refusal> {
    let writable: Vec<_> = memory_mounts::mounts(&meta.session.resources).into_iter().filter(|m| m.writable).collect();
    if writable.is_empty() {
        return Ok(());
    }
    let Some(mut snapshots) = synced(object).await? else { return Ok(()) };
    let before = snapshots.clone();
    let db = D1::new(object.env.d1("DB").map_err(other)?);
    let memories = db.memories();
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
    if snapshots != before && synced(object).await?.is_some() {
        keep(object, &snapshots).await?;
    }
    Ok(())
}
