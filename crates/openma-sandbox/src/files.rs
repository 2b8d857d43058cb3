//! Whole files in and out of a session's sandbox by the paths its tools use
//! (`/workspace/…`, `/mnt/session/outputs/…`), with the same resolution as the file tools: a
//! path cannot leave the session's directories, and a symlink is never followed out of them.

use std::io::{Read, Write};

use crate::Sandboxes;
use crate::tools::open_workspace;

impl Sandboxes {
    /// The content of the file at `path` (at most the sandbox's file size limit).
    pub async fn read_file(&self, session_id: &str, path: &str) -> Result<Vec<u8>, String> {
        let session = self.inner.session(session_id)?;
        let (paths, uid, limit) = (session.paths.clone(), session.uid, self.inner.config.limits.file_size_bytes);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let ws = open_workspace(&paths, uid)?;
            let p = ws.resolve(&path)?;
            let mut out = Vec::new();
            ws.open_file(&p)?.take(limit + 1).read_to_end(&mut out).map_err(|e| crate::paths::io_message(&p.display(), &e))?;
            if out.len() as u64 > limit {
                return Err(format!("{} is larger than the sandbox's file size limit ({limit} bytes)", p.display()));
            }
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Writes `content` to `path` (replacing it), creating missing directories; read-only
    /// mounts refuse.
    pub async fn write_file(&self, session_id: &str, path: &str, content: Vec<u8>) -> Result<(), String> {
        let session = self.inner.session(session_id)?;
        let (paths, uid, limit) = (session.paths.clone(), session.uid, self.inner.config.limits.file_size_bytes);
        if content.len() as u64 > limit {
            return Err(format!("the file is larger than the sandbox's file size limit ({limit} bytes)"));
        }
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let ws = open_workspace(&paths, uid)?;
            let p = ws.resolve(&path)?;
            ws.create_parents(&p)?;
            let (mut f, _) = ws.create_file(&p)?;
            f.write_all(&content).map_err(|e| crate::paths::io_message(&p.display(), &e))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
