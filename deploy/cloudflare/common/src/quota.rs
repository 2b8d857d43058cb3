//! Tenant quotas on the Workers: the limits a tenant's operator set (monthly spend, running
//! sessions) are per-tenant configuration in KV (`CONFIG_KV`, key `tenants/{id}/limits`, the
//! native `TenantLimits` as JSON), checked with the core's rule (`openma_core::quota`) against
//! the ledger and the sessions on D1 before a session is created or a message starts a turn.
//! A tenant without a key has no limits, as natively; a key that does not parse, or that sets
//! `max_running_sandboxes` (each session has a container of its own), refuses the work: a
//! billing control is not skipped because it is misspelt or cannot be applied.

use openma_core::TenantId;
use openma_core::tenancy::TenantLimits;
use openma_types::sessions::{Session, SessionStatus};
use worker::Env;

use crate::adapters::WorkerClock;
use crate::d1::D1;
use crate::errors::ApiError;

/// The KV namespace of per-tenant configuration.
pub const CONFIG_KV: &str = "CONFIG_KV";

/// The key of a tenant's limits in [`CONFIG_KV`].
pub fn limits_key(tenant: &TenantId) -> String {
    format!("tenants/{}/limits", tenant.as_str())
}

/// The tenant's limits (none set: no limits).
pub async fn limits(env: &Env, tenant: &TenantId) -> Result<TenantLimits, ApiError> {
    let kv = env.kv(CONFIG_KV).map_err(|e| ApiError::new(500, format!("binding `{CONFIG_KV}`: {e}")))?;
    let key = limits_key(tenant);
    let text = kv.get(&key).text().await.map_err(|e| ApiError::new(500, format!("{CONFIG_KV} `{key}`: {e}")))?;
    match text {
        None => Ok(TenantLimits::default()),
        Some(t) => {
            let limits: TenantLimits = serde_json::from_str(&t).map_err(|e| {
                worker::console_error!("{CONFIG_KV} `{key}` is not a tenant's limits: {e}");
                ApiError::new(500, format!("this tenant's limits (`{key}` in {CONFIG_KV}) cannot be read: {e}"))
            })?;
            // each session has a container of its own: a sandbox limit could not be applied
            if limits.max_running_sandboxes.is_some() {
                worker::console_error!("{CONFIG_KV} `{key}` sets max_running_sandboxes, which the Workers cannot apply");
                return Err(ApiError::new(
                    500,
                    format!("this tenant's limits (`{key}` in {CONFIG_KV}) set `max_running_sandboxes`, which the Workers do not support (each session has its own container); remove it or use `max_running_sessions`"),
                ));
            }
            Ok(limits)
        }
    }
}

/// Refuses new work past the tenant's limits (402 past its hard monthly spend, 429 at its
/// running-session limit when `new_running`); past the soft limit the work goes on, logged.
pub async fn check(env: &Env, tenant: &TenantId, new_running: bool) -> Result<(), ApiError> {
    let limits = limits(env, tenant).await?;
    if limits == TenantLimits::default() {
        return Ok(());
    }
    let db = D1::new(env.d1("DB").map_err(|e| ApiError::new(500, format!("binding `DB`: {e}")))?);
    use openma_core::Clock;
    if openma_core::quota::check(&limits, &db, &db, tenant, WorkerClock.now(), new_running).await? {
        worker::console_warn!("tenant {tenant} is over its soft monthly spend limit");
    }
    Ok(())
}

/// [`check`] for client events sent to `session`: a message starts a turn (and, on an idle
/// session, a running session).
pub async fn check_events(env: &Env, tenant: &TenantId, session: &Session, events: &serde_json::Value) -> Result<(), ApiError> {
    let starts_turn = events.as_array().is_some_and(|e| e.iter().any(|e| e["type"] == "user.message"));
    if !starts_turn {
        return Ok(());
    }
    check(env, tenant, !matches!(session.status, SessionStatus::Running | SessionStatus::Rescheduling)).await
}
