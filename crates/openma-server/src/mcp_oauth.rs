//! `mcp_oauth_validate`: probes an MCP server with a credential's access token and, when
//! the server refuses it, exchanges the refresh token at the token endpoint (storing the
//! new tokens sealed). Every outbound request goes through the same public-address guard
//! as `web_fetch`; captured responses are scrubbed of the credential's secrets.

use std::time::Duration;

use openma_core::vaults::{self, Sealer, StoredCredential};
use openma_core::{DomainError, Platform, TenantId};
use openma_types::Timestamp;
use openma_types::vaults::{
    CapturedResponse, CredentialAuth, CredentialValidation, McpProbe, RefreshOutcome, RefreshStatus, TokenEndpointAuthKind,
    ValidationStatus,
};
use reqwest::Url;
use serde_json::{Value, json};

use crate::tools::web::pinned_client;

const TIMEOUT: Duration = Duration::from_secs(15);
const BODY_MAX: usize = 2048;

/// Settings of the validator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validator {
    /// For tests against local servers only.
    pub allow_private: bool,
}

enum Probe {
    Ok,
    Refused(CapturedResponse),
    Failed(Option<CapturedResponse>),
}

async fn capture(resp: reqwest::Response, secrets: &[String]) -> CapturedResponse {
    let status_code = resp.status().as_u16();
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = resp.text().await.unwrap_or_default();
    let mut body = text.clone();
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
    CapturedResponse { status_code, content_type, body, body_truncated }
}

impl Validator {
    async fn probe(&self, server: &str, token: &str, secrets: &[String]) -> Probe {
        let Ok(url) = Url::parse(server) else { return Probe::Failed(None) };
        let client = match pinned_client(&url, self.allow_private, TIMEOUT).await {
            Ok(c) => c,
            Err(_) => return Probe::Failed(None),
        };
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "openma", "version": env!("CARGO_PKG_VERSION")}}});
        let resp = client
            .post(url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream")
            .json(&initialize)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => Probe::Ok,
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Probe::Refused(capture(r, secrets).await),
            Ok(r) => Probe::Failed(Some(capture(r, secrets).await)),
            Err(_) => Probe::Failed(None),
        }
    }

    /// Exchanges the refresh token; on success returns (access, rotated refresh, expiry).
    async fn refresh(
        &self,
        c: &StoredCredential,
        refresh_token: &str,
        client_secret: Option<&str>,
        secrets: &[String],
        now: Timestamp,
    ) -> (RefreshOutcome, Option<(String, Option<String>, Option<Timestamp>)>) {
        let CredentialAuth::McpOauth { refresh: Some(r), .. } = &c.credential.auth else {
            return (RefreshOutcome { status: RefreshStatus::NoRefreshToken, http_response: None }, None);
        };
        let connect_error = (RefreshOutcome { status: RefreshStatus::ConnectError, http_response: None }, None);
        let Ok(url) = Url::parse(&r.token_endpoint) else { return connect_error };
        let Ok(client) = pinned_client(&url, self.allow_private, TIMEOUT).await else { return connect_error };
        let mut form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
        let mut req = client.post(url);
        match (r.token_endpoint_auth.kind, client_secret) {
            (TokenEndpointAuthKind::ClientSecretBasic, Some(s)) => req = req.basic_auth(&r.client_id, Some(s)),
            (TokenEndpointAuthKind::ClientSecretPost, Some(s)) => {
                form.push(("client_id", r.client_id.clone()));
                form.push(("client_secret", s.to_owned()));
            }
            _ => form.push(("client_id", r.client_id.clone())),
        }
        if let Some(scope) = &r.scope {
            form.push(("scope", scope.clone()));
        }
        if let Some(resource) = &r.resource {
            form.push(("resource", resource.clone()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str()))).finish();
        let resp = req.header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body).send().await;
        let resp = match resp {
            Ok(r) => r,
            Err(_) => return connect_error,
        };
        if !resp.status().is_success() {
            return (RefreshOutcome { status: RefreshStatus::Failed, http_response: Some(capture(resp, secrets).await) }, None);
        }
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        let Some(access) = json.get("access_token").and_then(Value::as_str) else {
            return (RefreshOutcome { status: RefreshStatus::Failed, http_response: None }, None);
        };
        let rotated = json.get("refresh_token").and_then(Value::as_str).map(str::to_owned);
        let expires = json
            .get("expires_in")
            .and_then(Value::as_i64)
            .map(|s| Timestamp::from_micros(now.as_micros() + s * 1_000_000));
        (RefreshOutcome { status: RefreshStatus::Succeeded, http_response: None }, Some((access.to_owned(), rotated, expires)))
    }

    /// Runs the refresh grant for a stored `mcp_oauth` credential and stores the new tokens
    /// sealed. Returns the updated credential; the error says why in words free of secrets.
    pub(crate) async fn refresh_stored(&self, platform: &Platform, tenant: &TenantId, stored: &StoredCredential) -> Result<StoredCredential, String> {
        let secrets = platform.secrets.as_deref().ok_or("secrets are not available: the server has no root secret")?;
        let open = |field| vaults::open_secret(secrets, tenant, stored, field);
        let refresh_token = open("refresh_token").ok_or("the credential has no refresh token")?;
        let client_secret = open("client_secret");
        let all: Vec<String> = [open("access_token"), Some(refresh_token.clone()), client_secret.clone()].into_iter().flatten().collect();
        let now = platform.clock.now();
        let (outcome, tokens) = self.refresh(stored, &refresh_token, client_secret.as_deref(), &all, now).await;
        let Some((access, rotated, expires)) = tokens else {
            let detail = match (outcome.status, outcome.http_response) {
                (RefreshStatus::ConnectError, _) => "the token endpoint could not be reached".to_owned(),
                (_, Some(r)) => format!("the token endpoint answered HTTP {}", r.status_code),
                (_, None) => "the token endpoint's answer held no access token".to_owned(),
            };
            let c = &stored.credential;
            platform.announce_credential(tenant, "vault_credential.refresh_failed", &c.vault_id, &c.id).await;
            return Err(format!("refreshing the access token failed: {detail}"));
        };
        let nonce = || platform.ids.nonce();
        let sealer = Sealer { secrets, tenant, credential_id: &stored.credential.id, nonce: &nonce };
        let next = vaults::apply_refreshed_tokens(stored, &access, rotated.as_deref(), expires, now, &sealer).map_err(|e| e.to_string())?;
        match platform.store.update_credential(tenant, &next, stored.credential.updated_at).await {
            Ok(true) => {}
            // changed meanwhile (rotated through the API, or refreshed by another session):
            // this token still works for now; the next look-up reads the stored one
            Ok(false) => tracing::info!(credential_id = %stored.credential.id, "credential changed during a refresh; keeping the stored one"),
            Err(e) => return Err(format!("the refreshed tokens could not be stored: {e}")),
        }
        Ok(next)
    }

    pub async fn validate(&self, platform: &Platform, tenant: &TenantId, vault_id: &str, id: &str) -> Result<CredentialValidation, DomainError> {
        let missing = || DomainError::not_found("credential", id);
        let stored = platform.store.get_credential(tenant, vault_id, id).await?.ok_or_else(missing)?;
        let CredentialAuth::McpOauth { mcp_server_url, .. } = &stored.credential.auth else {
            return Err(DomainError::invalid("only `mcp_oauth` credentials can be validated"));
        };
        if stored.credential.archived_at.is_some() {
            return Err(DomainError::invalid("archived credentials cannot be validated"));
        }
        let secrets = platform.secrets.as_deref().ok_or_else(|| DomainError::invalid("secrets are not available"))?;
        let open = |field| vaults::open_secret(secrets, tenant, &stored, field);
        let (access, refresh_token, client_secret) = (open("access_token"), open("refresh_token"), open("client_secret"));
        let all: Vec<String> = [&access, &refresh_token, &client_secret].into_iter().flatten().cloned().collect();
        let now = platform.clock.now();
        let mut result = CredentialValidation {
            tag: Default::default(),
            credential_id: id.to_owned(),
            vault_id: vault_id.to_owned(),
            status: ValidationStatus::Unknown,
            has_refresh_token: refresh_token.is_some(),
            mcp_probe: None,
            refresh: None,
            validated_at: now,
        };
        let probe = match &access {
            Some(token) => self.probe(mcp_server_url, token, &all).await,
            None => Probe::Refused(CapturedResponse { status_code: 0, content_type: String::new(), body: String::new(), body_truncated: false }),
        };
        match probe {
            Probe::Ok => result.status = ValidationStatus::Valid,
            Probe::Failed(resp) => {
                result.mcp_probe = Some(McpProbe { method: "initialize".into(), http_response: resp });
            }
            Probe::Refused(resp) => {
                let Some(rt) = &refresh_token else {
                    result.status = ValidationStatus::Invalid;
                    result.mcp_probe = Some(McpProbe { method: "initialize".into(), http_response: Some(resp).filter(|r| r.status_code != 0) });
                    result.refresh = Some(RefreshOutcome { status: RefreshStatus::NoRefreshToken, http_response: None });
                    return Ok(result);
                };
                let (outcome, tokens) = self.refresh(&stored, rt, client_secret.as_deref(), &all, now).await;
                result.status = match outcome.status {
                    RefreshStatus::ConnectError => ValidationStatus::Unknown,
                    _ => ValidationStatus::Invalid,
                };
                result.refresh = Some(outcome);
                if let Some((new_access, rotated, expires)) = tokens {
                    let nonce = || platform.ids.nonce();
                    let sealer = Sealer { secrets, tenant, credential_id: id, nonce: &nonce };
                    let next = vaults::apply_refreshed_tokens(&stored, &new_access, rotated.as_deref(), expires, now, &sealer)?;
                    platform.store.update_credential(tenant, &next, stored.credential.updated_at).await?;
                    let mut secrets_now = all.clone();
                    secrets_now.push(new_access.clone());
                    match self.probe(mcp_server_url, &new_access, &secrets_now).await {
                        Probe::Ok => {
                            result.status = ValidationStatus::Valid;
                        }
                        Probe::Refused(r) => {
                            result.status = ValidationStatus::Invalid;
                            result.mcp_probe = Some(McpProbe { method: "initialize".into(), http_response: Some(r) });
                        }
                        Probe::Failed(r) => {
                            result.status = ValidationStatus::Unknown;
                            result.mcp_probe = Some(McpProbe { method: "initialize".into(), http_response: r });
                        }
                    }
                } else if let Some(r) = Some(resp).filter(|r| r.status_code != 0) {
                    result.mcp_probe = Some(McpProbe { method: "initialize".into(), http_response: Some(r) });
                }
            }
        }
        Ok(result)
    }
}
