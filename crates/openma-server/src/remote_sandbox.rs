//! A remote sandbox: the sessions' tools run on an `openma-sandbox-server` elsewhere
//! (`OPENMA_SANDBOX_URL`), the same program a Cloudflare `SessionDO` drives in its container.
//!
//! This node keeps each session's directory as before — what the session was given at create
//! (network policy, variables, uploads, skills, cloned repositories) is placed there — and
//! the sandbox server holds the live copy the tools work on:
//!
//! - before a tool runs, what this node added since the last exchange (everything but the
//!   workspace and outputs) is laid over the server's copy without ending its shell; a server
//!   that does not hold the session (its first tool call, or a server that lost its disk) is
//!   sent the whole directory;
//! - after a tool that may write, a session with memory stores mounted takes the changes back
//!   at once (`session_memory` saves them to the stores right after, from this node's copy);
//! - when a turn ends, the changes come back (whole the first time, then as a delta), before
//!   the outputs are taken into the Files API and, in cluster mode, before the snapshot is packed;
//! - before each tool, the session's `environment_variable` credentials are looked up and
//!   given to the server (`PUT …/credentials`), whose egress proxy substitutes them as this
//!   node's would; it holds them in memory only.
//!
//! - an environment's packages are built into a layer on the sandbox server (`POST /v1/layers`
//!   starts it when the environment is saved and when a session is created; the build
//!   endpoint asks it there), and its limits reach it in the session's directory;
//! - an environment's stdio MCP servers run in the session's sandbox there too: the server
//!   speaks MCP's streamable HTTP transport for each ([`RemoteSandbox::mcp_transport`]) and
//!   carries the messages over the program's stdin and stdout.
//!
//! The shell lives on the sandbox server, so it survives this node's restarts and, in
//! cluster mode, the session moving to another node.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openma_core::harness::tools::{SandboxUsage, Tool, ToolContext, ToolOutput};
use openma_core::{DomainError, TenantId};
use openma_sandbox::Sandboxes;
use openma_sandbox::archive::{self, LOCAL_ONLY};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use openma_types::sandbox::{
    CredentialVariable, ErrorEnvelope, Health, LayerBuild, LayerQuery, LayerReport, SESSION_UNKNOWN, STATE_KIND, STATE_TOKEN, SessionCredentials, StateMode, TOOLS, ToolCall, ToolResult,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// This node's record of the exchange with the server ([`Sync`]).
const SYNC_MARKER: &str = ".remote-sync";

/// What this node last exchanged with the sandbox server of a session.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Sync {
    /// The fingerprint of the mounts (all but workspace and outputs) the server holds.
    mounts: String,
    /// The server's token for the state this node's copy holds, for a delta next time.
    #[serde(default)]
    token: Option<String>,
}

impl Sync {
    fn read(dir: &Path) -> Option<Sync> {
        serde_json::from_slice(&std::fs::read(dir.join(SYNC_MARKER)).ok()?).ok()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join(SYNC_MARKER), serde_json::to_vec(self)?)
    }
}
/// A tool call may run this much longer than the sandbox's longest command.
const CALL_SLACK: Duration = Duration::from_secs(60);

pub struct RemoteSandbox {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    /// This node's copies of the session directories.
    local: Sandboxes,
    /// Longest a tool call may take.
    call_timeout: Duration,
    /// Sessions whose sandboxes run on the server, as its last answers said.
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Sessions the server was given credentials for (sent again before every tool, so a
    /// rotated secret applies from the next one; once more when none are left).
    credentials_held: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Why an exchange with the sandbox server failed.
#[derive(Debug, thiserror::Error)]
enum RemoteError {
    #[error("the sandbox server does not hold the session")]
    Unknown,
    #[error("the sandbox server cannot be reached: {0}")]
    Transport(String),
    #[error("the sandbox server refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Local(#[from] std::io::Error),
}

impl RemoteSandbox {
    /// `url`: the sandbox server's base URL; `token`: the bearer token it was started with.
    pub fn new(url: &str, token: SecretString, local: Sandboxes) -> anyhow::Result<Arc<Self>> {
        let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("OPENMA_SANDBOX_URL `{url}` is not a URL: {e}"))?;
        anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "OPENMA_SANDBOX_URL `{url}` must start with http:// or https://");
        anyhow::ensure!(token.expose_secret().len() >= 16, "a remote sandbox needs OPENMA_SANDBOX_TOKEN: the sandbox server's token (at least 16 characters)");
        let call_timeout = local.config().limits.max_timeout + CALL_SLACK;
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(Arc::new(RemoteSandbox {
            http,
            base: url.trim_end_matches('/').to_owned(),
            token,
            local,
            call_timeout,
            running: Default::default(),
            credentials_held: Default::default(),
        }))
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The tools, by the names the model calls them.
    pub fn tools(self: &Arc<Self>) -> Vec<(&'static str, Arc<dyn Tool>)> {
        TOOLS.iter().map(|&(name, read_only)| (name, Arc::new(RemoteTool { remote: self.clone(), name, read_only }) as Arc<dyn Tool>)).collect()
    }

    /// What the sandbox server says of itself now, for `/health` (which must answer
    /// within a few seconds even when the sandbox server does not).
    pub async fn status(&self) -> String {
        match self.http.get(format!("{}/health", self.base)).timeout(Duration::from_secs(3)).send().await {
            Ok(r) => match r.json::<Health>().await {
                Ok(h) if h.status == "ok" => format!("remote {}: {}", self.base, h.isolation),
                Ok(h) => format!("unavailable: remote {} is {}: {}", self.base, h.status, h.isolation),
                Err(e) => format!("unavailable: remote {} answered oddly: {e}", self.base),
            },
            Err(e) => format!("unavailable: remote {} cannot be reached: {e}", self.base),
        }
    }

    /// How the layer of `packages` stands on the server, optionally starting its build.
    pub async fn layer(&self, packages: &openma_types::environments::Packages, build: LayerBuild) -> Result<LayerReport, DomainError> {
        let asked = async {
            let query = LayerQuery { packages: packages.clone(), build };
            let r = self.http.post(format!("{}/v1/layers", self.base)).bearer_auth(self.token.expose_secret()).json(&query).timeout(Duration::from_secs(10)).send().await;
            let r = check(r.map_err(|e| RemoteError::Transport(e.to_string()))?).await?;
            r.json::<LayerReport>().await.map_err(|e| RemoteError::Transport(e.to_string()))
        };
        asked.await.map_err(|e| DomainError::Unavailable(format!("the environment's packages are built on the sandbox server, which did not answer: {e}")))
    }

    /// A client transport to one of the session's stdio MCP servers, which run on the sandbox
    /// server and are spoken to there over streamable HTTP (`openma_types::sandbox::mcp_path`).
    /// The server is brought up to this node's copy of the session first, whole when it does
    /// not hold it, so the environment's servers are known there.
    pub async fn mcp_transport(&self, session_id: &str, server: &str) -> Result<StreamableHttpClientTransport<reqwest::Client>, String> {
        let held = async {
            self.prepare(session_id, false).await?;
            if !self.holds(session_id).await? {
                self.prepare(session_id, true).await?;
            }
            Ok::<_, RemoteError>(())
        };
        held.await.map_err(|e| e.to_string())?;
        let url = format!("{}{}", self.base, openma_types::sandbox::mcp_path(session_id, server));
        let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(self.token.expose_secret().to_owned());
        Ok(StreamableHttpClientTransport::with_client(self.http.clone(), config))
    }

    /// Whether the server holds the session (it may have lost its disk since the last exchange).
    async fn holds(&self, session_id: &str) -> Result<bool, RemoteError> {
        let r = self.http.get(self.session_url(session_id, "")).bearer_auth(self.token.expose_secret()).timeout(Duration::from_secs(10)).send().await;
        match check(r.map_err(|e| RemoteError::Transport(e.to_string()))?).await {
            Ok(_) => Ok(true),
            Err(RemoteError::Unknown) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether the session's sandbox runs on the server (as of its last answer about it).
    pub fn is_running(&self, session_id: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).contains(session_id)
    }

    fn set_running(&self, session_id: &str, running: bool) {
        let mut set = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running {
            set.insert(session_id.to_owned());
        } else {
            set.remove(session_id);
        }
    }

    /// Asks the server which sandboxes still run (it stops idle shells on its own).
    pub async fn refresh_running(&self) {
        let listed = async {
            let r = self.http.get(format!("{}/v1/sessions", self.base)).bearer_auth(self.token.expose_secret()).timeout(Duration::from_secs(10)).send().await;
            let r = check(r.map_err(|e| RemoteError::Transport(e.to_string()))?).await?;
            r.json::<openma_types::sandbox::Running>().await.map_err(|e| RemoteError::Transport(e.to_string()))
        };
        match listed.await {
            Ok(body) => *self.running.lock().unwrap_or_else(|e| e.into_inner()) = body.running.into_iter().collect(),
            Err(e) => tracing::warn!(error = %e, "cannot list the sandbox server's running sandboxes"),
        }
    }

    /// Ends the session's shell and deletes its files on the sandbox server.
    pub async fn forget(&self, session_id: &str) {
        self.set_running(session_id, false);
        self.credentials_held.lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
        let r = self.http.delete(self.session_url(session_id, "")).bearer_auth(self.token.expose_secret()).timeout(Duration::from_secs(30)).send().await;
        match r.map_err(|e| e.to_string()).and_then(|r| if r.status().is_success() { Ok(()) } else { Err(r.status().to_string()) }) {
            Ok(()) => {}
            Err(e) => tracing::warn!(session_id, error = %e, "cannot delete the session on the sandbox server"),
        }
    }

    fn session_url(&self, session_id: &str, rest: &str) -> String {
        format!("{}/v1/sessions/{session_id}{rest}", self.base)
    }

    fn dir(&self, session_id: &str) -> Result<PathBuf, RemoteError> {
        self.local.session_dir(session_id).ok_or_else(|| RemoteError::Refused(format!("invalid session id {session_id:?}")))
    }

    /// Brings the server's copy up to this node's: the mounts when they changed, the whole
    /// directory when the server does not hold the session.
    async fn push(&self, session_id: &str, force_full: bool) -> Result<(), RemoteError> {
        let dir = self.dir(session_id)?;
        std::fs::create_dir_all(&dir)?;
        let d = dir.clone();
        let now = tokio::task::spawn_blocking(move || archive::fingerprint(&d, &mount_skip())).await.map_err(std::io::Error::other)??;
        let mut sync = Sync::read(&dir).unwrap_or_default();
        if !force_full {
            if sync.mounts == now {
                return Ok(());
            }
            match self.send(session_id, &dir, StateMode::Mounts).await {
                Err(RemoteError::Unknown) => self.send(session_id, &dir, StateMode::Full).await?,
                other => other?,
            }
        } else {
            self.send(session_id, &dir, StateMode::Full).await?;
        }
        sync.mounts = now;
        sync.write(&dir)?;
        Ok(())
    }

    async fn send(&self, session_id: &str, dir: &Path, mode: StateMode) -> Result<(), RemoteError> {
        let tmp = tempfile::NamedTempFile::new()?;
        let (src, to) = (dir.to_owned(), tmp.path().to_owned());
        let skip: Vec<&'static str> = match mode {
            StateMode::Full => LOCAL_ONLY.to_vec(),
            StateMode::Mounts => mount_skip(),
        };
        tokio::task::spawn_blocking(move || archive::pack(&src, &skip, &to)).await.map_err(std::io::Error::other)??;
        let file = tokio::fs::File::open(tmp.path()).await?;
        let len = file.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024));
        let mode_name = mode.as_str();
        let r = self
            .http
            .put(self.session_url(session_id, &format!("/state?mode={mode_name}")))
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .map_err(|e| RemoteError::Transport(e.to_string()))?;
        check(r).await?;
        tracing::debug!(session_id, mode = mode_name, bytes = len, "sent the session's directory to the sandbox server");
        Ok(())
    }

    /// Takes the server's copy of the session back into this node's directory: only what
    /// changed since the last time, when the server still knows what that was.
    async fn pull(&self, session_id: &str) -> Result<bool, RemoteError> {
        let dir = self.dir(session_id)?;
        let Some(mut sync) = Sync::read(&dir) else { return Ok(false) }; // the server never received it
        // tokens are the server's own hex strings
        let since = sync.token.as_deref().filter(|t| t.bytes().all(|b| b.is_ascii_alphanumeric())).map(|t| format!("?since={t}")).unwrap_or_default();
        let req = self.http.get(self.session_url(session_id, &format!("/state{since}"))).bearer_auth(self.token.expose_secret()).timeout(Duration::from_secs(600));
        let mut r = check(req.send().await.map_err(|e| RemoteError::Transport(e.to_string()))?).await?;
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(false);
        }
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (kind, token) = (header(STATE_KIND), header(STATE_TOKEN));
        let tmp = tempfile::NamedTempFile::new()?;
        let mut out = tokio::fs::File::create(tmp.path()).await?;
        while let Some(chunk) = r.chunk().await.map_err(|e| RemoteError::Transport(e.to_string()))? {
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await?;
        drop(out);
        let (from, to) = (tmp.path().to_owned(), dir.clone());
        let delta = kind.as_deref() == Some("delta");
        sync = tokio::task::spawn_blocking(move || -> std::io::Result<Sync> {
            if delta { archive::apply_delta(&from, &to)? } else { archive::replace(&from, &to, LOCAL_ONLY)? }
            // what came back is what the server holds: no need to send it again
            Ok(Sync { mounts: archive::fingerprint(&to, &mount_skip())?, token })
        })
        .await
        .map_err(std::io::Error::other)??;
        sync.write(&dir)?;
        Ok(true)
    }

    /// Gives the server the session's `environment_variable` credentials, looked up now (the
    /// substitutions its egress proxy makes, and the variables this node recorded), unless
    /// the session has none and the server was given none.
    async fn send_credentials(&self, session_id: &str) -> Result<(), RemoteError> {
        let Some(source) = self.local.config().egress.credentials.clone() else { return Ok(()) };
        let substitutions = source.substitutions(session_id).await;
        let held = self.credentials_held.lock().unwrap_or_else(|e| e.into_inner()).contains(session_id);
        if substitutions.is_empty() && !held {
            return Ok(());
        }
        let variables = self.local.session_env(session_id).into_iter().map(|(name, value)| CredentialVariable { name, value }).collect();
        let body = SessionCredentials { variables, substitutions };
        let r = self
            .http
            .put(self.session_url(session_id, "/credentials"))
            .bearer_auth(self.token.expose_secret())
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| RemoteError::Transport(e.to_string()))?;
        check(r).await?;
        let mut held = self.credentials_held.lock().unwrap_or_else(|e| e.into_inner());
        if body.substitutions.is_empty() {
            held.remove(session_id);
        } else {
            held.insert(session_id.to_owned());
        }
        Ok(())
    }

    /// Brings the server up to this node's copy of the session (see [`Self::push`]) and
    /// gives it the session's credentials.
    async fn prepare(&self, session_id: &str, force_full: bool) -> Result<(), RemoteError> {
        self.push(session_id, force_full).await?;
        match self.send_credentials(session_id).await {
            Err(RemoteError::Unknown) if !force_full => {
                self.push(session_id, true).await?;
                self.send_credentials(session_id).await
            }
            other => other,
        }
    }

    async fn call(&self, session_id: &str, name: &str, call: &ToolCall) -> Result<ToolResult, RemoteError> {
        let r = self
            .http
            .post(self.session_url(session_id, &format!("/tools/{name}")))
            .bearer_auth(self.token.expose_secret())
            .json(call)
            .timeout(self.call_timeout)
            .send()
            .await
            .map_err(|e| RemoteError::Transport(e.to_string()))?;
        check(r).await?.json::<ToolResult>().await.map_err(|e| RemoteError::Transport(e.to_string()))
    }

    async fn run(&self, ctx: &ToolContext, name: &str, read_only: bool, input: Value) -> Result<ToolResult, RemoteError> {
        let call = ToolCall { input, config: ctx.config.clone(), tenant: ctx.tenant.to_string(), environment_id: ctx.environment_id.clone() };
        self.prepare(&ctx.session_id, false).await?;
        let result = match self.call(&ctx.session_id, name, &call).await {
            // the server lost the session since the last exchange (a new disk): send it whole
            Err(RemoteError::Unknown) => {
                self.prepare(&ctx.session_id, true).await?;
                self.call(&ctx.session_id, name, &call).await
            }
            other => other,
        }?;
        self.set_running(&ctx.session_id, result.running);
        // mounted memory stores save what a tool wrote right after it (session_memory reads
        // this node's copy): bring the changes back first
        if !read_only && self.dir(&ctx.session_id).is_ok_and(|d| has_memory_mounts(&d)) {
            self.pull(&ctx.session_id).await?;
        }
        Ok(result)
    }
}

fn has_memory_mounts(dir: &Path) -> bool {
    std::fs::read_dir(dir.join("memory")).is_ok_and(|mut d| d.next().is_some())
}

/// What a mounts push leaves out: the host-only entries, and what the sandbox itself owns.
fn mount_skip() -> Vec<&'static str> {
    LOCAL_ONLY.iter().copied().chain(["workspace", "outputs"]).collect()
}

async fn check(r: reqwest::Response) -> Result<reqwest::Response, RemoteError> {
    if r.status().is_success() {
        return Ok(r);
    }
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorEnvelope>(&text) {
        Ok(e) if e.error.code.as_deref() == Some(SESSION_UNKNOWN) => Err(RemoteError::Unknown),
        Ok(e) => Err(RemoteError::Refused(format!("{status}: {}", e.error.message))),
        Err(_) => Err(RemoteError::Refused(format!("{status}: {}", text.chars().take(300).collect::<String>()))),
    }
}

struct RemoteTool {
    remote: Arc<RemoteSandbox>,
    name: &'static str,
    read_only: bool,
}

#[async_trait]
impl Tool for RemoteTool {
    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput {
        match self.remote.run(ctx, self.name, self.read_only, input).await {
            Ok(r) => ToolOutput { content: r.content, is_error: r.is_error, usage: r.usage.map(|u| SandboxUsage { wall_ms: u.wall_ms, cpu_ms: u.cpu_ms }) },
            Err(e) => {
                tracing::warn!(session_id = %ctx.session_id, tool = self.name, error = %e, "remote sandbox call failed");
                metrics::counter!("openma_remote_sandbox_errors_total").increment(1);
                ToolOutput::error(format!("the {} tool could not run: {e}", self.name))
            }
        }
    }
}

/// Takes the server's copy back when a turn ends (registered before the outputs capture).
#[async_trait]
impl crate::runtime::TurnObserver for RemoteSandbox {
    async fn turn_ending(&self, _tenant: &TenantId, session_id: &str) {
        let t = std::time::Instant::now();
        match self.pull(session_id).await {
            Ok(true) => {
                metrics::histogram!("openma_remote_sandbox_pull_seconds").record(t.elapsed().as_secs_f64());
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(session_id, error = %e, "cannot take the session's files back from the sandbox server"),
        }
    }
}
