//! `openma-integrations` on Cloudflare Workers: Slack and Linear as front doors to an
//! agent, as the native server's integrations run them (the rules are the core's
//! `openma_core::integrations::{slack, linear}`).
//!
//! A provider's delivery is verified with its integration's signing secret (opened with
//! `PLATFORM_ROOT_SECRET`), recorded in D1 before it is acted on (retries and replays are
//! acknowledged and ignored), acknowledged at once, and handed on after the response
//! (`Context::wait_until`) to the session of its thread — created on the first message in
//! D1 with the core's session service, its events sent to its SessionDO in `openma-agent`.
//! When a turn of such a session ends, the SessionDO itself posts the answer, and the tool
//! calls waiting for a confirmation, to the thread (the same core code; `openma-agent`'s
//! `integrations` module), so the bindings stay one-way: main → integrations → agent.

mod deliveries;
mod threads;

use openma_worker_common::{d1, errors};
use worker::{Context, Env, Method, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let request_id = errors::new_request_id();
    let path = req.path();
    let segments: Vec<String> = path.trim_end_matches('/').split('/').skip(1).map(str::to_owned).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (req.method(), segments.as_slice()) {
        (Method::Get | Method::Head, ["health"]) => health(&env).await,
        (Method::Post, ["integrations", provider, id, kind]) => deliveries::receive(req, env, ctx, provider, id, kind, &request_id).await,
        _ => Err(errors::ApiError::not_found(format!("no route for {} {path}", req.method()))),
    };
    let mut response = response.or_else(|e| e.into_response(&request_id))?;
    response.headers_mut().set("request-id", &request_id)?;
    Ok(response)
}

/// D1 answers and the root secret opens its verifier: deliveries can be verified.
async fn health(env: &Env) -> std::result::Result<Response, errors::ApiError> {
    let (status, body) = match openma_worker_common::root_secret::verify(env).await {
        Ok(_) => (200, serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})),
        Err(reason) => {
            worker::console_error!("health degraded: {reason}");
            (503, serde_json::json!({"status": "degraded", "reason": reason, "version": env!("CARGO_PKG_VERSION")}))
        }
    };
    Response::from_json(&body).map(|r| r.with_status(status)).map_err(|e| errors::ApiError::new(500, e.to_string()))
}

/// The control-plane database.
pub(crate) fn database(env: &Env) -> std::result::Result<d1::D1, errors::ApiError> {
    Ok(d1::D1::new(env.d1("DB").map_err(|e| errors::ApiError::new(500, format!("binding `DB`: {e}")))?))
}
