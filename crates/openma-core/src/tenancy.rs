//! Tenants and API keys. Every store call takes a [`TenantId`], so no query can forget
//! whose data it touches; keys are kept only as SHA-256 hashes.

use openma_types::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The tenant a request acts for. Obtained from authentication or an admin lookup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantId(String);

impl TenantId {
    /// Wraps an id read from a trusted source (the store, or an authenticated key).
    pub fn from_trusted(id: impl Into<String>) -> Self {
        TenantId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

/// Operator-set quotas of a tenant (all optional).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// Spend this calendar month (UTC) above which a warning is given, in micro-dollars.
    pub monthly_soft_micros: Option<i64>,
    /// Spend this month above which new sessions and new turns are refused (402).
    pub monthly_hard_micros: Option<i64>,
    /// Sessions that may be running at once; more new turns wait (429).
    pub max_running_sessions: Option<i64>,
    /// Sandboxes that may run at once; a turn that would start one more waits (429).
    #[serde(default)]
    pub max_running_sandboxes: Option<i64>,
}

/// The name of the tenant that embedded mode and `OPENMA_BOOTSTRAP_API_KEY` use.
pub const DEFAULT_TENANT: &str = "default";

/// A stored API key: never the key itself, only its hash and a display prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    /// The first characters of the key, enough to recognise it in a list.
    pub prefix: String,
    pub hash: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Every key we issue starts with this, so scanners and people can recognise one.
pub const API_KEY_PREFIX: &str = "sk-oma-";

/// Hashes an API key for storage and lookup. Keys carry ≥ 192 bits of entropy, so a
/// fast hash is safe and keeps authentication an indexed equality lookup.
pub fn hash_api_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The part of a key shown in listings.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(API_KEY_PREFIX.len() + 6).collect()
}

/// Tenant names: 1–64 of `[a-z0-9_-]`, so they are safe in URLs, logs and shells.
pub fn validate_tenant_name(name: &str) -> Result<(), crate::DomainError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(crate::DomainError::invalid(format!(
            "tenant name `{name}` must be 1-64 characters of a-z, 0-9, `-` and `_`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_hash_is_lower_hex_sha256() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tenant_names_are_restricted() {
        assert!(validate_tenant_name("acme-2").is_ok());
        assert!(validate_tenant_name("").is_err());
        assert!(validate_tenant_name("Acme").is_err());
        assert!(validate_tenant_name("a b").is_err());
    }
}
