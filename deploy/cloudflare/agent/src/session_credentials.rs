//! The session's `environment_variable` credentials in its sandbox, as natively: the shell
//! sees each as a variable holding an opaque placeholder, and the sandbox server's egress
//! proxy puts the secret in its place in requests to the credential's hosts, in the enabled
//! locations (`openma_core::vaults::session_credentials`, the code the native server runs).
//!
//! They are sent before every tool run once the session has any: the server holds the
//! secrets in its memory only (a restarted server has none), and a secret rotated or a
//! credential archived in a vault applies from the next tool, as the native proxy, which
//! reads the vaults at each connection, applies it from the next connection.

use openma_core::ports::{EnvironmentStore, StoredEvent};
use openma_core::TenantId;
use openma_types::sandbox::SessionCredentials;
use openma_worker_common::d1::D1;

use crate::sandbox::{Refusal, Sandbox};
use crate::session::{Meta, SessionDO};

/// Sends the session's credentials, unless it has no vaults and the server was told so in
/// this object's lifetime (a session's vaults can be removed while its object sleeps).
pub async fn send(object: &SessionDO, sandbox: &Sandbox, meta: &Meta) -> Result<(), Refusal> {
    let other = |e: String| Refusal::Other(format!("the session's credentials: {e}"));
    if meta.session.vault_ids.is_empty() && object.credentials_clear.get() {
        return Ok(());
    }
    let mut credentials = SessionCredentials::default();
    if !meta.session.vault_ids.is_empty() {
        let db = D1::new(object.env.d1("DB").map_err(|e| other(e.to_string()))?);
        // without the root secret no secret opens: the placeholders go out as they are
        let secrets = openma_worker_common::root_secret::secret_box(&object.env).await.ok();
        let tenant = TenantId::from_trusted(meta.tenant.clone());
        credentials = openma_core::vaults::session_credentials(&db, secrets.as_deref(), &tenant, &meta.session.id, &meta.session.vault_ids)
            .await
            .map_err(|e| other(e.to_string()))?;
    }
    if credentials.variables.is_empty() && object.credentials_clear.get() {
        return Ok(());
    }
    sandbox.put_credentials(&credentials).await?;
    object.credentials_clear.set(credentials.variables.is_empty());
    Ok(())
}

/// Reports, once per credential and session, an `environment_variable` credential whose
/// allowed hosts the session's environment does not let its sandbox reach, as natively at a
/// turn's start; whether it reported any. A failure to check is logged, not the turn's.
pub async fn report_unreachable(object: &SessionDO, meta: &Meta, log: &[StoredEvent]) -> worker::Result<bool> {
    if meta.session.vault_ids.is_empty() {
        return Ok(false);
    }
    let db = D1::new(object.env.d1("DB")?);
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let checked = async {
        let Some(environment) = db.get_environment(&tenant, &meta.session.environment_id).await? else { return Ok(Vec::new()) };
        openma_core::vaults::unreachable_credential_errors(&db, &tenant, &meta.session, &environment, log).await
    };
    match checked.await {
        Ok(errors) if !errors.is_empty() => {
            crate::turn::emit_payloads(object, errors).await?;
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) => {
            worker::console_warn!("session {}: cannot check its credentials against its network policy: {e}", meta.session.id);
            Ok(false)
        }
    }
}
