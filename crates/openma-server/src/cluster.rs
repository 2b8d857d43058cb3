//! Cluster mode: several `openma serve` nodes on one PostgreSQL database, behind any load
//! balancer. Any node accepts any request.
//!
//! - A session with work in progress is owned by one node through a lease row whose token
//!   fences every append (see `Store::append_events`); the node's heartbeat renews the
//!   leases of the actors it runs.
//! - A node that dies stops renewing: once its leases lapse another node takes the sessions
//!   over and they resume as after a crash. A node that stops (SIGTERM) gives them up at
//!   once and says so, so the others take over without waiting.
//! - A command for a session owned elsewhere is handed to the owner over HTTP, authenticated
//!   by a token every node derives from the shared root secret.
//! - Events appended anywhere reach every node's streams through LISTEN/NOTIFY; streams
//!   still read the log behind each notification, and a sweep re-reads it, so a missed
//!   notification delays an event but never loses it.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use openma_core::harness::input::Input;
use openma_core::ports::{Fence, LeaseHolder, Store};
use openma_core::{Clock, DomainError, TenantId};
use openma_store_sql::{Heard, PgBus};
use openma_types::events::{EventPayload, SessionEvent};
use openma_types::sessions::Session;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;
use crate::runtime::hub::RemotePreview;
use crate::runtime::{Frame, PreviewOf, Runtime};

/// Events were appended: payload `tenant session first_seq last_seq`.
pub const EVENTS_CHANNEL: &str = "openma_events";
/// Leases were given up: look for sessions to take over now.
pub const LEASES_CHANNEL: &str = "openma_leases";
/// A session was deleted: payload `session`.
pub const DELETED_CHANNEL: &str = "openma_deleted";
/// A preview from a session's owner: payload `session`, `agent.message`|`agent.thinking`,
/// the frame's kind and its JSON, one per line.
pub const PREVIEWS_CHANNEL: &str = "openma_previews";
/// Streams here want a session's previews: payload `session`.
pub const INTEREST_CHANNEL: &str = "openma_interest";
/// PostgreSQL refuses a notification payload of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_900;
/// The route other nodes hand commands to.
pub const COMMAND_ROUTE: &str = "/internal/cluster/sessions/{id}/commands";
const TOKEN_HEADER: &str = "x-openma-cluster-token";
/// How often streams of sessions owned elsewhere re-read the log, behind the notifications.
const SWEEP: Duration = Duration::from_secs(2);

/// `--cluster` and its options.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// This node's name [default: random, new at every start].
    pub node_id: Option<String>,
    /// The base URL other nodes reach this one at [default: `http://` + the listen address].
    pub advertise_url: Option<String>,
    /// How long a lease lasts without renewal: the bound on takeover after a node dies.
    pub lease_ttl: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { node_id: None, advertise_url: None, lease_ttl: Duration::from_secs(6) }
    }
}

pub struct Cluster {
    pub node_id: String,
    pub url: String,
    pub lease_ttl: Duration,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    bus: PgBus,
    /// The tokens other nodes may present (derived from every root secret in force).
    tokens: Vec<String>,
    http: reqwest::Client,
    /// Wakes the takeover scan before its next tick.
    takeover: tokio::sync::Notify,
    /// Carries the sessions' sandbox directories between nodes.
    pub snapshots: crate::session_snapshots::Snapshots,
    /// Previews for other nodes' streams, sent in order by one task.
    previews: tokio::sync::mpsc::UnboundedSender<RemotePreview>,
    previews_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<RemotePreview>>>,
}

/// A command handed to the node that owns the session.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Forwarded {
    Submit { inputs: Vec<Input> },
    Archive,
    Updated { payload: EventPayload },
}

#[derive(Serialize, Deserialize)]
pub struct ForwardRequest {
    tenant: String,
    #[serde(flatten)]
    command: Forwarded,
}

/// What the owner answered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardReply {
    Events(Vec<SessionEvent>),
    Session(Box<Session>),
    Done,
    Error(WireError),
}

/// A [`DomainError`] as it travels between nodes, so the caller gets the owner's error
/// exactly (status, type and code).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WireError {
    Invalid { message: String, code: Option<String> },
    NotFound { message: String },
    Gone { message: String, code: String },
    TooLarge { message: String },
    Conflict { message: String, code: Option<String> },
    MemoryPrecondition { message: String },
    MemoryPathConflict { message: String, conflicting_memory_id: String },
    PaymentRequired { message: String },
    QuotaExceeded { message: String, retry_after_secs: u64 },
    Unavailable { message: String },
    Store { message: String },
}

impl From<DomainError> for WireError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { message, code } => WireError::Invalid { message, code: code.map(str::to_owned) },
            DomainError::NotFound(message) => WireError::NotFound { message },
            DomainError::Gone { message, code } => WireError::Gone { message, code: code.to_owned() },
            DomainError::TooLarge(message) => WireError::TooLarge { message },
            DomainError::Conflict { message, code } => WireError::Conflict { message, code: code.map(str::to_owned) },
            DomainError::MemoryPrecondition(message) => WireError::MemoryPrecondition { message },
            DomainError::MemoryPathConflict { message, conflicting_memory_id } => WireError::MemoryPathConflict { message, conflicting_memory_id },
            DomainError::PaymentRequired(message) => WireError::PaymentRequired { message },
            DomainError::QuotaExceeded { message, retry_after_secs } => WireError::QuotaExceeded { message, retry_after_secs },
            DomainError::Unavailable(message) => WireError::Unavailable { message },
            DomainError::Store(e) => WireError::Store { message: e.to_string() },
        }
    }
}

impl From<WireError> for DomainError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Invalid { message, code } => DomainError::Invalid { message, code: code.as_deref().map(intern) },
            WireError::NotFound { message } => DomainError::NotFound(message),
            WireError::Gone { message, code } => DomainError::Gone { message, code: intern(&code) },
            WireError::TooLarge { message } => DomainError::TooLarge(message),
            WireError::Conflict { message, code } => DomainError::Conflict { message, code: code.as_deref().map(intern) },
            WireError::MemoryPrecondition { message } => DomainError::MemoryPrecondition(message),
            WireError::MemoryPathConflict { message, conflicting_memory_id } => DomainError::MemoryPathConflict { message, conflicting_memory_id },
            WireError::PaymentRequired { message } => DomainError::PaymentRequired(message),
            WireError::QuotaExceeded { message, retry_after_secs } => DomainError::QuotaExceeded { message, retry_after_secs },
            WireError::Unavailable { message } => DomainError::Unavailable(message),
            WireError::Store { message } => DomainError::Store(openma_core::StoreError::Backend(message)),
        }
    }
}

/// Error codes are `&'static str` in the domain; the few another node of this deployment
/// can send are kept once for the life of the process.
fn intern(code: &str) -> &'static str {
    static CODES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut codes = CODES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = codes.iter().find(|c| **c == code) {
        return c;
    }
    if codes.len() >= 256 {
        return "relayed_error";
    }
    let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
    codes.push(leaked);
    leaked
}

/// Why a command could not be handed over.
pub enum Undelivered {
    /// The owner could not be reached, so it did not get the command (it may be dying):
    /// try again, or take the session over once its lease lapses.
    Unreachable(String),
    /// The owner got the command but its answer was lost: it may have been applied.
    Failed(String),
}

impl Cluster {
    pub async fn start(
        settings: &ClusterSettings,
        database_url: &str,
        listen: std::net::SocketAddr,
        platform: &openma_core::Platform,
        snapshots: crate::session_snapshots::Snapshots,
    ) -> anyhow::Result<Arc<Cluster>> {
        use anyhow::Context;
        let url = match &settings.advertise_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                anyhow::ensure!(
                    !listen.ip().is_unspecified(),
                    "cluster mode: listening on {listen}, other nodes cannot tell where this one is: set --advertise-url (OPENMA_ADVERTISE_URL)"
                );
                format!("http://{listen}")
            }
        };
        let secrets = platform.secrets.as_ref().context("cluster mode needs the root secret")?;
        let bus = PgBus::connect(database_url).await.context("cluster mode: cannot open the notification connection")?;
        let node_id = settings.node_id.clone().unwrap_or_else(|| platform.ids.new_id("node"));
        let (previews, previews_rx) = tokio::sync::mpsc::unbounded_channel();
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(60)).build()?;
        let cluster = Arc::new(Cluster {
            node_id,
            url,
            lease_ttl: settings.lease_ttl,
            store: platform.store.clone(),
            clock: platform.clock.clone(),
            bus,
            tokens: secrets.tokens("cluster"),
            http,
            takeover: tokio::sync::Notify::new(),
            snapshots,
            previews,
            previews_rx: std::sync::Mutex::new(Some(previews_rx)),
        });
        cluster.heartbeat(&[]).await.context("cluster mode: cannot register this node")?;
        Ok(cluster)
    }

    fn now(&self) -> i64 {
        self.clock.now().as_micros()
    }

    fn until(&self) -> i64 {
        self.now() + self.lease_ttl.as_micros() as i64
    }

    async fn heartbeat(&self, sessions: &[String]) -> Result<(), DomainError> {
        self.store.node_heartbeat(&self.node_id, &self.url, self.now(), self.until(), sessions).await?;
        Ok(())
    }

    /// Takes a session's lease; `None` when another node holds it.
    pub async fn acquire(&self, session_id: &str) -> Result<Option<Fence>, DomainError> {
        let token = self.store.acquire_lease(session_id, &self.node_id, self.now(), self.until()).await?;
        Ok(token.map(|token| Fence { node_id: self.node_id.clone(), token }))
    }

    pub async fn release(&self, session_id: &str, fence: &Fence) {
        if let Err(e) = self.store.release_lease(session_id, fence).await {
            // it lapses by itself
            tracing::warn!(session_id, error = %e, "cannot give up a session lease");
        }
    }

    /// The live owner of a session other than this node, if any.
    pub async fn owner(&self, session_id: &str) -> Result<Option<LeaseHolder>, DomainError> {
        let holder = self.store.lease_holder(session_id).await?;
        Ok(holder.filter(|h| h.node_id != self.node_id && h.expires_at >= self.now()))
    }

    /// Hands a command to the node at `owner`.
    pub async fn forward(&self, owner: &LeaseHolder, tenant: &TenantId, session_id: &str, command: Forwarded) -> Result<ForwardReply, Undelivered> {
        let url = format!("{}{}", owner.url, COMMAND_ROUTE.replace("{id}", session_id));
        let body = ForwardRequest { tenant: tenant.as_str().to_owned(), command };
        let sent = self.http.post(&url).header(TOKEN_HEADER, &self.tokens[0]).json(&body).send().await;
        let response = match sent {
            Ok(r) if r.status().is_success() => r,
            // refused before anything ran (it is shutting down)
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                return Err(Undelivered::Unreachable(format!("{} answered {}", owner.node_id, r.status())));
            }
            Ok(r) => return Err(Undelivered::Failed(format!("{} answered {}", owner.node_id, r.status()))),
            Err(e) if e.is_connect() => return Err(Undelivered::Unreachable(format!("{}: {e}", owner.node_id))),
            Err(e) => return Err(Undelivered::Failed(format!("{}: {e}", owner.node_id))),
        };
        response.json::<ForwardReply>().await.map_err(|e| Undelivered::Failed(format!("{}: {e}", owner.node_id)))
    }

    /// Where a hub sends the previews other nodes' streams want.
    pub fn previews_out(&self) -> tokio::sync::mpsc::UnboundedSender<RemotePreview> {
        self.previews.clone()
    }

    /// Tells the other nodes a session is gone (their streams of it end).
    pub async fn announce_deleted(&self, session_id: &str) {
        if let Err(e) = self.bus.notify(DELETED_CHANNEL, session_id).await {
            tracing::warn!(session_id, error = %e, "cannot tell the cluster a session was deleted");
        }
    }

    /// Before running a session: its sandbox directory as its last owner left it.
    pub async fn arrive(&self, session_id: &str) {
        match self.snapshots.restore(session_id).await {
            Ok(true) => tracing::info!(session_id, "restored the session's sandbox from its last snapshot"),
            Ok(false) => {}
            Err(e) => tracing::warn!(session_id, error = %e, "cannot restore the session's sandbox; it starts from what this node has"),
        }
    }

    /// Packs the session's sandbox directory for the next node that runs it.
    pub async fn pack(&self, session_id: &str) {
        match self.snapshots.save(session_id).await {
            Ok(Some(bytes)) => tracing::debug!(session_id, bytes, "packed the session's sandbox"),
            Ok(None) => {}
            Err(e) => tracing::warn!(session_id, error = %e, "cannot pack the session's sandbox; another node would start it from an older one"),
        }
    }

    /// Graceful shutdown: the sandboxes of `owned` are packed, then every lease of this node
    /// is given up (its actors can no longer write) and the other nodes are told to take the
    /// sessions over now.
    pub async fn hand_over(&self, owned: &[String]) {
        for id in owned {
            self.pack(id).await;
        }
        match self.store.release_node(&self.node_id).await {
            Ok(n) => {
                tracing::info!(node = %self.node_id, sessions = n, "handed this node's sessions over to the cluster");
                if let Err(e) = self.bus.notify(LEASES_CHANNEL, &self.node_id).await {
                    tracing::warn!(error = %e, "cannot tell the cluster; the others take over when the leases are found free");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot give up this node's leases; they lapse by themselves"),
        }
    }

    /// Starts the node's background work: heartbeat and lease renewal, the takeover scan,
    /// and the notification listener with its sweep.
    pub fn spawn(self: &Arc<Self>, runtime: Arc<Runtime>) {
        let (me, rt) = (self.clone(), runtime.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.lease_ttl / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let owned = rt.owned_sessions();
                metrics::gauge!("openma_cluster_leased_sessions").set(owned.len() as f64);
                if let Err(e) = me.heartbeat(&owned).await {
                    tracing::warn!(error = %e, "cluster heartbeat failed; leases lapse if this goes on");
                }
            }
        });
        let (me, rt) = (self.clone(), runtime.clone());
        tokio::spawn(async move {
            loop {
                match me.store.orphaned_sessions(me.now()).await {
                    Ok(orphans) => {
                        for (tenant, id) in orphans {
                            tracing::info!(session_id = %id, "taking over a session whose node is gone");
                            metrics::counter!("openma_cluster_takeover_attempts_total").increment(1);
                            rt.wake(&tenant, &id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "takeover scan failed"),
                }
                let _ = tokio::time::timeout(me.lease_ttl / 4, me.takeover.notified()).await;
            }
        });
        let rx = self.previews_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut rx) = rx {
            let me = self.clone();
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    let payload = format!("{}\n{}\n{}\n{}", p.session_id, p.of.as_str(), p.kind, p.json);
                    if payload.len() > MAX_PAYLOAD {
                        tracing::debug!(session_id = %p.session_id, bytes = payload.len(), "a preview too large to notify; the event itself follows");
                        continue;
                    }
                    if let Err(e) = me.bus.notify(PREVIEWS_CHANNEL, &payload).await {
                        tracing::debug!(error = %e, "cannot send a preview to the other nodes");
                    }
                }
            });
        }
        let (me, rt) = (self.clone(), runtime);
        tokio::spawn(async move { me.listen(rt).await });
    }

    async fn listen(self: Arc<Self>, rt: Arc<Runtime>) {
        let (sweeper, me) = (rt.clone(), self.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            loop {
                tick.tick().await;
                sweeper.relay_all().await;
                // the owners of sessions streamed here with previews keep sending them
                for id in sweeper.wanted_previews() {
                    let _ = me.bus.notify(INTEREST_CHANNEL, &id).await;
                }
            }
        });
        loop {
            let mut sub = match self.bus.listen(&[EVENTS_CHANNEL, LEASES_CHANNEL, DELETED_CHANNEL, PREVIEWS_CHANNEL, INTEREST_CHANNEL]).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for cluster notifications; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                match sub.next().await {
                    Ok(Heard::Notification { channel, payload }) => match channel.as_str() {
                        EVENTS_CHANNEL => {
                            let mut parts = payload.split(' ');
                            if let (Some(tenant), Some(id), Some(first), Some(last)) = (parts.next(), parts.next(), parts.next(), parts.next())
                                && let (Ok(first), Ok(last)) = (first.parse::<i64>(), last.parse::<i64>())
                            {
                                metrics::counter!("openma_cluster_notifications_total").increment(1);
                                rt.relay(TenantId::from_trusted(tenant.to_owned()), id, first, last);
                            }
                        }
                        LEASES_CHANNEL => self.takeover.notify_one(),
                        DELETED_CHANNEL => rt.session_deleted_here(&payload),
                        INTEREST_CHANNEL => rt.previews_wanted(&payload),
                        PREVIEWS_CHANNEL => {
                            let mut parts = payload.splitn(4, '\n');
                            if let (Some(id), Some(of), Some(kind), Some(json)) = (parts.next(), parts.next(), parts.next(), parts.next())
                                && let Some(of) = PreviewOf::parse(of)
                            {
                                let kind = if kind == "event_start" { "event_start" } else { "event_delta" };
                                rt.preview_here(id, Frame::Preview { of, kind, json: json.to_owned() });
                            }
                        }
                        _ => {}
                    },
                    Ok(Heard::Reconnected) => {
                        tracing::info!("cluster notifications reconnected; re-reading the logs of followed sessions");
                        rt.relay_all().await;
                        self.takeover.notify_one();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cluster notifications failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        }
    }

    fn authorised(&self, headers: &HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = headers.get(TOKEN_HEADER).map(|v| v.as_bytes()) else { return false };
        self.tokens.iter().any(|t| bool::from(t.as_bytes().ct_eq(given)))
    }
}

/// `POST /internal/cluster/sessions/{id}/commands`: a command another node handed over.
pub async fn receive_command(
    State(app): State<AppState>,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ForwardRequest>,
) -> Result<Json<ForwardReply>, ApiError> {
    let Some(cluster) = app.runtime.cluster() else {
        return Err(crate::error::route_not_found().await);
    };
    if !cluster.authorised(&headers) {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "not a node of this cluster"));
    }
    let tenant = TenantId::from_trusted(req.tenant);
    let reply = match app.runtime.dispatch(&tenant, &session_id, req.command).await {
        Ok(r) => r,
        Err(e) => ForwardReply::Error(e.into()),
    };
    Ok(Json(reply))
}

/// Packs a session's sandbox at the end of every turn it runs here.
#[async_trait::async_trait]
impl crate::runtime::TurnObserver for Cluster {
    async fn turn_ending(&self, _tenant: &TenantId, session_id: &str) {
        self.pack(session_id).await;
    }
}
