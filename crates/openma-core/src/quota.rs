//! Tenant quotas: the monthly spend limits and the running-session limit, checked before new
//! work starts, the same way in every deployment (the native server keeps a tenant's limits
//! in its database, the Workers in KV).

use openma_types::Timestamp;

use crate::error::{DomainError, DomainResult};
use crate::ports::{LedgerStore, SessionStore, UsageQuery};
use crate::tenancy::TenantLimits;
use crate::TenantId;

/// Spend of the calendar month (UTC) of `now`, in micro-dollars.
pub async fn month_spend_micros(ledger: &dyn LedgerStore, tenant: &TenantId, now: Timestamp) -> DomainResult<i64> {
    let now = now.to_string();
    let start: Timestamp = format!("{}-01T00:00:00Z", &now[..7]).parse().map_err(|_| DomainError::invalid("clock"))?;
    let rows = ledger.usage_report(tenant, &UsageQuery { group_by: Vec::new(), from: Some(start.as_micros()), to: None }).await?;
    Ok(rows.iter().map(|r| r.amount_micros).sum())
}

/// Refuses new work past the tenant's hard monthly spend limit (402) or while it has as many
/// running sessions as allowed (429). `new_running` says whether the work would start a
/// session that is not running now. Returns true when the soft monthly limit is exceeded
/// (the caller warns).
pub async fn check(
    limits: &TenantLimits,
    ledger: &dyn LedgerStore,
    sessions: &dyn SessionStore,
    tenant: &TenantId,
    now: Timestamp,
    new_running: bool,
) -> DomainResult<bool> {
    let mut soft_exceeded = false;
    if limits.monthly_hard_micros.is_some() || limits.monthly_soft_micros.is_some() {
        let spent = month_spend_micros(ledger, tenant, now).await?;
        if let Some(hard) = limits.monthly_hard_micros
            && spent >= hard
        {
            return Err(DomainError::PaymentRequired(format!(
                "this tenant reached its monthly spend limit (${:.2} of ${:.2}); new sessions and turns are refused until the limit is raised or the month ends",
                spent as f64 / 1e6,
                hard as f64 / 1e6
            )));
        }
        soft_exceeded = limits.monthly_soft_micros.is_some_and(|soft| spent >= soft);
    }
    if new_running
        && let Some(max) = limits.max_running_sessions
        && sessions.count_running_sessions(tenant).await? >= max
    {
        return Err(DomainError::QuotaExceeded {
            message: format!("this tenant already runs {max} sessions at once, its limit; retry when one goes idle"),
            retry_after_secs: 5,
        });
    }
    Ok(soft_exceeded)
}
