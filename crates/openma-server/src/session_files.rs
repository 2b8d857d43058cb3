//! Moving file bytes between the Files API and session sandboxes: mounted files go in
//! (read-only, below `/mnt/session/uploads/`), outputs come out (from
//! `/mnt/session/outputs/`, at the end of every turn, before the session is idle).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openma_core::files::StoredFile;
use openma_core::ports::{BlobError, ByteStream};
use openma_core::{DomainError, Platform, TenantId};
use openma_sandbox::Sandboxes;
use openma_types::files::FileResource;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::runtime::TurnObserver;

const READ_CHUNK: usize = 256 * 1024;

/// Puts mounted files into the session's sandbox; a failure is the server's (the file
/// exists and is the caller's).
pub async fn place(platform: &Platform, sandboxes: &Sandboxes, session_id: &str, mounts: &[(FileResource, StoredFile)]) -> Result<(), DomainError> {
    for (resource, file) in mounts {
        let body = platform.file_bytes(file).await?;
        sandboxes
            .place_file(session_id, &resource.mount_path, body)
            .await
            .map_err(|e| DomainError::Store(openma_core::StoreError::Backend(format!("cannot mount {} into the sandbox: {e}", resource.mount_path))))?;
    }
    Ok(())
}

/// Unpacks the agent's skills into the sandbox's read-only `/mnt/skills/<name>/`.
pub async fn install_skills(platform: &Platform, sandboxes: &Sandboxes, tenant: &TenantId, session: &openma_types::sessions::Session) -> Result<(), DomainError> {
    for (version, files) in platform.session_skills(tenant, &session.agent.skills).await? {
        for f in files {
            let body = futures::stream::iter([Ok::<_, std::convert::Infallible>(f.bytes)]);
            sandboxes.place_file(&session.id, &format!("/mnt/skills/{}", f.path), body).await.map_err(|e| {
                DomainError::Store(openma_core::StoreError::Backend(format!("cannot install skill `{}`: {e}", version.name)))
            })?;
        }
    }
    Ok(())
}

fn file_stream(file: std::fs::File) -> ByteStream {
    let mut file = tokio::fs::File::from_std(file);
    async_stream::stream! {
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    yield Ok(buf);
                }
                Err(e) => {
                    yield Err(BlobError::Source(e.to_string()));
                    break;
                }
            }
        }
    }
    .boxed()
}

fn sha256_of(mut file: std::fs::File) -> std::io::Result<String> {
    use std::io::Read;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Takes a session's outputs into the Files API (scoped to the session): new files and
/// files whose bytes changed since the last capture. One capture per session at a time.
pub struct OutputCapture {
    pub platform: Platform,
    pub sandboxes: Sandboxes,
    pub max_file_bytes: u64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl OutputCapture {
    pub fn new(platform: Platform, sandboxes: Sandboxes, max_file_bytes: u64) -> Self {
        OutputCapture { platform, sandboxes, max_file_bytes, locks: Mutex::default() }
    }

    /// Captures what changed; returns how many files were taken.
    pub async fn capture(&self, tenant: &TenantId, session_id: &str) -> Result<usize, DomainError> {
        let lock = self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(session_id.to_string()).or_default().clone();
        let _held = lock.lock().await;
        let sandboxes = self.sandboxes.clone();
        let sid = session_id.to_string();
        let found = tokio::task::spawn_blocking(move || sandboxes.outputs(&sid))
            .await
            .map_err(|e| DomainError::Store(openma_core::StoreError::Backend(e.to_string())))?
            .map_err(|e| DomainError::Store(openma_core::StoreError::Backend(format!("cannot list the session's outputs: {e}"))))?;
        if found.is_empty() {
            return Ok(0);
        }
        let previous = self.platform.session_files().session_outputs(tenant, session_id).await?;
        let mut taken = 0;
        for out in found {
            if out.size > self.max_file_bytes {
                tracing::warn!(session_id, path = %out.rel, size = out.size, "an output is larger than the file limit; not captured");
                continue;
            }
            let prev = previous.iter().find(|f| f.path.as_deref() == Some(out.rel.as_str()));
            let sandboxes = self.sandboxes.clone();
            let (sid, rel) = (session_id.to_string(), out.rel.clone());
            let check = prev.map(|p| p.sha256.clone());
            let opened = tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::fs::File>> {
                if let Some(sha) = check
                    && sha256_of(sandboxes.open_output(&sid, &rel)?)? == sha
                {
                    return Ok(None);
                }
                sandboxes.open_output(&sid, &rel).map(Some)
            })
            .await
            .map_err(|e| DomainError::Store(openma_core::StoreError::Backend(e.to_string())))?;
            let file = match opened {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => {
                    // replaced by a link or removed since the listing: skip it this time
                    tracing::debug!(session_id, path = %out.rel, error = %e, "output skipped");
                    continue;
                }
            };
            match self.platform.session_files().capture_output(tenant, session_id, &out.rel, prev, file_stream(file), self.max_file_bytes).await {
                Ok(Some(_)) => taken += 1,
                Ok(None) => {}
                Err(DomainError::Invalid { message, .. }) => {
                    tracing::warn!(session_id, path = %out.rel, %message, "output not captured");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(taken)
    }

    /// Forgets a deleted session.
    pub fn forget(&self, session_id: &str) {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
    }
}

#[async_trait::async_trait]
impl TurnObserver for OutputCapture {
    async fn turn_ending(&self, tenant: &TenantId, session_id: &str) {
        match self.capture(tenant, session_id).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("openma_session_outputs_captured_total").increment(n as u64);
                tracing::info!(session_id, files = n, "captured session outputs");
            }
            Err(e) => tracing::warn!(session_id, error = %e, "cannot capture the session's outputs"),
        }
    }
}
