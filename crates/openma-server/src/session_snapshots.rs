//! Cluster mode: a session's sandbox directory travels with the session between nodes.
//!
//! Everything the sandbox keeps on the host for a session — its workspace, uploads,
//! outputs, skills, and what it took from its environment at create (packages, limits,
//! network policy, variables) — is packed (tar + gzip) into the blob store when the
//! session is created, when a turn ends and when its node hands it over (SIGTERM). A node
//! that is about to run the session and does not hold the latest pack unpacks it first.
//!
//! Processes do not travel: a session that moved starts a fresh shell, and the next bash
//! result says why. Files written after the last pack (by a turn cut short by a crash) are
//! lost with the node; the model is told the tool call was interrupted.
//!
//! Blobs: `sandboxes/<session>/<generation>-tar-gz` and `sandboxes/<session>/current`
//! naming the latest generation, written after the pack, so a reader never follows it to a
//! pack that is not whole. The node's own copy is marked in `<session dir>/.generation`.

use std::io;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use openma_core::ports::{BlobStore, ByteStream};
use openma_sandbox::Sandboxes;
use openma_sandbox::archive::{self, LOCAL_ONLY};
use tokio::io::AsyncWriteExt;

/// Largest pack accepted (the workspace limits keep real ones far smaller).
const MAX_PACK_BYTES: u64 = 4 * 1024 * 1024 * 1024;
const MARKER: &str = ".generation";

pub struct Snapshots {
    sandboxes: Sandboxes,
    blobs: Arc<dyn BlobStore>,
    ids: Arc<dyn openma_core::IdGen>,
}

// blob keys are `[a-z0-9_/-]`; session ids are ULIDs, which ignore case
fn current_key(session_id: &str) -> String {
    format!("sandboxes/{}/current", session_id.to_ascii_lowercase())
}

fn pack_key(session_id: &str, generation: &str) -> String {
    format!("sandboxes/{}/{generation}-tar-gz", session_id.to_ascii_lowercase())
}

impl Snapshots {
    pub fn new(sandboxes: Sandboxes, blobs: Arc<dyn BlobStore>, ids: Arc<dyn openma_core::IdGen>) -> Self {
        Snapshots { sandboxes, blobs, ids }
    }

    /// Packs the session's sandbox directory into the blob store. `None`: it has none, or
    /// nothing in it changed since the pack this node made or restored last (a turn that
    /// did not touch the workspace costs one walk of its metadata).
    pub async fn save(&self, session_id: &str) -> io::Result<Option<u64>> {
        let Some(dir) = self.sandboxes.session_dir(session_id).filter(|d| d.is_dir()) else { return Ok(None) };
        let src = dir.clone();
        let now = tokio::task::spawn_blocking(move || archive::fingerprint(&src, LOCAL_ONLY)).await.map_err(io::Error::other)??;
        let previous = self.current(session_id).await?;
        if let Some((generation, fp)) = marker(&dir)
            && fp == now
            && previous.as_deref() == Some(generation.as_str())
        {
            return Ok(None);
        }
        let generation = self.ids.new_id("gen").to_ascii_lowercase();
        let tmp = tempfile::NamedTempFile::new()?;
        let path = tmp.path().to_owned();
        let src = dir.clone();
        tokio::task::spawn_blocking(move || archive::pack(&src, LOCAL_ONLY, &path).and_then(|()| std::fs::File::open(&path)?.sync_all())).await.map_err(io::Error::other)??;
        let size = std::fs::metadata(tmp.path())?.len();
        let body = file_stream(tmp.path()).await?;
        self.blobs.put(&pack_key(session_id, &generation), body, MAX_PACK_BYTES).await.map_err(blob_error)?;
        let pointer: ByteStream = Box::pin(futures::stream::iter([Ok(generation.clone().into_bytes())]));
        self.blobs.put(&current_key(session_id), pointer, 1024).await.map_err(blob_error)?;
        std::fs::write(dir.join(MARKER), format!("{generation} {now}"))?;
        if let Some(old) = previous.filter(|g| *g != generation) {
            let _ = self.blobs.delete(&pack_key(session_id, &old)).await;
        }
        Ok(Some(size))
    }

    /// Unpacks the latest pack when this node's copy is older (or missing). Returns whether
    /// it did.
    pub async fn restore(&self, session_id: &str) -> io::Result<bool> {
        let Some(generation) = self.current(session_id).await? else { return Ok(false) };
        let Some(dir) = self.sandboxes.session_dir(session_id) else { return Ok(false) };
        if marker(&dir).is_some_and(|(g, _)| g == generation) {
            return Ok(false);
        }
        let Some(mut body) = self.blobs.get(&pack_key(session_id, &generation)).await.map_err(blob_error)? else {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("the pack of generation {generation} is missing")));
        };
        let tmp = tempfile::NamedTempFile::new()?;
        let mut out = tokio::fs::File::create(tmp.path()).await?;
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.map_err(blob_error)?).await?;
        }
        out.flush().await?;
        drop(out);
        // this node's stale sandbox (a shell from before the session left) goes first
        self.sandboxes.destroy(session_id).await?;
        let (path, target) = (tmp.path().to_owned(), dir.clone());
        let fp = tokio::task::spawn_blocking(move || archive::unpack(&path, &target).and_then(|()| archive::fingerprint(&target, LOCAL_ONLY)))
            .await
            .map_err(io::Error::other)??;
        std::fs::write(dir.join(MARKER), format!("{generation} {fp}"))?;
        std::fs::write(
            dir.join("shell.lost"),
            "the session moved to another server: its files were restored from the last snapshot (taken when a turn ended), but processes started earlier are no longer running",
        )?;
        Ok(true)
    }

    /// Removes every pack of a deleted session.
    pub async fn forget(&self, session_id: &str) {
        if let Ok(Some(generation)) = self.current(session_id).await {
            let _ = self.blobs.delete(&pack_key(session_id, &generation)).await;
        }
        let _ = self.blobs.delete(&current_key(session_id)).await;
    }

    async fn current(&self, session_id: &str) -> io::Result<Option<String>> {
        let Some(mut body) = self.blobs.get(&current_key(session_id)).await.map_err(blob_error)? else { return Ok(None) };
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend(chunk.map_err(blob_error)?);
        }
        Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned()).filter(|g| !g.is_empty()))
    }
}

fn blob_error(e: openma_core::ports::BlobError) -> io::Error {
    io::Error::other(e.to_string())
}

/// The generation this node holds and the fingerprint of its directory then.
fn marker(dir: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    let (generation, fp) = text.trim().split_once(' ')?;
    Some((generation.to_owned(), fp.to_owned()))
}

async fn file_stream(path: &Path) -> io::Result<ByteStream> {
    let file = tokio::fs::File::open(path).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
        .map(|r| r.map(|b| b.to_vec()).map_err(|e| openma_core::ports::BlobError::Source(e.to_string())));
    Ok(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(root: &Path, blobs: &Arc<dyn BlobStore>) -> Snapshots {
        let sandboxes = Sandboxes::new(openma_sandbox::SandboxConfig::new(root.join("sandboxes")));
        Snapshots::new(sandboxes, blobs.clone(), Arc::new(crate::adapters::UlidIds::default()))
    }

    #[tokio::test]
    async fn packs_only_what_changed_and_another_node_unpacks_it() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> = Arc::new(crate::blobs::ObjectBlobs::open(&crate::blobs::BlobUrl::Local(tmp.path().join("blobs"))).unwrap());
        let (a, b) = (node(&tmp.path().join("a"), &blobs), node(&tmp.path().join("b"), &blobs));
        let sid = "sesn_01TEST";
        assert_eq!(a.save(sid).await.unwrap(), None, "no sandbox yet");
        let ws = a.sandboxes.session_dir(sid).unwrap().join("workspace");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::write(ws.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::os::unix::fs::symlink("src/main.rs", ws.join("link")).unwrap();
        std::fs::write(a.sandboxes.session_dir(sid).unwrap().join("shell.lost"), "local only").unwrap();
        assert!(a.save(sid).await.unwrap().is_some());
        assert_eq!(a.save(sid).await.unwrap(), None, "nothing changed");
        assert!(b.restore(sid).await.unwrap());
        assert!(!b.restore(sid).await.unwrap(), "already the latest");
        let there = b.sandboxes.session_dir(sid).unwrap();
        assert_eq!(std::fs::read_to_string(there.join("workspace/src/main.rs")).unwrap(), "fn main() {}\n");
        assert_eq!(std::fs::read_link(there.join("workspace/link")).unwrap(), Path::new("src/main.rs"));
        assert!(std::fs::read_to_string(there.join("shell.lost")).unwrap().contains("moved to another server"));
        assert_eq!(b.save(sid).await.unwrap(), None, "an unpacked copy is not packed again");
        // a change on b is packed and reaches a
        std::fs::write(there.join("workspace/src/main.rs"), "fn main() { println!(\"b\"); }\n").unwrap();
        assert!(b.save(sid).await.unwrap().is_some());
        assert!(a.restore(sid).await.unwrap());
        assert!(std::fs::read_to_string(ws.join("src/main.rs")).unwrap().contains("\"b\""));
        a.forget(sid).await;
        assert!(!node(&tmp.path().join("c"), &blobs).restore(sid).await.unwrap(), "forgotten");
    }
}
