//! The core's file and skill services as the Workers build them: rows on D1, bytes on R2.
//! `openma-main` serves the Files and Skills APIs and checks `file` content blocks and an
//! agent's skills with them; the SessionDO reads the files a conversation names when it
//! builds a model request, lays the files a session mounts and its agent's skills into its
//! sandbox, and takes the outputs it leaves.

use async_trait::async_trait;
use openma_core::agents::SkillCheck;
use openma_core::files::Files;
use openma_core::skills::Skills;
use openma_core::{DomainError, TenantId};
use openma_types::agents::{AgentTool, Skill};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::D1;
use crate::errors::ApiError;
use crate::r2::R2Blobs;

pub struct WorkerFiles {
    db: D1,
    blobs: R2Blobs,
}

impl WorkerFiles {
    pub fn new(env: &worker::Env) -> Result<Self, ApiError> {
        let db = D1::new(env.d1("DB").map_err(|e| ApiError::new(500, format!("binding `DB`: {e}")))?);
        let blobs = R2Blobs::new(env).map_err(|e| ApiError::new(500, e.to_string()))?;
        Ok(WorkerFiles { db, blobs })
    }

    pub fn files(&self) -> Files<'_> {
        Files { store: &self.db, blobs: Some(&self.blobs), clock: &WorkerClock, ids: &WorkerIds }
    }

    pub fn skills(&self) -> Skills<'_> {
        Skills { store: &self.db, blobs: Some(&self.blobs), clock: &WorkerClock, ids: &WorkerIds }
    }
}

/// An agent's skills are checked against the tenant's skills on D1, as natively.
#[async_trait]
impl SkillCheck for WorkerFiles {
    async fn check_skills(&self, tenant: &TenantId, skills: &[Skill], tools: &[AgentTool]) -> Result<(), DomainError> {
        self.skills().check_skills(tenant, skills, tools).await
    }
}

/// `OPENMA_MAX_FILE_MB` (as on the native server), default 500 MiB: the largest upload, and
/// the largest output a session leaves. Cloudflare's own request size limit for the
/// account's plan applies to uploads first.
pub fn max_file_bytes(env: &worker::Env) -> u64 {
    env.var("OPENMA_MAX_FILE_MB")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<u64>().ok())
        .map_or(openma_core::files::DEFAULT_MAX_FILE_BYTES, |mb| mb.saturating_mul(1024 * 1024))
}
