//! The session's files in its sandbox: the files mounted through the API, laid into the
//! server's `uploads/` (the sandbox's read-only `/mnt/session/uploads`) before a tool runs,
//! and the outputs the agent leaves in `/mnt/session/outputs`, taken into the Files API
//! (scoped to the session) from the workspace's pack at the end of each writing turn.
//!
//! The agent's skills travel with the mounts, into the server's `skills/` (the sandbox's
//! read-only `/mnt/skills`), as the native server installs them.
//!
//! Both travel as the sandbox server's packs (tar + gzip of the session directory): a pack
//! of `uploads/` alone, laid over the session with `mode=mounts`, makes the directory
//! exactly what the session mounts now (a file unmounted since is gone).

use std::io::Read;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::StreamExt;
use openma_core::files::{UPLOADS_ROOT, OUTPUTS_PER_SESSION, StoredFile};
use openma_core::ports::ByteStream;
use openma_core::{DomainError, TenantId};
use openma_types::agents::Skill;
use openma_types::files::FileResource;
use openma_worker_common::d1::D1;
use openma_worker_common::errors::ApiError;
use openma_worker_common::files::WorkerFiles;
use openma_worker_common::sessions::WorkerSessions;
use sha2::{Digest, Sha256};
use worker::{Env, Result};

use crate::session::{Meta, SessionDO};

/// The most bytes of mounted files laid into a sandbox: the pack is built in the object's
/// memory (128 MB on Cloudflare), unlike the native server, which copies them file by file.
const MAX_MOUNTED_BYTES: u64 = 64 * 1024 * 1024;

fn failed(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

fn api(e: ApiError) -> worker::Error {
    failed(e.message())
}

/// What the mounts and the agent's skills are, to tell whether the server has them laid
/// already.
pub fn fingerprint(mounts: &[&FileResource], skills: &[Skill]) -> String {
    let files = mounts.iter().map(|r| format!("{}\t{}\n", r.mount_path, r.file_id));
    files.chain(skills.iter().map(|s| format!("skill\t{}\t{}\n", s.skill_id, s.version))).collect()
}

/// The pack of `uploads/` holding the session's mounted files, their bytes read from R2,
/// and of `skills/` holding its agent's skills (each below `<name>/`, the sandbox's
/// read-only `/mnt/skills`). A skill or version deleted since the agent was saved fails it.
pub async fn mounts_pack(env: &Env, tenant: &str, mounts: &[&FileResource], skills: &[Skill]) -> Result<Vec<u8>> {
    let tenant = TenantId::from_trusted(tenant.to_owned());
    let worker_files = WorkerFiles::new(env).map_err(api)?;
    let files = worker_files.files();
    let mut copies = Vec::new();
    for r in mounts {
        // an unmounted file's copy is gone with its resource; a resource without one is skipped
        if let Some(file) = files.store.get_file(&tenant, &r.file_id).await.map_err(failed)? {
            copies.push((r, file));
        }
    }
    let skill_files = worker_files.skills().session_files(&tenant, skills).await.map_err(failed)?;
    let skill_bytes: u64 = skill_files.iter().flat_map(|(_, f)| f.iter()).map(|f| f.bytes.len() as u64).sum();
    let total: u64 = copies.iter().map(|(_, f)| f.meta.size_bytes).sum::<u64>() + skill_bytes;
    if total > MAX_MOUNTED_BYTES {
        return Err(failed(format!(
            "the session mounts {total} bytes of files and skills; a sandbox on the Workers takes at most {MAX_MOUNTED_BYTES} (unmount some through /v1/sessions/{{id}}/resources)"
        )));
    }
    let mut pack = Pack { tar: tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast())), dirs: Default::default() };
    dir(&mut pack.tar, "uploads")?;
    for (r, file) in copies {
        let rel = r.mount_path.strip_prefix(UPLOADS_ROOT).and_then(|p| p.strip_prefix('/')).ok_or_else(|| failed(format!("`{}` is not below {UPLOADS_ROOT}", r.mount_path)))?;
        let bytes = collect(files.file_bytes(&file).await.map_err(failed)?).await?;
        pack.file("uploads", rel, &bytes, file.meta.created_at)?;
    }
    if !skill_files.is_empty() {
        dir(&mut pack.tar, "skills")?;
    }
    for (version, files) in &skill_files {
        for f in files {
            pack.file("skills", &f.path, &f.bytes, version.created_at)?;
        }
    }
    pack.tar.into_inner().and_then(GzEncoder::finish).map_err(failed)
}

/// A pack being built: the directories it holds so far.
struct Pack {
    tar: tar::Builder<GzEncoder<Vec<u8>>>,
    dirs: std::collections::BTreeSet<String>,
}

impl Pack {
    /// A read-only file at `root/rel`, with the directories above it.
    fn file(&mut self, root: &str, rel: &str, bytes: &[u8], at: openma_types::Timestamp) -> Result<()> {
        let mut parent = root.to_owned();
        for part in rel.split('/').rev().skip(1).collect::<Vec<_>>().into_iter().rev() {
            parent = format!("{parent}/{part}");
            if self.dirs.insert(parent.clone()) {
                dir(&mut self.tar, &parent)?;
            }
        }
        let mut header = header(tar::EntryType::Regular, bytes.len() as u64, 0o444);
        header.set_mtime(at.as_micros().max(0) as u64 / 1_000_000);
        self.tar.append_data(&mut header, format!("{root}/{rel}"), bytes).map_err(failed)
    }
}

/// What the model is told about the agent's skills (their files are in the sandbox), as
/// natively: each one's name and description. A skill that cannot be read is left out
/// here; laying the skills into the sandbox reports it. Skill versions do not change: the
/// note is read from D1 once per object and set of skills.
pub async fn skills_note(object: &SessionDO, tenant: &str, skills: &[Skill]) -> Option<String> {
    if skills.is_empty() {
        return None;
    }
    let key = fingerprint(&[], skills);
    if let Some((k, note)) = &*object.skills_note.borrow()
        && *k == key
    {
        return note.clone();
    }
    let tenant = TenantId::from_trusted(tenant.to_owned());
    let worker_files = WorkerFiles::new(&object.env).ok()?;
    let registry = worker_files.skills();
    let mut known = Vec::new();
    for s in skills {
        if let Ok(v) = registry.get_version(&tenant, &s.skill_id, &s.version).await {
            known.push((v.name, v.description));
        }
    }
    let note = openma_core::skills::system_note(&known);
    if known.len() == skills.len() {
        *object.skills_note.borrow_mut() = Some((key, note.clone()));
    }
    note
}

/// An entry owned by root (the server unpacks ownership too; uploads are root's, read-only
/// to the session).
fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn dir(tar: &mut tar::Builder<GzEncoder<Vec<u8>>>, path: &str) -> Result<()> {
    tar.append_data(&mut header(tar::EntryType::Directory, 0, 0o755), format!("{path}/"), std::io::empty()).map_err(failed)
}

async fn collect(mut body: ByteStream) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend(chunk.map_err(failed)?);
    }
    Ok(bytes)
}

/// The regular files below `outputs/` in a pack of the session, by path below it (links
/// and other special entries are not outputs).
pub fn outputs(pack: &[u8], max_bytes: u64) -> Result<Vec<(String, Vec<u8>)>> {
    let mut archive = tar::Archive::new(GzDecoder::new(pack));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(failed)?.to_string_lossy().into_owned();
        let Some(rel) = path.strip_prefix("outputs/").filter(|r| !r.is_empty()) else { continue };
        let rel = rel.to_owned();
        if entry.size() > max_bytes {
            worker::console_warn!("sandbox: output {rel} is larger than the file limit ({} bytes); not captured", entry.size());
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(failed)?;
        out.push((rel, bytes));
        if out.len() as i64 > OUTPUTS_PER_SESSION {
            break;
        }
    }
    Ok(out)
}

/// Takes the outputs in `pack` into the Files API: new files, and files whose bytes changed
/// since the last capture (the native `OutputCapture`'s rule). How many were taken.
pub async fn capture_outputs(env: &Env, meta: &Meta, pack: &[u8]) -> Result<usize> {
    let max_bytes = openma_worker_common::files::max_file_bytes(env);
    let found = outputs(pack, max_bytes)?;
    if found.is_empty() {
        return Ok(0);
    }
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let sid = &meta.session.id;
    let db = D1::new(env.d1("DB")?);
    let sessions = WorkerSessions::new(env).map_err(api)?;
    let files = sessions.session_files(&db);
    let previous: Vec<StoredFile> = files.session_outputs(&tenant, sid).await.map_err(failed)?;
    let mut taken = 0;
    for (rel, bytes) in found {
        let prev = previous.iter().find(|f| f.path.as_deref() == Some(rel.as_str()));
        let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        if prev.is_some_and(|p| p.sha256 == sha) {
            continue;
        }
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        match files.capture_output(&tenant, sid, &rel, prev, body, max_bytes).await {
            Ok(Some(_)) => taken += 1,
            Ok(None) => {}
            Err(DomainError::Invalid { message, .. }) => worker::console_warn!("sandbox: session {sid}: output {rel} not captured: {message}"),
            Err(e) => return Err(failed(e)),
        }
    }
    Ok(taken)
}
