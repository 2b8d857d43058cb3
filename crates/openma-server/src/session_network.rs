//! Where a session's sandbox may connect: its environment's `networking` (unrestricted, or
//! limited to `allowed_hosts`, the package registries and the agent's MCP servers) turned
//! into the sandbox's [`EgressPolicy`], which the sandbox crate enforces (and persists, so a
//! sandbox restarted later gets the same policy).

use openma_core::vaults::StoredCredential;
use openma_core::{DomainError, Platform, TenantId};
use openma_sandbox::intercept::{CredentialSource, Substitution};
use openma_types::vaults::CredentialAuth;
use openma_sandbox::{EgressPolicy, Sandboxes};
use openma_types::environments::{Environment, EnvironmentConfig};
use openma_types::sessions::{Session, SessionAgent};

/// The egress policy of a session of `agent` in `environment`.
pub fn egress_policy(environment: &Environment, agent: &SessionAgent) -> EgressPolicy {
    let EnvironmentConfig::Cloud(config) = &environment.config;
    EgressPolicy::for_session(Some(&config.networking), &agent.mcp_servers)
}

/// Records the session's egress policy with its sandbox (at create, and when its agent's MCP
/// servers change), and the placeholders its shell sees for the `environment_variable`
/// credentials of its vaults.
pub async fn apply(platform: &Platform, sandboxes: &Sandboxes, tenant: &TenantId, session: &Session) -> Result<(), DomainError> {
    let environment = platform.get_environment(tenant, &session.environment_id).await?;
    let backend = |what: &str, e: std::io::Error| DomainError::Store(openma_core::StoreError::Backend(format!("cannot record the sandbox's {what}: {e}")));
    sandboxes.set_egress_policy(&session.id, &egress_policy(&environment, &session.agent)).map_err(|e| backend("network policy", e))?;
    let vars: Vec<(String, String)> = env_credentials(platform, tenant, session)
        .await?
        .into_iter()
        .map(|c| {
            let name = match &c.credential.auth {
                CredentialAuth::EnvironmentVariable { secret_name, .. } => secret_name.clone(),
                _ => String::new(),
            };
            (name, openma_core::vaults::placeholder(&session.id, &c.credential.id))
        })
        .collect();
    sandboxes.set_session_env(&session.id, &vars).map_err(|e| backend("environment", e))
}

/// The session's `environment_variable` credentials ([`openma_core::vaults::env_credentials`]).
pub(crate) async fn env_credentials(platform: &Platform, tenant: &TenantId, session: &Session) -> Result<Vec<StoredCredential>, DomainError> {
    openma_core::vaults::env_credentials(&*platform.store, tenant, &session.vault_ids).await
}

/// The secrets of sessions' `environment_variable` credentials, for the egress proxy. Read
/// from the vaults at every connection: a rotated secret is used at once, an archived one
/// no more. The plaintext goes only into requests to the credential's allowed hosts.
pub struct EgressCredentials {
    pub platform: Platform,
}

#[async_trait::async_trait]
impl CredentialSource for EgressCredentials {
    async fn substitutions(&self, session_id: &str) -> Vec<Substitution> {
        let found = async {
            let tenant = self.platform.store.session_tenant(session_id).await.ok()??;
            let session = self.platform.store.get_session(&tenant, session_id).await.ok()??;
            let secrets = self.platform.secrets.as_deref()?;
            openma_core::vaults::session_credentials(&*self.platform.store, Some(secrets), &tenant, session_id, &session.vault_ids).await.ok()
        };
        found.await.map(|c| c.substitutions).unwrap_or_default()
    }
}
