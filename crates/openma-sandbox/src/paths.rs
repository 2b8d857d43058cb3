//! The host side's handle on a session's `/workspace`, for the file tools.
//!
//! The file tools run in the server (as root) on a directory the sandbox controls, so every
//! path is resolved as the sandbox would see it and can never leave the workspace:
//! * a path is `/workspace/...` or relative to `/workspace`; anything else is refused;
//! * symlinks are followed by hand, with `/workspace` as their root: a link to
//!   `/workspace/x` works, a link to anything outside (`/etc/passwd`, `../../..`) is refused;
//! * every open then goes through a `cap_std::fs::Dir` of the workspace, which resolves
//!   beneath it (openat2 `RESOLVE_BENEATH`), so a link swapped in by a racing sandbox
//!   process still cannot reach a host file;
//! * files are opened non-blocking and must be regular files (a FIFO cannot hang a tool);
//! * files and directories the tools create are given to the session's uid.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt};

pub(crate) const ROOT: &str = "/workspace";
const MAX_SYMLINK_HOPS: usize = 40;

pub(crate) struct Workspace {
    pub dir: Dir,
    uid: Option<u32>,
}

/// A path inside the workspace with every symlink resolved (at the time of resolution).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WsPath {
    parts: Vec<OsString>,
}

impl WsPath {
    pub fn root() -> Self {
        WsPath { parts: Vec::new() }
    }

    pub fn is_root(&self) -> bool {
        self.parts.is_empty()
    }

    /// Relative to the workspace directory ("." for the workspace itself).
    pub fn rel(&self) -> PathBuf {
        if self.parts.is_empty() {
            PathBuf::from(".")
        } else {
            self.parts.iter().collect()
        }
    }

    /// As the sandbox sees it: `/workspace/...`.
    pub fn display(&self) -> String {
        let mut s = String::from(ROOT);
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
        Some(WsPath {
            parts: self.parts[..self.parts.len() - 1].to_vec(),
        })
    }

    pub fn join(&self, name: impl Into<OsString>) -> WsPath {
        let mut parts = self.parts.clone();
        parts.push(name.into());
        WsPath { parts }
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

/// `/workspace/a/b` → `a/b`; a relative path stays as it is; other absolute paths → None.
fn strip_root(path: &Path) -> Option<&Path> {
    if path.is_absolute() {
        path.strip_prefix(ROOT).ok()
    } else {
        Some(path)
    }
}

impl Workspace {
    pub fn open(host_dir: &Path, uid: Option<u32>) -> io::Result<Self> {
        Ok(Workspace {
            dir: Dir::open_ambient_dir(host_dir, ambient_authority())?,
            uid,
        })
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
        let rel = strip_root(path).ok_or_else(|| {
            format!("{input} is outside {ROOT}; this tool only reaches files under {ROOT} (use bash for other paths)")
        })?;
        self.follow(parts_of(rel), input)
    }

    /// Resolves the parts one by one: symlinks with `/workspace` as their root, `..` on
    /// what is resolved so far; climbing above `/workspace` is refused.
    fn follow(&self, mut todo: Vec<Part>, input: &str) -> Result<WsPath, String> {
        let outside =
            || format!("{input} leads outside {ROOT}; this tool only reaches files under {ROOT}");
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
            let meta = match self.dir.symlink_metadata(&candidate) {
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
                .dir
                .read_link_contents(&candidate)
                .map_err(|e| io_message(input, &e))?;
            let link = WsPath {
                parts: done.clone(),
            }
            .join(name)
            .display();
            let refuse = || {
                format!(
                    "{input}: the symbolic link {link} points outside {ROOT} (to {}); this tool only reaches files under {ROOT}",
                    target.display()
                )
            };
            let rel = strip_root(&target).ok_or_else(refuse)?;
            if target.is_absolute() {
                done.clear();
            }
            // The target's parts come next, before what followed the link.
            let mut target_parts = parts_of(rel);
            target_parts.reverse();
            todo.extend(target_parts);
        }
        Ok(WsPath { parts: done })
    }

    /// Opens an existing regular file for reading.
    pub fn open_file(&self, p: &WsPath) -> Result<File, String> {
        let mut o = OpenOptions::new();
        o.read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        let f = self
            .dir
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
        let Some(parent) = p.parent() else {
            return Ok(());
        };
        let mut at = WsPath::root();
        for part in parent.components() {
            at = at.join(part.clone());
            match self.dir.create_dir(at.rel()) {
                Ok(()) => {
                    let d = self
                        .dir
                        .open_dir(at.rel())
                        .map_err(|e| io_message(&at.display(), &e))?;
                    self.give(&d).map_err(|e| io_message(&at.display(), &e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !self
                        .dir
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
        if p.is_root() {
            return Err(format!("{ROOT} is a directory"));
        }
        let nonblock = rustix::fs::OFlags::NONBLOCK.bits() as i32;
        let mut o = OpenOptions::new();
        o.write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(nonblock);
        match self.dir.open_with(p.rel(), &o) {
            Ok(f) => {
                self.give(&f).map_err(|e| io_message(&p.display(), &e))?;
                Ok((f, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let mut o = OpenOptions::new();
                o.write(true).custom_flags(nonblock);
                let f = self
                    .dir
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
}
