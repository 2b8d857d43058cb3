//! The host side's handle on the directories a session's file tools reach: `/workspace`,
//! and the mounted `/mnt/session/uploads` (read-only) and `/mnt/session/outputs`.
//!
//! The file tools run in the server (as root) on directories the sandbox controls, so every
//! path is resolved as the sandbox would see it and can never leave those directories:
//! * a path is absolute under one of them, or relative to `/workspace`; anything else is
//!   refused;
//! * symlinks are followed by hand, with the sandbox's view as their root: a link to
//!   `/workspace/x` or `/mnt/session/uploads/x` works, a link to anything else
//!   (`/etc/passwd`, `../../..`) is refused;
//! * every open then goes through a `cap_std::fs::Dir` of the directory the path is in,
//!   which resolves beneath it (openat2 `RESOLVE_BENEATH`), so a link swapped in by a racing
//!   sandbox process still cannot reach a host file;
//! * files are opened non-blocking and must be regular files (a FIFO cannot hang a tool);
//! * files and directories the tools create are given to the session's uid;
//! * nothing is ever written below a read-only mount.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};

pub(crate) const ROOT: &str = "/workspace";
pub(crate) const UPLOADS: &str = "/mnt/session/uploads";
pub(crate) const OUTPUTS: &str = "/mnt/session/outputs";
pub(crate) const SKILLS: &str = "/mnt/skills";
const MAX_SYMLINK_HOPS: usize = 40;

/// A directory the tools reach, as the sandbox names it.
struct Mount {
    root: Arc<str>,
    dir: Dir,
    writable: bool,
}

pub(crate) struct Workspace {
    /// `/workspace` first.
    mounts: Vec<Mount>,
    uid: Option<u32>,
}

/// A path inside one mount with every symlink resolved (at the time of resolution).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WsPath {
    root: Arc<str>,
    parts: Vec<OsString>,
}

impl WsPath {
    /// `/workspace` itself.
    pub fn root() -> Self {
        WsPath { root: Arc::from(ROOT), parts: Vec::new() }
    }

    /// The top of the mount this path is in.
    pub fn top(&self) -> Self {
        WsPath { root: self.root.clone(), parts: Vec::new() }
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// Relative to the mount's directory ("." for the directory itself).
    pub fn rel(&self) -> PathBuf {
        if self.parts.is_empty() {
            PathBuf::from(".")
        } else {
            self.parts.iter().collect()
        }
    }

    /// As the sandbox sees it: `/workspace/...`.
    pub fn display(&self) -> String {
        let mut s = String::from(&*self.root);
        for p in &self.parts {
            s.push('/');
            s.push_str(&p.to_string_lossy());
        }
        s
    }

    pub fn parent(&self) -> Option<WsPath> {
        if self.parts.is_empty() {
            return None;
        }
        Some(WsPath { root: self.root.clone(), parts: self.parts[..self.parts.len() - 1].to_vec() })
    }

    pub fn join(&self, name: impl Into<OsString>) -> WsPath {
        let mut parts = self.parts.clone();
        parts.push(name.into());
        WsPath { root: self.root.clone(), parts }
    }

    pub fn file_name(&self) -> Option<&OsString> {
        self.parts.last()
    }

    pub fn components(&self) -> &[OsString] {
        &self.parts
    }
}

/// A path component still to resolve: a name, or `..` (resolved after the symlinks before
/// it, as the kernel does).
#[derive(Clone, Debug)]
enum Part {
    Name(OsString),
    Up,
}

fn parts_of(path: &Path) -> Vec<Part> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Part::Name(n.to_os_string())),
            Component::ParentDir => Some(Part::Up),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

impl Workspace {
    /// `/workspace` only.
    pub fn open(host_dir: &Path, uid: Option<u32>) -> io::Result<Self> {
        Ok(Workspace {
            mounts: vec![Mount { root: Arc::from(ROOT), dir: Dir::open_ambient_dir(host_dir, ambient_authority())?, writable: true }],
            uid,
        })
    }

    /// `/workspace` and the session mounts whose host directories exist: the uploads, the
    /// outputs, and `extra` (sandbox path, host dir, writable), e.g. memory stores.
    pub fn open_session(
        workspace: &Path,
        uploads: &Path,
        outputs: &Path,
        extra: &[(String, std::path::PathBuf, bool)],
        uid: Option<u32>,
    ) -> io::Result<Self> {
        let mut ws = Self::open(workspace, uid)?;
        let fixed = [(UPLOADS.to_string(), uploads.to_path_buf(), false), (OUTPUTS.to_string(), outputs.to_path_buf(), true)];
        for (root, dir, writable) in fixed.iter().chain(extra) {
            if let Ok(dir) = Dir::open_ambient_dir(dir, ambient_authority()) {
                ws.mounts.push(Mount { root: Arc::from(root.as_str()), dir, writable: *writable });
            }
        }
        Ok(ws)
    }

    fn mount(&self, root: &str) -> &Mount {
        self.mounts.iter().find(|m| &*m.root == root).unwrap_or(&self.mounts[0])
    }

    /// The directory a resolved path is in.
    pub fn dir_of(&self, p: &WsPath) -> &Dir {
        &self.mount(&p.root).dir
    }

    /// What the tools reach, for messages.
    fn reach(&self) -> String {
        let roots: Vec<&str> = self.mounts.iter().map(|m| &*m.root).collect();
        match roots.as_slice() {
            [one] => format!("under {one}"),
            [init @ .., last] => format!("under {} and {last}", init.join(", ")),
            [] => String::new(),
        }
    }

    /// `/workspace/a/b` → (`/workspace`, `a/b`); a relative path is in `/workspace`; other
    /// absolute paths → None.
    fn split<'p>(&self, path: &'p Path) -> Option<(Arc<str>, &'p Path)> {
        if !path.is_absolute() {
            return Some((self.mounts[0].root.clone(), path));
        }
        self.mounts.iter().find_map(|m| path.strip_prefix(&*m.root).ok().map(|rel| (m.root.clone(), rel)))
    }

    /// Refuses a write below a read-only mount.
    pub fn check_writable(&self, p: &WsPath) -> Result<(), String> {
        if self.mount(&p.root).writable {
            Ok(())
        } else {
            Err(format!(
                "{}: read-only file system ({} holds the files mounted into this session; write a copy under {ROOT})",
                p.display(),
                p.root
            ))
        }
    }

    /// Resolves a path given by the model (or `/workspace` itself when `None`).
    pub fn resolve(&self, input: &str) -> Result<WsPath, String> {
        if input.is_empty() {
            return Err("the path is empty".into());
        }
        if input.contains('\0') {
            return Err("the path contains a NUL byte".into());
        }
        let path = Path::new(input);
        let (root, rel) = self.split(path).ok_or_else(|| {
            format!("{input} is outside {ROOT}; this tool only reaches files {} (use bash for other paths)", self.reach())
        })?;
        self.follow(root, parts_of(rel), input)
    }

    /// Resolves the parts one by one: symlinks as the sandbox sees them, `..` on what is
    /// resolved so far; climbing above the mount's top is refused.
    fn follow(&self, mut root: Arc<str>, mut todo: Vec<Part>, input: &str) -> Result<WsPath, String> {
        let outside = || format!("{input} leads outside {ROOT}; this tool only reaches files {}", self.reach());
        let mut done: Vec<OsString> = Vec::new();
        let mut hops = 0;
        todo.reverse();
        while let Some(part) = todo.pop() {
            let name = match part {
                Part::Up => {
                    done.pop().ok_or_else(outside)?;
                    continue;
                }
                Part::Name(n) => n,
            };
            let mut candidate: PathBuf = done.iter().collect();
            candidate.push(&name);
            let meta = match self.mount(&root).dir.symlink_metadata(&candidate) {
                Ok(m) => m,
                // The rest does not exist (yet): nothing more to resolve.
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                    done.push(name);
                    while let Some(p) = todo.pop() {
                        match p {
                            Part::Name(n) => done.push(n),
                            Part::Up => {
                                done.pop().ok_or_else(outside)?;
                            }
                        }
                    }
                    break;
                }
                Err(e) => return Err(io_message(input, &e)),
            };
            if !meta.file_type().is_symlink() {
                done.push(name);
                continue;
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(format!("{input}: too many levels of symbolic links"));
            }
            let target = self
                .mount(&root)
                .dir
                .read_link_contents(&candidate)
                .map_err(|e| io_message(input, &e))?;
            let link = WsPath { root: root.clone(), parts: done.clone() }.join(name).display();
            let refuse = || {
                format!(
                    "{input}: the symbolic link {link} points outside {ROOT} (to {}); this tool only reaches files {}",
                    target.display(),
                    self.reach()
                )
            };
            let rel = if target.is_absolute() {
                let (to, rel) = self.split(&target).ok_or_else(refuse)?;
                root = to;
                done.clear();
                rel
            } else {
                &target
            };
            // The target's parts come next, before what followed the link.
            let mut target_parts = parts_of(rel);
            target_parts.reverse();
            todo.extend(target_parts);
        }
        Ok(WsPath { root, parts: done })
    }

    /// Opens an existing regular file for reading.
    pub fn open_file(&self, p: &WsPath) -> Result<File, String> {
        let mut o = OpenOptions::new();
        o.read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        let f = self
            .dir_of(p)
            .open_with(p.rel(), &o)
            .map_err(|e| io_message(&p.display(), &e))?;
        let m = f.metadata().map_err(|e| io_message(&p.display(), &e))?;
        if m.is_dir() {
            return Err(format!("{} is a directory", p.display()));
        }
        if !m.is_file() {
            return Err(format!("{} is not a regular file", p.display()));
        }
        Ok(f)
    }

    /// Creates the missing directories above `p`, owned by the session's uid.
    pub fn create_parents(&self, p: &WsPath) -> Result<(), String> {
        self.check_writable(p)?;
        let Some(parent) = p.parent() else {
            return Ok(());
        };
        let dir = self.dir_of(p);
        let mut at = p.top();
        for part in parent.components() {
            at = at.join(part.clone());
            match dir.create_dir(at.rel()) {
                Ok(()) => {
                    let d = dir
                        .open_dir(at.rel())
                        .map_err(|e| io_message(&at.display(), &e))?;
                    self.give(&d).map_err(|e| io_message(&at.display(), &e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !dir
                        .metadata(at.rel())
                        .map(|m| m.is_dir())
                        .unwrap_or(false)
                    {
                        return Err(format!("{} exists and is not a directory", at.display()));
                    }
                }
                Err(e) => return Err(io_message(&at.display(), &e)),
            }
        }
        Ok(())
    }

    /// Opens `p` for writing, truncated; a new file is created and given to the session uid.
    /// Returns the file and whether it was created.
    pub fn create_file(&self, p: &WsPath) -> Result<(File, bool), String> {
        self.check_writable(p)?;
        if p.is_root() {
            return Err(format!("{} is a directory", p.display()));
        }
        let dir = self.dir_of(p);
        let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
        let mut o = OpenOptions::new();
        o.write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nonblock);
        match dir.open_with(p.rel(), &o) {
            Ok(f) => {
                self.give(&f).map_err(|e| io_message(&p.display(), &e))?;
                Ok((f, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut o = OpenOptions::new();
                o.write(true).custom_flags(nonblock);
                let f = dir
                    .open_with(p.rel(), &o)
                    .map_err(|e| io_message(&p.display(), &e))?;
                let m = f.metadata().map_err(|e| io_message(&p.display(), &e))?;
                if !m.is_file() {
                    return Err(format!("{} is not a regular file", p.display()));
                }
                f.set_len(0).map_err(|e| io_message(&p.display(), &e))?;
                Ok((f, false))
            }
            Err(e) => Err(io_message(&p.display(), &e)),
        }
    }

    /// Gives a file or directory to the session's uid. cap-std opens directories `O_PATH`,
    /// on which fchown(2) fails, so this is fchownat(fd, "", AT_EMPTY_PATH).
    fn give(&self, f: &impl std::os::fd::AsFd) -> io::Result<()> {
        match self.uid {
            Some(uid) => {
                use rustix::fs::{AtFlags, Gid, Uid, chownat};
                chownat(
                    f,
                    "",
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(uid)),
                    AtFlags::EMPTY_PATH,
                )
                .map_err(io::Error::from)
            }
            None => Ok(()),
        }
    }
}

/// An io error as the model should read it: the sandbox path, never a host path.
pub(crate) fn io_message(path: &str, e: &io::Error) -> String {
    let what = match e.kind() {
        // cap-std's refusal of a path that leads outside the directory.
        io::ErrorKind::PermissionDenied if e.to_string().contains("outside") => {
            format!("the path leads outside {ROOT}")
        }
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "is a directory".to_string(),
        io::ErrorKind::NotADirectory => "a component of the path is not a directory".to_string(),
        _ if e.raw_os_error() == Some(40) => "too many levels of symbolic links".to_string(),
        _ => {
            let s = e.to_string();
            // Drop " (os error N)" noise but keep the reason.
            s.split(" (os error").next().unwrap_or(&s).to_lowercase()
        }
    };
    format!("{path}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempdir::TempDir, Workspace) {
        let t = tempdir::TempDir::new();
        let w = Workspace::open(&t.0, None).unwrap();
        (t, w)
    }

    mod tempdir {
        pub struct TempDir(pub std::path::PathBuf);
        impl TempDir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!("openma-paths-{}", ulid::Ulid::new()));
                std::fs::create_dir_all(&p).unwrap();
                TempDir(p)
            }
        }
        impl Drop for TempDir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn absolute_and_relative_paths_resolve_inside() {
        let (_t, w) = ws();
        assert_eq!(
            w.resolve("/workspace/a/b").unwrap().display(),
            "/workspace/a/b"
        );
        assert_eq!(w.resolve("a/./b/../c").unwrap().display(), "/workspace/a/c");
        assert_eq!(w.resolve("/workspace").unwrap().display(), "/workspace");
        assert!(w.resolve("/etc/passwd").is_err());
        assert!(w.resolve("../x").is_err());
        assert!(w.resolve("/workspace/../etc/passwd").is_err());
        assert!(w.resolve("/workspacefoo").is_err());
    }

    #[test]
    fn symlinks_resolve_with_workspace_as_root() {
        let (t, w) = ws();
        std::fs::create_dir(t.0.join("d")).unwrap();
        std::fs::write(t.0.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("/workspace/d", t.0.join("abs")).unwrap();
        std::os::unix::fs::symlink("d/f", t.0.join("rel")).unwrap();
        std::os::unix::fs::symlink("/etc", t.0.join("out")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", t.0.join("d/up")).unwrap();
        std::os::unix::fs::symlink("loop", t.0.join("loop")).unwrap();
        assert_eq!(w.resolve("abs/f").unwrap().display(), "/workspace/d/f");
        assert_eq!(w.resolve("rel").unwrap().display(), "/workspace/d/f");
        assert!(w.resolve("out/passwd").unwrap_err().contains("outside"));
        assert!(w.resolve("d/up/passwd").unwrap_err().contains("outside"));
        assert!(w.resolve("loop").unwrap_err().contains("symbolic links"));
    }

    #[test]
    fn session_mounts_resolve_by_prefix_and_uploads_are_read_only() {
        let t = tempdir::TempDir::new();
        for d in ["ws", "up/sub", "out"] {
            std::fs::create_dir_all(t.0.join(d)).unwrap();
        }
        std::fs::write(t.0.join("up/sub/data.csv"), "a,b").unwrap();
        std::os::unix::fs::symlink("/mnt/session/uploads/sub/data.csv", t.0.join("ws/link")).unwrap();
        std::os::unix::fs::symlink("../../etc", t.0.join("up/sub/up")).unwrap();
        let w = Workspace::open_session(&t.0.join("ws"), &t.0.join("up"), &t.0.join("out"), &[], None).unwrap();
        let p = w.resolve("/mnt/session/uploads/sub/data.csv").unwrap();
        assert_eq!(p.display(), "/mnt/session/uploads/sub/data.csv");
        assert!(w.open_file(&p).is_ok());
        assert!(w.create_file(&p).unwrap_err().contains("read-only"));
        assert!(w.create_parents(&w.resolve("/mnt/session/uploads/new/x").unwrap()).unwrap_err().contains("read-only"));
        // a workspace link into the uploads lands there, read-only still
        let linked = w.resolve("link").unwrap();
        assert_eq!(linked.display(), "/mnt/session/uploads/sub/data.csv");
        assert!(w.create_file(&linked).is_err());
        // climbing out of a mount is refused
        assert!(w.resolve("/mnt/session/uploads/sub/up/passwd").unwrap_err().contains("outside"));
        assert!(w.resolve("/mnt/session/uploads/../outputs/x").unwrap_err().contains("outside"));
        assert!(w.resolve("/mnt/session").is_err());
        assert!(w.resolve("/mnt/session/uploadsx/a").is_err());
        let out = w.resolve("/mnt/session/outputs/r/report.md").unwrap();
        w.create_parents(&out).unwrap();
        assert!(w.create_file(&out).unwrap().1);
        assert!(t.0.join("out/r/report.md").exists());
    }
}
