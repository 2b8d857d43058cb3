//! The files a session's model requests name by `file_id`, read from the blob store once
//! per session actor rather than on every model step.
//!
//! Each step still asks the store which of the named files are live (one query per hundred
//! ids), so a file deleted or expired since the last step becomes the "no longer available"
//! note at once; only the bytes are cached.

use std::collections::HashMap;

use openma_core::harness::file_blocks::{self, ResolvedFile};
use openma_core::model::{ModelError, ModelRequest, TransientKind};
use openma_core::{DomainError, Platform, TenantId};

/// What a session's requests carry, by file id. Entries the conversation no longer names
/// (after a compaction, or once deleted) are dropped.
#[derive(Default)]
pub(super) struct FileBlockCache {
    files: HashMap<String, ResolvedFile>,
}

impl FileBlockCache {
    /// Replaces the `file` sources of `request` with the files' content. A store or blob
    /// store failure is a transient model error: the step is retried like a failed call.
    pub(super) async fn resolve(&mut self, platform: &Platform, tenant: &TenantId, request: &mut ModelRequest) -> Result<(), ModelError> {
        let ids: Vec<String> = file_blocks::file_ids(request).into_iter().collect();
        if ids.is_empty() {
            self.files.clear();
            return Ok(());
        }
        let live = platform.live_files(tenant, &ids).await.map_err(unreadable)?;
        self.files.retain(|id, _| live.iter().any(|f| &f.meta.id == id));
        for file in &live {
            if !self.files.contains_key(&file.meta.id) {
                let content = platform.file_for_model(file).await.map_err(unreadable)?;
                self.files.insert(file.meta.id.clone(), content);
            }
        }
        file_blocks::resolve(request, |id| self.files.get(id));
        Ok(())
    }
}

fn unreadable(e: DomainError) -> ModelError {
    ModelError::Transient { kind: TransientKind::ServerError, message: format!("a file the conversation names could not be read: {e}"), retry_after: None }
}
