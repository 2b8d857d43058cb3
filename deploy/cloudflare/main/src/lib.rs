//! `openma-main` on Cloudflare Workers: the public front door of a Workers deployment,
//! on D1 (the control-plane schema, from the same SQLite migrations as the native
//! server), KV (per-tenant configuration) and R2 (blobs).
//!
//! This first slice serves `/health` — every binding and the root secret checked for
//! real — and answers every other route with the API's error envelope. The API routes
//! land here as the D1 adapter of the core's ports grows (issue #11).

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
        (method, path) => ApiError::not_found(format!("no route for {method} {path}")).into_response(&request_id),
    };
    let mut response = response?;
    response.headers_mut().set("request-id", &request_id)?;
    Ok(response)
}
