//! POSTs a Worker makes to places its tenants name — webhook receivers, OAuth token
//! endpoints, MCP servers being validated — with the core's destination check: a URL that
//! plainly names a private place (an address literal outside public space, `localhost`)
//! is refused unless the local-development switch is on (a Worker cannot resolve names,
//! and Cloudflare's network routes nothing else there). Redirects are not followed. The
//! SessionDO's MCP client makes its POSTs with the same [`exchange`].

use std::time::Duration;

use async_trait::async_trait;
use futures::future::{Either, select};
use openma_core::mcp_oauth::{HttpAnswer, OAuthHttp};
use openma_core::webhooks::WebhookSender;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

/// The POSTs of one worker: its destination rule and how long an answer may take.
pub struct Outbound {
    pub allow_private: bool,
    pub timeout: Duration,
}

impl Outbound {
    pub fn new(env: &worker::Env, timeout: Duration) -> Self {
        Outbound { allow_private: crate::allow_private_addresses(env), timeout }
    }

    /// The answer, whatever its status; `Err` why there is none.
    pub async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<HttpAnswer, String> {
        openma_core::web::check_destination(url, self.allow_private)?;
        let exchanged = worker::send::SendFuture::new(async { exchange(url, headers, body, self.timeout).await.map(|(answer, _)| answer) }).await;
        exchanged.map_err(|e| e.to_string())
    }
}

/// Why a POST got no answer.
#[derive(Debug)]
pub enum NoAnswer {
    Failed(String),
    TimedOut(Duration),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Failed(why) => write!(f, "request failed: {why}"),
            NoAnswer::TimedOut(t) => write!(f, "no answer within {} s", t.as_secs()),
        }
    }
}

/// One POST (redirects not followed) to a destination already checked: the answer, whatever
/// its status, with all its headers; the SessionDO's MCP client posts through it too.
pub async fn exchange(url: &str, headers: &[(&'static str, String)], body: &str, timeout: Duration) -> Result<(HttpAnswer, Headers), NoAnswer> {
    let failed = |e: worker::Error| NoAnswer::Failed(e.to_string());
    let h = Headers::new();
    for (name, value) in headers {
        h.set(name, value).map_err(failed)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(h).with_body(Some(body.into())).with_redirect(RequestRedirect::Manual);
    let fetch = Fetch::Request(Request::new_with_init(url, &init).map_err(failed)?);
    let exchange = async {
        let mut r = fetch.send().await.map_err(failed)?;
        let content_type = r.headers().get("content-type").ok().flatten().unwrap_or_default();
        let body = r.text().await.map_err(failed)?;
        Ok((HttpAnswer { status: r.status_code(), content_type, body }, r.headers().clone()))
    };
    match select(Box::pin(exchange), Box::pin(Delay::from(timeout))).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(NoAnswer::TimedOut(timeout)),
    }
}

#[async_trait]
impl OAuthHttp for Outbound {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<HttpAnswer, String> {
        Outbound::post(self, url, headers, body).await
    }
}

#[async_trait]
impl WebhookSender for Outbound {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &str) -> Result<i64, (Option<i64>, String)> {
        let answer = Outbound::post(self, url, headers, body).await.map_err(|e| (None, e))?;
        let code = i64::from(answer.status);
        if (200..300).contains(&code) { Ok(code) } else { Err((Some(code), format!("the endpoint answered {code}"))) }
    }
}
