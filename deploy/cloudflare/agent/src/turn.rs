//! A session's turn on Workers, run from its Durable Object's alarm: model → tools →
//! model …, with the core's projection, tool plan and step logic, as the native actor
//! runs it. An alarm that fails or is cut short is retried by the runtime, so a turn
//! resumes from the log. Transient model failures back off by rescheduling the alarm.
//!
//! Built-in tools run in the session's sandbox (`sandbox`: its container, or a sandbox
//! server at `OPENMA_SANDBOX_URL`), which starts while the turn's first model call runs;
//! `web_fetch` and `web_search` in the object itself (`web`). A tool the agent does not
//! offer is never run, and what this deployment cannot run yet (MCP servers) gets an error
//! result saying so, and the model carries on — nothing is left hanging.

use std::time::Duration;

use futures::StreamExt;
use futures::future::Either;
use openma_core::harness::projection;
use openma_core::harness::retry::RetryPolicy;
use openma_core::harness::step::{self, Accumulator, Pending, Step};
use openma_core::harness::tools::{SandboxUsage, ToolPlan, ToolRoute};
use openma_core::model::{ModelError, ModelEvent, TransientKind};
use openma_core::ledger;
use openma_core::ports::{Announcer, LedgerStore, SessionStore, StoredEvent};
use openma_core::pricing::PriceSchedule;
use openma_core::IdGen;
use openma_core::{TenantId, sessions};
use openma_types::events::{EventPayload, ModelUsage, RetryStatus, SessionErrorObject, StopReason};
use openma_types::sandbox::ToolCall;
use openma_types::sessions::{SessionStatus, SessionUsage};
use openma_worker_common::adapters::WorkerIds;
use openma_worker_common::d1::D1;
use openma_worker_common::files::WorkerFiles;
use worker::Result;

use crate::event_log::EventLog;
use crate::model::ModelEndpoint;
use crate::sandbox::{self, Sandbox};
use crate::session::{INBOX, INTERRUPT, META, Meta, SessionDO};

/// As natively (`RuntimeConfig`): tokens per model request, model calls per turn.
const MAX_TOKENS: u32 = 8192;
const MAX_TOOL_ROUNDS: u32 = 200;
/// Storage key: failed model calls in a row (for the back-off).
const ATTEMPT: &str = "attempt";
const NO_SANDBOX: &str = "This tool needs the session sandbox, and this deployment has none: openma-agent has neither a container (`containers` in its wrangler.jsonc) nor OPENMA_SANDBOX_URL.";

/// The status a status event moves the session to.
fn status_of(payload: &EventPayload) -> Option<SessionStatus> {
    match payload {
        EventPayload::StatusRunning {} => Some(SessionStatus::Running),
        EventPayload::StatusIdle { .. } => Some(SessionStatus::Idle),
        EventPayload::StatusRescheduled {} => Some(SessionStatus::Rescheduling),
        EventPayload::StatusTerminated {} => Some(SessionStatus::Terminated),
        _ => None,
    }
}

/// The session's status as its log says: the last status event wins.
fn status(log: &[StoredEvent]) -> SessionStatus {
    log.iter().rev().find_map(|e| status_of(&e.event.payload)).unwrap_or(SessionStatus::Idle)
}

pub fn is_running(log: &[StoredEvent]) -> bool {
    matches!(status(log), SessionStatus::Running | SessionStatus::Rescheduling)
}

/// Mirrors the runtime status (and usage) into the session's D1 row, which the API reads,
/// and tells the tenant's webhook subscribers of a change of status, as natively (with the
/// stop reasons they may subscribe to). Their deliveries leave in the background.
pub async fn set_status(object: &SessionDO, status: SessionStatus, stop: Option<&StopReason>) -> Result<()> {
    let Some(meta) = object.state.storage().get::<Meta>(META).await? else { return Ok(()) };
    let db = D1::new(object.env.d1("DB")?);
    let tenant = TenantId::from_trusted(meta.tenant.clone());
    let id = &meta.session.id;
    for _ in 0..8 {
        let Some(mut row) = db.get_session(&tenant, id).await.map_err(store)? else { return Ok(()) };
        let (expected, was) = (row.updated_at, row.status);
        row.status = status;
        row.usage = meta.session.usage.clone();
        row.updated_at = object.now().strictly_after(expected);
        if db.update_session(&tenant, &row, expected).await.map_err(store)? {
            let mut kinds = if was != status { openma_core::webhooks::status_events(status).to_vec() } else { Vec::new() };
            kinds.extend(stop.and_then(openma_core::webhooks::stop_event));
            if !kinds.is_empty() {
                db.announce_all(&tenant, &kinds, id).await;
                openma_worker_common::webhooks::send_queued(&object.env);
            }
            return Ok(());
        }
    }
    Err(worker::Error::RustError(format!("session `{}` changed concurrently 8 times", meta.session.id)))
}

/// Records ledger rows in D1 (idempotent on their source event): before what they bill for
/// is recorded, so a failure fails the step rather than leaving a call unbilled.
async fn bill(object: &SessionDO, tenant: &str, rows: &[ledger::LedgerEntry]) -> Result<()> {
    D1::new(object.env.d1("DB")?).insert_ledger(&TenantId::from_trusted(tenant.to_owned()), rows).await.map(drop).map_err(store)
}

fn store(e: openma_core::StoreError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// Appends events, publishes them to the open streams and, when they change the status,
/// mirrors it into D1.
async fn emit(object: &SessionDO, events: Vec<Pending>) -> Result<Vec<StoredEvent>> {
    let new_status = events.iter().rev().find_map(|p| status_of(&p.payload));
    let stop = events.iter().rev().find_map(|p| match &p.payload {
        EventPayload::StatusIdle { stop_reason } => Some(stop_reason.clone()),
        _ => None,
    });
    let log = object.log().await?;
    let running_since = match new_status {
        Some(s) if s != SessionStatus::Running => last_running_since(&log)?,
        _ => None,
    };
    let written = log.append(events, object.now(), || object.new_id())?;
    object.subscribers.publish(&written);
    if let (Some(from), Some(last)) = (running_since, written.last()) {
        meter_running(object, from, last).await;
    }
    if let Some(s) = new_status {
        set_status(object, s, stop.as_ref()).await?;
    }
    Ok(written)
}

/// [`emit`] for events with no preview to replace.
pub(crate) async fn emit_payloads(object: &SessionDO, events: Vec<EventPayload>) -> Result<Vec<StoredEvent>> {
    emit(object, events.into_iter().map(Into::into).collect()).await
}

/// When the session has been running since, if it is running: the time of its last
/// status event when that is `session.status_running`.
fn running_since(log: &[StoredEvent]) -> Option<openma_types::Timestamp> {
    let last = log.iter().rev().find(|e| status_of(&e.event.payload).is_some())?;
    matches!(last.event.payload, EventPayload::StatusRunning {}).then_some(last.event.processed_at).flatten()
}

/// [`running_since`] from the log's last status event alone (one indexed read, not the log).
fn last_running_since(log: &EventLog) -> Result<Option<openma_types::Timestamp>> {
    let types: Vec<String> = ["session.status_running", "session.status_idle", "session.status_rescheduled", "session.status_terminated"]
        .into_iter()
        .map(String::from)
        .collect();
    Ok(running_since(&log.page(None, true, 1, &types)?))
}

/// The ledger row of a running interval that `end` (the event leaving `running`) closes,
/// as natively (`ledger::runtime`, sourced by that event). A D1 failure is logged: the
/// events are written already and the interval is not metered twice.
async fn meter_running(object: &SessionDO, from: openma_types::Timestamp, end: &StoredEvent) {
    let storage = object.state.storage();
    let Ok(Some(mut meta)) = storage.get::<Meta>(META).await else { return };
    let to = end.event.processed_at.unwrap_or_else(|| object.now());
    let millis = (to.as_micros() - from.as_micros()).max(0) as u64 / 1000;
    // the session's usage (mirrored into D1 next) counts the interval too
    meta.session.usage.active_seconds += millis as f64 / 1000.0;
    if let Err(e) = storage.put(META, meta.clone()).await {
        worker::console_error!("session {}: its active time is not recorded: {e}", meta.session.id);
    }
    let subject = ledger::Subject::of(&meta.session);
    let Some(row) = ledger::runtime(&subject, &PriceSchedule::default(), millis, &end.event.id, to, WorkerIds.new_id("led")) else { return };
    if let Err(e) = bill(object, &meta.tenant, &[row]).await {
        worker::console_error!("ledger: session {}: the running time of {millis} ms is not recorded: {e}", meta.session.id);
    }
}

/// What this deployment cannot run yet, said in the call's result.
fn unavailable(name: &str) -> String {
    format!("`{name}` is not available on the Cloudflare Workers deployment yet.")
}

/// Runs the allowed calls that have no result yet, in order, appending each result as it
/// comes: the sandbox's tools through the session's sandbox; what this deployment cannot
/// run gets an error result saying so. An interrupt stops the wait (the loop then ends the
/// turn with honest results for what did not finish).
async fn run_tools(object: &SessionDO, meta: &Meta, plan: &ToolPlan, log: &[StoredEvent], ids: Vec<String>) -> Result<()> {
    let mut opened: Option<std::result::Result<Option<Sandbox>, String>> = None;
    for id in ids {
        if object.state.storage().get::<String>(INTERRUPT).await?.is_some() {
            return Ok(());
        }
        let Some(event) = log.iter().find(|e| e.event.id == id) else { continue };
        let (name, input) = match &event.event.payload {
            EventPayload::AgentToolUse { name, input, .. } => (name.as_str(), input),
            EventPayload::AgentMcpToolUse { mcp_server_name, name, input, .. } => {
                let Some(out) = interruptible(object, crate::mcp::call(object, meta, mcp_server_name, name, input)).await else { return Ok(()) };
                let result = EventPayload::AgentMcpToolResult { mcp_tool_use_id: id, content: out.content, is_error: out.is_error };
                emit(object, vec![result.into()]).await?;
                continue;
            }
            _ => continue,
        };
        // a tool the agent does not offer is never run, whatever the model asks for
        if !matches!(plan.route(name), ToolRoute::Builtin { .. }) {
            emit(object, vec![step::result_for(log, &id, &format!("`{name}` is not a tool of this agent."))]).await?;
            continue;
        }
        if crate::web::runs(name) {
            let Some(result) = interruptible(object, web_tool(object, meta, log, &id, name, input)).await else { return Ok(()) };
            emit(object, vec![result?.into()]).await?;
            continue;
        }
        let Some(writes) = sandbox::writes(name) else {
            emit(object, vec![step::result_for(log, &id, &unavailable(name))]).await?;
            continue;
        };
        if opened.is_none() {
            opened = Some(Sandbox::of(object, &meta.tenant, &meta.session.id).await.map_err(|e| e.to_string()));
        }
        let sandbox = match &opened {
            Some(Ok(Some(sandbox))) => sandbox,
            Some(Err(e)) => {
                emit(object, vec![step::result_for(log, &id, &format!("The sandbox cannot be used: {e}"))]).await?;
                continue;
            }
            _ => {
                emit(object, vec![step::result_for(log, &id, NO_SANDBOX)]).await?;
                continue;
            }
        };
        if writes {
            // noted before the call: a turn cut short mid-call still snapshots its workspace
            object.state.storage().put(sandbox::DIRTY, true).await?;
        }
        let call = ToolCall {
            input: input.clone(),
            config: ToolPlan::builtin_config(&meta.session.agent, name),
            tenant: meta.tenant.clone(),
            environment_id: meta.session.environment_id.clone(),
        };
        let Some(out) = interruptible(object, sandbox.run(object, meta, name, &call)).await else { return Ok(()) };
        if let Some(u) = out.usage {
            // the sandbox's time, billed before the result is recorded (idempotent on the tool use)
            let subject = ledger::Subject::of(&meta.session);
            let usage = SandboxUsage { wall_ms: u.wall_ms, cpu_ms: u.cpu_ms };
            let rows = ledger::sandbox(&subject, &PriceSchedule::default(), &usage, &id, object.now(), || WorkerIds.new_id("led"));
            bill(object, &meta.tenant, &rows).await?;
        }
        let result = EventPayload::AgentToolResult { tool_use_id: id, content: out.content, is_error: out.is_error };
        emit(object, vec![result.into()]).await?;
    }
    Ok(())
}

/// Runs `web_fetch` (the URL first checked against the tool's `url_sources`) or
/// `web_search` (metered once it answered, before its result is recorded): its result.
async fn web_tool(object: &SessionDO, meta: &Meta, log: &[StoredEvent], id: &str, name: &str, input: &serde_json::Value) -> Result<EventPayload> {
    let config = ToolPlan::builtin_config(&meta.session.agent, name);
    if let Err(why) = openma_core::harness::url_sources::check_call(name, config.as_ref(), input, log) {
        return Ok(EventPayload::AgentToolResult { tool_use_id: id.to_owned(), content: vec![step::text_block(&why)], is_error: true });
    }
    let out = crate::web::run(&object.env, name, input, config.as_ref()).await;
    if name == "web_search" && !out.is_error {
        let subject = ledger::Subject::of(&meta.session);
        let row = ledger::web_search(&subject, &PriceSchedule::default(), id, object.now(), WorkerIds.new_id("led"));
        bill(object, &meta.tenant, &[row]).await?;
    }
    Ok(EventPayload::AgentToolResult { tool_use_id: id.to_owned(), content: out.content, is_error: out.is_error })
}

/// `work`'s output, or `None` when an interrupt came first.
async fn interruptible<F: std::future::Future>(object: &SessionDO, work: F) -> Option<F::Output> {
    let (tx, mut interrupt) = futures::channel::mpsc::unbounded::<()>();
    *object.interrupt.borrow_mut() = Some(tx);
    let out = match futures::future::select(std::pin::pin!(work), interrupt.next()).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    };
    object.interrupt.borrow_mut().take();
    out
}

/// Starts the session's sandbox (a container boots) while the model is called: it is
/// ready, or nearly, by the time the model asks for a tool. Dropped when the model call
/// ends first: the container, once started, boots on its own.
async fn prepare_sandbox(object: &SessionDO, meta: Meta) {
    let started = async {
        let Some(sandbox) = Sandbox::of(object, &meta.tenant, &meta.session.id).await? else { return Ok(false) };
        sandbox.open(object, &meta).await.map(|()| true)
    };
    match started.await {
        Ok(ready) => object.sandbox_ready.set(ready),
        // the tool call tries again, and says why it cannot run if it still cannot
        Err(e) => worker::console_warn!("sandbox: session {} not prepared: {e}", meta.session.id),
    }
}

/// After a turn that may have changed the workspace: its snapshot goes to R2, and the
/// outputs it holds into the Files API.
async fn keep_workspace(object: &SessionDO, meta: &Meta) -> Result<()> {
    let storage = object.state.storage();
    if storage.get::<bool>(sandbox::DIRTY).await?.is_none() {
        return Ok(());
    }
    let Some(sandbox) = Sandbox::of(object, &meta.tenant, &meta.session.id).await? else { return Ok(()) };
    let pack = sandbox.snapshot(object).await?;
    let taken = match &pack {
        Some(pack) => crate::session_files::capture_outputs(&object.env, meta, pack).await?,
        None => 0,
    };
    // only now: a failure above leaves the mark, and the next turn's end tries again
    storage.delete(sandbox::DIRTY).await?;
    worker::console_log!("sandbox: session {} workspace kept ({} bytes, {taken} outputs taken)", meta.session.id, pack.map_or(0, |p| p.len()));
    Ok(())
}

/// Where the current turn began: the last `session.status_running`.
fn turn_start(log: &[StoredEvent]) -> i64 {
    log.iter().rev().find(|e| matches!(e.event.payload, EventPayload::StatusRunning {})).map_or(0, |e| e.seq)
}

/// Usage so far, the current running interval's time included, with its list cost (the
/// native actor's `usage_now`).
pub(crate) fn usage_now(meta: &Meta, running_since: Option<openma_types::Timestamp>, now: openma_types::Timestamp) -> SessionUsage {
    let mut usage = meta.session.usage.clone();
    if let Some(since) = running_since {
        usage.active_seconds += (now.as_micros() - since.as_micros()).max(0) as f64 / 1e6;
    }
    sessions::priced_usage(&meta.session.agent.model.id, usage)
}

/// True when the session's budget is reached (see [`sessions::budget_reached`]).
pub(crate) fn budget_reached(meta: &Meta, log: &[StoredEvent], now: openma_types::Timestamp) -> bool {
    meta.session.budget.is_some() && sessions::budget_reached(&meta.session, &usage_now(meta, running_since(log), now))
}

async fn go_idle(object: &SessionDO, meta: &Meta, reason: StopReason) -> Result<()> {
    go_idle_keeping(object, meta, reason, true).await
}

/// Ends the turn. With `outputs_first`, the workspace is kept (its outputs taken) before the
/// client sees the session idle, as natively the outputs are listed by then; after an
/// interrupt it is kept after, since the sandbox holds the session until the interrupted
/// command has ended, and so it is when the sandbox could not be reached this turn. A
/// failure to keep it is retried after the next turn.
async fn go_idle_keeping(object: &SessionDO, meta: &Meta, reason: StopReason, outputs_first: bool) -> Result<()> {
    object.state.storage().delete(ATTEMPT).await?;
    let first = if outputs_first && object.sandbox_ready.get() { Some(keep_workspace(object, meta).await) } else { None };
    let usage = usage_now(meta, last_running_since(&object.log().await?)?, object.now());
    emit(object, vec![EventPayload::SessionUsage { usage, budget: meta.session.budget.clone() }.into(), EventPayload::StatusIdle { stop_reason: reason }.into()]).await?;
    crate::integrations::turn_ended(object, meta).await;
    let kept = match first {
        Some(kept) => kept,
        None => keep_workspace(object, meta).await,
    };
    match kept {
        // an idle container stops later; its workspace is safe in R2
        Ok(()) => sandbox::schedule_sleep(object).await?,
        Err(e) => worker::console_error!("sandbox: session {} workspace not kept: {e}", meta.session.id),
    }
    Ok(())
}

/// The back-off of failed model calls: `OPENMA_MODEL_MAX_RETRIES` and
/// `OPENMA_MODEL_RETRY_BASE_MS`, as on the native server.
fn retry_policy(object: &SessionDO) -> RetryPolicy {
    let number = |name: &str| crate::model::text(&object.env, name).and_then(|v| v.trim().parse::<u64>().ok());
    let mut policy = RetryPolicy::default();
    if let Some(n) = number("OPENMA_MODEL_MAX_RETRIES") {
        policy.max_retries = n.min(100) as u32;
    }
    if let Some(ms) = number("OPENMA_MODEL_RETRY_BASE_MS") {
        policy.base = Duration::from_millis(ms);
    }
    policy
}

/// Ends the turn for an interrupt: the interrupt's event, honest results for the calls
/// that will not run, then idle.
async fn interrupted(object: &SessionDO, meta: &Meta, id: String, log: &[StoredEvent]) -> Result<()> {
    object.state.storage().delete(INTERRUPT).await?;
    let mut events = vec![Pending { id: Some(id), payload: EventPayload::UserInterrupt {}, internal: None }];
    events.extend(step::unrun_allowed_calls(log).iter().map(|id| step::result_for(log, id, "The user interrupted the session before this tool call completed.")));
    emit(object, events).await?;
    go_idle_keeping(object, meta, StopReason::EndTurn, false).await
}

/// The client events waiting in the inbox, as events to append under their echoed ids.
async fn inbox(object: &SessionDO) -> Result<Vec<Pending>> {
    let queued: Vec<openma_types::events::SessionEvent> = object.state.storage().get(INBOX).await?.unwrap_or_default();
    Ok(queued.into_iter().map(|e| Pending { id: Some(e.id), payload: e.payload, internal: None }).collect())
}

/// Runs the session until it is idle, waits on the client, or backs off.
pub async fn run(object: &SessionDO) -> Result<()> {
    let storage = object.state.storage();
    let Some(mut meta) = storage.get::<Meta>(META).await? else { return Ok(()) };
    let base = ToolPlan::for_agent(&meta.session.agent, openma_worker_common::capabilities(&object.env));
    let uses_sandbox = base.specs.iter().any(|s| sandbox::writes(&s.name).is_some());
    let skills_note = crate::session_files::skills_note(object, &meta.tenant, &meta.session.agent.skills).await;
    // the plan of the turn being run: its MCP servers' tools are listed once per turn
    let mut planned: Option<(i64, ToolPlan)> = None;
    let mut rounds = 0u32;
    loop {
        let log = object.log().await?.all()?;
        match status(&log) {
            SessionStatus::Terminated => {
                storage.delete_multiple(vec![INBOX, INTERRUPT]).await?;
                return Ok(());
            }
            SessionStatus::Idle => {
                // input sent while the last turn was ending starts the next one; an
                // interrupt that came too late has nothing left to stop
                storage.delete(INTERRUPT).await?;
                let mut events = inbox(object).await?;
                if events.is_empty() {
                    return sandbox::sleep_if_due(object).await;
                }
                events.push(EventPayload::StatusRunning {}.into());
                emit(object, events).await?;
                storage.delete(INBOX).await?;
                continue;
            }
            SessionStatus::Rescheduling => {
                emit(object, vec![EventPayload::StatusRunning {}.into()]).await?;
                continue;
            }
            SessionStatus::Running => {}
        }
        crate::integrations::turn_progress(object, &meta).await;
        let start = turn_start(&log);
        // the agent's tools and, connected once per turn, its MCP servers'
        if planned.as_ref().is_none_or(|(turn, _)| *turn != start) {
            planned = Some((start, crate::mcp::plan(object, &meta, &base, start).await?));
            if crate::session_credentials::report_unreachable(object, &meta, &log).await? {
                continue;
            }
        }
        let Some((_, plan)) = &planned else { unreachable!("planned just above") };
        if let Some(id) = storage.get::<String>(INTERRUPT).await? {
            return interrupted(object, &meta, id, &log).await;
        }
        // input that arrived during the last model call joins the turn, in order
        let events = inbox(object).await?;
        if !events.is_empty() {
            emit(object, events).await?;
            storage.delete(INBOX).await?;
            continue;
        }
        let unrun = step::unrun_allowed_calls(&log);
        if !unrun.is_empty() {
            run_tools(object, &meta, plan, &log, unrun).await?;
            continue;
        }
        let blocking = step::blocking_ids(&log);
        if !blocking.is_empty() {
            return go_idle(object, &meta, StopReason::RequiresAction { event_ids: blocking }).await;
        }
        // the turn is over when the last model call ended it and no input came after it
        let last_end = log.iter().rev().find(|e| matches!(e.event.payload, EventPayload::ModelRequestEnd { is_error: false, .. }));
        if let Some(end) = last_end.filter(|e| e.seq > start) {
            let new_input = log.iter().any(|e| e.seq > end.seq && matches!(e.event.payload, EventPayload::UserMessage { .. } | EventPayload::SystemMessage { .. }));
            let ended = end.internal.as_ref().and_then(|i| i.get("ends_turn")).and_then(|v| v.as_str()).map(str::to_owned);
            if let (Some(reason), false) = (ended, new_input) {
                let reason = if reason == "refusal" { StopReason::Refusal } else { StopReason::EndTurn };
                return go_idle(object, &meta, reason).await;
            }
        }
        if rounds >= MAX_TOOL_ROUNDS {
            let error = SessionErrorObject::new("tool_use_limit_reached_error", format!("the turn stopped after {rounds} tool-use rounds"), RetryStatus::Exhausted);
            emit(object, vec![EventPayload::SessionError { error }.into()]).await?;
            return go_idle(object, &meta, StopReason::EndTurn).await;
        }
        if budget_reached(&meta, &log, object.now()) {
            return go_idle(object, &meta, StopReason::BudgetReached).await;
        }
        rounds += 1;
        let warm = (uses_sandbox && !object.sandbox_ready.get()).then(|| prepare_sandbox(object, meta.clone()));
        let step = model_step(object, &mut meta, plan, skills_note.as_deref(), &log);
        let called = match warm {
            None => step.await,
            Some(warm) => match futures::future::select(std::pin::pin!(step), std::pin::pin!(warm)).await {
                // a container still booting goes on booting; a tool call waits for it
                Either::Left((called, _)) => called,
                Either::Right(((), step)) => step.await,
            },
        };
        match called? {
            Ok(Called::Interrupted) => continue,
            Ok(Called::Done) => {
                storage.delete(ATTEMPT).await?;
            }
            Err(err) => {
                let attempt = storage.get::<u32>(ATTEMPT).await?.unwrap_or(0) + 1;
                let kind = step::error_kind(&err).to_owned();
                let retry_after = match &err {
                    ModelError::Transient { retry_after, .. } => *retry_after,
                    ModelError::Permanent { .. } => None,
                };
                let delay: Option<Duration> = if err.is_transient() { retry_policy(object).delay(attempt, retry_after) } else { None };
                match delay {
                    Some(d) => {
                        storage.put(ATTEMPT, attempt).await?;
                        let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Retrying);
                        emit(object, vec![EventPayload::SessionError { error }.into(), EventPayload::StatusRescheduled {}.into()]).await?;
                        // the alarm runs the retry: it survives eviction
                        storage.set_alarm(d.as_millis() as i64).await?;
                        return Ok(());
                    }
                    None if err.is_transient() => {
                        let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Exhausted);
                        emit(object, vec![EventPayload::SessionError { error }.into()]).await?;
                        return go_idle(object, &meta, StopReason::RetriesExhausted).await;
                    }
                    None => {
                        storage.delete(ATTEMPT).await?;
                        let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Terminal);
                        let usage = meta.session.usage.clone();
                        emit(
                            object,
                            vec![
                                EventPayload::SessionError { error }.into(),
                                EventPayload::SessionUsage { usage, budget: meta.session.budget.clone() }.into(),
                                EventPayload::StatusTerminated {}.into(),
                            ],
                        )
                        .await?;
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// How a model call ended, when it did not fail.
enum Called {
    Done,
    /// An interrupt stopped it; what it had said so far is kept.
    Interrupted,
}

/// Puts the content of the files the request names by `file_id` into it (D1 says which are
/// live, R2 holds the bytes, cached for the object's lifetime). A failure is transient: the
/// step is retried like a failed model call.
async fn resolve_files(object: &SessionDO, tenant: &TenantId, request: &mut openma_core::model::ModelRequest) -> std::result::Result<(), ModelError> {
    let files = WorkerFiles::new(&object.env)
        .map_err(|_| ModelError::Transient { kind: TransientKind::ServerError, message: "the file store's bindings are missing".into(), retry_after: None })?;
    let mut cache = object.file_blocks.take();
    let resolved = cache.resolve(&files.files(), tenant, request).await;
    object.file_blocks.replace(cache);
    resolved
}

/// One model call: streams it (publishing previews), then appends its events. The end
/// event notes (harness-only) whether the call ended the turn.
async fn model_step(object: &SessionDO, meta: &mut Meta, plan: &ToolPlan, note: Option<&str>, log: &[StoredEvent]) -> Result<std::result::Result<Called, ModelError>> {
    let session = &meta.session;
    let meta_tenant = &meta.tenant;
    let mut request = projection::request(&session.agent, plan, log, MAX_TOKENS);
    // what the model is told about its memory mounts and the agent's skills, after its
    // system prompt (in the native order)
    request.append_system(openma_core::memory_mounts::system_note(&session.resources).as_deref());
    request.append_system(note);
    let start = emit(object, vec![EventPayload::ModelRequestStart {}.into()]).await?;
    let start_id = start[0].event.id.clone();
    let failed = |start_id: String| Pending::from(EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: ModelUsage::default(), is_error: true });
    let (tx, mut interrupt) = futures::channel::mpsc::unbounded::<()>();
    *object.interrupt.borrow_mut() = Some(tx);
    let mut acc = Accumulator::default();
    let outcome = async {
        let tenant = TenantId::from_trusted(meta_tenant.clone());
        resolve_files(object, &tenant, &mut request).await?;
        let (endpoint, model) = ModelEndpoint::for_tenant(&object.env, &tenant, &session.agent.model.id).await?;
        let prices = endpoint.prices.clone();
        let call = std::pin::pin!(endpoint.stream(&request, &model));
        let mut stream = match futures::future::select(call, interrupt.next()).await {
            Either::Left((opened, _)) => opened?,
            Either::Right(_) => return Ok(None),
        };
        loop {
            let item = match futures::future::select(stream.next(), interrupt.next()).await {
                Either::Left((item, _)) => item,
                Either::Right(_) => return Ok(None),
            };
            match item {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(ModelEvent::Finished { stop_reason, usage })) => return Ok(Some((stop_reason, usage, prices))),
                Some(Ok(ev)) => acc.on_event(ev, &mut |p| object.subscribers.preview(p), || object.new_id()),
            }
        }
        Err(ModelError::Transient { kind: TransientKind::StreamCut, message: "the model stream ended before the message was complete".into(), retry_after: None })
    }
    .await;
    object.interrupt.borrow_mut().take();
    match outcome {
        Err(e) => {
            emit(object, vec![failed(start_id)]).await?;
            Ok(Err(e))
        }
        Ok(None) => {
            // interrupted: the text so far stays the agent's (partial) message
            let mut events = acc.partial_text();
            events.push(failed(start_id));
            emit(object, events).await?;
            Ok(Ok(Called::Interrupted))
        }
        Ok(Some((stop, usage, prices))) => {
            // billed before the step is recorded: the provider has charged for the call even
            // if the object is evicted now (the row is idempotent on its source, the end event)
            let end_id = object.new_id();
            let subject = ledger::Subject::of(session);
            let rows = ledger::model_request(&subject, &PriceSchedule::default(), &prices, &usage, &end_id, object.now(), || WorkerIds.new_id("led"));
            bill(object, meta_tenant, &rows).await?;
            let mut events = acc.into_events(plan);
            let ends = match Step::after(stop, &events) {
                Step::Continues => None,
                Step::EndsTurn(Some(StopReason::Refusal)) => Some("refusal"),
                Step::EndsTurn(_) => Some("end_turn"),
            };
            step::add_usage(&mut meta.session.usage, usage);
            object.state.storage().put(META, meta.clone()).await?;
            events.push(Pending {
                id: Some(end_id),
                payload: EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: step::model_usage(usage), is_error: false },
                internal: ends.map(|r| serde_json::json!({"ends_turn": r})),
            });
            emit(object, events).await?;
            Ok(Ok(Called::Done))
        }
    }
}
