//! `web_fetch` and `web_search` as the model sees them: which URLs a fetch may go to (the
//! scheme, the tool's domain lists, public addresses), what a fetched body becomes for the
//! model, and search results as lines. The native server and the Workers do the HTTP: the
//! native server resolves every hop and pins the connection to a checked public address;
//! a Worker cannot resolve, so it refuses what it can see (non-public address literals,
//! `localhost`) and Cloudflare's network does not route to private addresses.

use std::net::IpAddr;

use openma_types::agents::BuiltinToolConfig;
use serde_json::Value;
pub use url::Url;

use crate::harness::tools::ToolOutput;

/// Bytes read from a response at most.
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Characters returned to the model when the tool config sets no `max_content_tokens`.
pub const DEFAULT_MAX_CHARS: usize = 100_000;
/// Redirects a fetch follows, each checked as the first request was.
pub const MAX_REDIRECTS: usize = 5;
/// Seconds a fetch or a search may take.
pub const TIMEOUT_SECS: u64 = 30;
/// Results a search returns at most.
const MAX_RESULTS: usize = 10;

/// True when an address may be fetched: not loopback, private, link-local (which covers
/// the cloud metadata address 169.254.169.254), shared, documentation, multicast or
/// reserved space, nor an IPv6 form embedding such an IPv4 address — the sandbox egress
/// proxy's address rule ([`crate::egress_policy::forbidden_class`]).
pub fn is_public(ip: IpAddr) -> bool {
    crate::egress_policy::forbidden_class(ip).is_none()
}

/// Whether what the URL names, without resolving it, is plainly not public: an address
/// literal outside public space, or `localhost` and its subdomains.
pub fn names_private_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => !is_public(IpAddr::V4(a)),
        Some(url::Host::Ipv6(a)) => !is_public(IpAddr::V6(a)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// Refuses a destination the platform will call (a webhook, a provider's API base) that is
/// plainly not public — a loopback or private address literal, `localhost` — unless
/// private addresses are allowed (local development). Names that resolve to a private
/// address are refused when called, where the caller can resolve them.
pub fn check_destination(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("`url` is not a valid URL: {e}"))?;
    if !allow_private && names_private_host(&parsed) {
        return Err("`url` must be a public address: deliveries are not sent to private or loopback addresses".into());
    }
    Ok(())
}

/// `host` is `domain` or one of its subdomains (`*.` and a path in the entry are ignored).
pub fn host_matches(host: &str, domain: &str) -> bool {
    let domain = domain.split('/').next().unwrap_or(domain).trim_start_matches("*.");
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn allowed_by(host: &str, config: Option<&BuiltinToolConfig>) -> Result<(), String> {
    let Some(cfg) = config else { return Ok(()) };
    if let Some(allowed) = &cfg.allowed_domains
        && !allowed.iter().any(|d| host_matches(host, d))
    {
        return Err(format!("`{host}` is not in this tool's allowed_domains"));
    }
    if let Some(blocked) = &cfg.blocked_domains
        && blocked.iter().any(|d| host_matches(host, d))
    {
        return Err(format!("`{host}` is in this tool's blocked_domains"));
    }
    Ok(())
}

/// Whether a fetch (or one of its redirects) may go to `url`: http or https, and a host the
/// tool's domain lists allow. Where the host resolves to is the caller's to check.
pub fn check_hop(url: &Url, config: Option<&BuiltinToolConfig>) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs can be fetched, not `{}`", url.scheme()));
    }
    allowed_by(&url.host_str().unwrap_or_default().to_ascii_lowercase(), config)
}

/// A non-empty string field of a tool's input.
pub fn input_str<'a>(input: &'a Value, field: &str) -> Result<&'a str, ToolOutput> {
    input.get(field).and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| ToolOutput::error(format!("`{field}` is required and must be a string")))
}

/// The URL a `web_fetch` call asks for.
pub fn requested_url(input: &Value) -> Result<Url, ToolOutput> {
    let raw = input_str(input, "url")?;
    Url::parse(raw).map_err(|e| ToolOutput::error(format!("`{raw}` is not a valid URL: {e}")))
}

/// Where a redirect goes from `url`.
pub fn redirect_target(url: &Url, location: Option<&str>) -> Result<Url, String> {
    url.join(location.ok_or("a redirect without Location")?).map_err(|e| format!("bad redirect target: {e}"))
}

/// What the model is given of a fetched body: HTML as text, text as it is, binary content
/// described; cut at the tool's `max_content_tokens` (four characters each) or 100,000
/// characters.
pub fn fetched(final_url: &Url, content_type: &str, body: &[u8], truncated: bool, config: Option<&BuiltinToolConfig>) -> ToolOutput {
    let ctype = content_type.to_ascii_lowercase();
    let text = if ctype.contains("html") || (ctype.is_empty() && body.starts_with(b"<")) {
        html2text::from_read(body, 100).unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
    } else if ctype.starts_with("text/") || ctype.contains("json") || ctype.contains("xml") || ctype.is_empty() {
        String::from_utf8_lossy(body).into_owned()
    } else {
        return ToolOutput::text(format!("{final_url}: binary content of type `{ctype}`, {} bytes; not shown", body.len()));
    };
    let max_chars = config.and_then(|c| c.max_content_tokens).map(|t| t as usize * 4).unwrap_or(DEFAULT_MAX_CHARS);
    let mut out: String = text.chars().take(max_chars).collect();
    if truncated || out.len() < text.len() {
        out.push_str("\n\n[content truncated]");
    }
    ToolOutput::text(format!("Fetched {final_url}\n\n{out}"))
}

/// The query a `web_search` call asks for, as the URL of a SearXNG-compatible JSON endpoint.
pub fn search_url(endpoint: &Url, input: &Value) -> Result<(String, Url), ToolOutput> {
    let query = input_str(input, "query")?;
    let mut url = endpoint.clone();
    url.query_pairs_mut().append_pair("q", query).append_pair("format", "json");
    Ok((query.to_owned(), url))
}

/// A search backend's JSON answer (`results: [{url, title, content}]`) as numbered lines, at
/// most ten, without the hosts the tool's domain lists exclude.
pub fn search_results(body: &Value, query: &str, config: Option<&BuiltinToolConfig>) -> ToolOutput {
    let mut lines = Vec::new();
    for r in body.get("results").and_then(Value::as_array).into_iter().flatten() {
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        let host = Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        if allowed_by(&host, config).is_err() {
            continue;
        }
        let title = r.get("title").and_then(Value::as_str).unwrap_or_default();
        let snippet = r.get("content").and_then(Value::as_str).unwrap_or_default();
        lines.push(format!("{}. {title}\n   {url}\n   {snippet}", lines.len() + 1));
        if lines.len() == MAX_RESULTS {
            break;
        }
    }
    if lines.is_empty() {
        return ToolOutput::text(format!("No results for `{query}`."));
    }
    ToolOutput::text(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tool's resolved config with `extra` keys.
    fn cfg(name: &str, extra: Value) -> BuiltinToolConfig {
        let mut v = json!({"name": name, "type": name, "enabled": true, "permission_policy": {"type": "always_allow"}});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

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
    fn hosts_named_private_without_resolving() {
        for u in ["http://127.0.0.1:8080/", "http://[::1]/", "http://169.254.169.254/latest", "http://localhost/", "http://api.LOCALHOST./", "http://10.0.0.1/"] {
            assert!(names_private_host(&Url::parse(u).unwrap()), "{u}");
        }
        for u in ["https://example.com/", "http://1.1.1.1/", "https://localhost.example.com/"] {
            assert!(!names_private_host(&Url::parse(u).unwrap()), "{u}");
        }
    }

    #[test]
    fn domain_lists_match_subdomains_and_hops_are_checked() {
        assert!(host_matches("docs.example.com", "example.com"));
        assert!(host_matches("example.com", "example.com"));
        assert!(!host_matches("badexample.com", "example.com"));
        let cfg = cfg("web_fetch", json!({"allowed_domains": ["example.com"], "blocked_domains": ["bad.example.com"]}));
        let hop = |u: &str| check_hop(&Url::parse(u).unwrap(), Some(&cfg));
        assert!(hop("https://docs.example.com/a").is_ok());
        assert!(hop("https://other.org/").unwrap_err().contains("allowed_domains"));
        assert!(hop("https://bad.example.com/").unwrap_err().contains("blocked_domains"));
        assert!(hop("ftp://example.com/").unwrap_err().contains("http and https"));
    }

    #[test]
    fn bodies_become_text_for_the_model() {
        let url = Url::parse("https://example.com/p").unwrap();
        let text = |o: ToolOutput| o.content[0]["text"].as_str().unwrap().to_owned();
        let html = text(fetched(&url, "text/html; charset=utf-8", b"<html><body><h1>Title</h1><p>Hello <b>there</b></p></body></html>", false, None));
        assert!(html.starts_with("Fetched https://example.com/p") && html.contains("Title") && html.contains("Hello") && !html.contains("<p>"), "{html}");
        let binary = text(fetched(&url, "image/png", &[0x89, b'P', b'N', b'G'], false, None));
        assert!(binary.contains("binary content of type `image/png`, 4 bytes"));
        let cfg = cfg("web_fetch", json!({"max_content_tokens": 2}));
        let cut = text(fetched(&url, "text/plain", b"0123456789abcdef", false, Some(&cfg)));
        assert!(cut.ends_with("01234567\n\n[content truncated]"), "{cut}");
    }

    #[test]
    fn search_results_are_numbered_and_filtered() {
        let endpoint = Url::parse("https://search.example/search").unwrap();
        let (q, url) = search_url(&endpoint, &json!({"query": "rust wasm"})).unwrap();
        assert_eq!((q.as_str(), url.as_str()), ("rust wasm", "https://search.example/search?q=rust+wasm&format=json"));
        assert!(search_url(&endpoint, &json!({})).unwrap_err().is_error);
        let body = json!({"results": [
            {"url": "https://a.example/1", "title": "A", "content": "first"},
            {"url": "https://blocked.example/2", "title": "B", "content": "second"}]});
        let cfg = cfg("web_search", json!({"blocked_domains": ["blocked.example"]}));
        let out = search_results(&body, "q", Some(&cfg));
        assert_eq!(out.content[0]["text"], "1. A\n   https://a.example/1\n   first");
        assert_eq!(search_results(&json!({"results": []}), "q", None).content[0]["text"], "No results for `q`.");
    }
}
