//! Memory stores attached to sessions: the `memory_store` session resource, the note the
//! model reads about each mount, and the plans that keep a mounted directory and its store
//! in step (the server carries them out around every sandbox tool call).
//!
//! The sync is a three-way comparison against a snapshot: what the directory held after the
//! last sync, by path and SHA-256. Before a tool runs, changes made through the API are
//! pulled into the directory; after it ran, changes the agent made are pushed to the store
//! as versions attributed to the session.

use std::collections::BTreeMap;

use openma_types::memory::{MemoryAccess, MemoryStoreResource, MemoryStoreResourceParams};
use openma_types::sessions::SessionResource;

use crate::error::{DomainError, DomainResult};
use crate::memory::Memories;
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

/// One memory as the snapshot and the store know it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
