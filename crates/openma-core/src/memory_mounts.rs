//! Memory stores attached to sessions: the `memory_store` session resource, the note the
//! model reads about each mount, and the sync that keeps a mounted directory and its store
//! in step around every sandbox tool call: the plans and the store's side of them, shared
//! by both runtimes, each of which moves the files its own way (the native server in its
//! sandbox directory, a Workers SessionDO through its sandbox server).
//!
//! The sync is a three-way comparison against a snapshot: what the directory held after the
//! last sync, by path and SHA-256. Before a tool runs, changes made through the API are
//! pulled into the directory; after it ran, changes the agent made are pushed to the store
//! as versions attributed to the session.

use std::collections::BTreeMap;

use openma_types::memory::{
    Actor, CreateMemoryRequest, MemoryAccess, MemoryStoreResource, MemoryStoreResourceParams, UpdateMemoryRequest,
};
use openma_types::sessions::SessionResource;

use crate::error::{DomainError, DomainResult};
use crate::memory::{ListBound, Memories};
use crate::tenancy::TenantId;

pub const MEMORY_ROOT: &str = "/mnt/memory";
const INSTRUCTIONS_MAX: usize = 4_096;

/// A store name as a directory name: lower-case, runs of anything but letters and digits
/// become one `-` (`"User Preferences!"` → `user-preferences`).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let s = out.trim_matches('-');
    let s: String = s.chars().take(64).collect();
    if s.is_empty() { "store".into() } else { s.trim_end_matches('-').to_string() }
}

/// The system prompt section that tells the model about its mounted stores.
pub fn system_note(resources: &[SessionResource]) -> Option<String> {
    let mounts: Vec<&MemoryStoreResource> = resources
        .iter()
        .filter_map(|r| match r {
            SessionResource::MemoryStore(m) => Some(m),
            SessionResource::File(_) | SessionResource::GitHubRepository(_) => None,
        })
        .collect();
    if mounts.is_empty() {
        return None;
    }
    let mut note = String::from(
        "# Memory\nThese memory stores are mounted as directories. Each memory is a small text file; use the file tools \
         (read, write, edit, glob, grep) or bash on them. Changes to a read-write store are saved as soon as the tool call ends.\n",
    );
    for m in mounts {
        let access = match m.access {
            MemoryAccess::ReadWrite => "read-write",
            MemoryAccess::ReadOnly => "read-only",
        };
        note.push_str(&format!("\n## {} ({}, {access})\n", m.name, m.mount_path));
        if !m.description.is_empty() {
            note.push_str(&format!("{}\n", m.description));
        }
        if let Some(i) = m.instructions.as_deref().filter(|i| !i.is_empty()) {
            note.push_str(&format!("Instructions: {i}\n"));
        }
    }
    Some(note)
}

/// One memory as the snapshot and the store know it (serializable, so a runtime whose
/// memory does not outlive it — a Durable Object — can keep its snapshot in storage).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Known {
    pub memory_id: String,
    pub sha256: String,
}

/// What the directory held after the last sync, by memory path.
pub type Snapshot = BTreeMap<String, Known>;

/// A step that brings the directory up to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pull {
    /// Write the memory's content at its path (new or changed through the API).
    Write { path: String, memory_id: String },
    /// The memory is gone from the store: remove its file.
    Remove { path: String },
}

/// A step that brings the store up to the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Push {
    Create { path: String },
    Update { path: String, memory_id: String },
    Delete { path: String, memory_id: String },
}

/// Steps to make the directory match the store (`store`: path → what the store holds).
pub fn plan_pull(store: &BTreeMap<String, Known>, snapshot: &Snapshot) -> Vec<Pull> {
    let mut steps = Vec::new();
    for (path, k) in store {
        if snapshot.get(path) != Some(k) {
            steps.push(Pull::Write { path: path.clone(), memory_id: k.memory_id.clone() });
        }
    }
    for path in snapshot.keys() {
        if !store.contains_key(path) {
            steps.push(Pull::Remove { path: path.clone() });
        }
    }
    steps
}

/// Steps to make the store match the directory (`local`: path → SHA-256 of the file).
pub fn plan_push(local: &BTreeMap<String, String>, snapshot: &Snapshot) -> Vec<Push> {
    let mut steps = Vec::new();
    for (path, sha) in local {
        match snapshot.get(path) {
            None => steps.push(Push::Create { path: path.clone() }),
            Some(k) if &k.sha256 != sha => steps.push(Push::Update { path: path.clone(), memory_id: k.memory_id.clone() }),
            Some(_) => {}
        }
    }
    for (path, k) in snapshot {
        if !local.contains_key(path) {
            steps.push(Push::Delete { path: path.clone(), memory_id: k.memory_id.clone() });
        }
    }
    steps
}

/// The `memory_store` resources of a new session: each store exists and is not
/// archived, appears once, and gets a mount path of its own.
pub async fn attach_memory_stores(
    memories: &Memories<'_>,
    tenant: &TenantId,
    params: &[MemoryStoreResourceParams],
) -> DomainResult<Vec<MemoryStoreResource>> {
    let mut out: Vec<MemoryStoreResource> = Vec::new();
    for p in params {
        if out.iter().any(|m| m.memory_store_id == p.memory_store_id) {
            return Err(DomainError::invalid(format!("memory store `{}` is attached twice", p.memory_store_id)));
        }
        if let Some(i) = &p.instructions
            && i.chars().count() > INSTRUCTIONS_MAX
        {
            return Err(DomainError::invalid(format!("`instructions` may hold at most {INSTRUCTIONS_MAX} characters")));
        }
        let store = memories.get_memory_store(tenant, &p.memory_store_id).await?;
        if store.archived_at.is_some() {
            return Err(DomainError::invalid(format!("memory store `{}` is archived and cannot be attached", store.id)));
        }
        let base = slug(&store.name);
        let mut dir = base.clone();
        let mut n = 2;
        while out.iter().any(|m| m.mount_path == format!("{MEMORY_ROOT}/{dir}")) {
            dir = format!("{base}-{n}");
            n += 1;
        }
        out.push(MemoryStoreResource {
            tag: Default::default(),
            memory_store_id: store.id.clone(),
            access: p.access.unwrap_or_default(),
            name: store.name.clone(),
            description: store.description.clone(),
            instructions: p.instructions.clone(),
            mount_path: format!("{MEMORY_ROOT}/{dir}"),
        });
    }
    Ok(out)
}

/// One mounted store of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub store_id: String,
    /// The directory name below [`MEMORY_ROOT`].
    pub slug: String,
    pub writable: bool,
}

/// The session's mounted stores (fixed for its life).
pub fn mounts(resources: &[SessionResource]) -> Vec<Mount> {
    resources
        .iter()
        .filter_map(|r| match r {
            SessionResource::MemoryStore(m) => Some(Mount {
                store_id: m.memory_store_id.clone(),
                slug: m.mount_path.rsplit('/').next().unwrap_or_default().to_owned(),
                writable: m.access == MemoryAccess::ReadWrite,
            }),
            SessionResource::File(_) | SessionResource::GitHubRepository(_) => None,
        })
        .collect()
}

/// Rows read per store query while listing a store.
const LIST_PAGE: u32 = 1_000;

/// What a store holds now, by path.
pub async fn store_view(memories: &Memories<'_>, tenant: &TenantId, store_id: &str) -> DomainResult<BTreeMap<String, Known>> {
    let mut out = BTreeMap::new();
    let mut bound: Option<ListBound> = None;
    loop {
        let rows = memories.store.list_memories(tenant, store_id, "/", bound.as_ref(), LIST_PAGE, false).await?;
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

/// A step that brings a mount up to its store, its content read from the store: once it is
/// carried out, the snapshot records it ([`Lay::record`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lay {
    Write { path: String, content: String, known: Known },
    Remove { path: String },
}

impl Lay {
    pub fn record(self, snapshot: &mut Snapshot) {
        match self {
            Lay::Write { path, known, .. } => snapshot.insert(path, known),
            Lay::Remove { path } => snapshot.remove(&path),
        };
    }
}

/// What to lay into the mount of `store_id` for it to match the store (changes made through
/// the API since `snapshot`).
pub async fn to_lay(memories: &Memories<'_>, tenant: &TenantId, store_id: &str, snapshot: &Snapshot) -> DomainResult<Vec<Lay>> {
    let mut out = Vec::new();
    for step in plan_pull(&store_view(memories, tenant, store_id).await?, snapshot) {
        match step {
            Pull::Write { path, memory_id } => {
                // deleted meanwhile: the next sync removes it
                let Some(mem) = memories.store.get_memory(tenant, store_id, &memory_id).await? else { continue };
                let known = Known { memory_id: mem.id, sha256: mem.content_sha256 };
                out.push(Lay::Write { path, content: mem.content.unwrap_or_default(), known });
            }
            Pull::Remove { path } => out.push(Lay::Remove { path }),
        }
    }
    Ok(out)
}

/// Saves what the agent changed in a read-write mount — `local`: each file's path (`/a.md`)
/// and its text, or why it is not a memory the store can hold — as versions by the session,
/// recording each saved change in `snapshot`. A file that cannot be saved leaves what the
/// store held at its path; a change that fails does not stop the others. What was not
/// saved, and why, for the caller's log.
pub async fn save_changes(
    memories: &Memories<'_>,
    tenant: &TenantId,
    session_id: &str,
    store_id: &str,
    snapshot: &mut Snapshot,
    local: Vec<(String, Result<String, String>)>,
) -> Vec<String> {
    let mut unsaved = Vec::new();
    let mut contents: BTreeMap<String, String> = BTreeMap::new();
    let mut shas: BTreeMap<String, String> = BTreeMap::new();
    for (path, content) in local {
        match content {
            Ok(c) => {
                shas.insert(path.clone(), crate::memory::sha256_hex(&c));
                contents.insert(path, c);
            }
            Err(why) => {
                unsaved.push(format!("{path} {why}"));
                if let Some(k) = snapshot.get(&path) {
                    shas.insert(path, k.sha256.clone());
                }
            }
        }
    }
    let by = Actor::SessionActor { session_id: session_id.to_owned() };
    for step in plan_push(&shas, snapshot) {
        let result = match &step {
            Push::Create { path } => save(memories, tenant, store_id, path, &contents[path], None, &by).await,
            Push::Update { path, memory_id } => save(memories, tenant, store_id, path, &contents[path], Some(memory_id), &by).await,
            Push::Delete { path, memory_id } => match memories.delete_memory(tenant, store_id, memory_id, None, &by).await {
                Ok(()) | Err(DomainError::NotFound(_)) => {
                    snapshot.remove(path);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        match (result, step) {
            (Ok(k), Push::Create { path } | Push::Update { path, .. }) => {
                snapshot.insert(path, k);
            }
            (Err(e), step) => unsaved.push(format!("{step:?}: {e}")),
            (Ok(_), Push::Delete { .. }) => {}
        }
    }
    unsaved
}

/// Writes one memory as the session: an update of `id` when given and still there, else a
/// create (a path taken meanwhile through the API is updated instead).
async fn save(memories: &Memories<'_>, tenant: &TenantId, store_id: &str, path: &str, content: &str, id: Option<&String>, by: &Actor) -> DomainResult<Known> {
    let update = |id: String| async move {
        let req = UpdateMemoryRequest { content: Some(content.to_owned()), path: None, precondition: None };
        memories.update_memory(tenant, store_id, &id, &req, by, false).await
    };
    if let Some(id) = id {
        match update(id.clone()).await {
            Ok(mem) => return Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 }),
            Err(DomainError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let req = CreateMemoryRequest { path: path.to_owned(), content: Some(content.to_owned()) };
    match memories.create_memory(tenant, store_id, &req, by, false).await {
        Ok(mem) => Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 }),
        Err(DomainError::MemoryPathConflict { conflicting_memory_id, .. }) => {
            let mem = update(conflicting_memory_id).await?;
            Ok(Known { memory_id: mem.id, sha256: mem.content_sha256 })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: &str, sha: &str) -> Known {
        Known { memory_id: id.into(), sha256: sha.into() }
    }

    #[test]
    fn slugs_are_plain_directory_names() {
        assert_eq!(slug("User Preferences!"), "user-preferences");
        assert_eq!(slug("  --a__b--  "), "a-b");
        assert_eq!(slug("Été 2026"), "t-2026");
        assert_eq!(slug("!!!"), "store");
        assert_eq!(slug(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn pull_writes_what_changed_and_removes_what_went() {
        let snapshot: Snapshot = [("/a".into(), known("mem_a", "1")), ("/b".into(), known("mem_b", "2"))].into();
        let store = [("/a".into(), known("mem_a", "1")), ("/b".into(), known("mem_b", "3")), ("/c".into(), known("mem_c", "4"))].into();
        assert_eq!(
            plan_pull(&store, &snapshot),
            vec![Pull::Write { path: "/b".into(), memory_id: "mem_b".into() }, Pull::Write { path: "/c".into(), memory_id: "mem_c".into() }]
        );
        assert_eq!(plan_pull(&BTreeMap::new(), &snapshot), vec![Pull::Remove { path: "/a".into() }, Pull::Remove { path: "/b".into() }]);
    }

    #[test]
    fn push_creates_updates_and_deletes_against_the_snapshot() {
        let snapshot: Snapshot = [("/a".into(), known("mem_a", "1")), ("/b".into(), known("mem_b", "2"))].into();
        let local = [("/a".into(), "1".into()), ("/b".into(), "9".into()), ("/n".into(), "5".into())].into();
        assert_eq!(
            plan_push(&local, &snapshot),
            vec![Push::Update { path: "/b".into(), memory_id: "mem_b".into() }, Push::Create { path: "/n".into() }]
        );
        let only_a = [("/a".into(), "1".into())].into();
        assert_eq!(plan_push(&only_a, &snapshot), vec![Push::Delete { path: "/b".into(), memory_id: "mem_b".into() }]);
    }

    #[test]
    fn the_note_names_every_mount() {
        let r = vec![SessionResource::MemoryStore(MemoryStoreResource {
            tag: Default::default(),
            memory_store_id: "memstore_1".into(),
            access: MemoryAccess::ReadOnly,
            name: "Team notes".into(),
            description: "What the team decided".into(),
            instructions: Some("Check before answering".into()),
            mount_path: "/mnt/memory/team-notes".into(),
        })];
        let mut request = crate::model::ModelRequest { model: "m".into(), system: Some("Be brief.".into()), messages: vec![], tools: vec![], max_tokens: 1, cache: false };
        request.append_system(system_note(&r).as_deref());
        let s = request.system.clone().unwrap();
        assert!(s.starts_with("Be brief.\n\n# Memory"));
        assert!(s.contains("/mnt/memory/team-notes, read-only") && s.contains("What the team decided") && s.contains("Check before answering"));
        request.append_system(system_note(&[]).as_deref());
        assert_eq!(request.system, Some(s));
    }
}
