//! `web_fetch` and `web_search`, run by the SessionDO itself over `fetch` with the core's
//! rules (`openma_core::web`, as natively): every hop, redirects included, is checked
//! against the tool's domain lists and followed by hand; bodies are read up to 5 MiB and
//! turned into text for the model. A Worker cannot resolve names, so what a URL plainly
//! names as private (an address literal outside public space, `localhost`) is refused, and
//! Cloudflare's network routes nothing else there; `OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES=1`
//! lifts that for local development (`wrangler dev`), as the native setting does.
//! `web_search` asks the SearXNG-compatible JSON endpoint at `OPENMA_SEARCH_URL`, and is
//! only offered to the model when that is set.

use std::time::Duration;

use futures::StreamExt;
use futures::future::Either;
use openma_core::harness::tools::ToolOutput;
use openma_core::web::{self, Url};
use openma_types::agents::BuiltinToolConfig;
use serde_json::Value;
use worker::{Delay, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response};

use crate::model::text;

/// Whether `name` is a tool this module runs.
pub fn runs(name: &str) -> bool {
    matches!(name, "web_fetch" | "web_search")
}

/// Runs `web_fetch` or `web_search` (see [`runs`]), within the native time limit.
pub async fn run(env: &Env, name: &str, input: &Value, config: Option<&BuiltinToolConfig>) -> ToolOutput {
    let work = async {
        let out = if name == "web_search" { search(env, input, config).await } else { fetch(env, input, config).await };
        out.unwrap_or_else(|e| e)
    };
    let timeout = Delay::from(Duration::from_secs(web::TIMEOUT_SECS));
    match futures::future::select(std::pin::pin!(work), timeout).await {
        Either::Left((out, _)) => out,
        Either::Right(_) => ToolOutput::error(format!("`{name}` did not finish within {} s", web::TIMEOUT_SECS)),
    }
}

/// A GET that follows no redirect, with openma's User-Agent.
async fn get(url: &Url) -> Result<Response, String> {
    let failed = |e: worker::Error| format!("fetch failed: {e}");
    let headers = Headers::new();
    headers.set("user-agent", concat!("openma/", env!("CARGO_PKG_VERSION"))).map_err(failed)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers).with_redirect(RequestRedirect::Manual);
    Fetch::Request(Request::new_with_init(url.as_str(), &init).map_err(failed)?).send().await.map_err(failed)
}

async fn fetch(env: &Env, input: &Value, config: Option<&BuiltinToolConfig>) -> Result<ToolOutput, ToolOutput> {
    let allow_private = openma_worker_common::allow_private_addresses(env);
    let mut url = web::requested_url(input)?;
    for _ in 0..=web::MAX_REDIRECTS {
        web::check_hop(&url, config).map_err(ToolOutput::error)?;
        if !allow_private && web::names_private_host(&url) {
            return Err(ToolOutput::error(format!("refused: `{}` is not a public address", url.host_str().unwrap_or_default())));
        }
        let mut resp = get(&url).await.map_err(ToolOutput::error)?;
        let status = resp.status_code();
        if (300..400).contains(&status) {
            let location = resp.headers().get("location").ok().flatten();
            url = web::redirect_target(&url, location.as_deref()).map_err(ToolOutput::error)?;
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(ToolOutput::error(format!("the server answered HTTP {status}")));
        }
        let content_type = resp.headers().get("content-type").ok().flatten().unwrap_or_default();
        let (mut body, mut truncated) = (Vec::new(), false);
        let mut stream = resp.stream().map_err(|e| ToolOutput::error(format!("reading the body failed: {e}")))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ToolOutput::error(format!("reading the body failed: {e}")))?;
            if body.len() + chunk.len() > web::MAX_BODY_BYTES {
                body.extend_from_slice(&chunk[..web::MAX_BODY_BYTES - body.len()]);
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(web::fetched(&url, &content_type, &body, truncated, config));
    }
    Err(ToolOutput::error(format!("more than {} redirects", web::MAX_REDIRECTS)))
}

async fn search(env: &Env, input: &Value, config: Option<&BuiltinToolConfig>) -> Result<ToolOutput, ToolOutput> {
    let endpoint = text(env, "OPENMA_SEARCH_URL").ok_or_else(|| ToolOutput::error("`web_search` has no search backend here (OPENMA_SEARCH_URL is not set)"))?;
    let endpoint = Url::parse(&endpoint).map_err(|e| ToolOutput::error(format!("OPENMA_SEARCH_URL is not a URL: {e}")))?;
    let (query, url) = web::search_url(&endpoint, input)?;
    let mut resp = get(&url).await.map_err(|e| ToolOutput::error(format!("the search backend is unreachable: {e}")))?;
    if !(200..300).contains(&resp.status_code()) {
        return Err(ToolOutput::error(format!("the search backend answered HTTP {}", resp.status_code())));
    }
    let body: Value = resp.json().await.map_err(|e| ToolOutput::error(format!("the search backend answered something that is not JSON: {e}")))?;
    Ok(web::search_results(&body, &query, config))
}
