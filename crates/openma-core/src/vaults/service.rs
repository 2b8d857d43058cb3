//! The vault verbs over the [`VaultStore`] port: vaults, and credentials whose secrets are
//! sealed with the root secret before they reach the store and never leave it again.
//! Shared by the native server (through [`crate::Platform`]) and the Workers, on D1.

use openma_types::vaults::{Credential, CreateCredentialRequest, CreateVaultRequest, UpdateCredentialRequest, UpdateVaultRequest, Vault};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::paging::{MAX_LIMIT, Page};
use crate::platform::{ListParams, UPDATE_ATTEMPTS, list_query, position_of};
use crate::ports::{Announcer, Clock, IdGen, ListQuery, Order, Position, TimeRange, VaultStore};
use crate::secrets::SecretBox;
use crate::tenancy::TenantId;
use crate::validate;

/// Announces a `vault_credential.*` event: its `data` names the vault too.
pub async fn announce_credential(announcer: &dyn Announcer, tenant: &TenantId, kind: &str, vault_id: &str, credential_id: &str) {
    let extra = serde_json::Map::from_iter([("vault_id".to_owned(), serde_json::Value::from(vault_id))]);
    announcer.announce_with(tenant, kind, credential_id, extra).await
}

/// The active `environment_variable` credentials of the vaults, the first of each
/// `secret_name` in the order the vaults are listed: what a session's sandbox gets as
/// environment variables.
pub async fn env_credentials(store: &dyn VaultStore, tenant: &TenantId, vault_ids: &[String]) -> DomainResult<Vec<super::StoredCredential>> {
    use openma_types::vaults::CredentialAuth;
    let mut out: Vec<super::StoredCredential> = Vec::new();
    for c in live_credentials(store, tenant, vault_ids).await? {
        if let CredentialAuth::EnvironmentVariable { secret_name, .. } = &c.credential.auth
            && !out.iter().any(|o| matches!(&o.credential.auth, CredentialAuth::EnvironmentVariable { secret_name: n, .. } if n == secret_name))
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// The opaque value a sandbox sees instead of a credential's secret: stable for the pair
/// (session, credential), so a rotated secret needs no new placeholder, and of no use
/// outside the egress proxy.
pub fn placeholder(session_id: &str, credential_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("openma-egress-placeholder\0{session_id}\0{credential_id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("openma_placeholder_{hex}")
}

/// What a session's sandbox holds of its vaults' `environment_variable` credentials: each
/// variable set to its placeholder, and for the egress proxy each secret (opened with the
/// root secret; one that does not open is left out, so its placeholder goes as it is) with
/// the hosts and the locations it may be put in.
pub async fn session_credentials(
    store: &dyn VaultStore,
    secrets: Option<&SecretBox>,
    tenant: &TenantId,
    session_id: &str,
    vault_ids: &[String],
) -> DomainResult<openma_types::sandbox::SessionCredentials> {
    use openma_types::sandbox::{CredentialSubstitution, CredentialVariable, SessionCredentials};
    use openma_types::vaults::{CredentialAuth, CredentialNetworking};
    let mut out = SessionCredentials::default();
    if vault_ids.is_empty() {
        return Ok(out);
    }
    for c in env_credentials(store, tenant, vault_ids).await? {
        let CredentialAuth::EnvironmentVariable { secret_name, networking, injection_location, .. } = &c.credential.auth else { continue };
        let value = placeholder(session_id, &c.credential.id);
        if let Some(secret) = secrets.and_then(|s| super::open_secret(s, tenant, &c, "secret_value")) {
            out.substitutions.push(CredentialSubstitution {
                placeholder: value.clone(),
                secret,
                hosts: match networking {
                    CredentialNetworking::Unrestricted => None,
                    CredentialNetworking::Limited { allowed_hosts } => Some(allowed_hosts.clone()),
                },
                header: injection_location.header,
                body: injection_location.body,
            });
        }
        out.variables.push(CredentialVariable { name: secret_name.clone(), value });
    }
    Ok(out)
}

/// `credential_host_unreachable_error` session errors, one per `environment_variable`
/// credential whose `allowed_hosts` name a host the session's environment does not let its
/// sandbox reach (its secret could never be used), less those `log` reports already: what a
/// turn's start reports, once per credential and session.
pub async fn unreachable_credential_errors(
    store: &dyn VaultStore,
    tenant: &TenantId,
    session: &openma_types::sessions::Session,
    environment: &openma_types::environments::Environment,
    log: &[crate::ports::StoredEvent],
) -> DomainResult<Vec<openma_types::events::EventPayload>> {
    use openma_types::environments::EnvironmentConfig;
    use openma_types::events::{EventPayload, RetryStatus, SessionErrorObject};
    use openma_types::vaults::{CredentialAuth, CredentialNetworking};
    const KIND: &str = "credential_host_unreachable_error";
    if session.vault_ids.is_empty() {
        return Ok(Vec::new());
    }
    let EnvironmentConfig::Cloud(config) = &environment.config;
    let policy = crate::egress_policy::EgressPolicy::for_session(Some(&config.networking), &session.agent.mcp_servers);
    let reported: Vec<&str> = log
        .iter()
        .filter_map(|e| match &e.event.payload {
            EventPayload::SessionError { error } if error.kind == KIND => error.credential_id.as_deref(),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for c in env_credentials(store, tenant, &session.vault_ids).await? {
        let CredentialAuth::EnvironmentVariable { secret_name, networking: CredentialNetworking::Limited { allowed_hosts }, .. } = &c.credential.auth else {
            continue;
        };
        if reported.contains(&c.credential.id.as_str()) {
            continue;
        }
        let refused: Vec<&str> = allowed_hosts.iter().filter(|h| policy.check_host(h.trim_start_matches("*.")).is_err()).map(String::as_str).collect();
        if !refused.is_empty() {
            let message = format!("credential `{secret_name}` may be sent to {}, which the environment's network policy does not permit", refused.join(", "));
            let mut error = SessionErrorObject::new(KIND, message, RetryStatus::Exhausted);
            error.credential_id = Some(c.credential.id.clone());
            error.vault_id = Some(c.credential.vault_id.clone());
            out.push(EventPayload::SessionError { error });
        }
    }
    Ok(out)
}

/// The live (unarchived) credentials of `vault_ids`, vault by vault in the order given,
/// each vault's oldest first.
pub async fn live_credentials(store: &dyn VaultStore, tenant: &TenantId, vault_ids: &[String]) -> Result<Vec<super::StoredCredential>, crate::error::StoreError> {
    let mut out = Vec::new();
    for vault_id in vault_ids {
        let mut after = None;
        loop {
            let q = ListQuery { limit: 100, order: Order::Asc, after: after.take(), include_archived: false, created: TimeRange::default() };
            let page = store.list_credentials(tenant, vault_id, &q).await?;
            let next = match page.last() {
                Some(c) if page.len() == 100 => Some(Position { created_at: c.credential.created_at.as_micros(), id: c.credential.id.clone() }),
                _ => None,
            };
            out.extend(page.into_iter().filter(|c| c.credential.archived_at.is_none()));
            match next {
                Some(p) => after = Some(p),
                None => break,
            }
        }
    }
    Ok(out)
}

/// The vault operations, bound to one set of adapters.
pub struct Vaults<'a> {
    pub store: &'a dyn VaultStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
    /// Seals credential secrets; None: a deployment without a root secret refuses them.
    pub secrets: Option<&'a SecretBox>,
    pub announcer: &'a dyn Announcer,
}

impl Vaults<'_> {
    fn secret_box(&self) -> DomainResult<&SecretBox> {
        self.secrets.ok_or_else(|| DomainError::invalid("secrets are not available: the server has no root secret"))
    }

    async fn announce_credential(&self, tenant: &TenantId, kind: &str, vault_id: &str, credential_id: &str) {
        announce_credential(self.announcer, tenant, kind, vault_id, credential_id).await
    }

    /// Re-seals every credential secret of the tenant under `secrets`' current root (the
    /// step of `openma secrets rotate` for vaults). Returns how many credentials changed.
    pub async fn reseal_credentials(&self, tenant: &TenantId, secrets: &SecretBox) -> DomainResult<usize> {
        let mut done = 0;
        let all = |after: Option<Position>| ListQuery { limit: 100, order: Order::Asc, after, include_archived: true, created: TimeRange::default() };
        let mut vault_after = None;
        loop {
            let vaults = self.store.list_vaults(tenant, &all(vault_after.take())).await?;
            for v in &vaults {
                let mut cred_after = None;
                loop {
                    let creds = self.store.list_credentials(tenant, &v.id, &all(cred_after.take())).await?;
                    for c in &creds {
                        done += self.reseal_credential(tenant, secrets, c.clone()).await?;
                    }
                    match creds.last() {
                        Some(c) if creds.len() == 100 => cred_after = Some(position_of(c.credential.created_at, &c.credential.id)),
                        _ => break,
                    }
                }
            }
            match vaults.last() {
                Some(v) if vaults.len() == 100 => vault_after = Some(position_of(v.created_at, &v.id)),
                _ => return Ok(done),
            }
        }
    }

    async fn reseal_credential(&self, tenant: &TenantId, secrets: &SecretBox, mut current: super::StoredCredential) -> DomainResult<usize> {
        let nonce = || self.ids.nonce();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(next) = super::reseal_credential(secrets, tenant, &current, &nonce)
                .map_err(|e| DomainError::invalid(format!("credential `{}`: {e}", current.credential.id)))?
            else {
                return Ok(0);
            };
            // guarded by the unchanged `updated_at`: a re-seal is not a change clients see
            if self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                return Ok(1);
            }
            match self.store.get_credential(tenant, &current.credential.vault_id, &current.credential.id).await? {
                Some(c) => current = c,
                None => return Ok(0),
            }
        }
        Err(DomainError::conflict(format!("credential `{}` is being changed concurrently; retry", current.credential.id)))
    }

    pub async fn create_vault(&self, tenant: &TenantId, req: &CreateVaultRequest) -> DomainResult<Vault> {
        let v = super::new_vault(req, self.ids.new_id("vlt"), self.clock.now())?;
        self.store.insert_vault(tenant, &v).await?;
        self.announcer.announce(tenant, "vault.created", &v.id).await;
        Ok(v)
    }

    pub async fn get_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<Vault> {
        let missing = || DomainError::not_found("vault", id);
        if !validate::looks_like_id(id, "vlt_") {
            return Err(missing());
        }
        self.store.get_vault(tenant, id).await?.ok_or_else(missing)
    }

    pub async fn update_vault(&self, tenant: &TenantId, id: &str, req: &UpdateVaultRequest) -> DomainResult<Vault> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_vault(tenant, id).await?;
            let next = super::apply_vault_update(&current, req, self.clock.now())?;
            if next == current || self.store.update_vault(tenant, &next, current.updated_at).await? {
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("vault `{id}` is being changed concurrently; retry")))
    }

    /// Archives a vault and every credential in it; their secrets are purged.
    pub async fn archive_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<Vault> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.get_vault(tenant, id).await?;
            if current.archived_at.is_some() {
                return Ok(current);
            }
            let now = self.clock.now().strictly_after(current.updated_at);
            let mut next = current.clone();
            next.archived_at = Some(now);
            next.updated_at = now;
            if self.store.update_vault(tenant, &next, current.updated_at).await? {
                self.announcer.announce(tenant, "vault.archived", id).await;
                return Ok(next);
            }
        }
        Err(DomainError::conflict(format!("vault `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_vault(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if !validate::looks_like_id(id, "vlt_") || !self.store.delete_vault(tenant, id).await? {
            return Err(DomainError::not_found("vault", id));
        }
        self.announcer.announce(tenant, "vault.deleted", id).await;
        Ok(())
    }

    pub async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> DomainResult<Page<Vault>> {
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_vaults(tenant, &query).await?;
        Ok(req.finish(rows, |v| position_of(v.created_at, &v.id)))
    }

    pub async fn create_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        req: &CreateCredentialRequest,
    ) -> DomainResult<Credential> {
        let vault = self.get_vault(tenant, vault_id).await?;
        if vault.archived_at.is_some() {
            return Err(DomainError::invalid(format!("vault `{vault_id}` is archived")));
        }
        let id = self.ids.new_id("vcrd");
        let nonce = || self.ids.nonce();
        let sealer = super::Sealer { secrets: self.secret_box()?, tenant, credential_id: &id, nonce: &nonce };
        let stored = super::new_credential(req, vault_id, self.clock.now(), &sealer)?;
        match self.store.insert_credential(tenant, &stored, super::CREDENTIALS_PER_VAULT).await {
            Ok(true) => {
                self.announce_credential(tenant, "vault_credential.created", vault_id, &id).await;
                Ok(stored.credential)
            }
            Ok(false) => Err(DomainError::invalid(format!(
                "vault `{vault_id}` already holds {} active credentials",
                super::CREDENTIALS_PER_VAULT
            ))),
            Err(StoreError::Duplicate(_)) => Err(DomainError::conflict(
                "an active credential for this MCP server or environment variable already exists in this vault",
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn load_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<super::StoredCredential> {
        let missing = || DomainError::not_found("credential", id);
        if !validate::looks_like_id(vault_id, "vlt_") || !validate::looks_like_id(id, "vcrd_") {
            return Err(missing());
        }
        self.store.get_credential(tenant, vault_id, id).await?.ok_or_else(missing)
    }

    pub async fn get_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<Credential> {
        Ok(self.load_credential(tenant, vault_id, id).await?.credential)
    }

    pub async fn update_credential(
        &self,
        tenant: &TenantId,
        vault_id: &str,
        id: &str,
        req: &UpdateCredentialRequest,
    ) -> DomainResult<Credential> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_credential(tenant, vault_id, id).await?;
            let nonce = || self.ids.nonce();
            let sealer = super::Sealer { secrets: self.secret_box()?, tenant, credential_id: id, nonce: &nonce };
            let next = super::apply_credential_update(&current, req, self.clock.now(), &sealer)?;
            if next == current || self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                return Ok(next.credential);
            }
        }
        Err(DomainError::conflict(format!("credential `{id}` is being changed concurrently; retry")))
    }

    /// Archives a credential; its secrets are purged for good.
    pub async fn archive_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<Credential> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load_credential(tenant, vault_id, id).await?;
            if current.credential.archived_at.is_some() {
                return Ok(current.credential);
            }
            let now = self.clock.now().strictly_after(current.credential.updated_at);
            let mut next = current.clone();
            next.credential.archived_at = Some(now);
            next.credential.updated_at = now;
            next.secrets.clear();
            if self.store.update_credential(tenant, &next, current.credential.updated_at).await? {
                self.announce_credential(tenant, "vault_credential.archived", vault_id, id).await;
                return Ok(next.credential);
            }
        }
        Err(DomainError::conflict(format!("credential `{id}` is being changed concurrently; retry")))
    }

    pub async fn delete_credential(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<()> {
        self.load_credential(tenant, vault_id, id).await?;
        if !self.store.delete_credential(tenant, vault_id, id).await? {
            return Err(DomainError::not_found("credential", id));
        }
        self.announce_credential(tenant, "vault_credential.deleted", vault_id, id).await;
        Ok(())
    }

    pub async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> DomainResult<Page<Credential>> {
        self.get_vault(tenant, vault_id).await?;
        let (req, query) = list_query(p, Order::Desc, MAX_LIMIT)?;
        let rows = self.store.list_credentials(tenant, vault_id, &query).await?;
        Ok(req.finish(rows, |c| position_of(c.credential.created_at, &c.credential.id)).map(|c| c.credential))
    }
}
