//! Tenants and API keys over the [`KeyStore`] port: creation, the operator's bootstrap
//! key, and authentication. Shared by the native server (through [`crate::Platform`])
//! and the Workers, which serve authentication from D1.

use crate::error::{DomainError, DomainResult, StoreError};
use crate::ports::{Clock, IdGen, KeyStore};
use crate::tenancy::{self, ApiKey, Tenant, TenantId};
use crate::validate;

/// How often `last_used_at` of an API key is written at most: authentication stays a
/// read on the hot path.
const KEY_TOUCH_INTERVAL_MICROS: i64 = 60 * 1_000_000;

/// What a request without a key is told (both transports named, as the SDKs and the
/// seed's curl examples use different ones).
pub const MISSING_KEY: &str = "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`";
/// What a request with an unknown or revoked key is told.
pub const INVALID_KEY: &str = "invalid API key";

/// The key a request presents: `x-api-key: <key>` first, else `Authorization: Bearer <key>`.
pub fn presented_key<'a>(x_api_key: Option<&'a str>, authorization: Option<&'a str>) -> Option<&'a str> {
    if let Some(v) = x_api_key {
        return Some(v.trim());
    }
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The tenant and key operations, bound to one set of adapters.
pub struct Keys<'a> {
    pub store: &'a dyn KeyStore,
    pub clock: &'a dyn Clock,
    pub ids: &'a dyn IdGen,
}

impl Keys<'_> {
    pub async fn create_tenant(&self, name: &str) -> DomainResult<Tenant> {
        tenancy::validate_tenant_name(name)?;
        let tenant = Tenant { id: TenantId::from_trusted(self.ids.new_id("tenant")), name: name.to_owned(), created_at: self.clock.now() };
        match self.store.insert_tenant(&tenant).await {
            Err(StoreError::Duplicate(_)) => Err(DomainError::conflict(format!("tenant `{name}` already exists"))),
            other => other.map(|_| tenant).map_err(Into::into),
        }
    }

    /// Returns the named tenant, creating it on first use.
    pub async fn ensure_tenant(&self, name: &str) -> DomainResult<Tenant> {
        if let Some(t) = self.store.find_tenant(name).await? {
            return Ok(t);
        }
        match self.create_tenant(name).await {
            Err(DomainError::Conflict { .. }) => {
                self.store.find_tenant(name).await?.ok_or_else(|| DomainError::not_found("tenant", name))
            }
            other => other,
        }
    }

    /// Issues a new key. The secret is returned once and never stored.
    pub async fn create_api_key(&self, tenant: &TenantId, name: &str) -> DomainResult<(ApiKey, String)> {
        let secret = self.ids.api_key_secret();
        let key = self.register_api_key(tenant, name, &secret).await?;
        Ok((key, secret))
    }

    /// Registers a key whose secret the operator chose (`OPENMA_BOOTSTRAP_API_KEY`);
    /// a key already registered is left as it is.
    pub async fn ensure_api_key(&self, tenant: &TenantId, name: &str, secret: &str) -> DomainResult<ApiKey> {
        if secret.len() < 16 {
            return Err(DomainError::invalid("an API key must be at least 16 characters"));
        }
        if let Some(k) = self.store.find_api_key_by_hash(&tenancy::hash_api_key(secret)).await? {
            if k.tenant_id != *tenant {
                return Err(DomainError::conflict("that API key is registered to another tenant"));
            }
            return Ok(k);
        }
        self.register_api_key(tenant, name, secret).await
    }

    async fn register_api_key(&self, tenant: &TenantId, name: &str, secret: &str) -> DomainResult<ApiKey> {
        validate::length("name", name, 1, 128)?;
        let key = ApiKey {
            id: self.ids.new_id("apikey"),
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            prefix: tenancy::display_prefix(secret),
            hash: tenancy::hash_api_key(secret),
            created_at: self.clock.now(),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.insert_api_key(&key).await?;
        Ok(key)
    }

    /// Finds the tenant (and the key's id) of a presented key, or `None` for an unknown
    /// or revoked key.
    pub async fn authenticate(&self, secret: &str) -> DomainResult<Option<(TenantId, String)>> {
        if secret.is_empty() || secret.len() > 256 {
            return Ok(None);
        }
        let Some(key) = self.store.find_api_key_by_hash(&tenancy::hash_api_key(secret)).await? else {
            return Ok(None);
        };
        if key.revoked_at.is_some() {
            return Ok(None);
        }
        let now = self.clock.now();
        let stale = key.last_used_at.is_none_or(|t| now.as_micros() - t.as_micros() > KEY_TOUCH_INTERVAL_MICROS);
        if stale {
            self.store.touch_api_key(&key.tenant_id, &key.id, now).await?;
        }
        Ok(Some((key.tenant_id, key.id)))
    }

    pub async fn list_api_keys(&self, tenant: &TenantId) -> DomainResult<Vec<ApiKey>> {
        Ok(self.store.list_api_keys(tenant).await?)
    }

    pub async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> DomainResult<()> {
        if self.store.revoke_api_key(tenant, id, self.clock.now()).await? {
            Ok(())
        } else {
            Err(DomainError::not_found("API key", id))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::presented_key;

    #[test]
    fn the_key_comes_from_x_api_key_first_then_a_bearer_token_only() {
        assert_eq!(presented_key(Some(" sk-a "), Some("Bearer sk-b")), Some("sk-a"));
        assert_eq!(presented_key(None, Some("Bearer sk-b")), Some("sk-b"));
        assert_eq!(presented_key(None, Some("bearer   sk-b ")), Some("sk-b"));
        assert_eq!(presented_key(None, Some("Basic sk-b")), None);
        assert_eq!(presented_key(None, Some("sk-b")), None);
        assert_eq!(presented_key(None, None), None);
    }
}
