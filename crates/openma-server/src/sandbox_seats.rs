//! The per-tenant limit on sandboxes running at once (`max_running_sandboxes`).
//!
//! A sandbox runs while its session's shell lives: from the first `bash` call until the
//! session is deleted or its shell is stopped after idling (the file tools work on the
//! workspace without one). The limit is kept at two points:
//!
//! - a new turn of a session whose agent offers `bash`, and whose sandbox is not running,
//!   is refused with 429 (`rate_limit_error`, `retry-after`) while the tenant already runs
//!   as many sandboxes as allowed: the client learns at once, as for running sessions;
//! - a `bash` call that would start a sandbox takes a seat first, atomically with the
//!   count, so two turns admitted together cannot both start one past the limit; the call
//!   that finds no seat gets an error result the model sees.
//!
//! Seats are counted in this process: in a cluster each node keeps the limit for the
//! sessions it runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use openma_core::harness::tools::{Capabilities, Tool, ToolContext, ToolOutput, ToolPlan, ToolRoute};
use openma_core::{DomainError, Platform, TenantId};
use openma_types::sessions::Session;
use serde_json::Value;

/// The tool whose first call starts a session's sandbox.
pub const STARTING_TOOL: &str = "bash";
/// What a refused turn is told to wait.
const RETRY_AFTER_SECS: u64 = 5;

#[derive(Clone)]
struct Seat {
    tenant: TenantId,
    /// Taken for a call that is starting the sandbox (it is not running yet).
    starting: bool,
}

/// Whether a session's sandbox runs now: on this host, or on a remote sandbox server.
pub type IsRunning = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub struct SandboxSeats {
    platform: Platform,
    is_running: IsRunning,
    seats: Mutex<HashMap<String, Seat>>,
}

impl SandboxSeats {
    pub fn new(platform: Platform, is_running: IsRunning) -> Arc<Self> {
        Arc::new(SandboxSeats { platform, is_running, seats: Mutex::new(HashMap::new()) })
    }

    fn running(&self, session_id: &str) -> bool {
        (self.is_running)(session_id)
    }

    /// The tenant's seats, after letting go of those whose sandbox stopped.
    fn held(&self, seats: &mut HashMap<String, Seat>, tenant: &TenantId) -> i64 {
        seats.retain(|id, s| s.starting || self.running(id));
        seats.values().filter(|s| s.tenant == *tenant).count() as i64
    }

    fn refusal(max: i64) -> DomainError {
        DomainError::QuotaExceeded {
            message: format!(
                "this tenant already runs {max} sandboxes at once, its limit; retry when one stops (an idle session's sandbox stops after a while)"
            ),
            retry_after_secs: RETRY_AFTER_SECS,
        }
    }

    /// Refuses a new turn of `session` while the tenant runs as many sandboxes as allowed,
    /// when the turn could start one (its agent offers `bash` and its sandbox is not running).
    pub async fn admit_turn(&self, tenant: &TenantId, session: &Session, caps: Capabilities) -> Result<(), DomainError> {
        let Some(max) = self.platform.tenant_limits(tenant).await?.max_running_sandboxes else { return Ok(()) };
        if matches!(ToolPlan::for_agent(&session.agent, caps).route(STARTING_TOOL), ToolRoute::Unknown) || self.running(&session.id) {
            return Ok(());
        }
        let mut seats = self.seats.lock().expect("sandbox seats");
        if self.held(&mut seats, tenant) >= max {
            return Err(Self::refusal(max));
        }
        Ok(())
    }

    /// Takes a seat for a call that may start `session_id`'s sandbox; `Ok(false)` when it
    /// runs already (no seat needed).
    async fn claim(&self, tenant: &TenantId, session_id: &str) -> Result<bool, DomainError> {
        if self.running(session_id) {
            return Ok(false);
        }
        let max = self.platform.tenant_limits(tenant).await?.max_running_sandboxes;
        let mut seats = self.seats.lock().expect("sandbox seats");
        if seats.get(session_id).is_some_and(|s| s.starting) {
            return Ok(false);
        }
        if let Some(max) = max
            && self.held(&mut seats, tenant) >= max
        {
            return Err(Self::refusal(max));
        }
        seats.insert(session_id.to_owned(), Seat { tenant: tenant.clone(), starting: true });
        Ok(true)
    }

    /// The call that took a seat ended: the seat stays while its sandbox runs.
    fn started(&self, session_id: &str) {
        let mut seats = self.seats.lock().expect("sandbox seats");
        if let Some(s) = seats.get_mut(session_id) {
            s.starting = false;
        }
        if !self.running(session_id) {
            seats.remove(session_id);
        }
    }
}

/// The `bash` tool behind the tenant's sandbox limit.
pub struct Seated {
    pub inner: Arc<dyn Tool>,
    pub seats: Arc<SandboxSeats>,
}

#[async_trait]
impl Tool for Seated {
    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        let claimed = match self.seats.claim(&ctx.tenant, &ctx.session_id).await {
            Ok(c) => c,
            Err(DomainError::QuotaExceeded { message, .. }) => return ToolOutput::error(format!("The sandbox cannot start: {message}.")),
            Err(e) => return ToolOutput::error(format!("The sandbox cannot start: {e}")),
        };
        // released however the call ends, also when an interrupt drops it mid-command
        let _seat = claimed.then(|| SeatGuard { seats: &self.seats, session_id: &ctx.session_id });
        self.inner.run(ctx, input).await
    }
}

struct SeatGuard<'a> {
    seats: &'a SandboxSeats,
    session_id: &'a str,
}

impl Drop for SeatGuard<'_> {
    fn drop(&mut self) {
        self.seats.started(self.session_id);
    }
}
