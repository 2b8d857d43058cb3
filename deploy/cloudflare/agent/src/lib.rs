//! `openma-agent` on Cloudflare Workers: a [`session::SessionDO`] per session, reached by
//! `openma-main` through its Durable Object binding. It keeps the session's event log in
//! its own SQLite, runs turns from alarms (so a turn a crash or eviction cut short resumes),
//! calls the model over `fetch`, and streams events as SSE.
//!
//! The worker itself answers only `/health`: sessions are reached through `openma-main`,
//! which authenticates the caller and owns the session rows in D1. Its cron archives the
//! logs of finished and long-idle sessions to R2 and runs retention (`housekeeping`).

mod event_log;
mod housekeeping;
mod integrations;
mod mcp;
mod model;
mod sandbox;
mod session;
mod session_credentials;
mod session_environment;
mod session_files;
mod session_memory;
mod subscribers;
mod turn;
mod web;

use worker::{Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent, event};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    match req.path().as_str() {
        "/health" => Response::from_json(&serde_json::json!({"status": "ok", "worker": "openma-agent"})),
        _ => Ok(Response::error("openma-agent serves sessions through openma-main", 404)?),
    }
}

/// The cron: archival of finished and long-idle sessions' logs, and retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = housekeeping::run(&env).await {
        worker::console_error!("housekeeping failed: {e}");
    }
}
