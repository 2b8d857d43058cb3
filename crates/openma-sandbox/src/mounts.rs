//! Files the server puts into a session's sandbox (`/mnt/session/uploads`, read-only to
//! the session) and the outputs it takes out of it (`/mnt/session/outputs`).
//!
//! Uploads live in a root-owned directory bound read-only, so the session can neither
//! change them nor plant links there. Outputs are the session's to write, so they are read
//! the careful way: beneath the outputs directory only, never through a symlink, regular
//! files only, opened non-blocking (a FIFO cannot hang the server).

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::paths::{OUTPUTS, SKILLS, UPLOADS};
use crate::{Sandboxes, bwrap};

/// How deep and how many entries the outputs walk goes.
const OUTPUT_MAX_DEPTH: usize = 16;
const OUTPUT_MAX_ENTRIES: usize = 10_000;

/// A regular file found in a session's outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// Path below `/mnt/session/outputs/`.
    pub rel: String,
    pub size: u64,
}

/// The read-only mounts the server fills: files from the Files API and skills.
const READ_ONLY_ROOTS: [&str; 2] = [UPLOADS, SKILLS];

/// `/mnt/session/uploads/a/b` → (`/mnt/session/uploads`, `a/b`), refusing anything that is
/// not a plain path below one of the read-only mounts.
fn read_only_rel(mount_path: &str) -> io::Result<(&'static str, PathBuf)> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("{mount_path} is not a path below {UPLOADS} or {SKILLS}"));
    for root in READ_ONLY_ROOTS {
        if let Ok(rel) = Path::new(mount_path).strip_prefix(root) {
            if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return Err(invalid());
            }
            return Ok((root, rel.to_path_buf()));
        }
    }
    Err(invalid())
}

fn read_only_dir(paths: &bwrap::SessionPaths, root: &str) -> PathBuf {
    if root == SKILLS { paths.skills.clone() } else { paths.uploads.clone() }
}

impl Sandboxes {
    /// The session's host paths, its directories created if they are not yet.
    fn session_paths(&self, session_id: &str) -> io::Result<bwrap::SessionPaths> {
        self.inner
            .session(session_id)
            .map(|s| s.paths.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// The session's host paths, creating nothing.
    fn existing_paths(&self, session_id: &str) -> io::Result<bwrap::SessionPaths> {
        if !bwrap::valid_session_id(session_id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid session id"));
        }
        Ok(bwrap::SessionPaths::new(&self.inner.config.root, session_id))
    }

    /// Puts a file at `mount_path` (below `/mnt/session/uploads/` or `/mnt/skills/`),
    /// readable and not writable by the session. `chunks` yields its bytes.
    pub async fn place_file<E: std::fmt::Display>(
        &self,
        session_id: &str,
        mount_path: &str,
        mut chunks: impl futures::Stream<Item = Result<Vec<u8>, E>> + Unpin,
    ) -> io::Result<()> {
        use futures::StreamExt;
        let paths = self.session_paths(session_id)?;
        let (root, rel) = read_only_rel(mount_path)?;
        let base = read_only_dir(&paths, root);
        let dest = base.join(&rel);
        // written beside the session dir's other host-only files, then renamed into place
        let tmp = paths.dir.join(format!(".upload-{}", ulid::Ulid::new()));
        let mut file = std::fs::File::create(&tmp)?;
        let result = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| io::Error::other(e.to_string()))?;
                file.write_all(&chunk)?;
            }
            file.sync_all()?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))?;
            if let Some(parent) = dest.parent() {
                create_dirs(&base, parent)?;
            }
            std::fs::rename(&tmp, &dest)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Removes a file placed with [`Sandboxes::place_file`], and the directories it
    /// leaves empty.
    pub fn remove_file(&self, session_id: &str, mount_path: &str) -> io::Result<()> {
        let paths = self.existing_paths(session_id)?;
        let (root, rel) = read_only_rel(mount_path)?;
        let base = read_only_dir(&paths, root);
        match std::fs::remove_file(base.join(&rel)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut parent = rel.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if std::fs::remove_dir(base.join(p)).is_err() {
                break;
            }
            parent = p.parent();
        }
        Ok(())
    }

    /// The regular files in the session's outputs (symlinks and special files skipped);
    /// none for a session that never had a sandbox.
    pub fn outputs(&self, session_id: &str) -> io::Result<Vec<OutputFile>> {
        regular_files(&self.existing_paths(session_id)?.outputs)
    }

    /// Opens one output for reading, beneath the outputs directory and without following
    /// a symlink anywhere on the way.
    pub fn open_output(&self, session_id: &str, rel: &str) -> io::Result<std::fs::File> {
        let paths = self.existing_paths(session_id)?;
        open_beneath(&paths.outputs, rel, OUTPUTS)
    }

    /// Records which memory stores the session mounts (`/mnt/memory/<slug>`, read-write or
    /// read-only) and creates their directories. The sandbox binds them from its next start;
    /// call it before the session's first tool call.
    pub fn set_memory_mounts(&self, session_id: &str, mounts: &[MemoryMount]) -> io::Result<()> {
        for m in mounts {
            if !valid_slug(&m.slug) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid memory mount name {:?}", m.slug)));
            }
        }
        let session = self.inner.session(session_id).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let paths = &session.paths;
        create_dirs(&paths.dir, &paths.memory)?;
        for m in mounts {
            let dir = paths.memory.join(&m.slug);
            create_dirs(&paths.memory, &dir)?;
            let owner = if m.writable { session.uid } else { Some(0).filter(|_| self.inner.as_root) };
            if let Some(uid) = owner {
                std::os::unix::fs::chown(&dir, Some(uid), Some(uid))?;
            }
        }
        let manifest = serde_json::to_vec(mounts).map_err(io::Error::other)?;
        std::fs::write(paths.dir.join(MEMORY_MANIFEST), manifest)
    }

    /// The regular files of a mounted memory store's directory (symlinks skipped).
    pub fn memory_files(&self, session_id: &str, slug: &str) -> io::Result<Vec<OutputFile>> {
        regular_files(&self.memory_dir(session_id, slug)?)
    }

    /// Every file of a mounted store as a memory: its path (`/a.md`) and text, or why it
    /// cannot be one (not UTF-8, larger than `max` bytes, unreadable).
    pub fn memory_texts(&self, session_id: &str, slug: &str, max: usize) -> io::Result<Vec<(String, Result<String, String>)>> {
        let mut out = Vec::new();
        for f in self.memory_files(session_id, slug)? {
            let text = match self.read_memory_file(session_id, slug, &f.rel, max as u64) {
                Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned()),
                Ok(None) => Err(format!("is larger than {max} bytes")),
                Err(e) => Err(e.to_string()),
            };
            out.push((format!("/{}", f.rel), text));
        }
        Ok(out)
    }

    /// Reads one file of a mounted store, without following links; None past `max` bytes.
    pub fn read_memory_file(&self, session_id: &str, slug: &str, rel: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let dir = self.memory_dir(session_id, slug)?;
        let file = open_beneath(&dir, rel, "/mnt/memory")?;
        let mut buf = Vec::new();
        file.take(max + 1).read_to_end(&mut buf)?;
        Ok((buf.len() as u64 <= max).then_some(buf))
    }

    /// Writes one file of a mounted store (beneath its directory, through no link that
    /// leaves it), owned by the session when the store is writable.
    pub fn write_memory_file(&self, session_id: &str, slug: &str, rel: &str, bytes: &[u8], writable: bool) -> io::Result<()> {
        let host = self.memory_dir(session_id, slug)?;
        let rel_path = plain_rel(rel, "/mnt/memory")?;
        let dir = Dir::open_ambient_dir(&host, ambient_authority())?;
        let uid = if writable { self.session_uid(session_id) } else { None };
        let mut at = PathBuf::new();
        let parts: Vec<_> = rel_path.components().collect();
        for part in &parts[..parts.len() - 1] {
            at.push(part);
            match dir.create_dir(&at) {
                Ok(()) => {
                    if let Some(uid) = uid {
                        let d = dir.open_dir(&at)?;
                        give(&d, uid)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true).custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32);
        let mut file = dir.open_with(rel_path, &o)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("/mnt/memory/{slug}/{rel} is not a regular file")));
        }
        file.write_all(bytes)?;
        if let Some(uid) = uid {
            give(&file, uid)?;
        }
        Ok(())
    }

    /// Removes one file of a mounted store, and the directories it leaves empty.
    pub fn remove_memory_file(&self, session_id: &str, slug: &str, rel: &str) -> io::Result<()> {
        let host = self.memory_dir(session_id, slug)?;
        let rel_path = plain_rel(rel, "/mnt/memory")?;
        let dir = Dir::open_ambient_dir(&host, ambient_authority())?;
        match dir.remove_file(rel_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut parent = rel_path.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            if dir.remove_dir(p).is_err() {
                break;
            }
            parent = p.parent();
        }
        Ok(())
    }

    /// A fresh host directory of the session that the sandbox cannot see, for preparing
    /// content (e.g. a clone) before [`Sandboxes::move_into_workspace`].
    pub fn staging_dir(&self, session_id: &str) -> io::Result<PathBuf> {
        let paths = self.session_paths(session_id)?;
        let dir = paths.dir.join(format!(".staging-{}", ulid::Ulid::new()));
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(dir)
    }

    /// Moves a prepared directory to `mount_path` (below `/workspace`), creating its
    /// parents, and gives all of it to the session's uid (links are not followed). Meant for
    /// a session's start, before the agent could have planted anything in the workspace.
    pub fn move_into_workspace(&self, session_id: &str, staged: &Path, mount_path: &str) -> io::Result<()> {
        let paths = self.session_paths(session_id)?;
        let rel = Path::new(mount_path).strip_prefix(crate::paths::ROOT).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{mount_path} is not below {}", crate::paths::ROOT))
        })?;
        plain_rel(&rel.to_string_lossy(), crate::paths::ROOT)?;
        let dest = paths.workspace.join(rel);
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{mount_path} already exists")));
        }
        let uid = self.session_uid(session_id);
        let mut at = paths.workspace.clone();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a directory", at.display()))),
                Err(_) => {
                    std::fs::create_dir(&at)?;
                    if let Some(uid) = uid {
                        std::os::unix::fs::lchown(&at, Some(uid), Some(uid))?;
                    }
                }
            }
        }
        std::fs::rename(staged, &dest)?;
        if let Some(uid) = uid {
            chown_tree(&dest, uid)?;
        }
        Ok(())
    }

    fn memory_dir(&self, session_id: &str, slug: &str) -> io::Result<PathBuf> {
        if !valid_slug(slug) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid memory mount name {slug:?}")));
        }
        Ok(self.existing_paths(session_id)?.memory.join(slug))
    }
}

/// A memory store mounted into a session, as the sandbox binds it (the sandbox server's
/// wire type; the session's manifest holds a list of them).
pub use openma_types::sandbox::MemoryMount;

pub(crate) const MEMORY_MANIFEST: &str = "memory.mounts";

/// The memory mounts recorded for a session (none when there is no manifest).
pub(crate) fn memory_mounts(paths: &bwrap::SessionPaths) -> Vec<MemoryMount> {
    std::fs::read(paths.dir.join(MEMORY_MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<MemoryMount>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| valid_slug(&m.slug))
        .collect()
}

fn valid_slug(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A relative path of plain names.
fn plain_rel<'a>(rel: &'a str, root: &str) -> io::Result<&'a Path> {
    let rel_path = Path::new(rel);
    if rel.is_empty() || !rel_path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{root}/{rel} is not a plain path")));
    }
    Ok(rel_path)
}

/// Opens `rel` below `root` for reading without following a symlink anywhere on the way.
fn open_beneath(root: &Path, rel: &str, shown: &str) -> io::Result<std::fs::File> {
    let rel_path = plain_rel(rel, shown)?;
    let mut dir = Dir::open_ambient_dir(root, ambient_authority())?;
    let mut parts: Vec<_> = rel_path.components().collect();
    let name = parts.pop().expect("non-empty");
    for part in parts {
        let meta = dir.symlink_metadata(part)?;
        if !meta.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{shown}/{rel}: not a directory on the way")));
        }
        dir = open_dir_nofollow(&dir, part.as_os_str())?;
    }
    let mut o = OpenOptions::new();
    o.read(true).custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32);
    let file = dir.open_with(name, &o)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{shown}/{rel} is not a regular file")));
    }
    Ok(file.into_std())
}

/// Gives a tree to `uid`, never following a link.
fn chown_tree(path: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid)?;
        }
    }
    Ok(())
}

/// Gives a file or directory to `uid` (fchownat on the descriptor: cap-std opens
/// directories `O_PATH`).
fn give(f: &impl std::os::fd::AsFd, uid: u32) -> io::Result<()> {
    use rustix::fs::{AtFlags, Gid, Uid, chownat};
    chownat(f, "", Some(Uid::from_raw(uid)), Some(Gid::from_raw(uid)), AtFlags::EMPTY_PATH).map_err(io::Error::from)
}

/// A subdirectory, refusing a symlink in its place.
fn open_dir_nofollow(dir: &Dir, name: &std::ffi::OsStr) -> io::Result<Dir> {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags((rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW).bits() as i32);
    Ok(Dir::from_std_file(dir.open_with(name, &o)?.into_std()))
}

/// Creates the directories from `root` down to `dir` (root-owned, world-readable).
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(root).map_err(io::Error::other)?;
    let mut at = root.to_path_buf();
    for c in rel.components() {
        at.push(c);
        match std::fs::create_dir(&at) {
            Ok(()) => std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && at.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The regular files below a directory the sandbox writes to, by path (links and special
/// files skipped, never followed); none when it does not exist.
fn regular_files(root: &Path) -> io::Result<Vec<OutputFile>> {
    let dir = match Dir::open_ambient_dir(root, ambient_authority()) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    let mut seen = 0;
    walk(&dir, "", 0, &mut seen, &mut found);
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

fn walk(dir: &Dir, prefix: &str, depth: usize, seen: &mut usize, found: &mut Vec<OutputFile>) {
    if depth > OUTPUT_MAX_DEPTH {
        return;
    }
    let Ok(entries) = dir.entries() else { return };
    for entry in entries.flatten() {
        *seen += 1;
        if *seen > OUTPUT_MAX_ENTRIES {
            return;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let rel = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        // the entry's own type: a symlink is skipped, never followed
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if let Ok(sub) = open_dir_nofollow(dir, std::ffi::OsStr::new(&name)) {
                walk(&sub, &rel, depth + 1, seen, found);
            }
        } else if meta.is_file() {
            found.push(OutputFile { rel, size: meta.len() });
        }
    }
}
