//! A session's host directory as one tar + gzip file: what travels when a session moves
//! between nodes (cluster snapshots) or between the control plane and a remote sandbox
//! server. Regular files, directories and symlinks (never followed) keep their modes and
//! owners; sockets, fifos and devices stay behind, as do the top-level entries a caller
//! names in `skip` (those that belong to one host's running sandbox).

use std::io;
use std::path::Path;

/// Host-side entries of a session directory that belong to the sandbox running on this
/// host, never to the session: its egress socket directory and the markers of what this
/// host last packed, restored or sent (or, on a sandbox server, that no tool ran yet).
pub const LOCAL_ONLY: &[&str] = &["egress", ".generation", "shell.lost", ".remote-sync", ".fresh"];

/// The name, inside a delta pack, of the list of paths deleted since its base.
pub const DELETED: &str = ".openma-deleted";

/// What [`pack`] would take, entry by entry: path → a digest-worthy description (kind,
/// size, mtime, mode, owner, link target). Two manifests differ exactly where a pack would.
pub type Manifest = std::collections::BTreeMap<String, String>;

/// The [`Manifest`] of `dir`.
pub fn manifest(dir: &Path, skip: &[&str]) -> io::Result<Manifest> {
    let mut out = Manifest::new();
    packable(dir, skip, &mut |path, name, meta| {
        out.insert(name.to_string_lossy().into_owned(), describe(path, meta)?);
        Ok(())
    })?;
    Ok(out)
}

/// One entry as a [`Manifest`] holds it: kind, size, mtime, mode, owner and link target.
fn describe(path: &Path, meta: &std::fs::Metadata) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let link = if meta.file_type().is_symlink() { std::fs::read_link(path)?.to_string_lossy().into_owned() } else { String::new() };
    let kind = if meta.is_dir() { 'd' } else if meta.file_type().is_symlink() { 'l' } else { 'f' };
    let size = if meta.is_dir() { 0 } else { meta.len() };
    Ok(format!("{kind} {size} {}.{} {:o} {}:{} {link}", meta.mtime(), meta.mtime_nsec(), meta.mode(), meta.uid(), meta.gid()))
}

/// A tar + gzip writer to the file `to`; [`finish`] completes it.
fn builder(to: &Path) -> io::Result<tar::Builder<flate2::write::GzEncoder<std::fs::File>>> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(std::fs::File::create(to)?, flate2::Compression::fast()));
    tar.follow_symlinks(false);
    Ok(tar)
}

/// Completes a [`builder`]'s file (not synced: a pack that must survive a crash is synced
/// by its caller).
fn finish(tar: tar::Builder<flate2::write::GzEncoder<std::fs::File>>) -> io::Result<()> {
    tar.into_inner()?.finish()?;
    Ok(())
}

/// Packs what changed in `dir` since `base` (a manifest taken earlier): new and changed
/// entries (a changed directory without its unchanged children), and the paths gone since,
/// listed in a [`DELETED`] entry. Returns whether anything changed.
pub fn pack_delta(dir: &Path, base: &Manifest, now: &Manifest, to: &Path) -> io::Result<bool> {
    let changed: Vec<&String> = now.iter().filter(|(k, v)| base.get(*k) != Some(v)).map(|(k, _)| k).collect();
    let deleted: Vec<&String> = base.keys().filter(|k| !now.contains_key(*k)).collect();
    if changed.is_empty() && deleted.is_empty() {
        return Ok(false);
    }
    let mut tar = builder(to)?;
    for name in changed {
        let path = dir.join(name);
        // gone since the manifest was taken: the next delta lists it as deleted
        let meta = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other?,
        };
        if meta.is_dir() {
            // the directory alone (its mode and owner); its children are listed on their own
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            tar.append_data(&mut header, name, io::empty())?;
        } else {
            match tar.append_path_with_name(&path, name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            }
        }
    }
    let list: String = deleted.iter().map(|d| format!("{d}\n")).collect();
    let mut header = tar::Header::new_gnu();
    header.set_size(list.len() as u64);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append_data(&mut header, DELETED, list.as_bytes())?;
    finish(tar)?;
    Ok(true)
}

/// Applies a [`pack_delta`] to `dir`: unpacks it over, then removes the listed paths (any
/// that would leave `dir` are refused).
pub fn apply_delta(from: &Path, dir: &Path) -> io::Result<()> {
    unpack(from, dir)?;
    let list_path = dir.join(DELETED);
    let list = std::fs::read_to_string(&list_path).unwrap_or_default();
    std::fs::remove_file(&list_path).or_else(|e| if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) })?;
    for rel in list.lines().filter(|l| !l.is_empty()) {
        let rel = Path::new(rel);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a deleted path leaves the directory: {}", rel.display())));
        }
        match remove(&dir.join(rel)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// A digest of what [`pack`] takes: every entry's path and [`Manifest`] description, so any
/// change to the directory changes it.
pub fn fingerprint(dir: &Path, skip: &[&str]) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    packable(dir, skip, &mut |path, name, meta| {
        hash.update(format!("{}\0{}\0", name.display(), describe(path, meta)?));
        Ok(())
    })?;
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the [`packable`] entries of `dir` to the file `to` as tar + gzip (not synced).
pub fn pack(dir: &Path, skip: &[&str], to: &Path) -> io::Result<()> {
    let mut tar = builder(to)?;
    packable(dir, skip, &mut |path, name, _| tar.append_path_with_name(path, name))?;
    finish(tar)
}

/// Unpacks a [`pack`] over `dir` (created if missing), keeping modes and owners. Entries
/// cannot land outside `dir` (the tar crate refuses `..` and absolute paths).
pub fn unpack(from: &Path, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(from)?));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive.unpack(dir)
}

/// Replaces `dir` with the content of a [`pack`]: unpacked beside it first, then swapped in,
/// so a failure leaves the old directory whole. Top-level `keep` entries of the old
/// directory (host-only markers) survive.
pub fn replace(from: &Path, dir: &Path, keep: &[&str]) -> io::Result<()> {
    let (fresh, old) = (sibling(dir, "incoming")?, sibling(dir, "outgoing")?);
    for stale in [&fresh, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)?;
        }
    }
    unpack(from, &fresh)?;
    if dir.exists() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(mode))?;
        for k in keep {
            let p = dir.join(k);
            if std::fs::symlink_metadata(&p).is_ok() {
                std::fs::rename(&p, fresh.join(k))?;
            }
        }
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&fresh, dir)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Lays a [`pack`] over `dir`: each of the pack's top-level entries replaces its
/// counterpart, and a directory present on both sides is mirrored in place (what the pack
/// lacks is removed, the rest replaced), so a running sandbox that bound the directory sees
/// the change. Top-level entries the pack lacks are left alone.
pub fn lay_over(from: &Path, dir: &Path) -> io::Result<()> {
    let fresh = sibling(dir, "overlay")?;
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)?;
    }
    unpack(from, &fresh)?;
    let result = (|| {
        for e in std::fs::read_dir(&fresh)? {
            let e = e?;
            mirror_entry(&e.path(), &dir.join(e.file_name()))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&fresh);
    result
}

/// `<parent>/.<name>.<suffix>`: a working directory beside `dir`, on the same file system
/// (so its entries can be renamed into place).
fn sibling(dir: &Path, suffix: &str) -> io::Result<std::path::PathBuf> {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy()))),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no parent directory", dir.display()))),
    }
}

/// Makes `dst` what `src` is, moving `src`'s entries into place.
fn mirror_entry(src: &Path, dst: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let s = std::fs::symlink_metadata(src)?;
    let d = std::fs::symlink_metadata(dst).ok();
    if s.is_dir() && d.as_ref().is_some_and(|d| d.is_dir()) {
        for e in std::fs::read_dir(dst)? {
            let e = e?;
            if std::fs::symlink_metadata(src.join(e.file_name())).is_err() {
                remove(&e.path())?;
            }
        }
        for e in std::fs::read_dir(src)? {
            let e = e?;
            mirror_entry(&e.path(), &dst.join(e.file_name()))?;
        }
        std::os::unix::fs::lchown(dst, Some(s.uid()), Some(s.gid()))?;
        return std::fs::set_permissions(dst, s.permissions());
    }
    if d.is_some() {
        remove(dst)?;
    }
    std::fs::rename(src, dst)
}

fn remove(p: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(p)?.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) }
}

/// Visits what travels, parents before children, in name order: regular files,
/// directories and symlinks (not followed), as `(host path, path in the pack, metadata)`.
fn packable(dir: &Path, skip: &[&str], visit: &mut impl FnMut(&Path, &Path, &std::fs::Metadata) -> io::Result<()>) -> io::Result<()> {
    fn walk(path: &Path, name: &Path, visit: &mut impl FnMut(&Path, &Path, &std::fs::Metadata) -> io::Result<()>) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        let kind = meta.file_type();
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            return Ok(());
        }
        visit(path, name, &meta)?;
        if kind.is_dir() {
            for e in sorted(path)? {
                walk(&e.path(), &name.join(e.file_name()), visit)?;
            }
        }
        Ok(())
    }
    fn sorted(dir: &Path) -> io::Result<Vec<std::fs::DirEntry>> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        Ok(entries)
    }
    for e in sorted(dir)? {
        if !skip.iter().any(|l| e.file_name() == *l) {
            walk(&e.path(), Path::new(&e.file_name()), visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_swaps_in_the_pack_and_keeps_the_named_markers() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("workspace/a")).unwrap();
        std::fs::write(src.join("workspace/a/f.txt"), "new").unwrap();
        std::fs::write(src.join("shell.lost"), "not packed").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("workspace/link")).unwrap();
        std::fs::create_dir_all(dst.join("workspace")).unwrap();
        std::fs::write(dst.join("workspace/gone.txt"), "old").unwrap();
        std::fs::write(dst.join(".remote-sync"), "marker").unwrap();
        let file = tmp.path().join("p.tar.gz");
        pack(&src, LOCAL_ONLY, &file).unwrap();
        replace(&file, &dst, &[".remote-sync"]).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("workspace/a/f.txt")).unwrap(), "new");
        assert!(!dst.join("workspace/gone.txt").exists(), "what the pack lacks is gone");
        assert!(!dst.join("shell.lost").exists(), "local-only entries do not travel");
        assert_eq!(std::fs::read_to_string(dst.join(".remote-sync")).unwrap(), "marker");
        assert_eq!(std::fs::read_link(dst.join("workspace/link")).unwrap(), Path::new("/etc/passwd"), "links are not followed");
        assert_ne!(fingerprint(&dst, &["workspace"]).unwrap(), fingerprint(&dst, LOCAL_ONLY).unwrap());
    }

    #[test]
    fn lay_over_mirrors_the_packed_directories_in_place_and_leaves_the_rest() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("uploads/sub")).unwrap();
        std::fs::write(src.join("uploads/sub/new.csv"), "new").unwrap();
        std::fs::write(src.join("env.json"), "[]").unwrap();
        std::fs::create_dir_all(dst.join("uploads")).unwrap();
        std::fs::create_dir_all(dst.join("workspace")).unwrap();
        std::fs::write(dst.join("uploads/removed.csv"), "gone").unwrap();
        std::fs::write(dst.join("workspace/kept.txt"), "kept").unwrap();
        let inode = std::fs::metadata(dst.join("uploads")).unwrap().ino();
        let file = tmp.path().join("p.tar.gz");
        pack(&src, &[], &file).unwrap();
        lay_over(&file, &dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("uploads/sub/new.csv")).unwrap(), "new");
        assert!(!dst.join("uploads/removed.csv").exists(), "what the pack lacks in a packed directory goes");
        assert_eq!(std::fs::metadata(dst.join("uploads")).unwrap().ino(), inode, "the directory itself stays (a running sandbox bound it)");
        assert_eq!(std::fs::read_to_string(dst.join("workspace/kept.txt")).unwrap(), "kept", "entries the pack lacks stay");
        assert_eq!(std::fs::read_to_string(dst.join("env.json")).unwrap(), "[]");
        assert!(!tmp.path().join(".dst.overlay").exists());
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_what_went() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(src.join("workspace/keep")).unwrap();
        for i in 0..50 {
            std::fs::write(src.join(format!("workspace/keep/{i}.txt")), "same").unwrap();
        }
        std::fs::write(src.join("workspace/gone.txt"), "x").unwrap();
        std::fs::create_dir_all(src.join("workspace/olddir/sub")).unwrap();
        std::fs::write(src.join("workspace/olddir/sub/f"), "x").unwrap();
        let full = tmp.path().join("full.tar.gz");
        pack(&src, LOCAL_ONLY, &full).unwrap();
        unpack(&full, &dst).unwrap();
        let base = manifest(&src, LOCAL_ONLY).unwrap();
        let delta = tmp.path().join("delta.tar.gz");
        assert!(!pack_delta(&src, &base, &base, &delta).unwrap(), "nothing changed");

        std::fs::remove_file(src.join("workspace/gone.txt")).unwrap();
        std::fs::remove_dir_all(src.join("workspace/olddir")).unwrap();
        std::fs::write(src.join("workspace/new.txt"), "new").unwrap();
        std::fs::write(src.join("workspace/keep/7.txt"), "changed").unwrap();
        let now = manifest(&src, LOCAL_ONLY).unwrap();
        assert!(pack_delta(&src, &base, &now, &delta).unwrap());
        assert!(std::fs::metadata(&delta).unwrap().len() < std::fs::metadata(&full).unwrap().len(), "the delta is smaller");
        apply_delta(&delta, &dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("workspace/new.txt")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(dst.join("workspace/keep/7.txt")).unwrap(), "changed");
        assert_eq!(std::fs::read_to_string(dst.join("workspace/keep/8.txt")).unwrap(), "same");
        assert!(!dst.join("workspace/gone.txt").exists() && !dst.join("workspace/olddir").exists());
        assert!(!dst.join(DELETED).exists());
        assert_eq!(manifest(&dst, LOCAL_ONLY).unwrap().keys().collect::<Vec<_>>(), now.keys().collect::<Vec<_>>());

        // a list naming a path outside the directory is refused
        let evil_src = tmp.path().join("evil");
        std::fs::create_dir_all(&evil_src).unwrap();
        std::fs::write(evil_src.join(DELETED), "../src/workspace/new.txt\n").unwrap();
        let evil = tmp.path().join("evil.tar.gz");
        pack(&evil_src, &[], &evil).unwrap();
        assert!(apply_delta(&evil, &dst).is_err());
        assert!(src.join("workspace/new.txt").exists());
    }
}
