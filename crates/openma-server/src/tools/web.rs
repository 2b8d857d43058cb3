//! `web_fetch` and `web_search`, executed by the server with the core's rules
//! (`openma_core::web`).
//!
//! Fetching is guarded against server-side request forgery: every hop (including each
//! redirect) is resolved first and refused unless all its addresses are public, and the
//! connection is pinned to the checked address so DNS cannot change between check and use.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use openma_core::web::{self, MAX_BODY_BYTES, MAX_REDIRECTS, is_public};
use openma_types::agents::BuiltinToolConfig;
use reqwest::Url;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(web::TIMEOUT_SECS);

/// Resolves the URL's host and refuses it unless every address is public (or
/// `allow_private`, for tests).
pub async fn resolve_public(url: &Url, allow_private: bool) -> Result<SocketAddr, String> {
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    let first = *addrs.first().ok_or_else(|| format!("`{host}` has no address"))?;
    if !allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(format!("refused: `{host}` resolves to a non-public address"));
    }
    Ok(first)
}

/// A client for one request to `url`, connected to the checked address (so DNS cannot
/// change between the check and the connection) and following no redirects.
pub async fn pinned_client(url: &Url, allow_private: bool, timeout: Duration) -> Result<reqwest::Client, String> {
    let addr = resolve_public(url, allow_private).await?;
    let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .resolve(&host, addr)
        .user_agent(concat!("openma/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `web_fetch`.
pub struct WebFetch {
    /// For tests against local servers only; never settable from configuration.
    pub allow_private: bool,
}

impl WebFetch {
    async fn fetch(&self, mut url: Url, config: Option<&BuiltinToolConfig>) -> Result<(Url, String, Vec<u8>, bool), String> {
        for _ in 0..=MAX_REDIRECTS {
            web::check_hop(&url, config)?;
            let client = pinned_client(&url, self.allow_private, TIMEOUT).await?;
            let resp = client.get(url.clone()).send().await.map_err(|e| format!("fetch failed: {e}"))?;
            if resp.status().is_redirection() {
                url = web::redirect_target(&url, resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()))?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(format!("the server answered HTTP {}", resp.status()));
            }
            let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
            let mut body = Vec::new();
            let mut truncated = false;
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading the body failed: {e}"))?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    body.extend_from_slice(&chunk[..MAX_BODY_BYTES - body.len()]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((url, ctype, body, truncated));
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

#[async_trait]
impl Tool for WebFetch {
    fn read_only(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        let url = match web::requested_url(&input) {
            Ok(u) => u,
            Err(e) => return e,
        };
        match self.fetch(url, ctx.config.as_ref()).await {
            Ok((final_url, ctype, body, truncated)) => web::fetched(&final_url, &ctype, &body, truncated, ctx.config.as_ref()),
            Err(e) => ToolOutput::error(e),
        }
    }
}

/// `web_search` against a SearXNG-compatible JSON endpoint (`?q=…&format=json`).
pub struct WebSearch {
    pub endpoint: Url,
    pub http: reqwest::Client,
}

#[async_trait]
impl Tool for WebSearch {
    fn read_only(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        let (query, url) = match web::search_url(&self.endpoint, &input) {
            Ok(q) => q,
            Err(e) => return e,
        };
        let body: Value = match self.http.get(url).timeout(TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => v,
                Err(e) => return ToolOutput::error(format!("the search backend answered something that is not JSON: {e}")),
            },
            Ok(r) => return ToolOutput::error(format!("the search backend answered HTTP {}", r.status())),
            Err(e) => return ToolOutput::error(format!("the search backend is unreachable: {e}")),
        };
        web::search_results(&body, &query, ctx.config.as_ref())
    }
}
