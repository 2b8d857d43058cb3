//! The sessions' `environment_variable` credentials as the control plane sent them
//! (`PUT /v1/sessions/{id}/credentials`), for the egress proxy to put in place of their
//! placeholders. Held in this process's memory only: never written to the session's
//! directory, a log line or an answer. A restarted server holds none until the control plane
//! sends them again (it does before the next tool, as it lays the session's mounts).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openma_sandbox::SandboxConfig;
use openma_sandbox::intercept::{CredentialSource, Substitution};

/// By session id.
#[derive(Default)]
pub struct HeldCredentials {
    by_session: RwLock<HashMap<String, Vec<Substitution>>>,
}

impl HeldCredentials {
    /// Credentials for the sandboxes `config` will make: their egress proxy asks these.
    pub fn install(config: &mut SandboxConfig) -> Arc<HeldCredentials> {
        let held = Arc::new(HeldCredentials::default());
        config.egress.credentials = Some(held.clone());
        held
    }

    /// Replaces the session's credentials (none: forgets them).
    pub fn set(&self, session_id: &str, subs: Vec<Substitution>) {
        let mut map = self.by_session.write().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() {
            map.remove(session_id);
        } else {
            map.insert(session_id.to_owned(), subs);
        }
    }
}

#[async_trait::async_trait]
impl CredentialSource for HeldCredentials {
    async fn substitutions(&self, session_id: &str) -> Vec<Substitution> {
        self.by_session.read().unwrap_or_else(|e| e.into_inner()).get(session_id).cloned().unwrap_or_default()
    }
}
