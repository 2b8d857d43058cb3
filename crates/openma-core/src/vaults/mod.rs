//! Vaults and credentials: validation, the uniqueness key of a credential, and sealing
//! of its write-only secrets (each bound to its row and field).

use std::collections::BTreeMap;

use openma_types::vaults::{
    CreateCredentialRequest, CreateVaultRequest, Credential, CredentialAuth, CredentialAuthParams, CredentialAuthUpdate,
    CredentialNetworking, InjectionLocation, OAuthRefresh, TokenEndpointAuth, TokenEndpointAuthKind,
    TokenEndpointAuthParams, UpdateCredentialRequest, UpdateVaultRequest, Vault,
};
use openma_types::{Metadata, Timestamp};

use crate::error::{DomainError, DomainResult};
use crate::secrets::{Binding, SecretBox};
use crate::tenancy::TenantId;
use crate::validate;

mod service;
pub use service::{Vaults, announce_credential, env_credentials, live_credentials, placeholder, session_credentials, unreachable_credential_errors};

/// Active credentials a vault may hold.
pub const CREDENTIALS_PER_VAULT: i64 = 20;
const SECRET_MAX: usize = 16 * 1024;
const PURPOSE: &str = "vault_credential";

/// A credential with what only the server keeps: its sealed secrets by field, and the key
/// that must be unique among a vault's active credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCredential {
    pub credential: Credential,
    pub unique_key: String,
    pub secrets: BTreeMap<String, String>,
}

/// `scheme://host[:port]/path` lower-cased in scheme and host, default port and trailing
/// slash dropped: two spellings of one MCP server are one server.
pub fn normalize_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut authority = authority.to_ascii_lowercase();
    for (s, port) in [("https", ":443"), ("http", ":80")] {
        if scheme == s && authority.ends_with(port) {
            authority.truncate(authority.len() - port.len());
        }
    }
    format!("{scheme}://{authority}{}", path.trim_end_matches('/'))
}

pub fn new_vault(req: &CreateVaultRequest, id: String, now: Timestamp) -> DomainResult<Vault> {
    validate::length("display_name", &req.display_name, 1, 255)?;
    let metadata = req.metadata.clone().unwrap_or_default();
    validate::metadata(&metadata)?;
    Ok(Vault { id, tag: Default::default(), display_name: req.display_name.clone(), metadata, created_at: now, updated_at: now, archived_at: None })
}

pub fn apply_vault_update(current: &Vault, req: &UpdateVaultRequest, now: Timestamp) -> DomainResult<Vault> {
    if current.archived_at.is_some() {
        return Err(DomainError::invalid("archived vaults cannot be updated"));
    }
    let mut v = current.clone();
    match &req.display_name {
        None => {}
        Some(None) => return Err(DomainError::invalid("`display_name` cannot be cleared")),
        Some(Some(n)) => {
            validate::length("display_name", n, 1, 255)?;
            v.display_name = n.clone();
        }
    }
    if let Some(patch) = &req.metadata {
        v.metadata = match patch {
            Some(p) => validate::patch_metadata(&v.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    if v != *current {
        v.updated_at = now.strictly_after(current.updated_at);
    }
    Ok(v)
}

fn check_secret(field: &str, value: &str) -> DomainResult<()> {
    if value.is_empty() {
        return Err(DomainError::invalid(format!("`{field}` must not be empty")));
    }
    if value.len() > SECRET_MAX {
        return Err(DomainError::invalid(format!("`{field}` must be at most {SECRET_MAX} bytes")));
    }
    Ok(())
}

fn check_networking(n: &CredentialNetworking) -> DomainResult<()> {
    if let CredentialNetworking::Limited { allowed_hosts } = n {
        if allowed_hosts.is_empty() {
            return Err(DomainError::invalid("`networking.allowed_hosts` must name at least one host"));
        }
        for h in allowed_hosts {
            if h.parse::<std::net::Ipv4Addr>().is_err() {
                validate::hostname("networking.allowed_hosts", h, true)?;
            }
        }
    }
    Ok(())
}

/// A secret that may be substituted nowhere would be stored for nothing.
fn check_injection(loc: &InjectionLocation) -> DomainResult<()> {
    if loc.header || loc.body {
        Ok(())
    } else {
        Err(DomainError::invalid("`injection_location` must enable at least one of `header` and `body`"))
    }
}

fn check_env_name(name: &str) -> DomainResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(()) } else { Err(DomainError::invalid(format!("`secret_name` `{name}` must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))) }
}

fn token_auth(p: &TokenEndpointAuthParams) -> (TokenEndpointAuth, Option<&str>) {
    match p {
        TokenEndpointAuthParams::None => (TokenEndpointAuth { kind: TokenEndpointAuthKind::None }, None),
        TokenEndpointAuthParams::ClientSecretBasic { client_secret } => {
            (TokenEndpointAuth { kind: TokenEndpointAuthKind::ClientSecretBasic }, Some(client_secret.0.as_str()))
        }
        TokenEndpointAuthParams::ClientSecretPost { client_secret } => {
            (TokenEndpointAuth { kind: TokenEndpointAuthKind::ClientSecretPost }, Some(client_secret.0.as_str()))
        }
    }
}

/// Seals secrets of one credential.
pub struct Sealer<'a> {
    pub secrets: &'a SecretBox,
    pub tenant: &'a TenantId,
    pub credential_id: &'a str,
    pub nonce: &'a (dyn Fn() -> [u8; 12] + Sync),
}

impl Sealer<'_> {
    fn seal(&self, field: &str, value: &str) -> String {
        let at = Binding { purpose: PURPOSE, tenant: self.tenant, owner: self.credential_id, field };
        self.secrets.seal(at, value.as_bytes(), (self.nonce)())
    }
}

/// Opens one secret field of a stored credential (for the server's own use only).
pub fn open_secret(secrets: &SecretBox, tenant: &TenantId, c: &StoredCredential, field: &str) -> Option<String> {
    let sealed = c.secrets.get(field)?;
    let at = Binding { purpose: PURPOSE, tenant, owner: &c.credential.id, field };
    secrets.open(at, sealed).ok().and_then(|b| String::from_utf8(b).ok())
}

/// The credential with every sealed field re-sealed under `secrets`' current root (for
/// rotation); None when it holds no secrets.
pub fn reseal_credential(secrets: &SecretBox, tenant: &TenantId, c: &StoredCredential, nonce: &dyn Fn() -> [u8; 12]) -> Result<Option<StoredCredential>, crate::secrets::SecretError> {
    if c.secrets.is_empty() {
        return Ok(None);
    }
    let mut next = c.clone();
    for (field, sealed) in &c.secrets {
        let at = Binding { purpose: PURPOSE, tenant, owner: &c.credential.id, field };
        next.secrets.insert(field.clone(), secrets.reseal(at, sealed, nonce())?);
    }
    Ok(Some(next))
}

pub fn new_credential(
    req: &CreateCredentialRequest,
    vault_id: &str,
    now: Timestamp,
    sealer: &Sealer<'_>,
) -> DomainResult<StoredCredential> {
    if let Some(n) = &req.display_name {
        validate::length("display_name", n, 0, 255)?;
    }
    let metadata = req.metadata.clone().unwrap_or_default();
    validate::metadata(&metadata)?;
    let mut secrets = BTreeMap::new();
    let (auth, unique_key) = match &req.auth {
        CredentialAuthParams::StaticBearer { mcp_server_url, token } => {
            validate::http_url("auth.mcp_server_url", mcp_server_url)?;
            check_secret("auth.token", &token.0)?;
            secrets.insert("token".to_owned(), sealer.seal("token", &token.0));
            (CredentialAuth::StaticBearer { mcp_server_url: mcp_server_url.clone() }, format!("mcp:{}", normalize_url(mcp_server_url)))
        }
        CredentialAuthParams::McpOauth { mcp_server_url, access_token, expires_at, refresh } => {
            validate::http_url("auth.mcp_server_url", mcp_server_url)?;
            check_secret("auth.access_token", &access_token.0)?;
            if expires_at.is_some_and(|e| e <= now) {
                return Err(DomainError::invalid("`auth.expires_at` must be in the future"));
            }
            secrets.insert("access_token".to_owned(), sealer.seal("access_token", &access_token.0));
            let refresh = match refresh {
                None => None,
                Some(r) => {
                    validate::length("auth.refresh.client_id", &r.client_id, 1, 1024)?;
                    validate::http_url("auth.refresh.token_endpoint", &r.token_endpoint)?;
                    check_secret("auth.refresh.refresh_token", &r.refresh_token.0)?;
                    secrets.insert("refresh_token".to_owned(), sealer.seal("refresh_token", &r.refresh_token.0));
                    let (kind, client_secret) = token_auth(&r.token_endpoint_auth);
                    if let Some(cs) = client_secret {
                        check_secret("auth.refresh.token_endpoint_auth.client_secret", cs)?;
                        secrets.insert("client_secret".to_owned(), sealer.seal("client_secret", cs));
                    }
                    Some(OAuthRefresh {
                        client_id: r.client_id.clone(),
                        token_endpoint: r.token_endpoint.clone(),
                        token_endpoint_auth: kind,
                        resource: r.resource.clone(),
                        scope: r.scope.clone(),
                    })
                }
            };
            (
                CredentialAuth::McpOauth { mcp_server_url: mcp_server_url.clone(), expires_at: *expires_at, refresh },
                format!("mcp:{}", normalize_url(mcp_server_url)),
            )
        }
        CredentialAuthParams::EnvironmentVariable { secret_name, secret_value, networking, injection_location } => {
            check_env_name(secret_name)?;
            check_secret("auth.secret_value", &secret_value.0)?;
            check_networking(networking)?;
            secrets.insert("secret_value".to_owned(), sealer.seal("secret_value", &secret_value.0));
            let loc = injection_location.unwrap_or_default();
            let loc = InjectionLocation { header: loc.header.unwrap_or(true), body: loc.body.unwrap_or(false) };
            check_injection(&loc)?;
            (
                CredentialAuth::EnvironmentVariable { secret_name: secret_name.clone(), networking: networking.clone(), injection_location: loc },
                format!("env:{secret_name}"),
            )
        }
    };
    let credential = Credential {
        id: sealer.credential_id.to_owned(),
        tag: Default::default(),
        vault_id: vault_id.to_owned(),
        display_name: req.display_name.clone(),
        auth,
        metadata,
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    Ok(StoredCredential { credential, unique_key, secrets })
}

pub fn apply_credential_update(
    current: &StoredCredential,
    req: &UpdateCredentialRequest,
    now: Timestamp,
    sealer: &Sealer<'_>,
) -> DomainResult<StoredCredential> {
    if current.credential.archived_at.is_some() {
        return Err(DomainError::invalid("archived credentials cannot be updated"));
    }
    let mut next = current.clone();
    let c = &mut next.credential;
    if let Some(n) = &req.display_name {
        if let Some(n) = n {
            validate::length("display_name", n, 0, 255)?;
        }
        c.display_name = n.clone();
    }
    if let Some(patch) = &req.metadata {
        c.metadata = match patch {
            Some(p) => validate::patch_metadata(&c.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    let type_change = || DomainError::invalid("a credential's `auth.type` cannot change; archive it and create a new one");
    match (&req.auth, &mut c.auth) {
        (None, _) => {}
        (Some(CredentialAuthUpdate::StaticBearer { token }), CredentialAuth::StaticBearer { .. }) => {
            if let Some(t) = token {
                check_secret("auth.token", &t.0)?;
                next.secrets.insert("token".into(), sealer.seal("token", &t.0));
            }
        }
        (Some(CredentialAuthUpdate::McpOauth { access_token, expires_at, refresh }), CredentialAuth::McpOauth { expires_at: stored, refresh: stored_refresh, .. }) => {
            if expires_at.is_some_and(|e| e <= now) {
                return Err(DomainError::invalid("`auth.expires_at` must be in the future"));
            }
            if let Some(t) = access_token {
                check_secret("auth.access_token", &t.0)?;
                next.secrets.insert("access_token".into(), sealer.seal("access_token", &t.0));
            }
            // as documented: a new token sent without `expires_at` keeps the stored expiry
            if expires_at.is_some() {
                *stored = *expires_at;
            }
            if let Some(r) = refresh {
                let sr = stored_refresh.as_mut().ok_or_else(|| DomainError::invalid("this credential has no refresh configuration to update"))?;
                if let Some(t) = &r.refresh_token {
                    check_secret("auth.refresh.refresh_token", &t.0)?;
                    next.secrets.insert("refresh_token".into(), sealer.seal("refresh_token", &t.0));
                }
                if let Some(scope) = &r.scope {
                    sr.scope = scope.clone().filter(|s| !s.is_empty());
                }
                if let Some(auth) = &r.token_endpoint_auth {
                    let (kind, secret) = token_auth(auth);
                    if kind.kind == TokenEndpointAuthKind::None || sr.token_endpoint_auth.kind == TokenEndpointAuthKind::None {
                        return Err(DomainError::invalid("the token endpoint authentication method cannot change between none and client secrets"));
                    }
                    sr.token_endpoint_auth = kind;
                    if let Some(cs) = secret {
                        check_secret("auth.refresh.token_endpoint_auth.client_secret", cs)?;
                        next.secrets.insert("client_secret".into(), sealer.seal("client_secret", cs));
                    }
                }
            }
        }
        (Some(CredentialAuthUpdate::EnvironmentVariable { secret_value, networking, injection_location }), CredentialAuth::EnvironmentVariable { networking: n, injection_location: loc, .. }) => {
            if let Some(v) = secret_value {
                check_secret("auth.secret_value", &v.0)?;
                next.secrets.insert("secret_value".into(), sealer.seal("secret_value", &v.0));
            }
            if let Some(new) = networking {
                check_networking(new)?;
                *n = new.clone();
            }
            if let Some(l) = injection_location {
                loc.header = l.header.unwrap_or(loc.header);
                loc.body = l.body.unwrap_or(loc.body);
                check_injection(loc)?;
            }
        }
        _ => return Err(type_change()),
    }
    if next != *current {
        next.credential.updated_at = now.strictly_after(current.credential.updated_at);
    }
    Ok(next)
}

/// Stores tokens a refresh returned: a new access token (and, when the provider rotates
/// it, a new refresh token), with the expiry it announced.
pub fn apply_refreshed_tokens(
    current: &StoredCredential,
    access_token: &str,
    refresh_token: Option<&str>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
    sealer: &Sealer<'_>,
) -> DomainResult<StoredCredential> {
    let mut next = current.clone();
    let CredentialAuth::McpOauth { expires_at: stored, .. } = &mut next.credential.auth else {
        return Err(DomainError::invalid("only `mcp_oauth` credentials have tokens to refresh"));
    };
    *stored = expires_at;
    check_secret("access_token", access_token)?;
    next.secrets.insert("access_token".into(), sealer.seal("access_token", access_token));
    if let Some(r) = refresh_token {
        check_secret("refresh_token", r)?;
        next.secrets.insert("refresh_token".into(), sealer.seal("refresh_token", r));
    }
    next.credential.updated_at = now.strictly_after(current.credential.updated_at);
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise_to_one_server() {
        assert_eq!(normalize_url("HTTPS://MCP.Example.com:443/sse/"), "https://mcp.example.com/sse");
        assert_eq!(normalize_url("http://h:80"), "http://h");
        assert_eq!(normalize_url("http://h:8080/x"), "http://h:8080/x");
    }
}
