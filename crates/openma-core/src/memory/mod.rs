//! Memory stores: the rules of stores, memory paths and contents, the roll-up of a listing
//! into directories, and the cursor of that listing.
//!
//! Paths compare as bytes (UTF-8 order, as both databases are told to), so a directory
//! `/a/b/` is one contiguous run of a listing, ending before `/a/b0`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openma_types::memory::{
    Actor, CreateMemoryStoreRequest, Memory, MemoryListItem, MemoryOperation, MemoryPrefix, MemoryStore, MemoryVersion,
    UpdateMemoryStoreRequest,
};
use openma_types::{Metadata, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DomainError, DomainResult};
use crate::validate;

mod service;
pub use service::{Memories, MemoryListParams};

/// Largest content of one memory, in UTF-8 bytes.
pub const CONTENT_MAX_BYTES: usize = 102_400;
/// Longest path, in UTF-8 bytes.
pub const PATH_MAX_BYTES: usize = 1024;
/// Most segments of a path.
pub const PATH_MAX_SEGMENTS: usize = 20;
/// Live memories a store may hold.
pub const MEMORIES_PER_STORE: i64 = 10_000;
/// Largest page of a list that carries contents (`view=full`).
pub const FULL_VIEW_MAX_LIMIT: u32 = 20;

/// Lowercase hex SHA-256 of the content's UTF-8 bytes (no normalisation).
pub fn sha256_hex(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn no_control(field: &str, value: &str) -> DomainResult<()> {
    if value.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!("`{field}` must not contain control characters")));
    }
    Ok(())
}

fn check_name(name: &str) -> DomainResult<()> {
    validate::length("name", name, 1, 255)?;
    no_control("name", name)
}

pub fn new_store(req: &CreateMemoryStoreRequest, id: String, now: Timestamp) -> DomainResult<MemoryStore> {
    check_name(&req.name)?;
    let description = req.description.clone().unwrap_or_default();
    validate::length("description", &description, 0, 1024)?;
    let metadata = req.metadata.clone().unwrap_or_default();
    validate::metadata(&metadata)?;
    Ok(MemoryStore {
        id,
        tag: Default::default(),
        name: req.name.clone(),
        description,
        metadata,
        created_at: now,
        updated_at: now,
        archived_at: None,
    })
}

pub fn apply_store_update(current: &MemoryStore, req: &UpdateMemoryStoreRequest, now: Timestamp) -> DomainResult<MemoryStore> {
    if current.archived_at.is_some() {
        return Err(DomainError::invalid(format!("memory store `{}` is archived and cannot be updated", current.id)));
    }
    let mut s = current.clone();
    match &req.name {
        None => {}
        Some(None) => return Err(DomainError::invalid("`name` cannot be cleared")),
        Some(Some(n)) => {
            check_name(n)?;
            s.name = n.clone();
        }
    }
    if let Some(d) = &req.description {
        let d = d.clone().unwrap_or_default();
        validate::length("description", &d, 0, 1024)?;
        s.description = d;
    }
    if let Some(patch) = &req.metadata {
        s.metadata = match patch {
            Some(p) => validate::patch_metadata(&s.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    if s != *current {
        s.updated_at = now.strictly_after(current.updated_at);
    }
    Ok(s)
}

/// A memory path: `/`, then 1 to 20 non-empty segments that are not `.` or `..`, at most
/// 1,024 bytes, in Unicode NFC, without NUL.
pub fn check_path(path: &str) -> DomainResult<()> {
    let bad = |why: &str| DomainError::invalid(format!("`path` `{path}` is not a valid memory path: {why}"));
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("it must start with `/`"));
    };
    if path.len() > PATH_MAX_BYTES {
        return Err(bad(&format!("it must be at most {PATH_MAX_BYTES} bytes")));
    }
    if path.contains('\0') {
        return Err(bad("it must not contain NUL"));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() > PATH_MAX_SEGMENTS {
        return Err(bad(&format!("it must have at most {PATH_MAX_SEGMENTS} segments")));
    }
    if segments.iter().any(|s| s.is_empty()) {
        return Err(bad("segments must not be empty"));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(bad("segments must not be `.` or `..`"));
    }
    if !unicode_normalization::is_nfc(path) {
        return Err(bad("it must be in Unicode normalization form C (NFC)"));
    }
    Ok(())
}

/// A list's `path_prefix`: a directory, so it starts and ends with `/` (`/` is the whole store).
pub fn check_prefix(prefix: &str) -> DomainResult<()> {
    let bad = |why: &str| DomainError::invalid(format!("`path_prefix` `{prefix}` {why}"));
    if !prefix.starts_with('/') || !prefix.ends_with('/') {
        return Err(bad("must start and end with `/`, such as `/notes/`"));
    }
    if prefix.len() > PATH_MAX_BYTES {
        return Err(bad(&format!("must be at most {PATH_MAX_BYTES} bytes")));
    }
    if prefix.contains('\0') {
        return Err(bad("must not contain NUL"));
    }
    Ok(())
}

pub fn check_content(content: &str) -> DomainResult<()> {
    if content.len() > CONTENT_MAX_BYTES {
        return Err(DomainError::invalid(format!(
            "`content` must be at most {CONTENT_MAX_BYTES} bytes (100 kB), got {}",
            content.len()
        )));
    }
    Ok(())
}

/// A SHA-256 as the API takes it: 64 lowercase hex characters.
pub fn check_sha256(field: &str, value: &str) -> DomainResult<()> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(DomainError::invalid(format!("`{field}` must be 64 lowercase hexadecimal characters")))
    }
}

/// The version that records a write leaving `memory` as it is (for a deletion: as it was),
/// dated at the memory's `updated_at`.
pub fn write_version(memory: &Memory, op: MemoryOperation, id: String, by: &Actor) -> MemoryVersion {
    let deleted = op == MemoryOperation::Deleted;
    MemoryVersion {
        id,
        tag: Default::default(),
        memory_store_id: memory.memory_store_id.clone(),
        memory_id: memory.id.clone(),
        operation: op,
        path: Some(memory.path.clone()),
        content: if deleted { None } else { memory.content.clone() },
        content_sha256: if deleted { None } else { Some(memory.content_sha256.clone()) },
        content_size_bytes: if deleted { None } else { Some(memory.content_size_bytes) },
        created_by: Some(by.clone()),
        created_at: memory.updated_at,
        redacted_at: None,
        redacted_by: None,
    }
}

/// Clears what a redaction removes; the actor and the timestamps stay.
pub fn redact(v: &MemoryVersion, by: &Actor, now: Timestamp) -> MemoryVersion {
    MemoryVersion {
        path: None,
        content: None,
        content_sha256: None,
        content_size_bytes: None,
        redacted_at: Some(now),
        redacted_by: Some(by.clone()),
        ..v.clone()
    }
}

/// Where a memory listing resumes: after a path, or (after a roll-up) at the first path
/// beyond a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListBound {
    After(String),
    From(String),
}

impl ListBound {
    /// The bound just past every path inside directory `dir` (which ends with `/`).
    pub fn past_dir(dir: &str) -> Self {
        let mut s = dir[..dir.len() - 1].to_owned();
        s.push('0'); // the byte after `/`
        ListBound::From(s)
    }
}

#[derive(Serialize, Deserialize)]
struct MemoryCursor {
    /// `a` = after the path, `f` = from the path
    k: String,
    p: String,
}

pub fn encode_bound(b: &ListBound) -> String {
    let (k, p) = match b {
        ListBound::After(p) => ("a", p),
        ListBound::From(p) => ("f", p),
    };
    let json = serde_json::to_vec(&MemoryCursor { k: k.into(), p: p.clone() }).expect("cursor serialises");
    format!("page_{}", URL_SAFE_NO_PAD.encode(json))
}

pub fn decode_bound(raw: &str) -> DomainResult<ListBound> {
    let bad = || DomainError::invalid_code("invalid_page", format!("`page` cursor `{raw}` is not valid"));
    let b64 = raw.strip_prefix("page_").ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
    let c: MemoryCursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.p.contains('\0') || c.p.len() > PATH_MAX_BYTES + 1 {
        return Err(bad());
    }
    match c.k.as_str() {
        "a" => Ok(ListBound::After(c.p)),
        "f" => Ok(ListBound::From(c.p)),
        _ => Err(bad()),
    }
}

/// Turns memories read in path order (all under `prefix`) into list items. With `depth`
/// 1, a memory below a direct child directory becomes that directory's roll-up, once.
/// Returns the items with the bound that resumes after each.
pub fn roll_up(prefix: &str, depth: u32, rows: Vec<Memory>, last_dir: &mut Option<String>) -> Vec<(MemoryListItem, ListBound)> {
    let mut out = Vec::new();
    for m in rows {
        if depth == 0 {
            let bound = ListBound::After(m.path.clone());
            out.push((MemoryListItem::Memory(m), bound));
            continue;
        }
        if last_dir.as_deref().is_some_and(|d| m.path.starts_with(d)) {
            continue;
        }
        let rest = &m.path[prefix.len()..];
        match rest.find('/') {
            None => {
                let bound = ListBound::After(m.path.clone());
                out.push((MemoryListItem::Memory(m), bound));
            }
            Some(i) => {
                let dir = m.path[..prefix.len() + i + 1].to_owned();
                let bound = ListBound::past_dir(&dir);
                *last_dir = Some(dir.clone());
                out.push((MemoryListItem::Prefix(MemoryPrefix { tag: Default::default(), path: dir }), bound));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(path: &str) -> Memory {
        Memory {
            id: format!("mem_{}", path.len()),
            tag: Default::default(),
            memory_store_id: "memstore_1".into(),
            path: path.into(),
            content: None,
            content_sha256: sha256_hex(""),
            content_size_bytes: 0,
            memory_version_id: "memver_1".into(),
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn paths_follow_the_documented_rules() {
        for ok in ["/a", "/notes/2026/jan.md", "/é", &format!("/{}", "a/".repeat(19) + "z")] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        let deep = format!("/{}", "a/".repeat(20) + "z");
        let long = format!("/{}", "x".repeat(1024));
        for bad in ["", "a/b", "/", "/a/", "//a", "/a//b", "/./a", "/a/..", "/a\0b", "/e\u{301}", deep.as_str(), long.as_str()] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_prefix("/").is_ok() && check_prefix("/notes/").is_ok());
        assert!(check_prefix("/notes").is_err() && check_prefix("notes/").is_err());
    }

    #[test]
    fn content_is_capped_and_hashed_as_utf8_bytes() {
        assert!(check_content(&"x".repeat(CONTENT_MAX_BYTES)).is_ok());
        assert!(check_content(&"x".repeat(CONTENT_MAX_BYTES + 1)).is_err());
        assert!(check_content(&"é".repeat(CONTENT_MAX_BYTES / 2 + 1)).is_err(), "bytes, not characters");
        assert_eq!(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(check_sha256("s", &sha256_hex("x")).is_ok());
        assert!(check_sha256("s", &sha256_hex("x").to_uppercase()).is_err());
    }

    #[test]
    fn depth_one_rolls_directories_up_once() {
        let rows = ["/a.md", "/d/x.md", "/d/y/z.md", "/e/f.md", "/z.md"].map(mem).to_vec();
        let mut last = None;
        let items = roll_up("/", 1, rows, &mut last);
        let shown: Vec<String> = items
            .iter()
            .map(|(i, _)| match i {
                MemoryListItem::Memory(m) => m.path.clone(),
                MemoryListItem::Prefix(p) => format!("dir {}", p.path),
            })
            .collect();
        assert_eq!(shown, ["/a.md", "dir /d/", "dir /e/", "/z.md"]);
        assert_eq!(items[1].1, ListBound::From("/d0".into()));
        // a page that ends inside a directory resumes past it
        let mut last = Some("/d/".to_owned());
        assert!(roll_up("/", 1, vec![mem("/d/w.md")], &mut last).is_empty());
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        for b in [ListBound::After("/a/é".into()), ListBound::past_dir("/x/")] {
            assert_eq!(decode_bound(&encode_bound(&b)).unwrap(), b);
        }
        assert!(decode_bound("page_garbage").is_err());
        assert!(decode_bound("nope").is_err());
    }
}
