//! The providers' APIs (Slack's Web API, Linear's GraphQL) over `fetch`: what
//! `openma-integrations` acknowledges deliveries with and a SessionDO posts a turn's answer with.

use openma_core::integrations::ProviderApi;
use openma_core::integrations::turns::truncate;
use serde_json::Value;
use worker::{Fetch, Headers, Method, Request, RequestInit};

pub struct FetchApi;

#[async_trait::async_trait]
impl ProviderApi for FetchApi {
    async fn post_json(&self, url: &str, authorization: &str, body: &Value) -> Result<Value, String> {
        worker::send::SendFuture::new(post(url, authorization, body)).await
    }
}

async fn post(url: &str, authorization: &str, body: &Value) -> Result<Value, String> {
    let failed = |e: worker::Error| format!("{url}: {e}");
    let headers = Headers::new();
    for (name, value) in [("authorization", authorization), ("content-type", "application/json"), ("accept", "application/json")] {
        headers.set(name, value).map_err(failed)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.to_string().into()));
    let req = Request::new_with_init(url, &init).map_err(failed)?;
    let mut resp = Fetch::Request(req).send().await.map_err(failed)?;
    let status = resp.status_code();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return Err(format!("{url} answered {status}: {}", truncate(&answer.to_string(), 300)));
    }
    Ok(answer)
}
