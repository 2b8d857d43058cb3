//! Outbound webhooks on the Workers: the core's `Webhooks` on D1, sending over `fetch`.
//!
//! A change a subscriber may care about is queued by the [`D1`] database's `Announcer` into the D1 outbox
//! (`webhook_deliveries`) as natively, and never sent inline. The worker that queued it then
//! runs [`deliver_due`] after its answer is out (`wait_until`, or [`send_queued`] in a
//! SessionDO), so a first attempt leaves within moments, and stays a little while ([`STAY`])
//! for retries due again soon: a receiver's brief failure is retried after its back-off, not
//! at the next cron. Later retries, and attempts a worker was stopped before making, wait for
//! the next scan — `openma-main`'s cron, each minute — so such a retry's wait is at least the
//! configured back-off and at most a minute more. Each attempt is the core's
//! `Webhooks::attempt` (claimed in D1 first, signed per Standard Webhooks), the same steps
//! as the native delivery worker.

use std::cell::Cell;
use std::time::Duration;

use async_trait::async_trait;
use openma_core::ports::{Announcer, WebhookStore};
use openma_core::webhooks::{TIMEOUT, Webhooks};
use openma_core::{Clock, TenantId};
use worker::Env;

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::D1;
use crate::outbound::Outbound;

/// Deliveries one scan attempts (concurrently), and scans one pass makes at most.
const BATCH: u32 = 25;
const SCANS: usize = 4;
/// How long a pass waits for deliveries due again soon, from its start: well inside the 30 s
/// a `wait_until` may run on after the answer. One pass per isolate waits at a time.
const STAY: Duration = Duration::from_secs(15);
/// The least wait between scans of one pass (a delivery whose attempt failed to record stays
/// due).
const PAUSE: Duration = Duration::from_millis(100);
/// Waits between attempts, as natively (`OPENMA_WEBHOOK_RETRY_DELAYS_MS` overrides them,
/// comma-separated, for tests).
const DEFAULT_DELAYS_MS: [u64; 2] = [1_000, 10_000];

thread_local! {
    /// Whether this isolate queued a delivery since its last pass (an isolate is one thread).
    static QUEUED: Cell<bool> = const { Cell::new(false) };
    /// Whether a pass of this isolate is waiting for retries due soon.
    static STAYING: Cell<bool> = const { Cell::new(false) };
}

/// The tenant's subscribers, on the database that stores the change: queues the event in
/// its outbox, and marks the isolate as having something to send.
#[async_trait]
impl Announcer for D1 {
    async fn announce_with(&self, tenant: &TenantId, kind: &str, object_id: &str, extra: serde_json::Map<String, serde_json::Value>) {
        match outbox(self).queue(tenant, kind, object_id, &extra).await {
            Ok(Some(_)) => QUEUED.set(true),
            Ok(None) => {}
            // the change is stored already: it is not undone for want of a notification
            Err(e) => worker::console_warn!("cannot queue webhook event {kind} for {object_id}: {e}"),
        }
    }

    async fn announce_all(&self, tenant: &TenantId, kinds: &[&str], object_id: &str) {
        match outbox(self).queue_all(tenant, kinds, object_id, &serde_json::Map::new()).await {
            Ok(events) if !events.is_empty() => QUEUED.set(true),
            Ok(_) => {}
            Err(e) => worker::console_warn!("cannot queue webhook events {kinds:?} for {object_id}: {e}"),
        }
    }
}

/// The webhook service as announcing needs it: it queues, and opens no signing secret.
fn outbox(db: &D1) -> Webhooks<'_> {
    Webhooks { store: db, clock: &WorkerClock, ids: &WorkerIds, secrets: None }
}

/// Whether anything was queued since the last call (which clears it).
pub fn take_queued() -> bool {
    QUEUED.replace(false)
}

/// Sends what this isolate queued, without waiting for it: for a Durable Object, and for work
/// already inside a `wait_until`, where the request's answer is long gone. Should the
/// isolate stop first, the cron sends it.
pub fn send_queued(env: &Env) {
    if take_queued() {
        let env = env.clone();
        worker::wasm_bindgen_futures::spawn_local(async move { deliver_due(&env).await });
    }
}

/// Attempts every delivery due now (a few batches at most), each recorded in D1.
pub async fn deliver_due(env: &Env) {
    if let Err(e) = scan(env).await {
        worker::console_error!("webhook delivery scan failed: {e}");
    }
}

async fn scan(env: &Env) -> Result<(), String> {
    let db = D1::new(env.d1("DB").map_err(|e| e.to_string())?);
    // without the root secret no key opens: each attempt records why and backs off
    let secrets = crate::root_secret::secret_box(env).await.ok();
    let hooks = Webhooks { store: &db, clock: &WorkerClock, ids: &WorkerIds, secrets: secrets.as_deref() };
    let sender = Outbound::new(env, TIMEOUT);
    let delays = retry_delays(env);
    let (hooks, sender, delays) = (&hooks, &sender, &delays);
    let leave = after(WorkerClock.now(), STAY);
    let mut staying = false;
    let result = async {
        loop {
            for _ in 0..SCANS {
                let due = db.due_webhook_deliveries(WorkerClock.now(), BATCH).await.map_err(|e| e.to_string())?;
                let attempts = due.iter().map(|(tenant, d)| async move {
                    if let Err(e) = hooks.attempt(tenant, d, sender, delays).await {
                        worker::console_warn!("webhook delivery {} failed to record: {e}", d.id);
                    }
                });
                futures::future::join_all(attempts).await;
                if due.len() < BATCH as usize {
                    break;
                }
            }
            // the soonest delivery due before this pass leaves (a retry), unless another
            // pass of this isolate waits already
            if !staying && STAYING.replace(true) {
                return Ok(());
            }
            staying = true;
            if WorkerClock.now() >= leave {
                return Ok(());
            }
            let Some((_, next)) = db.due_webhook_deliveries(leave, 1).await.map_err(|e| e.to_string())?.into_iter().next() else { return Ok(()) };
            let wait = Duration::from_secs_f64(WorkerClock.now().seconds_until(next.next_attempt_at)).max(PAUSE);
            worker::Delay::from(wait).await;
        }
    }
    .await;
    if staying {
        STAYING.set(false);
    }
    result
}

fn after(t: openma_types::Timestamp, d: Duration) -> openma_types::Timestamp {
    openma_types::Timestamp::from_micros(t.as_micros().saturating_add(d.as_micros() as i64))
}

fn retry_delays(env: &Env) -> Vec<Duration> {
    let configured = crate::text(env, "OPENMA_WEBHOOK_RETRY_DELAYS_MS")
        .and_then(|v| v.split(',').map(|ms| ms.trim().parse::<u64>().ok()).collect::<Option<Vec<_>>>())
        .filter(|v| !v.is_empty());
    configured.unwrap_or_else(|| DEFAULT_DELAYS_MS.to_vec()).into_iter().map(Duration::from_millis).collect()
}
