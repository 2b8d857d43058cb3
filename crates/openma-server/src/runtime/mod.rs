//! The session runtime: one actor per active session (its single writer), the fan-out
//! hub per session, and the registry that routes commands to actors, spawning them on
//! demand and letting them go when their session is idle.

mod actor;
pub mod hub;
pub mod models;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openma_core::harness::input::Input;
use openma_core::harness::retry::RetryPolicy;
use openma_core::harness::tools::Toolbox;
use openma_core::{DomainError, Platform, TenantId};
use openma_types::events::{EventPayload, SessionEvent};
use openma_types::sessions::Session;
use openma_core::ports::Fence;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, ForwardReply, Forwarded};

pub use hub::{Frame, Hub, PreviewOf};
pub use models::ModelClients;

/// Tunables of the agent loop.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub retry: RetryPolicy,
    /// `max_tokens` of each model request.
    pub max_tokens: u32,
    /// Model calls that use tools, per turn, before the turn is stopped.
    pub max_tool_rounds: u32,
    /// How long an idle actor stays in memory waiting for the next command.
    pub linger: Duration,
    /// The context window the harness plans for; older turns are summarised before a
    /// request would crowd it.
    pub context_window_tokens: u64,
    /// Writes the billing ledger. Off only to measure what metering costs (`openma bench
    /// --scenario metering`); a deployment always meters.
    pub ledger: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { retry: RetryPolicy::default(), max_tokens: 8192, max_tool_rounds: 200, linger: Duration::from_secs(30), context_window_tokens: 200_000, ledger: true }
    }
}

/// How long an owner sends previews to other nodes after they last asked (they ask again
/// every sweep, 2 s, while their streams are open).
const PREVIEW_INTEREST_MS: i64 = 6_000;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, DomainError>>;

pub(crate) enum Command {
    Submit { inputs: Vec<Input>, reply: Reply<Vec<SessionEvent>> },
    /// Record a `session.updated` event for a change made through the API.
    Updated { payload: EventPayload },
    Archive { reply: Reply<Session> },
    /// Start the actor (if it is not running) so it resumes an interrupted turn.
    Wake,
}

struct Entry {
    hub: Hub,
    inbox: Option<mpsc::UnboundedSender<Command>>,
}

/// Work to do at the end of every turn, before the session is reported idle (e.g. taking
/// the session's outputs into the Files API, so they are listed once it is idle).
#[async_trait::async_trait]
pub trait TurnObserver: Send + Sync {
    async fn turn_ending(&self, tenant: &TenantId, session_id: &str);
}

pub struct Runtime {
    pub(crate) platform: Platform,
    /// The provider clients: a tenant's model cards, else the server's keys.
    pub(crate) models: Arc<ModelClients>,
    pub(crate) toolbox: Arc<Toolbox>,
    /// The MCP connections of the sessions' agents.
    pub(crate) mcp: Arc<crate::mcp::McpHub>,
    pub(crate) config: RuntimeConfig,
    entries: Mutex<HashMap<String, Entry>>,
    pub(crate) observers: Mutex<Vec<Arc<dyn TurnObserver>>>,
    /// The tenants' limits on sandboxes running at once (set when sandboxes are configured).
    sandbox_seats: std::sync::OnceLock<Arc<crate::sandbox_seats::SandboxSeats>>,
    /// Cluster mode: the other nodes, and the leases of the sessions this node runs.
    cluster: std::sync::OnceLock<Arc<Cluster>>,
    owned: Mutex<HashMap<String, Fence>>,
    /// Cluster mode: sessions whose previews other nodes' streams want, and until when.
    previews_wanted: Mutex<HashMap<String, i64>>,
}

impl Runtime {
    pub fn new(platform: Platform, models: Arc<ModelClients>, toolbox: Toolbox, mcp: Arc<crate::mcp::McpHub>, config: RuntimeConfig) -> Arc<Self> {
        Arc::new(Runtime {
            platform,
            models,
            toolbox: Arc::new(toolbox),
            mcp,
            config,
            entries: Mutex::new(HashMap::new()),
            observers: Mutex::new(Vec::new()),
            sandbox_seats: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            owned: Mutex::new(HashMap::new()),
            previews_wanted: Mutex::new(HashMap::new()),
        })
    }

    /// Cluster mode: sessions are run under leases, commands for sessions other nodes run
    /// are handed to them, and their events are relayed to the streams here.
    pub fn join_cluster(self: &Arc<Self>, cluster: Arc<Cluster>) {
        if self.cluster.set(cluster.clone()).is_ok() {
            self.observe_turns(cluster.clone());
            cluster.spawn(self.clone());
        }
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// The sessions whose leases this node holds (renewed by its heartbeat).
    pub fn owned_sessions(&self) -> Vec<String> {
        self.owned.lock().expect("runtime lock").keys().cloned().collect()
    }

    pub(crate) fn own(&self, session_id: &str, fence: Fence) {
        self.owned.lock().expect("runtime lock").insert(session_id.to_owned(), fence);
    }

    pub(crate) fn disown(&self, session_id: &str, fence: &Fence) {
        let mut owned = self.owned.lock().expect("runtime lock");
        if owned.get(session_id) == Some(fence) {
            owned.remove(session_id);
        }
    }

    /// Starts the session's actor (if none runs) so it resumes an interrupted turn.
    pub fn wake(self: &Arc<Self>, tenant: &TenantId, session_id: &str) {
        self.send(tenant, session_id, Command::Wake);
    }

    /// Runs a command another node handed over, as if it had been made here.
    pub(crate) async fn dispatch(self: &Arc<Self>, tenant: &TenantId, session_id: &str, command: Forwarded) -> Result<ForwardReply, DomainError> {
        let stopped = || DomainError::Unavailable("the session's runtime stopped; retry".into());
        match command {
            Forwarded::Submit { inputs } => {
                let (tx, rx) = oneshot::channel();
                self.send(tenant, session_id, Command::Submit { inputs, reply: tx });
                Ok(ForwardReply::Events(rx.await.map_err(|_| stopped())??))
            }
            Forwarded::Archive => {
                let (tx, rx) = oneshot::channel();
                self.send(tenant, session_id, Command::Archive { reply: tx });
                Ok(ForwardReply::Session(Box::new(rx.await.map_err(|_| stopped())??)))
            }
            Forwarded::Updated { payload } => {
                self.send(tenant, session_id, Command::Updated { payload });
                Ok(ForwardReply::Done)
            }
        }
    }

    /// Puts a command that could not be handed over back in front of the waiting ones (a
    /// new channel takes the old one's place, under the lock `send` takes, so nothing is
    /// lost or reordered).
    pub(crate) fn requeue(&self, session_id: &str, first: Command, mut rx: mpsc::UnboundedReceiver<Command>) -> mpsc::UnboundedReceiver<Command> {
        let mut entries = self.entries.lock().expect("runtime lock");
        let (tx, fresh) = mpsc::unbounded_channel();
        let _ = tx.send(first);
        while let Ok(cmd) = rx.try_recv() {
            let _ = tx.send(cmd);
        }
        if let Some(e) = entries.get_mut(session_id) {
            e.inbox = Some(tx);
        }
        fresh
    }

    /// Cluster mode: another node appended `first..=last` to a session; the streams here
    /// get them from the log.
    pub(crate) fn relay(self: &Arc<Self>, tenant: TenantId, session_id: &str, first: i64, last: i64) {
        let Some(hub) = self.followed_elsewhere(session_id) else { return };
        let rt = self.clone();
        let id = session_id.to_owned();
        tokio::spawn(async move { rt.relay_from_log(&tenant, &id, &hub, Some(first - 1), Some(last)).await });
    }

    /// Re-reads the logs of every session followed here and run elsewhere (behind the
    /// notifications, which can be missed while the listener reconnects).
    pub(crate) async fn relay_all(self: &Arc<Self>) {
        for (id, hub) in self.all_followed_elsewhere() {
            // known once a stream here caught up (before that there is nothing to relay)
            if let Some(tenant) = hub.relay().tenant.get().cloned() {
                self.relay_from_log(&tenant, &id, &hub, None, None).await;
            }
        }
    }

    /// Sessions with streams here that another node (or none) runs.
    fn all_followed_elsewhere(&self) -> Vec<(String, Hub)> {
        let owned = self.owned.lock().expect("runtime lock").keys().cloned().collect::<std::collections::HashSet<_>>();
        let entries = self.entries.lock().expect("runtime lock");
        entries.iter().filter(|(id, e)| e.hub.subscribers() > 0 && !owned.contains(*id)).map(|(id, e)| (id.clone(), e.hub.clone())).collect()
    }

    fn followed_elsewhere(&self, session_id: &str) -> Option<Hub> {
        if self.owned.lock().expect("runtime lock").contains_key(session_id) {
            return None;
        }
        let entries = self.entries.lock().expect("runtime lock");
        entries.get(session_id).filter(|e| e.hub.subscribers() > 0).map(|e| e.hub.clone())
    }

    async fn relay_from_log(&self, tenant: &TenantId, session_id: &str, hub: &Hub, hint: Option<i64>, upto: Option<i64>) {
        use std::sync::atomic::Ordering;
        let relay = hub.relay();
        let _one_at_a_time = relay.lock.lock().await;
        let mut after = match (relay.seen.load(Ordering::Acquire), hint) {
            (-1, Some(h)) => h,
            (-1, None) => return,
            (seen, _) => seen,
        };
        if upto.is_some_and(|u| u <= after) {
            return;
        }
        loop {
            let query = openma_core::ports::EventQuery { after_seq: Some(after), limit: 500, ..Default::default() };
            let page = match self.platform.list_events(tenant, session_id, &query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(session_id, error = %e, "cannot relay events from the log");
                    return;
                }
            };
            let n = page.len();
            for e in page {
                after = e.seq;
                let json = serde_json::to_string(&e.event).expect("events serialise");
                let terminal = matches!(e.event.payload, EventPayload::StatusTerminated {});
                hub.publish(Frame::Event { seq: e.seq, id: e.event.id, kind: e.event.payload.kind(), json, terminal });
                hub.seen(tenant, after);
            }
            if n < 500 {
                return;
            }
        }
    }

    /// Keeps the tenants' sandbox limits at the start of each turn (once; later calls are ignored).
    pub fn limit_sandboxes(&self, seats: Arc<crate::sandbox_seats::SandboxSeats>) {
        let _ = self.sandbox_seats.set(seats);
    }

    /// Adds work done at the end of every turn (in the order added).
    pub fn observe_turns(&self, observer: Arc<dyn TurnObserver>) {
        self.observers.lock().unwrap_or_else(|e| e.into_inner()).push(observer);
    }

    fn new_hub(&self, session_id: &str) -> Hub {
        let hub = Hub::new(session_id, self.cluster().map(|c| c.previews_out()));
        if let Some(until) = self.previews_wanted.lock().expect("runtime lock").get(session_id) {
            hub.relay().remote_previews_until.store(*until, std::sync::atomic::Ordering::Relaxed);
        }
        hub
    }

    /// Cluster mode: a preview another node's actor streamed, for the streams here.
    pub(crate) fn preview_here(&self, session_id: &str, frame: Frame) {
        if let Some(hub) = self.followed_elsewhere(session_id) {
            hub.publish_here(frame);
        }
    }

    /// Cluster mode: streams on another node want this session's previews for a while (kept
    /// for a hub made later too: the session may start running here next).
    pub(crate) fn previews_wanted(&self, session_id: &str) {
        let until = hub::unix_ms() + PREVIEW_INTEREST_MS;
        let entries = self.entries.lock().expect("runtime lock");
        if let Some(e) = entries.get(session_id) {
            e.hub.relay().remote_previews_until.store(until, std::sync::atomic::Ordering::Relaxed);
        }
        let mut wanted = self.previews_wanted.lock().expect("runtime lock");
        let now = hub::unix_ms();
        wanted.retain(|_, t| *t > now);
        wanted.insert(session_id.to_owned(), until);
    }

    /// Sessions followed here, run elsewhere, by streams that asked for previews.
    pub(crate) fn wanted_previews(&self) -> Vec<String> {
        self.all_followed_elsewhere()
            .into_iter()
            .filter(|(_, hub)| hub.relay().preview_streams.load(std::sync::atomic::Ordering::Relaxed) > 0)
            .map(|(id, _)| id)
            .collect()
    }

    /// The fan-out hub of a session (created on first use).
    pub fn hub(&self, session_id: &str) -> Hub {
        let mut entries = self.entries.lock().expect("runtime lock");
        entries.entry(session_id.to_owned()).or_insert_with(|| Entry { hub: self.new_hub(session_id), inbox: None }).hub.clone()
    }

    /// Sends a command to the session's actor, starting one if none runs.
    fn send(self: &Arc<Self>, tenant: &TenantId, session_id: &str, cmd: Command) {
        let mut entries = self.entries.lock().expect("runtime lock");
        let entry = entries.entry(session_id.to_owned()).or_insert_with(|| Entry { hub: self.new_hub(session_id), inbox: None });
        let cmd = match &entry.inbox {
            Some(inbox) => match inbox.send(cmd) {
                Ok(()) => return,
                Err(mpsc::error::SendError(cmd)) => cmd,
            },
            None => cmd,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(cmd);
        entry.inbox = Some(tx);
        let hub = entry.hub.clone();
        metrics::gauge!("openma_session_actors").increment(1.0);
        let rt = self.clone();
        let (tenant, id) = (tenant.clone(), session_id.to_owned());
        tokio::spawn(async move {
            actor::run(rt, tenant, id, hub, rx).await;
            metrics::gauge!("openma_session_actors").decrement(1.0);
        });
    }

    /// Called by an actor that wants to stop: succeeds only if no command is waiting,
    /// under the same lock that `send` takes, so no command can be lost.
    pub(crate) fn release(&self, session_id: &str, rx: &mpsc::UnboundedReceiver<Command>) -> bool {
        let mut entries = self.entries.lock().expect("runtime lock");
        if !rx.is_empty() {
            return false;
        }
        if let Some(e) = entries.get_mut(session_id) {
            e.inbox = None;
            if e.hub.subscribers() == 0 {
                entries.remove(session_id);
            }
        }
        true
    }

    /// Applies client events to a session (the tenant's ownership is checked first).
    pub async fn submit(self: &Arc<Self>, tenant: &TenantId, session_id: &str, inputs: Vec<Input>) -> Result<Vec<SessionEvent>, DomainError> {
        let session = self.platform.get_session(tenant, session_id).await?;
        if inputs.iter().any(|i| matches!(i, Input::Message { .. } | Input::System { .. })) {
            let idle = !matches!(session.status, openma_types::sessions::SessionStatus::Running | openma_types::sessions::SessionStatus::Rescheduling);
            if self.platform.check_quota(tenant, idle).await? {
                metrics::counter!("openma_tenant_soft_limit_exceeded_total").increment(1);
                tracing::warn!(%tenant, "tenant is over its soft monthly spend limit");
            }
            if let Some(seats) = self.sandbox_seats.get().filter(|_| idle) {
                seats.admit_turn(tenant, &session, self.platform.capabilities).await?;
            }
        }
        let (tx, rx) = oneshot::channel();
        self.send(tenant, session_id, Command::Submit { inputs, reply: tx });
        rx.await.map_err(|_| DomainError::conflict("the session's runtime stopped; retry"))?
    }

    pub async fn archive(self: &Arc<Self>, tenant: &TenantId, session_id: &str) -> Result<Session, DomainError> {
        self.platform.get_session(tenant, session_id).await?;
        let (tx, rx) = oneshot::channel();
        self.send(tenant, session_id, Command::Archive { reply: tx });
        let archived = rx.await.map_err(|_| DomainError::conflict("the session's runtime stopped; retry"))??;
        self.mcp.close_session(session_id).await;
        Ok(archived)
    }

    pub fn session_updated(self: &Arc<Self>, tenant: &TenantId, session_id: &str, payload: EventPayload) {
        self.send(tenant, session_id, Command::Updated { payload });
    }

    /// Resumes every session a previous process left running. Called once at start-up.
    pub async fn resume_interrupted(self: &Arc<Self>) -> Result<usize, DomainError> {
        let sessions = self.platform.store.sessions_to_resume().await?;
        for (tenant, id) in &sessions {
            self.send(tenant, id, Command::Wake);
        }
        Ok(sessions.len())
    }

    /// Tells the session's streams it is gone (and closes its MCP connections), on every
    /// node.
    pub fn session_deleted(&self, session_id: &str) {
        let mcp = self.mcp.clone();
        let id = session_id.to_owned();
        tokio::spawn(async move { mcp.close_session(&id).await });
        if let Some(cluster) = self.cluster().cloned() {
            let id = session_id.to_owned();
            tokio::spawn(async move {
                cluster.announce_deleted(&id).await;
                cluster.snapshots.forget(&id).await;
            });
        }
        self.session_deleted_here(session_id);
    }

    /// Ends this node's streams of a deleted session.
    pub(crate) fn session_deleted_here(&self, session_id: &str) {
        let mut entries = self.entries.lock().expect("runtime lock");
        if let Some(e) = entries.remove(session_id) {
            let json = serde_json::json!({"type": "session.deleted", "id": format!("sevt_deleted_{session_id}")}).to_string();
            e.hub.publish(Frame::Deleted { json });
        }
    }

    /// Sessions with an actor in memory (for metrics and benchmarks).
    pub fn active_actors(&self) -> usize {
        self.entries.lock().expect("runtime lock").values().filter(|e| e.inbox.is_some()).count()
    }
}
