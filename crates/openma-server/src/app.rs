//! Start-up: open the store, bootstrap the default tenant, build the router, serve.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use openma_core::Platform;
use openma_core::tenancy::DEFAULT_TENANT;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::adapters::{SystemClock, UlidIds};
use crate::config::Settings;
use crate::error::ApiError;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::tools::web::{WebFetch, WebSearch};
use openma_core::harness::tools::Toolbox;
use crate::{extract, http, telemetry};

/// Requests larger than this are refused with 413 (the hosted API's create-body limit).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What `/health` reports besides the database.
pub struct ServerInfo {
    /// Outbound validation requests may reach private addresses (tests only).
    pub allow_private_fetch: bool,
    /// The blob store, probed by `/health`.
    pub blobs: Arc<crate::blobs::ObjectBlobs>,
    pub sandbox: String,
    /// How sandboxes reach the network (for `/health`).
    pub sandbox_egress: String,
    /// Largest upload, in bytes.
    pub max_file_bytes: u64,
    /// Where `github_repository` resources are cloned from.
    pub github_url: String,
}

#[derive(Clone)]
pub struct AppState {
    pub platform: Platform,
    pub runtime: Arc<Runtime>,
    pub sandboxes: openma_sandbox::Sandboxes,
    pub info: Arc<ServerInfo>,
    /// Per-API-key request limits, when configured.
    pub rate_limiter: Option<Arc<crate::auth::RateLimiter>>,
    /// Takes session outputs into the Files API.
    pub outputs: Arc<crate::session_files::OutputCapture>,
    /// Keeps mounted memory stores in step with their sessions' sandboxes.
    pub memory_sync: Arc<crate::session_memory::MemorySync>,
    /// The sandbox server the tools run on, when they do not run on this host.
    pub remote: Option<Arc<crate::remote_sandbox::RemoteSandbox>>,
}

impl AppState {
    /// Ends a session's sandbox and deletes its files, here and on a remote sandbox server.
    pub async fn destroy_sandbox(&self, session_id: &str) -> std::io::Result<()> {
        if let Some(remote) = &self.remote {
            remote.forget(session_id).await;
        }
        self.sandboxes.destroy(session_id).await
    }
}

/// Opens (and migrates) the configured store and binds the core to it.
pub async fn open_platform(settings: &Settings) -> anyhow::Result<Platform> {
    if settings.uses_sqlite() {
        create_private_dir(&settings.data_dir)?;
    }
    let url = settings.database_url.expose_secret();
    let store = openma_store_sql::open(url)
        .await
        .with_context(|| format!("cannot open database {}", openma_store_sql::redact_url(url)))?;
    let mut platform = Platform::new(store, Arc::new(SystemClock), Arc::new(UlidIds::default()));
    platform.prices = Arc::new(settings.prices.clone());
    Ok(platform)
}

/// The data dir holds the database and the root secret (each 0600): others may not list
/// it, only pass through it (0711), because every sandbox runs as its own unprivileged
/// uid and bubblewrap must reach that session's workspace below it.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Ensures the default tenant exists, and `OPENMA_BOOTSTRAP_API_KEY` with it.
pub async fn bootstrap(platform: &Platform, settings: &Settings) -> anyhow::Result<()> {
    let tenant = platform.ensure_tenant(DEFAULT_TENANT).await?;
    if let Some(key) = &settings.bootstrap_api_key {
        platform
            .ensure_api_key(&tenant.id, "bootstrap", key.expose_secret())
            .await
            .context("cannot register OPENMA_BOOTSTRAP_API_KEY")?;
    } else if platform.list_api_keys(&tenant.id).await?.is_empty() {
        tracing::warn!(
            "no API key exists yet: create one with `openma api-keys create --name <NAME>` (or set OPENMA_BOOTSTRAP_API_KEY)"
        );
    }
    Ok(())
}

/// Looks for bubblewrap once at start-up and says how to install it when it is missing.
fn sandbox_status(sandboxes: &openma_sandbox::Sandboxes) -> String {
    match openma_sandbox::Sandboxes::check().and_then(|v| sandboxes.preflight().map(|()| v)) {
        Ok(version) => version,
        Err(how) => {
            tracing::warn!("the sandbox cannot start: {how}; bash and the file tools will answer with an error until then");
            format!("unavailable: {how}")
        }
    }
}

fn egress_status(sandboxes: &openma_sandbox::Sandboxes) -> String {
    let resolve = &sandboxes.config().egress.resolve;
    if resolve.is_empty() {
        "proxy".into()
    } else {
        let mut names: Vec<&str> = resolve.names().collect();
        names.sort();
        format!("proxy (UNSAFE test resolve overrides: {})", names.join(", "))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(http::routes(state.info.max_file_bytes))
        .fallback(crate::error::route_not_found)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, crate::idempotency::layer))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(telemetry::record_http_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!(request_id = %extract::current_request_id(), "handler panicked");
            axum::response::IntoResponse::into_response(ApiError::internal())
        }))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(extract::request_id))
}

/// The tools the server itself runs, and the capabilities they give the platform.
fn server_tools(settings: &Settings, platform: &mut Platform) -> anyhow::Result<Toolbox> {
    let mut toolbox = Toolbox::default();
    toolbox.register("web_fetch", Arc::new(WebFetch { allow_private: settings.unsafe_allow_private_fetch }));
    if let Some(url) = &settings.search_url {
        let endpoint = reqwest::Url::parse(url).with_context(|| format!("OPENMA_SEARCH_URL `{url}` is not a URL"))?;
        let http = openma_models::http_client().context("cannot set up the search client")?;
        toolbox.register("web_search", Arc::new(WebSearch { endpoint, http }));
        platform.capabilities.web_search = true;
    }
    Ok(toolbox)
}

/// Runs `job` every minute, for the life of the process: this node's own house-keeping
/// (idle sandboxes, idle MCP connections); shared jobs go through [`crate::scheduler`].
fn every_minute<F, Fut>(job: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            job().await;
        }
    });
}

fn runtime_config(settings: &Settings) -> RuntimeConfig {
    let mut c = RuntimeConfig::default();
    if let Some(n) = settings.model_max_retries {
        c.retry.max_retries = n;
    }
    if let Some(ms) = settings.model_retry_base_ms {
        c.retry.base = std::time::Duration::from_millis(ms);
    }
    if let Some(t) = settings.context_window_tokens {
        c.context_window_tokens = t;
    }
    c.ledger = !settings.unsafe_disable_ledger;
    c
}

/// A bound, not yet serving, server.
pub struct Prepared {
    pub listener: TcpListener,
    pub app: Router,
    pub addr: SocketAddr,
    pub runtime: Arc<Runtime>,
}

/// Opens everything and binds the listener; `serve` then runs it.
pub async fn prepare(settings: &Settings) -> anyhow::Result<Prepared> {
    let mut platform = open_platform(settings).await?;
    crate::secrets::install(&mut platform, settings).await?;
    bootstrap(&platform, settings).await?;
    let mut toolbox = server_tools(settings, &mut platform)?;
    let mut sandbox_config = openma_sandbox::SandboxConfig::new(settings.data_dir.join("sandboxes"));
    settings.sandbox.apply(&mut sandbox_config.limits);
    if let Some(bridge) = &settings.sandbox_bridge {
        sandbox_config.egress.bridge = bridge.clone();
    }
    if let Some(spec) = &settings.unsafe_egress_resolve {
        sandbox_config.egress.resolve = openma_sandbox::ResolveOverrides::parse(spec)
            .map_err(|e| anyhow::anyhow!("invalid OPENMA_UNSAFE_EGRESS_RESOLVE: {e}"))?;
        let names: Vec<&str> = sandbox_config.egress.resolve.names().collect();
        tracing::warn!(
            ?names,
            "OPENMA_UNSAFE_EGRESS_RESOLVE is set: sandbox egress to these names goes to the given addresses, \
             even private or loopback ones. For tests only; never set it in production"
        );
    }
    // credential substitution at egress: a CA of this deployment, trusted only by sandboxes
    let ca = openma_sandbox::intercept::EgressCa::load_or_create(&settings.data_dir.join("egress-ca"))
        .context("cannot open the sandbox egress CA")?;
    sandbox_config.egress.ca = Some(Arc::new(ca));
    sandbox_config.egress.credentials = Some(Arc::new(crate::session_network::EgressCredentials { platform: platform.clone() }));
    let mut extra_roots = Vec::new();
    if let Some(path) = &settings.unsafe_egress_upstream_ca {
        extra_roots.push(std::fs::read_to_string(path).with_context(|| format!("OPENMA_UNSAFE_EGRESS_UPSTREAM_CA {}", path.display()))?);
        tracing::warn!(path = %path.display(), "OPENMA_UNSAFE_EGRESS_UPSTREAM_CA is set: intercepted egress trusts an extra CA. For tests only");
    }
    sandbox_config.egress.upstream_roots = Some(openma_sandbox::intercept::upstream_roots(&extra_roots));
    let l = &sandbox_config.limits;
    // an environment's `config.limits` may lower these, never raise them
    platform.sandbox_limits = Some(openma_types::environments::EnvironmentLimits {
        memory_mb: Some(l.memory_bytes >> 20),
        processes: Some(l.processes),
        open_files: Some(l.open_files),
        file_size_mb: Some(l.file_size_bytes >> 20),
        bash_timeout_max_s: Some(l.max_timeout.as_secs()),
    });
    let sandboxes = openma_sandbox::Sandboxes::new(sandbox_config);
    // memory stores mounted into a session are synced around every sandbox tool call
    let memory_sync = Arc::new(crate::session_memory::MemorySync::new(platform.clone(), sandboxes.clone()));
    // the tenant's limit on sandboxes running at once: only `bash` starts one
    let remote = match &settings.sandbox_url {
        Some(url) => Some(crate::remote_sandbox::RemoteSandbox::new(url, settings.sandbox_token.clone().unwrap_or_else(|| secrecy::SecretString::from(String::new())), sandboxes.clone())?),
        None => None,
    };
    let is_running: crate::sandbox_seats::IsRunning = match &remote {
        Some(r) => {
            let r = r.clone();
            Arc::new(move |id: &str| r.is_running(id))
        }
        None => {
            let s = sandboxes.clone();
            Arc::new(move |id: &str| s.is_running(id))
        }
    };
    let seats = crate::sandbox_seats::SandboxSeats::new(platform.clone(), is_running);
    let sandbox_tools = match &remote {
        Some(r) => r.tools(),
        None => sandboxes.tools(),
    };
    for (name, tool) in sandbox_tools {
        let tool: Arc<dyn openma_core::harness::tools::Tool> = if name == crate::sandbox_seats::STARTING_TOOL {
            Arc::new(crate::sandbox_seats::Seated { inner: tool, seats: seats.clone() })
        } else {
            tool
        };
        toolbox.register(name, Arc::new(crate::session_memory::MemorySynced { inner: tool, sync: memory_sync.clone() }));
    }
    // idle shells stop (their workspaces stay for the next call)
    let (reaped, remote_reaped) = (sandboxes.clone(), remote.clone());
    every_minute(move || {
        let (sandboxes, remote) = (reaped.clone(), remote_reaped.clone());
        async move {
            let stopped = sandboxes.reap_idle().await;
            if stopped > 0 {
                tracing::debug!(stopped, "stopped idle sandboxes");
            }
            // a remote sandbox server stops idle shells on its own: learn which still run
            if let Some(r) = remote {
                r.refresh_running().await;
            }
        }
    });
    // package layers no session of this host used for a week go (a remote server collects its own)
    let collected = sandboxes.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sandboxes = collected.clone();
            let _ = tokio::task::spawn_blocking(move || sandboxes.collect_layers(openma_sandbox::LAYER_UNUSED_FOR)).await;
        }
    });
    let blobs = Arc::new(crate::blobs::ObjectBlobs::open(&crate::blobs::BlobUrl::parse(&settings.blob_url)?).context("cannot open the blob store")?);
    platform.blobs = Some(blobs.clone());
    // shared house-keeping runs once across the cluster; idle sandboxes and MCP connections are per node
    crate::scheduler::housekeeping(&platform, &settings.housekeeping).spawn();
    crate::webhooks::spawn(platform.clone(), settings.unsafe_allow_private_fetch, settings.webhook_retry_delays.clone());
    let _ = telemetry::metrics_handle();
    let info = ServerInfo {
        allow_private_fetch: settings.unsafe_allow_private_fetch,
        blobs,
        sandbox: match &remote {
            Some(r) => {
                let status = r.status().await;
                tracing::info!(url = r.url(), %status, "the sessions' tools run on a remote sandbox server");
                status
            }
            None => sandbox_status(&sandboxes),
        },
        sandbox_egress: if remote.is_some() { "remote".into() } else { egress_status(&sandboxes) },
        max_file_bytes: settings.max_file_bytes,
        github_url: settings.github_url.clone(),
    };
    let http = openma_models::http_client().context("cannot set up the model clients")?;
    let env_models = openma_models::ModelRouter::from_lookup(|name| settings.providers.lookup(name), http.clone());
    let models = Arc::new(crate::runtime::ModelClients::new(platform.clone(), Arc::new(env_models), http));
    let mcp_settings = crate::mcp::McpSettings { allow_private: settings.unsafe_allow_private_fetch, ..Default::default() };
    let mcp = Arc::new(crate::mcp::McpHub::new(platform.clone(), Some(sandboxes.clone()), remote.clone(), mcp_settings));
    // MCP connections of idle sessions close (reopened on their next turn)
    let idle_mcp = mcp.clone();
    every_minute(move || {
        let mcp = idle_mcp.clone();
        async move {
            let closed = mcp.reap_idle().await;
            if closed > 0 {
                tracing::debug!(closed, "closed idle MCP connections");
            }
        }
    });
    let runtime = Runtime::new(platform.clone(), models, toolbox, mcp, runtime_config(settings));
    runtime.limit_sandboxes(seats);
    // a remote sandbox's files come back before anything reads them at the end of a turn
    if let Some(r) = &remote {
        runtime.observe_turns(r.clone());
    }
    let outputs = Arc::new(crate::session_files::OutputCapture::new(platform.clone(), sandboxes.clone(), settings.max_file_bytes));
    runtime.observe_turns(outputs.clone());
    runtime.observe_turns(crate::integrations::Replies::new(platform.clone()));
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    match &settings.cluster {
        Some(c) => {
            anyhow::ensure!(!settings.uses_sqlite(), "cluster mode needs a PostgreSQL database shared by the nodes (OPENMA_DATABASE_URL=postgres://…)");
            let blobs = platform.blobs.clone().context("cluster mode needs the blob store")?;
            let snapshots = crate::session_snapshots::Snapshots::new(sandboxes.clone(), blobs, platform.ids.clone());
            let cluster = crate::cluster::Cluster::start(c, settings.database_url.expose_secret(), addr, &platform, snapshots).await?;
            tracing::info!(node = %cluster.node_id, url = %cluster.url, lease_ttl_ms = c.lease_ttl.as_millis() as u64, "joined the cluster");
            // sessions left running by a node that is gone are taken over by the scan
            runtime.join_cluster(cluster);
        }
        None => {
            let resumed = runtime.resume_interrupted().await.context("cannot resume interrupted sessions")?;
            if resumed > 0 {
                tracing::info!(resumed, "resuming sessions that were running when the server stopped");
            }
        }
    }
    let rate_limiter = settings.rate_limit_per_minute.and_then(std::num::NonZeroU32::new).map(|n| Arc::new(crate::auth::RateLimiter::per_minute(n)));
    let app = router(AppState { platform, runtime: runtime.clone(), sandboxes, info: Arc::new(info), rate_limiter, outputs, memory_sync, remote });
    Ok(Prepared { listener, app, addr, runtime })
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(p: Prepared, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    // small SSE frames must not wait for Nagle's algorithm (a 40 ms stall per frame)
    let listener = p.listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // cluster mode: on the way down this node's sessions go to the others at once (its
    // actors can no longer write), instead of when their leases lapse
    let runtime = p.runtime.clone();
    let stopping = Arc::new(tokio::sync::Notify::new());
    let told = stopping.clone();
    let shutdown = async move {
        shutdown.await;
        if let Some(cluster) = runtime.cluster() {
            cluster.hand_over(&runtime.owned_sessions()).await;
        }
        told.notify_one();
    };
    let server = axum::serve(listener, p.app).with_graceful_shutdown(shutdown);
    // open streams would hold the shutdown forever: they get a few seconds to end
    let deadline = async move {
        stopping.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::info!("closing the connections still open");
    };
    tokio::select! {
        r = server => r.context("server failed"),
        () = deadline => Ok(()),
    }
}

/// How long in-flight requests and open streams may take to end after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
