//! API-key authentication against D1, and the operator's bootstrap key: the same keys,
//! hashes and messages as the native server (`openma_core::keys`).

use std::cell::Cell;

use openma_core::keys::{INVALID_KEY, Keys, MISSING_KEY, presented_key};
use openma_core::tenancy::DEFAULT_TENANT;
use openma_core::TenantId;
use openma_types::memory::Actor;
use worker::{Env, Method, Request};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::D1;
use crate::errors::ApiError;
use crate::health::DB;

/// The secret that, as `OPENMA_BOOTSTRAP_API_KEY` does for the native server, names a key
/// to register for the default tenant (`wrangler secret put OPENMA_BOOTSTRAP_API_KEY`).
pub const BOOTSTRAP_KEY: &str = "OPENMA_BOOTSTRAP_API_KEY";

thread_local! {
    /// Whether this isolate has registered the bootstrap key (an isolate is one thread).
    static BOOTSTRAPPED: Cell<bool> = const { Cell::new(false) };
}

/// The control-plane database.
pub fn database(env: &Env) -> Result<D1, ApiError> {
    Ok(D1::new(env.d1(DB).map_err(|e| ApiError::new(500, format!("binding `{DB}`: {e}")))?))
}

/// Who is calling: the tenant, and the API key or the console member that memory writes
/// are attributed to.
pub struct Caller {
    pub tenant: TenantId,
    pub by: Actor,
}

/// The tenant of the request's API key (which every API route needs), or the 401 (or,
/// before the schema exists, 503) to answer with.
pub async fn caller(req: &Request, env: &Env, db: &D1) -> Result<Caller, ApiError> {
    let keys = Keys { store: db, clock: &WorkerClock, ids: &WorkerIds };
    if !BOOTSTRAPPED.get() {
        bootstrap(&keys, env).await?;
        BOOTSTRAPPED.set(true);
    }
    let headers = req.headers();
    let x_api_key = headers.get("x-api-key").ok().flatten();
    let authorization = headers.get("authorization").ok().flatten();
    let Some(key) = presented_key(x_api_key.as_deref(), authorization.as_deref()).filter(|k| !k.is_empty()) else {
        return console_member(req, db).await;
    };
    match keys.authenticate(key).await? {
        Some((tenant, api_key_id)) => {
            rate_limit(env, &api_key_id).await?;
            Ok(Caller { tenant, by: Actor::ApiActor { api_key_id } })
        }
        None => Err(ApiError::unauthorized(INVALID_KEY)),
    }
}

/// A signed-in console session in place of a key (the console's pages call the same API,
/// as natively); a request that changes anything must carry the session's CSRF token in
/// `x-csrf-token`.
async fn console_member(req: &Request, db: &D1) -> Result<Caller, ApiError> {
    let Some(member) = crate::console::member(req, db).await? else { return Err(ApiError::unauthorized(MISSING_KEY)) };
    let safe = matches!(req.method(), Method::Get | Method::Head | Method::Options);
    let sent = req.headers().get("x-csrf-token").ok().flatten().unwrap_or_default();
    if !safe && !openma_console::csrf_ok(&member, &sent) {
        return Err(ApiError::new(403, "a console request that changes something needs the page's `x-csrf-token`"));
    }
    Ok(Caller { tenant: member.tenant, by: Actor::UserActor { user_id: member.user_id } })
}

/// The Rate Limiting binding that, like the native `--rate-limit-per-minute`, caps each API
/// key's requests (wrangler.jsonc `ratelimits`: a limit per 10 or 60 seconds, counted by
/// Cloudflare per location). None configured: no limit, as natively by default.
pub const RATE_LIMIT: &str = "API_RATE_LIMIT";
/// What `retry-after` says: the binding cannot tell its period, so the longer one it may have.
const RATE_LIMIT_RETRY_AFTER_S: u64 = 60;

async fn rate_limit(env: &Env, api_key_id: &str) -> Result<(), ApiError> {
    let Ok(limiter) = env.rate_limiter(RATE_LIMIT) else { return Ok(()) };
    match limiter.limit(api_key_id.to_owned()).await {
        Ok(outcome) if !outcome.success => Err(ApiError::rate_limited(RATE_LIMIT_RETRY_AFTER_S)),
        Ok(_) => Ok(()),
        // the limiter is advisory: a request is not refused because it could not be counted
        Err(e) => {
            worker::console_warn!("{RATE_LIMIT}: cannot count a request: {e}");
            Ok(())
        }
    }
}

/// Registers `OPENMA_BOOTSTRAP_API_KEY` for the default tenant, once per isolate; a
/// failure (say, migrations not applied yet) is answered with 503 and retried next time.
async fn bootstrap(keys: &Keys<'_>, env: &Env) -> Result<(), ApiError> {
    let Ok(secret) = env.secret(BOOTSTRAP_KEY) else {
        return Ok(());
    };
    let outcome = async {
        let tenant = keys.ensure_tenant(DEFAULT_TENANT).await?;
        keys.ensure_api_key(&tenant.id, "bootstrap", &secret.to_string()).await
    }
    .await;
    outcome.map(drop).map_err(|e| {
        worker::console_error!("cannot register {BOOTSTRAP_KEY}: {e}");
        ApiError::new(503, format!("the platform is not ready: cannot register {BOOTSTRAP_KEY} ({e}); see /health"))
    })
}
