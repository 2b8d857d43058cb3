//! `openma-main` on Cloudflare Workers: the public front door of a Workers deployment,
//! on D1 (the control-plane schema, from the same SQLite migrations as the native
//! server), KV (per-tenant configuration) and R2 (blobs).
//!
//! Served so far: `/health` — every binding and the root secret checked for real — and,
//! behind API-key authentication against D1 (with the operator's bootstrap key), the
//! agents, environments, vaults, memory stores, model cards, files and skills (bytes on R2),
//! sessions, usage, integrations (the providers' deliveries go on to `openma-integrations`)
//! and organization webhooks APIs; a session's events go to its SessionDO in `openma-agent`.
//! Webhook deliveries leave after the answer that queued them, and its cron retries them.
//! The web console (`/console`) is the native server's (`openma-console`), over the same
//! D1 accounts; the API also takes its signed-in sessions, for the console's own scripts.

use openma_worker_common::{adapters, d1, errors};

mod agents;
mod api;
mod auth;
mod console;
mod environments;
mod files;
mod health;
mod integrations;
mod memory;
mod model_cards;
mod sessions;
mod skills;
mod usage;
mod vaults;
mod webhooks;

use worker::{Context, Env, Method, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

mod schema {
    include!(concat!(env!("OUT_DIR"), "/schema.rs"));
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let request_id = errors::new_request_id();
    let path = req.path();
    let response = match (req.method(), path.as_str()) {
        (Method::Get | Method::Head, "/health") => health::respond(&env).await,
        // the providers' deliveries are authenticated by their signatures, not API keys
        (Method::Post, p) if p.starts_with("/integrations/") => integrations::forward(req, &env).await.or_else(|e| e.into_response(&request_id)),
        // the web console: its own sign-in (a cookie), the same pages as natively
        (_, p) if openma_console::handles(p) => console::serve(req, &env, &request_id).await.or_else(|e| e.into_response(&request_id)),
        _ => {
            let served = async {
                let db = auth::database(&env)?;
                let caller = auth::caller(&req, &env, &db).await?;
                api::serve(req, &env, &db, &caller, &request_id).await
            }
            .await;
            served.or_else(|e| e.into_response(&request_id))
        }
    };
    // what this request queued for webhook subscribers leaves once the answer is out
    if openma_worker_common::webhooks::take_queued() {
        ctx.wait_until(async move { openma_worker_common::webhooks::deliver_due(&env).await });
    }
    let mut response = response?;
    response.headers_mut().set("request-id", &request_id)?;
    Ok(response)
}

/// The cron (`triggers.crons`, each minute): webhook deliveries that are due — retries, and
/// first attempts a worker was stopped before making.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    openma_worker_common::webhooks::deliver_due(&env).await;
}
