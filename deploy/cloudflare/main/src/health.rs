//! `/health`: every binding exercised with a real call and the root secret verified
//! against the database, so a missing secret, a wrong binding id or an unapplied
//! migration shows up here as a 503 with the reason, not later as a failed request.

use serde::Serialize;
use openma_worker_common::quota::CONFIG_KV;
use worker::{Env, Response, Result};

use openma_worker_common::root_secret;
use crate::schema::{LATEST_MIGRATION, MIGRATIONS};

/// Binding names, as in `wrangler.jsonc`.
pub const DB: &str = "DB";
pub use openma_worker_common::r2::BLOBS;

#[derive(Serialize)]
struct Health {
    /// `ok`, or `degraded` when a backend is down.
    status: &'static str,
    backends: Backends,
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize)]
struct Backends {
    db: String,
    blobs: String,
    config: String,
    secrets: String,
}

/// One backend's line: what it is when it works, why not when it does not.
type Check = std::result::Result<String, String>;

pub async fn respond(env: &Env) -> Result<Response> {
    let db = check_db(env).await;
    let secrets = match &db {
        Ok(_) => check_root_secret(env).await,
        Err(_) => Err("not checked: the database is unavailable".to_owned()),
    };
    let blobs = check_blobs(env).await;
    let config = check_config(env).await;
    let mut problems = Vec::new();
    for (name, c) in [("db", &db), ("blobs", &blobs), ("config", &config), ("secrets", &secrets)] {
        if let Err(e) = c {
            problems.push(format!("{name}: {e}"));
        }
    }
    let line = |c: Check| c.unwrap_or_else(|e| format!("unavailable: {e}"));
    let healthy = problems.is_empty();
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        backends: Backends { db: line(db), blobs: line(blobs), config: line(config), secrets: line(secrets) },
        version: env!("CARGO_PKG_VERSION"),
        reason: (!healthy).then(|| problems.join("; ")),
    };
    if !healthy {
        worker::console_error!("health degraded: {}", body.reason.as_deref().unwrap_or_default());
    }
    Ok(Response::from_json(&body)?.with_status(if healthy { 200 } else { 503 }))
}

/// D1 answers and carries the schema this build was compiled against.
async fn check_db(env: &Env) -> Check {
    let db = env.d1(DB).map_err(|e| format!("binding `{DB}`: {e}"))?;
    let applied = db
        .prepare("SELECT name FROM d1_migrations ORDER BY id DESC LIMIT 1")
        .first::<String>(Some("name"))
        .await
        .map_err(|e| format!("{e}; were the migrations applied? (`wrangler d1 migrations apply openma-control`)"))?;
    match applied {
        Some(name) if name == LATEST_MIGRATION => Ok(format!("d1: schema at {name} ({MIGRATIONS} migrations)")),
        Some(name) => Err(format!(
            "the schema is at {name}, this build expects {LATEST_MIGRATION}: run `wrangler d1 migrations apply openma-control`"
        )),
        None => Err("no migration applied: run `wrangler d1 migrations apply openma-control`".to_owned()),
    }
}

/// The root secret is set, long enough, and opens this database's verifier (the first
/// healthy check seals it, as the native server's first start does).
async fn check_root_secret(env: &Env) -> Check {
    let (secrets, sealed_now) = root_secret::verify(env).await?;
    let key = secrets.current_key_id();
    Ok(if sealed_now { format!("root secret key {key}, recorded") } else { format!("root secret key {key}, verified") })
}

async fn check_blobs(env: &Env) -> Check {
    let bucket = env.bucket(BLOBS).map_err(|e| format!("binding `{BLOBS}`: {e}"))?;
    bucket.head("openma/health").await.map_err(|e| e.to_string())?;
    Ok("r2: reachable".to_owned())
}

async fn check_config(env: &Env) -> Check {
    let kv = env.kv(CONFIG_KV).map_err(|e| format!("binding `{CONFIG_KV}`: {e}"))?;
    kv.get("openma:health").text().await.map_err(|e| e.to_string())?;
    Ok("kv: reachable".to_owned())
}
