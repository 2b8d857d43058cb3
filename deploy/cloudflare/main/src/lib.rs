//! `openma-main` on Cloudflare Workers: the public front door of a Workers deployment,
//! on D1 (the control-plane schema, from the same SQLite migrations as the native
//! server), KV (per-tenant configuration) and R2 (blobs).
//!
//! Served so far: `/health` — every binding and the root secret checked for real — and
//! API-key authentication against D1 (with the operator's bootstrap key) in front of
//! every other route. The API's resources land behind it as the D1 adapters of the
//! core's ports grow (issue #11); until then an authenticated request to one gets 404.

mod adapters;
mod auth;
mod d1_keys;
mod errors;
mod health;

use worker::{Context, Env, Method, Request, Response, Result, event};

use crate::errors::ApiError;

mod schema {
    include!(concat!(env!("OUT_DIR"), "/schema.rs"));
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let request_id = errors::new_request_id();
    let path = req.path();
    let response = match (req.method(), path.as_str()) {
        (Method::Get | Method::Head, "/health") => health::respond(&env).await,
        (method, path) => {
            let refusal = match auth::caller(&req, &env).await {
                Ok(_tenant) => ApiError::not_found(format!("no route for {method} {path}")),
                Err(e) => e,
            };
            refusal.into_response(&request_id)
        }
    };
    let mut response = response?;
    response.headers_mut().set("request-id", &request_id)?;
    Ok(response)
}
