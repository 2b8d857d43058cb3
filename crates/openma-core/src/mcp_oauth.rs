//! `mcp_oauth` credentials at work: refreshing an access token at its token endpoint (RFC
//! 6749 §6) and `mcp_oauth_validate` — probe the MCP server with the access token and,
//! when it is refused, exchange the refresh token and probe again. New tokens are stored
//! sealed; captured responses are scrubbed of the credential's secrets. The requests go
//! out through the [`OAuthHttp`] port: the native server's pinned client, or `fetch` in a
//! Worker, each refusing private destinations.

use openma_types::Timestamp;
use openma_types::vaults::{CapturedResponse, CredentialAuth, CredentialValidation, McpProbe, RefreshOutcome, RefreshStatus, ValidationStatus};
use serde_json::Value;

use crate::error::{DomainError, DomainResult};
use crate::mcp::{initialize_params, refresh_request, refreshed_tokens, rpc_message};
use crate::ports::{Announcer, VaultStore};
use crate::secrets::SecretBox;
use crate::vaults::{self, Sealer, StoredCredential};
use crate::TenantId;

/// Bytes of a captured response body kept.
const BODY_MAX: usize = 2048;

/// An answer to a POST.
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// POSTs for the OAuth flows.
#[async_trait::async_trait]
pub trait OAuthHttp: Send + Sync {
    /// The answer, whatever its status; `Err` when none came (refused destination,
    /// connection failure, timeout).
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<HttpAnswer, String>;
}

/// What the flows need besides the store: the root secret, the time, fresh nonces, and
/// where `vault_credential.refresh_failed` goes.
pub struct OAuth<'a> {
    pub store: &'a dyn VaultStore,
    pub secrets: &'a SecretBox,
    pub http: &'a dyn OAuthHttp,
    pub announcer: &'a dyn Announcer,
    pub now: Timestamp,
    pub nonce: &'a (dyn Fn() -> [u8; 12] + Sync),
}

enum Probe {
    Ok,
    Refused(CapturedResponse),
    Failed(Option<CapturedResponse>),
}

/// The answer with every secret replaced and the body cut to [`BODY_MAX`] bytes.
fn capture(a: HttpAnswer, secrets: &[String]) -> CapturedResponse {
    let mut body = a.body;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        body = body.replace(s.as_str(), "[redacted]");
    }
    let body_truncated = body.len() > BODY_MAX;
    if body_truncated {
        let mut end = BODY_MAX;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    CapturedResponse { status_code: a.status, content_type: a.content_type, body, body_truncated }
}

/// New tokens: access token, rotated refresh token, expiry.
type Tokens = (String, Option<String>, Option<Timestamp>);

impl OAuth<'_> {
    fn open(&self, tenant: &TenantId, c: &StoredCredential, field: &str) -> Option<String> {
        vaults::open_secret(self.secrets, tenant, c, field)
    }

    /// `initialize` with the token: accepted, refused (401/403), or failed.
    async fn probe(&self, server: &str, token: &str, secrets: &[String]) -> Probe {
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("accept", "application/json, text/event-stream".to_owned()),
            ("authorization", format!("Bearer {token}")),
        ];
        let body = rpc_message(Some(1), "initialize", initialize_params()).to_string();
        match self.http.post(server, &headers, &body).await {
            Ok(a) if (200..300).contains(&a.status) => Probe::Ok,
            Ok(a) if matches!(a.status, 401 | 403) => Probe::Refused(capture(a, secrets)),
            Ok(a) => Probe::Failed(Some(capture(a, secrets))),
            Err(_) => Probe::Failed(None),
        }
    }

    /// One exchange at the token endpoint.
    async fn exchange(&self, c: &StoredCredential, refresh_token: &str, client_secret: Option<&str>, secrets: &[String]) -> (RefreshOutcome, Option<Tokens>) {
        let outcome = |status, http_response| RefreshOutcome { status, http_response };
        let Some(request) = refresh_request(c, refresh_token, client_secret) else { return (outcome(RefreshStatus::NoRefreshToken, None), None) };
        let answer = match self.http.post(&request.url, &request.headers, &request.body).await {
            Ok(a) => a,
            Err(_) => return (outcome(RefreshStatus::ConnectError, None), None),
        };
        if !(200..300).contains(&answer.status) {
            return (outcome(RefreshStatus::Failed, Some(capture(answer, secrets))), None);
        }
        let json: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        match refreshed_tokens(&json, self.now) {
            Some(tokens) => (outcome(RefreshStatus::Succeeded, None), Some(tokens)),
            None => (outcome(RefreshStatus::Failed, None), None),
        }
    }

    /// Seals and stores the new tokens (a credential changed meanwhile keeps the stored
    /// version); the credential as refreshed.
    async fn keep(&self, tenant: &TenantId, stored: &StoredCredential, (access, rotated, expires): Tokens) -> DomainResult<StoredCredential> {
        let sealer = Sealer { secrets: self.secrets, tenant, credential_id: &stored.credential.id, nonce: self.nonce };
        let next = vaults::apply_refreshed_tokens(stored, &access, rotated.as_deref(), expires, self.now, &sealer)?;
        if !self.store.update_credential(tenant, &next, stored.credential.updated_at).await? {
            tracing::info!(credential_id = %stored.credential.id, "credential changed during a refresh; keeping the stored one");
        }
        Ok(next)
    }

    /// Refreshes the access token of a stored `mcp_oauth` credential and stores the new
    /// tokens; a failure is told to the tenant's webhook subscribers
    /// (`vault_credential.refresh_failed`) and returned as why.
    pub async fn refresh_stored(&self, tenant: &TenantId, stored: &StoredCredential) -> Result<StoredCredential, String> {
        let refresh_token = self.open(tenant, stored, "refresh_token").ok_or("the credential has no refresh token")?;
        let client_secret = self.open(tenant, stored, "client_secret");
        let all: Vec<String> = [self.open(tenant, stored, "access_token"), Some(refresh_token.clone()), client_secret.clone()].into_iter().flatten().collect();
        let (outcome, tokens) = self.exchange(stored, &refresh_token, client_secret.as_deref(), &all).await;
        let Some(tokens) = tokens else {
            let detail = match (outcome.status, outcome.http_response) {
                (RefreshStatus::ConnectError, _) => "the token endpoint could not be reached".to_owned(),
                (_, Some(r)) => format!("the token endpoint answered HTTP {}", r.status_code),
                (_, None) => "the token endpoint's answer held no access token".to_owned(),
            };
            let c = &stored.credential;
            vaults::announce_credential(self.announcer, tenant, "vault_credential.refresh_failed", &c.vault_id, &c.id).await;
            return Err(format!("refreshing the access token failed: {detail}"));
        };
        self.keep(tenant, stored, tokens).await.map_err(|e| format!("the refreshed tokens could not be stored: {e}"))
    }

    /// `mcp_oauth_validate`: is the credential's access token accepted by its MCP server,
    /// and, if not, does its refresh token get one that is.
    pub async fn validate(&self, tenant: &TenantId, vault_id: &str, id: &str) -> DomainResult<CredentialValidation> {
        let missing = || DomainError::not_found("credential", id);
        let stored = self.store.get_credential(tenant, vault_id, id).await?.ok_or_else(missing)?;
        let CredentialAuth::McpOauth { mcp_server_url, .. } = &stored.credential.auth else {
            return Err(DomainError::invalid("only `mcp_oauth` credentials can be validated"));
        };
        if stored.credential.archived_at.is_some() {
            return Err(DomainError::invalid("archived credentials cannot be validated"));
        }
        let (access, refresh_token, client_secret) =
            (self.open(tenant, &stored, "access_token"), self.open(tenant, &stored, "refresh_token"), self.open(tenant, &stored, "client_secret"));
        let all: Vec<String> = [&access, &refresh_token, &client_secret].into_iter().flatten().cloned().collect();
        let mut result = CredentialValidation {
            tag: Default::default(),
            credential_id: id.to_owned(),
            vault_id: vault_id.to_owned(),
            status: ValidationStatus::Unknown,
            has_refresh_token: refresh_token.is_some(),
            mcp_probe: None,
            refresh: None,
            validated_at: self.now,
        };
        let initialize = |http_response| Some(McpProbe { method: "initialize".into(), http_response });
        let probe = match &access {
            Some(token) => self.probe(mcp_server_url, token, &all).await,
            None => Probe::Refused(CapturedResponse { status_code: 0, content_type: String::new(), body: String::new(), body_truncated: false }),
        };
        match probe {
            Probe::Ok => result.status = ValidationStatus::Valid,
            Probe::Failed(resp) => result.mcp_probe = initialize(resp),
            Probe::Refused(resp) => {
                let Some(rt) = &refresh_token else {
                    result.status = ValidationStatus::Invalid;
                    result.mcp_probe = initialize(Some(resp).filter(|r| r.status_code != 0));
                    result.refresh = Some(RefreshOutcome { status: RefreshStatus::NoRefreshToken, http_response: None });
                    return Ok(result);
                };
                let (outcome, tokens) = self.exchange(&stored, rt, client_secret.as_deref(), &all).await;
                result.status = match outcome.status {
                    RefreshStatus::ConnectError => ValidationStatus::Unknown,
                    _ => ValidationStatus::Invalid,
                };
                result.refresh = Some(outcome);
                if let Some(tokens) = tokens {
                    let new_access = tokens.0.clone();
                    self.keep(tenant, &stored, tokens).await?;
                    let mut secrets_now = all.clone();
                    secrets_now.push(new_access.clone());
                    match self.probe(mcp_server_url, &new_access, &secrets_now).await {
                        Probe::Ok => result.status = ValidationStatus::Valid,
                        Probe::Refused(r) => {
                            result.status = ValidationStatus::Invalid;
                            result.mcp_probe = initialize(Some(r));
                        }
                        Probe::Failed(r) => {
                            result.status = ValidationStatus::Unknown;
                            result.mcp_probe = initialize(r);
                        }
                    }
                } else if let Some(r) = Some(resp).filter(|r| r.status_code != 0) {
                    result.mcp_probe = initialize(Some(r));
                }
            }
        }
        Ok(result)
    }
}
