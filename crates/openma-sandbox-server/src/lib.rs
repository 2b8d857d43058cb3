#![forbid(unsafe_code)]
//! The sandbox server: the session sandboxes of one host (bubblewrap, a persistent shell and
//! the file tools of [`openma_sandbox`]) behind an authenticated HTTP API, so that the
//! control plane runs somewhere else — the native server with a remote sandbox
//! (`OPENMA_SANDBOX_URL`), or a Cloudflare `SessionDO` through the Containers binding.
//! The protocol is in [`wire`].

pub use openma_types::sandbox as wire;

mod credentials;
mod mcp_bridge;
pub use credentials::HeldCredentials;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::StreamExt;
use openma_core::harness::tools::{Tool, ToolContext};
use openma_core::TenantId;
use openma_sandbox::Sandboxes;
use openma_sandbox::archive::{self, LOCAL_ONLY};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;

use wire::{
    ErrorBody, ErrorEnvelope, FileQuery, Health, LayerQuery, LayerReport, MemoryFile, MemoryFiles, MemoryLay, SESSION_UNKNOWN, SessionCredentials,
    SessionOpen, SinceQuery, StateMode, StateQuery, ToolCall, ToolResult, Usage,
};

/// Largest pack accepted (a session's whole directory).
pub const MAX_PACK_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Largest body of a file written through `PUT …/files`, and of a tool call.
pub const MAX_FILE_BYTES: usize = 256 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Server {
    sandboxes: Sandboxes,
    tools: Arc<HashMap<&'static str, Arc<dyn Tool>>>,
    token: Arc<SecretString>,
    /// One lock per session: tools, packs and deletion of one session do not interleave.
    locks: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// By session: what the last `GET …/state` answer brought the client to (in memory: a
    /// restarted server answers the next one whole).
    sent: Arc<std::sync::Mutex<HashMap<String, Sent>>>,
    /// What the sandboxes' egress proxy substitutes (given to their config: [`HeldCredentials::install`]).
    credentials: Arc<HeldCredentials>,
    /// The MCP sessions with the sessions' stdio MCP servers ([`mcp_bridge`]).
    bridges: Arc<mcp_bridge::Bridges>,
}

impl Server {
    /// Serves `sandboxes` to clients presenting `token`; the sessions' credentials go to
    /// `credentials`, which the sandboxes' egress proxy asks.
    pub fn new(sandboxes: Sandboxes, token: SecretString, credentials: Arc<HeldCredentials>) -> Self {
        let tools = sandboxes.tools().into_iter().collect();
        Server { sandboxes, tools: Arc::new(tools), token: Arc::new(token), locks: Default::default(), sent: Default::default(), credentials, bridges: Default::default() }
    }

    pub fn sandboxes(&self) -> &Sandboxes {
        &self.sandboxes
    }

    /// The HTTP API.
    pub fn router(self) -> Router {
        let v1 = Router::new()
            .route("/v1/sessions", get(running))
            .route("/v1/sessions/{id}", put(open_session).get(held_session).delete(delete_session))
            .route("/v1/sessions/{id}/tools/{name}", post(run_tool))
            .route("/v1/sessions/{id}/state", put(put_state).get(get_state).layer(DefaultBodyLimit::disable()))
            .route("/v1/sessions/{id}/files", get(get_file).put(put_file))
            .route("/v1/sessions/{id}/repositories", post(clone_repository))
            .route("/v1/sessions/{id}/memory", put(lay_memory))
            .route("/v1/sessions/{id}/memory/{slug}", get(memory_files))
            .route("/v1/sessions/{id}/credentials", put(put_credentials))
            .route("/v1/sessions/{id}/mcp/{server}", post(mcp_bridge::post).delete(mcp_bridge::delete))
            .route("/v1/layers", post(layer))
            .layer(DefaultBodyLimit::max(MAX_FILE_BYTES))
            .route_layer(middleware::from_fn_with_state(self.clone(), authenticate));
        Router::new().route("/health", get(health)).merge(v1).fallback(not_found).with_state(self)
    }

    /// Serves the API on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        // a response's head and body are separate writes: without this, each answer waits
        // for the client's delayed ACK (40 ms)
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_owned()).or_default().clone();
        m.lock_owned().await
    }

    /// The session's directory, when this server holds the session.
    fn held(&self, id: &str) -> Result<std::path::PathBuf, ApiError> {
        let dir = self.sandboxes.session_dir(id).ok_or_else(|| ApiError::bad_id(id))?;
        if dir.is_dir() { Ok(dir) } else { Err(ApiError::unknown(id)) }
    }

    fn held_sessions(&self) -> usize {
        std::fs::read_dir(&self.sandboxes.config().root)
            .map(|d| d.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && !e.file_name().to_string_lossy().starts_with('.')).count())
            .unwrap_or(0)
    }
}

/// An error in the Anthropic envelope.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, kind: "invalid_request_error", message: message.into(), code: None }
    }
    fn unknown(id: &str) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, kind: "not_found_error", message: format!("this sandbox server does not hold session {id}"), code: Some(SESSION_UNKNOWN) }
    }
    fn internal(message: impl std::fmt::Display) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, kind: "api_error", message: message.to_string(), code: None }
    }
    fn bad_id(id: &str) -> Self {
        ApiError::invalid(format!("`{id}` cannot be a session id"))
    }
}

/// The sandbox reports what the caller got wrong (an id, a mount name, a path) as
/// `InvalidInput`; anything else is the server's own failure.
impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::InvalidInput => ApiError::invalid(e.to_string()),
            _ => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            kind: "error".into(),
            error: ErrorBody { kind: self.kind.into(), message: self.message, code: self.code.map(Into::into) },
        };
        (self.status, Json(body)).into_response()
    }
}

async fn authenticate(State(s): State<Server>, headers: HeaderMap, req: Request, next: Next) -> Response {
    use subtle::ConstantTimeEq;
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(s.token.expose_secret().as_bytes())) && !given.is_empty() {
        return next.run(req).await;
    }
    ApiError { status: StatusCode::UNAUTHORIZED, kind: "authentication_error", message: "a valid `Authorization: Bearer <token>` is required".into(), code: None }.into_response()
}

async fn not_found() -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, kind: "not_found_error", message: "no such endpoint".into(), code: None }
}

async fn health(State(s): State<Server>) -> Json<Health> {
    let isolation = Sandboxes::check().and_then(|v| s.sandboxes.preflight().map(|()| v));
    let (status, isolation) = match isolation {
        Ok(v) => ("ok", v),
        Err(e) => ("degraded", e),
    };
    Json(Health { status: status.into(), sessions: s.held_sessions(), isolation })
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::invalid(format!("the body is not a valid tool call: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::invalid(format!("invalid query: {}", e.body_text()))
    }
}

async fn run_tool(
    State(s): State<Server>,
    Path((id, name)): Path<(String, String)>,
    call: Result<Json<ToolCall>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ToolResult>, ApiError> {
    let Json(call) = call?;
    let tool = s.tools.get(name.as_str()).cloned().ok_or_else(|| ApiError::invalid(format!("`{name}` is not a sandbox tool")))?;
    let _guard = s.lock(&id).await;
    let dir = s.held(&id)?;
    not_fresh(&dir)?;
    let ctx = ToolContext { tenant: TenantId::from_trusted(call.tenant), session_id: id, environment_id: call.environment_id, config: call.config };
    let out = tool.run(&ctx, call.input).await;
    let running = s.sandboxes.is_running(&ctx.session_id);
    Ok(Json(ToolResult { content: out.content, is_error: out.is_error, usage: out.usage.map(|u| Usage { wall_ms: u.wall_ms, cpu_ms: u.cpu_ms }), running }))
}

async fn running(State(s): State<Server>) -> Json<wire::Running> {
    Json(wire::Running { running: s.sandboxes.running_sessions() })
}

async fn put_state(
    State(s): State<Server>,
    Path(id): Path<String>,
    q: Result<Query<StateQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q?;
    let dir = s.sandboxes.session_dir(&id).ok_or_else(|| ApiError::bad_id(&id))?;
    let tmp = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
    let mut out = tokio::fs::File::create(tmp.path()).await.map_err(ApiError::internal)?;
    let (mut stream, mut size) = (body.into_data_stream(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("the pack did not arrive whole: {e}")))?;
        size += chunk.len() as u64;
        if size > MAX_PACK_BYTES {
            return Err(ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, kind: "request_too_large", message: format!("a pack may hold at most {MAX_PACK_BYTES} bytes"), code: None });
        }
        out.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    out.flush().await.map_err(ApiError::internal)?;
    drop(out);
    let _guard = s.lock(&id).await;
    match q.mode {
        StateMode::Full => {
            s.sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            s.bridges.end_session(&id);
            s.sandboxes.destroy(&id).await.map_err(ApiError::internal)?
        }
        StateMode::Mounts => {
            s.held(&id)?;
        }
    }
    let (path, mode) = (tmp.path().to_owned(), q.mode);
    let unpacked = tokio::task::spawn_blocking(move || match mode {
        StateMode::Full => archive::unpack(&path, &dir),
        StateMode::Mounts => archive::lay_over(&path, &dir),
    })
    .await
    .map_err(ApiError::internal)?;
    if let Err(e) = unpacked {
        if q.mode == StateMode::Full {
            let _ = s.sandboxes.destroy(&id).await;
        }
        return Err(ApiError::invalid(format!("the pack cannot be unpacked: {e}")));
    }
    tracing::info!(session_id = %id, mode = ?q.mode, bytes = size, "session state received");
    Ok(StatusCode::NO_CONTENT)
}

/// What the server last sent of a session.
struct Sent {
    token: String,
    manifest: archive::Manifest,
}

async fn get_state(State(s): State<Server>, Path(id): Path<String>, Query(q): Query<SinceQuery>) -> Result<Response, ApiError> {
    let _guard = s.lock(&id).await;
    let dir = s.held(&id)?;
    let tmp = tempfile::NamedTempFile::new().map_err(ApiError::internal)?;
    let path = tmp.path().to_owned();
    let token = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let previous = s.sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&id).filter(|p| q.since.as_deref() == Some(p.token.as_str()));
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<(Option<&'static str>, Sent)> {
        let now = archive::manifest(&dir, LOCAL_ONLY)?;
        let kind = match previous {
            Some(previous) => {
                if !archive::pack_delta(&dir, &previous.manifest, &now, &path)? {
                    // nothing changed: the client's token stays good
                    return Ok((None, Sent { token: previous.token, manifest: now }));
                }
                "delta"
            }
            None => {
                archive::pack(&dir, LOCAL_ONLY, &path)?;
                "full"
            }
        };
        Ok((Some(kind), Sent { token, manifest: now }))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let (kind, sent) = answer;
    let token = sent.token.clone();
    s.sent.lock().unwrap_or_else(|e| e.into_inner()).insert(id, sent);
    let Some(kind) = kind else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    // the open file outlives its (deleted) name while it streams
    let file = tokio::fs::File::open(tmp.path()).await.map_err(ApiError::internal)?;
    let len = file.metadata().await.map_err(ApiError::internal)?.len();
    drop(tmp);
    let headers = [
        (header::CONTENT_TYPE, "application/gzip".to_owned()),
        (header::CONTENT_LENGTH, len.to_string()),
        (header::HeaderName::from_static(wire::STATE_KIND), kind.to_owned()),
        (header::HeaderName::from_static(wire::STATE_TOKEN), token),
    ];
    Ok((headers, Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))).into_response())
}

async fn get_file(State(s): State<Server>, Path(id): Path<String>, q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let _guard = s.lock(&id).await;
    s.held(&id)?;
    let bytes = s.sandboxes.read_file(&id, &q.path).await.map_err(ApiError::invalid)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn put_file(
    State(s): State<Server>,
    Path(id): Path<String>,
    q: Result<Query<FileQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q?;
    let _guard = s.lock(&id).await;
    s.held(&id)?;
    s.sandboxes.write_file(&id, &q.path, body.to_vec()).await.map_err(ApiError::invalid)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clone_repository(
    State(s): State<Server>,
    Path(id): Path<String>,
    clone: Result<Json<wire::RepositoryClone>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(clone) = clone?;
    // git's other transports (`file://`, `ext::`) would reach this server's own files or run commands
    if !(clone.remote.starts_with("https://") || clone.remote.starts_with("http://")) {
        return Err(ApiError::invalid("`remote` must be an http(s) URL"));
    }
    let _guard = s.lock(&id).await;
    let dir = s.held(&id)?;
    not_fresh(&dir)?;
    s.sandboxes.clone_repository(&id, &clone).await.map_err(ApiError::invalid)?;
    tracing::info!(session_id = %id, remote = %clone.remote, path = %clone.mount_path, "cloned a repository into the session");
    Ok(StatusCode::NO_CONTENT)
}

/// Records the session's memory mounts and lays files into them (see [`wire::MemoryLay`]).
async fn lay_memory(State(s): State<Server>, Path(id): Path<String>, lay: Result<Json<MemoryLay>, axum::extract::rejection::JsonRejection>) -> Result<StatusCode, ApiError> {
    let Json(lay) = lay?;
    let writable = |lay: &MemoryLay, slug: &str| lay.mounts.iter().find(|m| m.slug == slug).map(|m| m.writable);
    let mut slugs = lay.writes.iter().map(|f| &f.slug).chain(lay.removes.iter().map(|f| &f.slug));
    if let Some(slug) = slugs.find(|slug| writable(&lay, slug).is_none()) {
        return Err(ApiError::invalid(format!("`{slug}` is not one of the mounts given")));
    }
    let _guard = s.lock(&id).await;
    s.held(&id)?;
    let sandboxes = s.sandboxes.clone();
    let (writes, removes) = (lay.writes.len(), lay.removes.len());
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let refused = |slug: &str, path: &str, e: std::io::Error| ApiError::invalid(format!("/mnt/memory/{slug}{path}: {e}"));
        sandboxes.set_memory_mounts(&id, &lay.mounts)?;
        if lay.replace {
            for m in &lay.mounts {
                for f in sandboxes.memory_files(&id, &m.slug).map_err(ApiError::internal)? {
                    sandboxes.remove_memory_file(&id, &m.slug, &f.rel).map_err(ApiError::internal)?;
                }
            }
        }
        for f in &lay.writes {
            let bytes = f.content.as_deref().unwrap_or_default().as_bytes();
            let rel = f.path.trim_start_matches('/');
            sandboxes.write_memory_file(&id, &f.slug, rel, bytes, writable(&lay, &f.slug) == Some(true)).map_err(|e| refused(&f.slug, &f.path, e))?;
        }
        for f in &lay.removes {
            sandboxes.remove_memory_file(&id, &f.slug, f.path.trim_start_matches('/')).map_err(|e| refused(&f.slug, &f.path, e))?;
        }
        Ok(())
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::debug!(writes, removes, "memory laid into the session's mounts");
    Ok(StatusCode::NO_CONTENT)
}

/// Records the session's credentials (see [`wire::SessionCredentials`]): the variables for
/// its shell's next start, the substitutions in memory for its egress proxy.
async fn put_credentials(
    State(s): State<Server>,
    Path(id): Path<String>,
    body: Result<Json<SessionCredentials>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(c) = body?;
    let _guard = s.lock(&id).await;
    s.held(&id)?;
    let variables: Vec<(String, String)> = c.variables.into_iter().map(|v| (v.name, v.value)).collect();
    s.sandboxes.set_session_env(&id, &variables)?;
    let substitutions = c.substitutions.len();
    s.credentials.set(&id, c.substitutions);
    tracing::info!(session_id = %id, variables = variables.len(), substitutions, "session credentials recorded");
    Ok(StatusCode::NO_CONTENT)
}

/// The files of one memory mount, with their text (see [`wire::MemoryFiles`]).
async fn memory_files(State(s): State<Server>, Path((id, slug)): Path<(String, String)>) -> Result<Json<MemoryFiles>, ApiError> {
    let _guard = s.lock(&id).await;
    s.held(&id)?;
    let sandboxes = s.sandboxes.clone();
    let shown = slug.clone();
    let texts = tokio::task::spawn_blocking(move || sandboxes.memory_texts(&id, &slug, openma_core::memory::CONTENT_MAX_BYTES))
        .await
        .map_err(ApiError::internal)??;
    let files = texts
        .into_iter()
        .map(|(path, text)| {
            let (content, problem) = match text {
                Ok(t) => (Some(t), None),
                Err(why) => (None, Some(why)),
            };
            MemoryFile { slug: shown.clone(), path, content, problem }
        })
        .collect();
    Ok(Json(MemoryFiles { files }))
}

/// Marks a session opened here that no tool ran in and no pack replaced (see `open_session`).
const FRESH: &str = ".fresh";

fn not_fresh(dir: &std::path::Path) -> Result<(), ApiError> {
    match std::fs::remove_file(dir.join(FRESH)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ApiError::internal(e)),
        _ => Ok(()),
    }
}

async fn open_session(
    State(s): State<Server>,
    Path(id): Path<String>,
    open: Result<Json<SessionOpen>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(open) = open?;
    let packages = match &open.environment {
        Some(environment) => Some(openma_sandbox::PackageSet::of(&environment.packages).map_err(ApiError::invalid)?),
        None => None,
    };
    let _guard = s.lock(&id).await;
    let created = s.held(&id).is_err();
    let policy = openma_sandbox::EgressPolicy::for_session(open.networking.as_ref(), &open.mcp_servers);
    // recording the policy creates the session's directory (an empty workspace) when new
    s.sandboxes.set_egress_policy(&id, &policy)?;
    if let (Some(environment), Some(packages)) = (&open.environment, packages) {
        if !packages.is_empty() {
            // built while the client's model call runs; the first shell waits for it
            let status = s.sandboxes.layers().ensure(&packages, false);
            tracing::info!(session_id = %id, layer = %status.hash, state = ?status.state, "environment packages");
        }
        let recorded = openma_sandbox::SessionEnvironment { packages, limits: environment.limits, mcp_servers: environment.mcp_servers.clone() };
        s.sandboxes.set_environment(&id, &recorded)?;
    }
    let dir = s.held(&id)?;
    if created {
        std::fs::write(dir.join(FRESH), b"").map_err(ApiError::internal)?;
        tracing::info!(session_id = %id, network = policy.has_network(), "session opened");
    }
    // fresh until a tool runs or a pack arrives: a client cut off after the first answer is
    // told again that the session is new here, and restores its copy then
    Ok(if dir.join(FRESH).exists() { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

/// How a package set's layer stands here, optionally starting its build.
async fn layer(State(s): State<Server>, query: Result<Json<LayerQuery>, axum::extract::rejection::JsonRejection>) -> Result<Json<LayerReport>, ApiError> {
    let Json(query) = query?;
    let packages = openma_sandbox::PackageSet::of(&query.packages).map_err(ApiError::invalid)?;
    if packages.is_empty() {
        return Err(ApiError::invalid("a layer needs at least one package"));
    }
    Ok(Json(s.sandboxes.layers().query(&packages, query.build).report()))
}

/// `204` when this server holds the session, else `404` `session_unknown`.
async fn held_session(State(s): State<Server>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.held(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_session(State(s): State<Server>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.sandboxes.session_dir(&id).ok_or_else(|| ApiError::bad_id(&id))?;
    // not behind the session's lock: a running command is killed rather than waited for
    s.sandboxes.destroy(&id).await.map_err(ApiError::internal)?;
    s.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    s.sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    s.bridges.end_session(&id);
    s.credentials.set(&id, Vec::new());
    Ok(StatusCode::NO_CONTENT)
}
