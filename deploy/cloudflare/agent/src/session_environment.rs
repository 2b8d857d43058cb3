//! The environment a session runs in, taken once: read from D1 at the session's first turn
//! and kept in the object's storage for the session's life, as the native server takes it
//! at create. The sandbox server is opened with it (network policy, packages, limits, stdio
//! MCP servers) and every turn lists the same MCP servers, even after the environment is
//! changed or its container restarted.

use openma_core::TenantId;
use openma_core::ports::EnvironmentStore;
use openma_types::environments::{EnvironmentConfig, Networking};
use openma_types::sandbox::SandboxEnvironment;
use openma_worker_common::d1::D1;
use serde::{Deserialize, Serialize};
use worker::Result;

use crate::session::{Meta, SessionDO};

/// Storage key of the taken environment.
const TAKEN: &str = "session_environment";

#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SessionEnvironment {
    /// The environment's network policy; None for a session whose environment is gone.
    pub networking: Option<Networking>,
    pub sandbox: SandboxEnvironment,
}

/// The session's environment, read from D1 the first time and kept.
pub async fn get(object: &SessionDO, meta: &Meta) -> Result<SessionEnvironment> {
    let storage = object.state.storage();
    if let Some(kept) = storage.get::<SessionEnvironment>(TAKEN).await? {
        return Ok(kept);
    }
    let db = D1::new(object.env.d1("DB")?);
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let environment = db.get_environment(&tenant, &meta.session.environment_id).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
    let taken = match environment.map(|e| e.config) {
        Some(EnvironmentConfig::Cloud(c)) => SessionEnvironment {
            networking: Some(c.networking),
            sandbox: SandboxEnvironment { packages: c.packages, limits: c.limits.unwrap_or_default(), mcp_servers: c.mcp_servers },
        },
        None => SessionEnvironment::default(),
    };
    storage.put(TAKEN, &taken).await?;
    Ok(taken)
}
