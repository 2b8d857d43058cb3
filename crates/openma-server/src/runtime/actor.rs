//! The session actor: the only writer of one session's event log. It applies client
//! input, drives the agent loop (model → tools → model …), and publishes every event it
//! appends. Appends are atomic with the status change they imply.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openma_core::harness::input::Input;
use openma_core::harness::step::{self, Accumulator, Pending, Step, client_payload, error_kind, model_usage, result_for, text_block};
use openma_core::harness::{compaction, projection};
use openma_core::ledger;
use openma_core::harness::tools::{McpToolDef, ToolContext, ToolOutput, ToolPlan, ToolRoute};
use openma_core::model::{self, ContentBlock, ModelError, ModelEvent, TransientKind};
use openma_core::ports::{Appended, EventQuery, Fence, StoredEvent};
use openma_core::{DomainError, TenantId};
use openma_types::Timestamp;
use openma_types::agents::McpToolset;
use openma_types::events::{
    EventPayload, ModelUsage, RetryStatus, SessionErrorObject, SessionEvent, StopReason,
};
use openma_types::sessions::{Session, SessionStatus};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use openma_core::harness::file_blocks::FileBlockCache;
use super::hub::{Frame, Hub};
use super::{Command, Reply, Runtime};
use crate::cluster::{Cluster, ForwardReply, Forwarded, Undelivered};

/// The outcome of racing some work against the actor's inbox.
enum Raced<T> {
    Done(T),
    Interrupted(Interrupt),
}

/// A `user.interrupt` that arrived while the session was running.
struct Interrupt {
    id: String,
    reply: Reply<Vec<SessionEvent>>,
    echo: Vec<SessionEvent>,
}

/// How a model call ended.
enum StepResult {
    Interrupted(Interrupt, Vec<Pending>),
    Done(Result<Step, ModelError>),
}

struct Actor {
    rt: Arc<Runtime>,
    tenant: TenantId,
    session: Session,
    log: Vec<StoredEvent>,
    seq: i64,
    hub: Hub,
    rx: mpsc::UnboundedReceiver<Command>,
    /// Client messages that arrived while running (already durable in the inbox),
    /// applied at the next model step.
    queue: Vec<SessionEvent>,
    /// Set when the session was found running at load: a crash or restart cut a turn.
    recovering: bool,
    /// The turn must be repaired before it goes on.
    recovered: bool,
    /// This turn was recovered: its count of recoveries without progress is reset when it ends.
    recovery_pending_reset: bool,
    plan: ToolPlan,
    running_since: Option<Instant>,
    /// The content of the files the conversation names by `file_id`.
    files: FileBlockCache,
    /// The system prompt section about the agent's skills, read once per actor.
    skills_note: Option<String>,
    /// The tools of the session's connected MCP servers (listed at the start of a turn).
    mcp_tools: Vec<McpToolDef>,
    /// How the environment configures the tools of its stdio MCP servers.
    mcp_toolsets: Vec<McpToolset>,
    /// Cluster mode: the lease every append is conditional on.
    fence: Option<Fence>,
    /// The lease was lost: the actor stops and another node carries on.
    fenced: bool,
}

pub(super) async fn run(rt: Arc<Runtime>, tenant: TenantId, session_id: String, hub: Hub, mut rx: mpsc::UnboundedReceiver<Command>) {
    let Some(cluster) = rt.cluster().cloned() else {
        own(rt, tenant, session_id, hub, rx, None).await;
        return;
    };
    loop {
        match cluster.acquire(&session_id).await {
            Ok(Some(fence)) => {
                cluster.arrive(&session_id).await;
                rt.own(&session_id, fence.clone());
                let fenced = own(rt.clone(), tenant.clone(), session_id.clone(), hub.clone(), rx, Some(fence.clone())).await;
                rt.disown(&session_id, &fence);
                match fenced {
                    None => {
                        cluster.release(&session_id, &fence).await;
                        return;
                    }
                    // another node took the session over: what waits here goes to it
                    Some(waiting) => rx = waiting,
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(session_id, error = %e, "cannot take the session lease");
                while let Ok(cmd) = rx.try_recv() {
                    fail(cmd, DomainError::Unavailable("the session's owner cannot be determined; retry".into()));
                }
                if rt.release(&session_id, &rx) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        // another node runs the session: hand it what waits here, in order
        let cmd = match rx.try_recv() {
            Ok(cmd) => cmd,
            Err(_) => {
                if rt.release(&session_id, &rx) {
                    return;
                }
                continue;
            }
        };
        if let Some(cmd) = hand_over(&cluster, &tenant, &session_id, cmd).await {
            // its owner cannot be reached: wait for it to answer or for its lease to lapse
            rx = rt.requeue(&session_id, cmd, rx);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs the session here (under `fence` in cluster mode). Returns the waiting commands if
/// the lease was lost, so they can be handed to the new owner.
async fn own(
    rt: Arc<Runtime>,
    tenant: TenantId,
    session_id: String,
    hub: Hub,
    mut rx: mpsc::UnboundedReceiver<Command>,
    fence: Option<Fence>,
) -> Option<mpsc::UnboundedReceiver<Command>> {
    let mut actor = match Actor::load(rt.clone(), tenant, &session_id, hub, &mut rx, fence).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(session_id, error = %e, "cannot load session");
            // answer whoever is waiting, then give up
            while let Ok(cmd) = rx.try_recv() {
                fail(cmd, DomainError::conflict(format!("the session could not be loaded: {e}")));
            }
            rt.release(&session_id, &rx);
            return None;
        }
    };
    actor.serve().await;
    if actor.fenced {
        tracing::warn!(session_id, "this node lost the session's lease to another node; it stops running it here");
        return Some(std::mem::replace(&mut actor.rx, mpsc::unbounded_channel().1));
    }
    None
}

/// Hands a command to the node that owns the session. Gives it back when that node cannot
/// be reached (or no node owns the session any more): the caller retries or takes over.
async fn hand_over(cluster: &Cluster, tenant: &TenantId, session_id: &str, cmd: Command) -> Option<Command> {
    let owner = match cluster.owner(session_id).await {
        Ok(Some(o)) => o,
        Ok(None) => return Some(cmd),
        Err(e) => {
            fail(cmd, e);
            return None;
        }
    };
    let forwarded = match &cmd {
        // the owner runs it already
        Command::Wake => return None,
        Command::Submit { inputs, .. } => Forwarded::Submit { inputs: inputs.clone() },
        Command::Archive { .. } => Forwarded::Archive,
        Command::Updated { payload } => Forwarded::Updated { payload: payload.clone() },
    };
    match cluster.forward(&owner, tenant, session_id, forwarded).await {
        Ok(reply) => {
            deliver(cmd, reply);
            None
        }
        Err(Undelivered::Unreachable(why)) => {
            tracing::debug!(session_id, %why, "the session's owner does not answer");
            Some(cmd)
        }
        Err(Undelivered::Failed(why)) => {
            // it may have been applied: only the client (with its Idempotency-Key) may retry
            tracing::warn!(session_id, %why, "handing a command to the session's owner failed");
            fail(cmd, DomainError::Unavailable(format!("the node running this session failed to answer: {why}")));
            None
        }
    }
}

fn deliver(cmd: Command, reply: ForwardReply) {
    let odd = || DomainError::Unavailable("the node running this session gave an unexpected answer".into());
    match (cmd, reply) {
        (Command::Submit { reply, .. }, ForwardReply::Events(events)) => {
            let _ = reply.send(Ok(events));
        }
        (Command::Archive { reply }, ForwardReply::Session(session)) => {
            let _ = reply.send(Ok(*session));
        }
        (cmd, ForwardReply::Error(e)) => fail(cmd, e.into()),
        (Command::Updated { .. } | Command::Wake, _) => {}
        (cmd, _) => fail(cmd, odd()),
    }
}

/// Recoveries of one turn in a row without a model request completing, before it is stopped.
const MAX_RECOVERIES_WITHOUT_PROGRESS: usize = 5;

fn recovery_key(session_id: &str) -> String {
    format!("recoveries/{session_id}")
}

fn fail(cmd: Command, e: DomainError) {
    match cmd {
        Command::Submit { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Command::Archive { reply } => {
            let _ = reply.send(Err(e));
        }
        Command::Updated { .. } | Command::Wake => {}
    }
}

impl Actor {
    async fn load(
        rt: Arc<Runtime>,
        tenant: TenantId,
        session_id: &str,
        hub: Hub,
        rx: &mut mpsc::UnboundedReceiver<Command>,
        fence: Option<Fence>,
    ) -> Result<Actor, DomainError> {
        let store = rt.platform.store.clone();
        let session = store.get_session(&tenant, session_id).await?.ok_or_else(|| DomainError::not_found("session", session_id))?;
        let mut log = Vec::new();
        let mut after = None;
        loop {
            let page = rt.platform
                .list_events(&tenant, session_id, &EventQuery { after_seq: after, limit: 1000, ..Default::default() })
                .await?;
            let n = page.len();
            after = page.last().map(|e| e.seq).or(after);
            log.extend(page);
            if n < 1000 {
                break;
            }
        }
        let seq = log.last().map(|e| e.seq).unwrap_or(0);
        let queue = store.list_inbox(&tenant, session_id).await?.into_iter().map(|e| e.event).collect();
        let recovering = matches!(session.status, SessionStatus::Running | SessionStatus::Rescheduling);
        // a session found running is metered again from now; what ran before the crash is
        // metered by `recover` from the log
        let running_since = (session.status == SessionStatus::Running).then(Instant::now);
        let plan = ToolPlan::for_agent(&session.agent, rt.platform.capabilities);
        let (_, rx_owned) = mpsc::unbounded_channel();
        let rx = std::mem::replace(rx, rx_owned);
        // what the model is told about the agent's skills (their files are in the sandbox)
        let mut skills = Vec::new();
        for sk in &session.agent.skills {
            if let Ok(v) = rt.platform.get_skill_version(&tenant, &sk.skill_id, &sk.version).await {
                skills.push((v.name, v.description));
            }
        }
        let skills_note = openma_core::skills::system_note(&skills);
        Ok(Actor {
            rt,
            tenant,
            session,
            log,
            seq,
            hub,
            rx,
            queue,
            recovering,
            recovered: false,
            recovery_pending_reset: false,
            plan,
            running_since,
            files: FileBlockCache::default(),
            skills_note,
            mcp_tools: Vec::new(),
            mcp_toolsets: Vec::new(),
            fence,
            fenced: false,
        })
    }

    fn id(&self) -> String {
        self.rt.platform.ids.new_id("sevt")
    }

    fn now(&self) -> Timestamp {
        self.rt.platform.clock.now()
    }

    /// Waits for commands while idle; runs the loop while running; leaves when idle and
    /// unused for a while.
    async fn serve(&mut self) {
        loop {
            if self.fenced {
                return;
            }
            if matches!(self.session.status, SessionStatus::Running | SessionStatus::Rescheduling) {
                if std::mem::take(&mut self.recovering) && self.recovering_in_vain().await {
                    continue;
                }
                if self.recovered
                    && let Err(e) = self.recover().await
                {
                    tracing::error!(session_id = %self.session.id, error = %e, "recovery failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                self.drive().await;
                continue;
            }
            match tokio::time::timeout(self.rt.config.linger, self.rx.recv()).await {
                Ok(Some(cmd)) => self.on_idle_command(cmd).await,
                Ok(None) => return,
                Err(_) => {
                    if self.rt.release(&self.session.id, &self.rx) {
                        return;
                    }
                }
            }
        }
    }

    // ---- appending ----------------------------------------------------------------

    /// Appends events (and the session row when `status` changes or `touch` is set),
    /// then publishes them. Retries when an API update changed the row meanwhile.
    async fn append(&mut self, pending: Vec<Pending>, status: Option<SessionStatus>) -> Result<Vec<SessionEvent>, DomainError> {
        self.append_consuming(pending, status, &[]).await
    }

    /// [`Self::append`], also taking `consumed` entries out of the inbox atomically.
    async fn append_consuming(
        &mut self,
        pending: Vec<Pending>,
        status: Option<SessionStatus>,
        consumed: &[String],
    ) -> Result<Vec<SessionEvent>, DomainError> {
        self.append_full(pending, status, consumed, Vec::new()).await
    }

    fn subject(&self) -> ledger::Subject<'_> {
        ledger::Subject::of(&self.session)
    }

    /// Appends events, the session row when `status` changes, inbox consumption and
    /// ledger rows — one transaction — then publishes the events. Leaving `running` adds
    /// the interval's ledger row, sourced by the status event itself. Retries when an API
    /// update changed the row meanwhile.
    async fn append_full(
        &mut self,
        pending: Vec<Pending>,
        status: Option<SessionStatus>,
        consumed: &[String],
        mut ledger_rows: Vec<ledger::LedgerEntry>,
    ) -> Result<Vec<SessionEvent>, DomainError> {
        let now = self.now();
        let stored: Vec<StoredEvent> = pending
            .into_iter()
            .enumerate()
            .map(|(i, p)| StoredEvent {
                seq: self.seq + 1 + i as i64,
                event: SessionEvent { id: p.id.unwrap_or_else(|| self.id()), payload: p.payload, processed_at: Some(now) },
                internal: p.internal,
            })
            .collect();
        let was_running = self.session.status == SessionStatus::Running;
        let elapsed = match status {
            Some(s) if was_running && s != SessionStatus::Running => self.running_since.map(|t| t.elapsed()),
            _ => None,
        };
        if let (Some(d), Some(last)) = (elapsed, stored.last()) {
            let id = self.rt.platform.ids.new_id("led");
            ledger_rows.extend(ledger::runtime(&self.subject(), &self.rt.platform.prices, d.as_millis() as u64, &last.event.id, now, id));
        }
        if !self.rt.config.ledger {
            ledger_rows.clear();
        }
        let store = self.rt.platform.store.clone();
        for _ in 0..16 {
            let row = status.map(|s| {
                let mut next = self.session.clone();
                apply_status(&mut next, s, now, elapsed);
                next
            });
            let guard = row.as_ref().map(|r| (r, self.session.updated_at));
            match store.append_events(&self.tenant, &self.session.id, &stored, guard, consumed, &ledger_rows, self.fence.as_ref()).await? {
                Appended::Fenced => {
                    self.fenced = true;
                    return Err(DomainError::Unavailable("another node runs this session now; retry".into()));
                }
                Appended::Done => {
                    if let Some(r) = row {
                        let changed = r.status != self.session.status;
                        self.session = r;
                        if changed {
                            // queues rows; the delivery worker sends them, the turn never waits on it
                            let kinds = openma_core::webhooks::status_events(self.session.status);
                            openma_core::ports::Announcer::announce_all(&self.rt.platform, &self.tenant, kinds, &self.session.id).await;
                        }
                        if !was_running && self.session.status == SessionStatus::Running {
                            self.running_since = Some(Instant::now());
                        }
                        if elapsed.is_some() {
                            self.running_since = None;
                        }
                    }
                    self.seq += stored.len() as i64;
                    for e in &stored {
                        let json = serde_json::to_string(&e.event).expect("events serialise");
                        let terminal = matches!(e.event.payload, EventPayload::StatusTerminated {});
                        self.hub.publish(Frame::Event { seq: e.seq, id: e.event.id.clone(), kind: e.event.payload.kind(), json, terminal });
                    }
                    if let Some(last) = stored.last() {
                        self.hub.seen(&self.tenant, last.seq);
                    }
                    let events = stored.iter().map(|e| e.event.clone()).collect();
                    self.log.extend(stored);
                    return Ok(events);
                }
                Appended::Stale => {
                    // the API changed title/metadata/tools: take its row and try again
                    let fresh = store
                        .get_session(&self.tenant, &self.session.id)
                        .await?
                        .ok_or_else(|| DomainError::not_found("session", &self.session.id))?;
                    self.plan = ToolPlan::for_agent(&fresh.agent, self.rt.platform.capabilities).with_mcp_tools(&fresh.agent, &self.mcp_toolsets, &self.mcp_tools);
                    self.session = Session { status: self.session.status, usage: self.session.usage.clone(), stats: self.session.stats.clone(), ..fresh };
                }
            }
        }
        Err(DomainError::conflict("the session is being changed concurrently; retry"))
    }

    async fn emit(&mut self, payloads: Vec<EventPayload>, status: Option<SessionStatus>) -> Result<Vec<SessionEvent>, DomainError> {
        self.append(payloads.into_iter().map(Pending::from).collect(), status).await
    }

    // ---- idle ----------------------------------------------------------------------

    fn blocking_ids(&self) -> Vec<String> {
        step::blocking_ids(&self.log)
    }

    async fn on_idle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit { inputs, reply } => {
                let r = self.apply_inputs(inputs).await;
                let _ = reply.send(r);
            }
            Command::Updated { payload } => {
                if let Err(e) = self.record_update(payload).await {
                    tracing::warn!(session_id = %self.session.id, error = %e, "cannot record session.updated");
                }
            }
            Command::Archive { reply } => {
                let r = self.archive().await;
                let _ = reply.send(r);
            }
            Command::Wake => {}
        }
    }

    /// Records a change made through the API, taking the new row; a raised or removed
    /// budget resumes a session that its budget had stopped.
    async fn record_update(&mut self, payload: EventPayload) -> Result<(), DomainError> {
        let fresh = self
            .rt
            .platform
            .store
            .get_session(&self.tenant, &self.session.id)
            .await?
            .ok_or_else(|| DomainError::not_found("session", &self.session.id))?;
        self.plan = ToolPlan::for_agent(&fresh.agent, self.rt.platform.capabilities);
        self.session = Session { status: self.session.status, usage: self.session.usage.clone(), stats: self.session.stats.clone(), ..fresh };
        self.emit(vec![payload], None).await?;
        let stopped_by_budget = matches!(self.last_stop_reason(), Some(StopReason::BudgetReached));
        if self.session.status == SessionStatus::Idle && stopped_by_budget && !self.budget_reached() {
            self.emit(vec![EventPayload::StatusRunning {}], Some(SessionStatus::Running)).await?;
        }
        Ok(())
    }

    async fn archive(&mut self) -> Result<Session, DomainError> {
        if self.session.archived_at.is_none() {
            let now = self.now();
            self.session.archived_at = Some(now);
            let r = self.emit(vec![EventPayload::StatusTerminated {}], Some(SessionStatus::Terminated)).await;
            if r.is_err() {
                self.session.archived_at = None;
            }
            r?;
            self.rt.platform.announce_quietly(&self.tenant, "session.archived", &self.session.id).await;
        }
        Ok(openma_core::sessions::present(self.session.clone(), self.now()))
    }

    /// Applies client input to an idle session, in order, all or nothing.
    async fn apply_inputs(&mut self, inputs: Vec<Input>) -> Result<Vec<SessionEvent>, DomainError> {
        if self.session.archived_at.is_some() || self.session.status == SessionStatus::Terminated {
            return Err(DomainError::Conflict {
                message: "the session is archived or terminated and accepts no events".into(),
                code: Some("session_terminated"),
            });
        }
        let ids = &self.rt.platform.ids;
        let applied = step::idle_inputs(&self.log, inputs, || ids.new_id("sevt"))?;
        if applied.starts_work && self.session.budget.is_some() && self.budget_reached() {
            return Err(openma_core::sessions::budget_reached_error());
        }
        let (events, echo_ids) = (applied.events, applied.echo_ids);
        let status = applied.starts_running.then_some(SessionStatus::Running);
        let written = self.append(events, status).await?;
        Ok(written.into_iter().filter(|e| echo_ids.contains(&e.id)).collect())
    }

    // ---- running -------------------------------------------------------------------

    /// Handles a command that arrives while the loop runs. Returns the interrupt, if any.
    async fn on_running_command(&mut self, cmd: Command) -> Option<Interrupt> {
        match cmd {
            Command::Submit { inputs, reply } => {
                if let Some(bad) = inputs.iter().find(|i| matches!(i, Input::Confirmation { .. } | Input::CustomResult { .. })) {
                    let id = match bad {
                        Input::Confirmation { tool_use_id, .. } | Input::CustomResult { tool_use_id, .. } => tool_use_id.clone(),
                        _ => String::new(),
                    };
                    let _ = reply.send(Err(DomainError::invalid(format!("`{id}` is not awaiting an answer: the session is running"))));
                    return None;
                }
                let mut echo = Vec::new();
                let mut interrupt_id = None;
                let store = self.rt.platform.store.clone();
                for input in inputs {
                    let id = self.id();
                    if matches!(input, Input::Interrupt) {
                        interrupt_id.get_or_insert(id.clone());
                        echo.push(SessionEvent { id, payload: EventPayload::UserInterrupt {}, processed_at: None });
                        continue;
                    }
                    let event = SessionEvent { id, payload: client_payload(input), processed_at: None };
                    // durable before it is acknowledged
                    let entry = openma_core::ports::InboxEntry { event: event.clone(), accepted_at: self.now() };
                    if let Err(e) = store.push_inbox(&self.tenant, &self.session.id, &entry).await {
                        let _ = reply.send(Err(e.into()));
                        return None;
                    }
                    echo.push(event.clone());
                    self.queue.push(event);
                }
                match interrupt_id {
                    Some(id) => Some(Interrupt { id, reply, echo }),
                    None => {
                        let _ = reply.send(Ok(echo));
                        None
                    }
                }
            }
            Command::Updated { payload } => {
                let _ = self.emit(vec![payload], None).await;
                None
            }
            Command::Archive { reply } => {
                let _ = reply.send(Err(DomainError::invalid(
                    "a running session cannot be archived; send `user.interrupt` and wait for idle",
                )));
                None
            }
            Command::Wake => None,
        }
    }

    /// Races `work` against the inbox; commands other than an interrupt are handled
    /// and the work goes on.
    async fn race<T>(&mut self, work: impl std::future::Future<Output = T>) -> Raced<T> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Raced::Done(out),
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => if let Some(i) = self.on_running_command(cmd).await { return Raced::Interrupted(i) },
                    None => return Raced::Done(work.await),
                }
            }
        }
    }

    /// Writes queued client messages into the log, in the order they arrived.
    async fn apply_queue(&mut self) -> Result<(), DomainError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queue);
        let consumed: Vec<String> = queued.iter().map(|e| e.id.clone()).collect();
        let events = queued.into_iter().map(|e| Pending { id: Some(e.id), payload: e.payload, internal: None }).collect();
        self.append_consuming(events, None, &consumed).await.map(|_| ())
    }

    /// Counts this recovery. A turn cut again and again (a crash or node failure each time)
    /// without completing a single model request more is stopped instead of resumed
    /// forever: the session goes idle with an error saying so. Returns true when it did.
    async fn recovering_in_vain(&mut self) -> bool {
        let done = self
            .log
            .iter()
            .filter(|e| matches!(e.event.payload, EventPayload::ModelRequestEnd { is_error: false, .. }))
            .count();
        let store = self.rt.platform.store.clone();
        let key = recovery_key(&self.session.id);
        let (last_done, count) = match store.get_meta(&key).await {
            Ok(Some(v)) => {
                let mut it = v.split(' ').map(|n| n.parse::<usize>().unwrap_or(0));
                (it.next().unwrap_or(0), it.next().unwrap_or(0))
            }
            _ => (0, 0),
        };
        let count = if last_done == done { count + 1 } else { 1 };
        let _ = store.put_meta(&key, &format!("{done} {count}"), false).await;
        self.recovered = true;
        if count <= MAX_RECOVERIES_WITHOUT_PROGRESS {
            return false;
        }
        tracing::error!(session_id = %self.session.id, count, "the turn was cut {count} times without progress; stopping it");
        metrics::counter!("openma_session_recoveries_abandoned_total").increment(1);
        if let Err(e) = self.recover().await {
            tracing::warn!(session_id = %self.session.id, error = %e, "cannot repair the abandoned turn");
        }
        let error = SessionErrorObject::new(
            "unknown_error",
            format!("the turn was interrupted {count} times in a row (server crashes or node failures) without making progress, so it was stopped instead of resumed again; send a message to continue"),
            RetryStatus::Exhausted,
        );
        let usage = self.usage_now();
        let budget = self.session.budget.clone();
        let stopped = self
            .emit(vec![EventPayload::SessionError { error }, EventPayload::SessionUsage { usage, budget }, EventPayload::StatusIdle { stop_reason: StopReason::RetriesExhausted }], Some(SessionStatus::Idle))
            .await;
        if stopped.is_ok() {
            let _ = store.put_meta(&key, "0 0", false).await;
            self.recovery_pending_reset = false;
        }
        true
    }

    /// Repairs a turn that a crash or restart cut: a model request in flight is closed (the
    /// loop re-issues it); a tool call that may have had effects is not run twice but
    /// gets an honest error result, while read-only tools simply run again.
    async fn recover(&mut self) -> Result<(), DomainError> {
        self.recovered = false;
        self.recovery_pending_reset = true;
        tracing::info!(session_id = %self.session.id, "resuming a session that was running");
        let ended: BTreeSet<String> = self
            .log
            .iter()
            .filter_map(|e| match &e.event.payload {
                EventPayload::ModelRequestEnd { model_request_start_id, .. } => Some(model_request_start_id.clone()),
                _ => None,
            })
            .collect();
        let mut repairs: Vec<Pending> = self
            .log
            .iter()
            .filter(|e| matches!(e.event.payload, EventPayload::ModelRequestStart {}) && !ended.contains(&e.event.id))
            .map(|e| {
                EventPayload::ModelRequestEnd { model_request_start_id: e.event.id.clone(), model_usage: ModelUsage::default(), is_error: true }
                    .into()
            })
            .collect();
        for id in step::unrun_allowed_calls(&self.log) {
            let name = self.log.iter().find(|e| e.event.id == id).and_then(|e| match &e.event.payload {
                EventPayload::AgentToolUse { name, .. } => Some(name.clone()),
                _ => None,
            });
            let rerun = name.as_deref().and_then(|n| self.rt.toolbox.get(n)).is_some_and(|t| t.read_only());
            if !rerun {
                repairs.push(result_for(
                    &self.log,
                    &id,
                    "This tool call was interrupted by a server restart and was not run again, because it may have had side effects. Check its effects before retrying it.",
                ));
            }
        }
        // the running time between the last `session.status_running` and the last event
        // written before the crash
        let mut rows = Vec::new();
        if self.session.status == SessionStatus::Running
            && let Some(start) = self.log.iter().rev().find(|e| matches!(e.event.payload, EventPayload::StatusRunning {}))
            && let (Some(from), Some(to)) = (start.event.processed_at, self.log.last().and_then(|e| e.event.processed_at))
        {
            let ms = (to.as_micros() - from.as_micros()).max(0) as u64 / 1000;
            let id = self.rt.platform.ids.new_id("led");
            rows.extend(ledger::runtime(&self.subject(), &self.rt.platform.prices, ms, &start.event.id, self.now(), id));
            self.session.stats.active_seconds += ms as f64 / 1000.0;
            self.session.usage.active_seconds += ms as f64 / 1000.0;
        }
        if !repairs.is_empty() || !rows.is_empty() {
            self.append_full(repairs, None, &[], rows).await?;
        }
        Ok(())
    }

    /// The agent loop, until the session is idle or terminated.
    async fn drive(&mut self) {
        if let Err(e) = self.drive_inner().await {
            if self.fenced {
                return;
            }
            tracing::error!(session_id = %self.session.id, error = %e, "session loop failed");
            let error = SessionErrorObject::new("unknown_error", format!("internal error: {e}"), RetryStatus::Exhausted);
            let usage = self.usage_now();
            let budget = self.session.budget.clone();
            if self
                .emit(
                    vec![EventPayload::SessionError { error }, EventPayload::SessionUsage { usage, budget }, EventPayload::StatusIdle { stop_reason: StopReason::RetriesExhausted }],
                    Some(SessionStatus::Idle),
                )
                .await
                .is_err()
            {
                // the store itself is failing: stop; the session row still says running
                // and crash recovery resumes it
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.session.status = SessionStatus::Idle;
            }
        }
    }

    async fn drive_inner(&mut self) -> Result<(), DomainError> {
        let mut attempt = 0u32;
        let mut rounds = 0u32;
        let mut turn_over: Option<StopReason> = None;
        if self.session.status == SessionStatus::Rescheduling {
            self.emit(vec![EventPayload::StatusRunning {}], Some(SessionStatus::Running)).await?;
        }
        if let Raced::Interrupted(i) = self.connect_mcp().await? {
            return self.interrupted(i, Vec::new()).await;
        }
        self.check_credential_hosts().await?;
        loop {
            // input that arrived during the last step is part of this turn: the model answers it
            let new_input = !self.queue.is_empty();
            self.apply_queue().await?;
            if let Raced::Interrupted(i) = self.run_allowed_tools().await? {
                return self.interrupted(i, Vec::new()).await;
            }
            let blocking = self.blocking_ids();
            if !blocking.is_empty() {
                return self.go_idle(StopReason::RequiresAction { event_ids: blocking }).await;
            }
            if let Some(reason) = turn_over.take()
                && !new_input
            {
                return self.go_idle(reason).await;
            }
            if self.budget_reached() {
                return self.go_idle(StopReason::BudgetReached).await;
            }
            if rounds >= self.rt.config.max_tool_rounds {
                let error = SessionErrorObject::new(
                    "tool_use_limit_reached_error",
                    format!("the turn stopped after {rounds} tool-use rounds"),
                    RetryStatus::Exhausted,
                );
                self.emit(vec![EventPayload::SessionError { error }], None).await?;
                return self.go_idle(StopReason::EndTurn).await;
            }
            match self.model_step().await? {
                StepResult::Interrupted(i, partial) => return self.interrupted(i, partial).await,
                StepResult::Done(Ok(step)) => {
                    attempt = 0;
                    rounds += 1;
                    if let Step::EndsTurn(reason) = step {
                        turn_over = Some(reason.unwrap_or(StopReason::EndTurn));
                    }
                }
                StepResult::Done(Err(err)) => {
                    let retry_after = match &err {
                        ModelError::Transient { retry_after, .. } => retry_after.to_owned(),
                        ModelError::Permanent { .. } => None,
                    };
                    attempt += 1;
                    let delay = if err.is_transient() { self.rt.config.retry.delay(attempt, retry_after) } else { None };
                    let kind = error_kind(&err).to_owned();
                    match delay {
                        Some(d) => {
                            let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Retrying);
                            self.emit(vec![EventPayload::SessionError { error }, EventPayload::StatusRescheduled {}], Some(SessionStatus::Rescheduling))
                                .await?;
                            if let Raced::Interrupted(i) = self.race(tokio::time::sleep(d)).await {
                                return self.interrupted(i, Vec::new()).await;
                            }
                            // back to work: the retried request runs as `running`
                            self.emit(vec![EventPayload::StatusRunning {}], Some(SessionStatus::Running)).await?;
                        }
                        None if err.is_transient() => {
                            let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Exhausted);
                            self.emit(vec![EventPayload::SessionError { error }], None).await?;
                            return self.go_idle(StopReason::RetriesExhausted).await;
                        }
                        None => {
                            let error = SessionErrorObject::new(kind, err.to_string(), RetryStatus::Terminal);
                            let usage = self.usage_now();
                            let budget = self.session.budget.clone();
                            self.emit(
                                vec![EventPayload::SessionError { error }, EventPayload::SessionUsage { usage, budget }, EventPayload::StatusTerminated {}],
                                Some(SessionStatus::Terminated),
                            )
                            .await?;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Usage so far, counting the running time of the current turn, with its list cost.
    fn usage_now(&self) -> openma_types::sessions::SessionUsage {
        let mut usage = self.session.usage.clone();
        if let Some(since) = self.running_since {
            usage.active_seconds += since.elapsed().as_secs_f64();
        }
        openma_core::sessions::priced_usage(&self.session.agent.model.id, usage)
    }

    /// True when the session has a budget and its list cost has reached it.
    fn budget_reached(&self) -> bool {
        openma_core::sessions::budget_reached(&self.session, &self.usage_now())
    }

    fn last_stop_reason(&self) -> Option<&StopReason> {
        self.log.iter().rev().find_map(|e| match &e.event.payload {
            EventPayload::StatusIdle { stop_reason } => Some(stop_reason),
            _ => None,
        })
    }

    async fn go_idle(&mut self, reason: StopReason) -> Result<(), DomainError> {
        let label = match &reason {
            StopReason::EndTurn => "end_turn",
            StopReason::RequiresAction { .. } => "requires_action",
            StopReason::RetriesExhausted => "retries_exhausted",
            StopReason::BudgetReached => "budget_reached",
            StopReason::Refusal => "refusal",
        };
        metrics::counter!("openma_session_idle_total", "stop_reason" => label).increment(1);
        if std::mem::take(&mut self.recovery_pending_reset) {
            let _ = self.rt.platform.store.put_meta(&recovery_key(&self.session.id), "0 0", false).await;
        }
        let observers = self.rt.observers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for observer in observers {
            observer.turn_ending(&self.tenant, &self.session.id).await;
        }
        let usage = self.usage_now();
        self.session.usage.list_cost = usage.list_cost.clone();
        let budget = self.session.budget.clone();
        let announce = openma_core::webhooks::stop_event(&reason);
        self.emit(vec![EventPayload::SessionUsage { usage, budget }, EventPayload::StatusIdle { stop_reason: reason }], Some(SessionStatus::Idle))
            .await?;
        if let Some(kind) = announce {
            self.rt.platform.announce_quietly(&self.tenant, kind, &self.session.id).await;
        }
        Ok(())
    }

    /// Ends the turn after an interrupt: the partial answer and honest results for any
    /// call that will not run are written, then the session goes idle.
    async fn interrupted(&mut self, i: Interrupt, partial: Vec<Pending>) -> Result<(), DomainError> {
        let mut events = partial;
        events.push(Pending { id: Some(i.id.clone()), payload: EventPayload::UserInterrupt {}, internal: None });
        for id in step::unrun_allowed_calls(&self.log) {
            events.push(result_for(&self.log, &id, "The user interrupted the session before this tool call completed."));
        }
        let written = self.append(events, None).await;
        let mut echo = i.echo;
        if let Ok(written) = &written
            && let Some(e) = written.iter().find(|e| e.id == i.id)
            && let Some(slot) = echo.iter_mut().find(|x| x.id == i.id) {
                *slot = e.clone();
            }
        let _ = i.reply.send(written.map(|_| echo));
        self.go_idle(StopReason::EndTurn).await
    }

    async fn run_allowed_tools(&mut self) -> Result<Raced<()>, DomainError> {
        for id in step::unrun_allowed_calls(&self.log) {
            // cluster mode: a tool has effects, so this node makes sure it still owns the
            // session first (a node that was paused may have lost it meanwhile)
            if self.fence.is_some() {
                self.append(Vec::new(), None).await?;
            }
            if let Some((server, tool, input)) = self.log.iter().find(|e| e.event.id == id).and_then(|e| match &e.event.payload {
                EventPayload::AgentMcpToolUse { mcp_server_name, name, input, .. } => Some((mcp_server_name.clone(), name.clone(), input.clone())),
                _ => None,
            }) {
                if let Raced::Interrupted(i) = self.run_mcp_tool(id, server, tool, input).await? {
                    return Ok(Raced::Interrupted(i));
                }
                continue;
            }
            let Some((name, input)) = self.log.iter().find(|e| e.event.id == id).and_then(|e| match &e.event.payload {
                EventPayload::AgentToolUse { name, input, .. } => Some((name.clone(), input.clone())),
                _ => None,
            }) else {
                continue;
            };
            // a tool the agent does not offer is never run, whatever the model asks for
            let offered = matches!(self.plan.route(&name), ToolRoute::Builtin { .. });
            let tool = if offered { self.rt.toolbox.get(&name).cloned() } else { None };
            let tool_label = name.clone();
            // a search the platform performs is metered; one it cannot run is not
            let metered_search = name == "web_search" && tool.is_some();
            let config = ToolPlan::builtin_config(&self.session.agent, &name);
            // `web_fetch.url_sources`: only URLs that came from a permitted source
            if let Err(why) = openma_core::harness::url_sources::check_call(&name, config.as_ref(), &input, &self.log) {
                let result = EventPayload::AgentToolResult { tool_use_id: id, content: vec![text_block(&why)], is_error: true };
                self.append(vec![Pending::from(result)], None).await?;
                continue;
            }
            let ctx = ToolContext {
                tenant: self.tenant.clone(),
                session_id: self.session.id.clone(),
                environment_id: self.session.environment_id.clone(),
                config,
            };
            let run = async move {
                match tool {
                    Some(t) => t.run(&ctx, input).await,
                    None if offered => ToolOutput::error(format!(
                        "The `{name}` tool is not available on this server: it has no sandbox configured to run it."
                    )),
                    None => ToolOutput::error(format!("`{name}` is not a tool of this agent.")),
                }
            };
            let started = Instant::now();
            match self.race(run).await {
                Raced::Done(out) => {
                    metrics::histogram!("openma_tool_duration_seconds", "tool" => tool_label, "is_error" => if out.is_error { "true" } else { "false" })
                        .record(started.elapsed().as_secs_f64());
                    let mut rows = match &out.usage {
                        Some(u) => ledger::sandbox(&self.subject(), &self.rt.platform.prices, u, &id, self.now(), || self.rt.platform.ids.new_id("led")),
                        None => Vec::new(),
                    };
                    if metered_search && !out.is_error {
                        rows.push(ledger::web_search(&self.subject(), &self.rt.platform.prices, &id, self.now(), self.rt.platform.ids.new_id("led")));
                    }
                    let result = EventPayload::AgentToolResult { tool_use_id: id, content: out.content, is_error: out.is_error };
                    self.append_full(vec![Pending::from(result)], None, &[], rows).await?;
                }
                Raced::Interrupted(i) => return Ok(Raced::Interrupted(i)),
            }
        }
        Ok(Raced::Done(()))
    }

    /// Runs one allowed MCP tool call through the session's MCP connection.
    async fn run_mcp_tool(&mut self, id: String, server: String, tool: String, input: Value) -> Result<Raced<()>, DomainError> {
        let (rt, tenant, session) = (self.rt.clone(), self.tenant.clone(), self.session.clone());
        let label = format!("mcp:{server}");
        let started = Instant::now();
        let run = async move {
            let out = rt.mcp.call(&tenant, &session, &server, &tool, input).await;
            rt.mcp.cap_output(&session.id, out)
        };
        match self.race(run).await {
            Raced::Done(out) => {
                metrics::histogram!("openma_tool_duration_seconds", "tool" => label, "is_error" => if out.is_error { "true" } else { "false" })
                    .record(started.elapsed().as_secs_f64());
                let result = EventPayload::AgentMcpToolResult { mcp_tool_use_id: id, content: out.content, is_error: out.is_error };
                self.append(vec![Pending::from(result)], None).await?;
                Ok(Raced::Done(()))
            }
            Raced::Interrupted(i) => Ok(Raced::Interrupted(i)),
        }
    }

    /// Reports, once per session, each `environment_variable` credential whose allowed hosts
    /// the environment's network policy does not permit (the secret could never be used).
    async fn check_credential_hosts(&mut self) -> Result<(), DomainError> {
        if self.session.vault_ids.is_empty() {
            return Ok(());
        }
        let checked = async {
            let environment = self.rt.platform.get_environment(&self.tenant, &self.session.environment_id).await?;
            openma_core::vaults::unreachable_credential_errors(&*self.rt.platform.store, &self.tenant, &self.session, &environment, &self.log).await
        };
        let errors = match checked.await {
            Ok(errors) => errors,
            Err(e) => {
                tracing::warn!(session_id = %self.session.id, error = %e, "cannot check the session's credentials against its network policy");
                return Ok(());
            }
        };
        if !errors.is_empty() {
            self.emit(errors, None).await?;
        }
        Ok(())
    }

    /// Connects the agent's MCP servers at the start of a turn (a server that failed
    /// before is tried again), reports the ones that cannot be used, and offers the tools
    /// of the others to the model.
    async fn connect_mcp(&mut self) -> Result<Raced<()>, DomainError> {
        self.mcp_toolsets = self.rt.mcp.stdio_toolsets(&self.session);
        if self.session.agent.mcp_servers.is_empty() && self.mcp_toolsets.is_empty() && self.mcp_tools.is_empty() {
            return Ok(Raced::Done(()));
        }
        let (rt, tenant, session) = (self.rt.clone(), self.tenant.clone(), self.session.clone());
        let prepared = match self.race(async move { rt.mcp.prepare(&tenant, &session).await }).await {
            Raced::Done(p) => p,
            Raced::Interrupted(i) => return Ok(Raced::Interrupted(i)),
        };
        self.mcp_tools = prepared.tools;
        self.plan = ToolPlan::for_agent(&self.session.agent, self.rt.platform.capabilities).with_mcp_tools(&self.session.agent, &self.mcp_toolsets, &self.mcp_tools);
        if !prepared.failures.is_empty() {
            let errors = prepared.failures.into_iter().map(|(server, f)| f.session_error(&server)).collect();
            self.emit(errors, None).await?;
        }
        Ok(Raced::Done(()))
    }

    /// The next model request: the projection of the log, with the note about the session's
    /// memory mounts after the agent's system prompt.
    fn model_request(&self) -> openma_core::model::ModelRequest {
        let mut request = projection::request(&self.session.agent, &self.plan, &self.log, self.rt.config.max_tokens);
        request.append_system(openma_core::memory_mounts::system_note(&self.session.resources).as_deref());
        request.append_system(self.skills_note.as_deref());
        request
    }

    /// One model call: streams it (publishing previews), then appends its events.
    async fn model_step(&mut self) -> Result<StepResult, DomainError> {
        let mut request = self.model_request();
        if let Some(cut) = compaction::plan(&request, &self.log, self.rt.config.context_window_tokens) {
            match self.compact(cut).await? {
                Raced::Interrupted(i) => return Ok(StepResult::Interrupted(i, Vec::new())),
                Raced::Done(true) => {
                    request = self.model_request();
                }
                Raced::Done(false) => {}
            }
        }
        match self.resolve_files(&mut request).await {
            Raced::Interrupted(i) => return Ok(StepResult::Interrupted(i, Vec::new())),
            Raced::Done(Err(e)) => return Ok(StepResult::Done(Err(e))),
            Raced::Done(Ok(())) => {}
        }
        let start = self.emit(vec![EventPayload::ModelRequestStart {}], None).await?;
        let start_id = start[0].id.clone();
        let models = self.rt.models.for_tenant(&self.tenant);
        let mut acc = Accumulator::default();
        let started = Instant::now();
        let outcome: Result<(model::StopReason, model::Usage), ModelError> = 'call: {
            let mut stream = match self.race(models.stream(request)).await {
                Raced::Interrupted(i) => return self.end_interrupted_step(i, start_id, acc).await,
                Raced::Done(Err(e)) => break 'call Err(e),
                Raced::Done(Ok(s)) => s,
            };
            loop {
                let item = match self.race(stream.next()).await {
                    Raced::Interrupted(i) => return self.end_interrupted_step(i, start_id, acc).await,
                    Raced::Done(item) => item,
                };
                match item {
                    None => {
                        break 'call Err(ModelError::Transient {
                            kind: TransientKind::StreamCut,
                            message: "the model stream ended before the message was complete".into(),
                            retry_after: None,
                        });
                    }
                    Some(Err(e)) => break 'call Err(e),
                    Some(Ok(ModelEvent::Finished { stop_reason, usage })) => break 'call Ok((stop_reason, usage)),
                    Some(Ok(ev)) => {
                        let ids = &self.rt.platform.ids;
                        let hub = &self.hub;
                        acc.on_event(ev, &mut |p| hub.publish(Frame::Preview { of: p.of, kind: p.kind, json: p.json }), || ids.new_id("sevt"));
                    }
                }
            }
        };
        let outcome_label = match &outcome {
            Ok(_) => "ok",
            Err(e) => error_kind(e),
        };
        metrics::histogram!("openma_model_request_duration_seconds", "outcome" => outcome_label).record(started.elapsed().as_secs_f64());
        match outcome {
            Err(e) => {
                self.emit(vec![EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: ModelUsage::default(), is_error: true }], None)
                    .await?;
                Ok(StepResult::Done(Err(e)))
            }
            Ok((stop, usage)) => {
                metrics::counter!("openma_model_tokens_total", "kind" => "input").increment(usage.input_tokens);
                metrics::counter!("openma_model_tokens_total", "kind" => "output").increment(usage.output_tokens);
                let mut events = acc.into_events(&self.plan);
                let step = Step::after(stop, &events);
                self.add_usage(usage);
                let end_id = self.id();
                events.push(Pending {
                    id: Some(end_id.clone()),
                    payload: EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: model_usage(usage), is_error: false },
                    internal: None,
                });
                let rows = self.ledger_rows(&usage, &end_id);
                self.append_full(events, None, &[], rows).await?;
                Ok(StepResult::Done(Ok(step)))
            }
        }
    }

    /// Puts the content of the files the request names by `file_id` into it (racing the
    /// inbox, as reading a large file from a remote blob store takes a while).
    async fn resolve_files(&mut self, request: &mut model::ModelRequest) -> Raced<Result<(), ModelError>> {
        let mut files = std::mem::take(&mut self.files);
        let (rt, tenant) = (self.rt.clone(), self.tenant.clone());
        let raced = self.race(files.resolve(&rt.platform.files(), &tenant, request)).await;
        self.files = files;
        raced
    }

    /// Summarises everything before `cut` with the model and records the summary.
    /// A failed summary leaves the log as it was (the request then goes out uncompacted).
    async fn compact(&mut self, cut: i64) -> Result<Raced<bool>, DomainError> {
        let mut request = compaction::summary_request(&self.session.agent, &self.log, cut, self.rt.config.max_tokens);
        match self.resolve_files(&mut request).await {
            Raced::Interrupted(i) => return Ok(Raced::Interrupted(i)),
            Raced::Done(Err(e)) => {
                tracing::warn!(session_id = %self.session.id, error = %e, "context compaction skipped: the files of the summarised turns cannot be read");
                return Ok(Raced::Done(false));
            }
            Raced::Done(Ok(())) => {}
        }
        let start = self.emit(vec![EventPayload::ModelRequestStart {}], None).await?;
        let start_id = start[0].id.clone();
        let models = self.rt.models.for_tenant(&self.tenant);
        let collected = async move {
            let mut stream = models.stream(request).await?;
            let mut text = String::new();
            while let Some(ev) = stream.next().await {
                match ev? {
                    ModelEvent::BlockComplete { block: ContentBlock::Text { text: t }, .. } => text.push_str(&t),
                    ModelEvent::Finished { usage, .. } => return Ok((text, usage)),
                    _ => {}
                }
            }
            Err(ModelError::Transient { kind: TransientKind::StreamCut, message: "summary stream cut".into(), retry_after: None })
        };
        let outcome = match self.race(collected).await {
            Raced::Interrupted(i) => {
                self.emit(vec![EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: ModelUsage::default(), is_error: true }], None)
                    .await?;
                return Ok(Raced::Interrupted(i));
            }
            Raced::Done(o) => o,
        };
        match outcome {
            Ok((summary, usage)) if !summary.trim().is_empty() => {
                self.add_usage(usage);
                let end_id = self.id();
                let rows = self.ledger_rows(&usage, &end_id);
                self.append_full(
                    vec![
                        Pending {
                            id: Some(end_id),
                            payload: EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: model_usage(usage), is_error: false },
                            internal: None,
                        },
                        Pending {
                            id: None,
                            payload: EventPayload::AgentThreadContextCompacted {},
                            internal: Some(json!({"summary": summary, "before_seq": cut})),
                        },
                    ],
                    None,
                    &[],
                    rows,
                )
                .await?;
                Ok(Raced::Done(true))
            }
            other => {
                tracing::warn!(session_id = %self.session.id, outcome = ?other.err(), "context compaction failed; sending the request uncompacted");
                self.emit(vec![EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: ModelUsage::default(), is_error: true }], None)
                    .await?;
                Ok(Raced::Done(false))
            }
        }
    }

    /// The ledger rows of one model request, sourced by its `span.model_request_end`.
    fn ledger_rows(&self, usage: &model::Usage, end_id: &str) -> Vec<ledger::LedgerEntry> {
        let ids = &self.rt.platform.ids;
        let card = self.rt.models.card_prices(&self.tenant, &self.session.agent.model.id);
        ledger::model_request(&self.subject(), &self.rt.platform.prices, &card, usage, end_id, self.now(), || ids.new_id("led"))
    }

    fn add_usage(&mut self, usage: model::Usage) {
        step::add_usage(&mut self.session.usage, usage);
    }

    async fn end_interrupted_step(
        &mut self,
        i: Interrupt,
        start_id: String,
        acc: Accumulator,
    ) -> Result<StepResult, DomainError> {
        let mut partial = acc.partial_text();
        partial.push(EventPayload::ModelRequestEnd { model_request_start_id: start_id, model_usage: ModelUsage::default(), is_error: true }.into());
        Ok(StepResult::Interrupted(i, partial))
    }
}

/// Moves a session row to `status`; `elapsed` is the running interval that ends with it.
fn apply_status(s: &mut Session, status: SessionStatus, now: Timestamp, elapsed: Option<Duration>) {
    if let Some(d) = elapsed {
        let secs = d.as_secs_f64();
        s.stats.active_seconds += secs;
        s.usage.active_seconds += secs;
    }
    s.status = status;
    s.updated_at = now.strictly_after(s.updated_at);
}
