//! `web_fetch` and `web_search`, executed by the server.
//!
//! Fetching is guarded against server-side request forgery: every hop (including each
//! redirect) is resolved first and refused unless all its addresses are public, and the
//! connection is pinned to the checked address so DNS cannot change between check and use.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use openma_core::harness::tools::{Tool, ToolContext, ToolOutput};
use openma_types::agents::BuiltinToolConfig;
use reqwest::Url;
use serde_json::Value;

/// Bytes read from a response at most.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Characters returned to the model when the tool config sets no `max_content_tokens`.
pub const DEFAULT_MAX_CHARS: usize = 100_000;
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

/// True when an address may be fetched: not loopback, private, link-local (which covers
/// the cloud metadata address 169.254.169.254), shared, documentation, multicast or
/// reserved space.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_unspecified()
                || a.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

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

fn host_matches(host: &str, domain: &str) -> bool {
    let domain = domain.split('/').next().unwrap_or(domain).trim_start_matches("*.");
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn input_str<'a>(input: &'a Value, field: &str) -> Result<&'a str, ToolOutput> {
    input.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| ToolOutput::error(format!("`{field}` is required and must be a string")))
}

/// `web_fetch`.
pub struct WebFetch {
    /// For tests against local servers only; never settable from configuration.
    pub allow_private: bool,
}

impl WebFetch {
    fn check_domains(url: &Url, config: Option<&BuiltinToolConfig>) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if let Some(cfg) = config {
            if let Some(allowed) = &cfg.allowed_domains
                && !allowed.iter().any(|d| host_matches(&host, d))
            {
                return Err(format!("`{host}` is not in this tool's allowed_domains"));
            }
            if let Some(blocked) = &cfg.blocked_domains
                && blocked.iter().any(|d| host_matches(&host, d))
            {
                return Err(format!("`{host}` is in this tool's blocked_domains"));
            }
        }
        Ok(())
    }


    async fn fetch(&self, mut url: Url, config: Option<&BuiltinToolConfig>) -> Result<(Url, String, Vec<u8>, bool), String> {
        for _ in 0..=MAX_REDIRECTS {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("only http and https URLs can be fetched, not `{}`", url.scheme()));
            }
            Self::check_domains(&url, config)?;
            let client = pinned_client(&url, self.allow_private, TIMEOUT).await?;
            let resp = client.get(url.clone()).send().await.map_err(|e| format!("fetch failed: {e}"))?;
            if resp.status().is_redirection() {
                let next = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).ok_or("a redirect without Location")?;
                url = url.join(next).map_err(|e| format!("bad redirect target: {e}"))?;
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
        let raw = match input_str(&input, "url") {
            Ok(u) => u,
            Err(e) => return e,
        };
        let url = match Url::parse(raw) {
            Ok(u) => u,
            Err(e) => return ToolOutput::error(format!("`{raw}` is not a valid URL: {e}")),
        };
        let (final_url, ctype, body, truncated) = match self.fetch(url, ctx.config.as_ref()).await {
            Ok(r) => r,
            Err(e) => return ToolOutput::error(e),
        };
        let text = if ctype.contains("html") || (ctype.is_empty() && body.starts_with(b"<")) {
            html2text::from_read(&body[..], 100).unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned())
        } else if ctype.starts_with("text/") || ctype.contains("json") || ctype.contains("xml") || ctype.is_empty() {
            String::from_utf8_lossy(&body).into_owned()
        } else {
            return ToolOutput::text(format!("{final_url}: binary content of type `{ctype}`, {} bytes; not shown", body.len()));
        };
        let max_chars = ctx.config.as_ref().and_then(|c| c.max_content_tokens).map(|t| t as usize * 4).unwrap_or(DEFAULT_MAX_CHARS);
        let mut out: String = text.chars().take(max_chars).collect();
        if truncated || out.len() < text.len() {
            out.push_str("\n\n[content truncated]");
        }
        ToolOutput::text(format!("Fetched {final_url}\n\n{out}"))
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
        let query = match input_str(&input, "query") {
            Ok(q) => q,
            Err(e) => return e,
        };
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("q", query).append_pair("format", "json");
        let resp = self.http.get(url).timeout(TIMEOUT).send().await;
        let body: Value = match resp {
            Ok(r) if r.status().is_success() => match r.json().await {
                Ok(v) => v,
                Err(e) => return ToolOutput::error(format!("the search backend answered something that is not JSON: {e}")),
            },
            Ok(r) => return ToolOutput::error(format!("the search backend answered HTTP {}", r.status())),
            Err(e) => return ToolOutput::error(format!("the search backend is unreachable: {e}")),
        };
        let cfg = ctx.config.as_ref();
        let mut lines = Vec::new();
        for r in body.get("results").and_then(Value::as_array).into_iter().flatten() {
            let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
            let host = Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
            if let Some(allowed) = cfg.and_then(|c| c.allowed_domains.as_ref())
                && !allowed.iter().any(|d| host_matches(&host, d))
            {
                continue;
            }
            if let Some(blocked) = cfg.and_then(|c| c.blocked_domains.as_ref())
                && blocked.iter().any(|d| host_matches(&host, d))
            {
                continue;
            }
            let title = r.get("title").and_then(Value::as_str).unwrap_or_default();
            let snippet = r.get("content").and_then(Value::as_str).unwrap_or_default();
            lines.push(format!("{}. {title}\n   {url}\n   {snippet}", lines.len() + 1));
            if lines.len() == 10 {
                break;
            }
        }
        if lines.is_empty() {
            return ToolOutput::text(format!("No results for `{query}`."));
        }
        ToolOutput::text(lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "240.0.0.1"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn domain_lists_match_subdomains() {
        assert!(host_matches("docs.example.com", "example.com"));
        assert!(host_matches("example.com", "example.com"));
        assert!(!host_matches("badexample.com", "example.com"));
    }
}
