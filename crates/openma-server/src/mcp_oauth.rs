//! `mcp_oauth_validate` and token refreshes (the core's `openma_core::mcp_oauth`) over this
//! server's HTTP client: every outbound request goes through the same public-address guard
//! as `web_fetch`, pinned to the address it checked.

use std::time::Duration;

use openma_core::mcp_oauth::{HttpAnswer, OAuth, OAuthHttp};
use openma_core::vaults::StoredCredential;
use openma_core::{DomainError, Platform, TenantId};
use openma_types::vaults::CredentialValidation;
use reqwest::Url;

use crate::tools::web::pinned_client;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, Default)]
pub struct Validator {
    pub allow_private: bool,
}

#[async_trait::async_trait]
impl OAuthHttp for Validator {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<HttpAnswer, String> {
        let url = Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        let client = pinned_client(&url, self.allow_private, TIMEOUT).await?;
        let mut req = client.post(url).body(body.to_owned());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = resp.text().await.unwrap_or_default();
        Ok(HttpAnswer { status, content_type, body })
    }
}

impl Validator {
    fn oauth<'a>(&'a self, platform: &'a Platform, nonce: &'a (dyn Fn() -> [u8; 12] + Sync)) -> Option<OAuth<'a>> {
        let secrets = platform.secrets.as_deref()?;
        Some(OAuth { store: &*platform.store, secrets, http: self, announcer: platform, now: platform.clock.now(), nonce })
    }

    pub(crate) async fn refresh_stored(&self, platform: &Platform, tenant: &TenantId, stored: &StoredCredential) -> Result<StoredCredential, String> {
        let nonce = || platform.ids.nonce();
        let oauth = self.oauth(platform, &nonce).ok_or("secrets are not available: the server has no root secret")?;
        oauth.refresh_stored(tenant, stored).await
    }

    pub async fn validate(&self, platform: &Platform, tenant: &TenantId, vault_id: &str, id: &str) -> Result<CredentialValidation, DomainError> {
        let nonce = || platform.ids.nonce();
        let oauth = self.oauth(platform, &nonce).ok_or_else(|| DomainError::invalid("secrets are not available"))?;
        oauth.validate(tenant, vault_id, id).await
    }
}
