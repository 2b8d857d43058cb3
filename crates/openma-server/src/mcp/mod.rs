//! MCP toolsets of running sessions: one client connection per session and MCP server
//! (the official Rust SDK, `rmcp`), opened lazily at the start of a turn and reused across
//! turns. An agent's URL servers are reached over streamable HTTP (or the older HTTP+SSE)
//! with the credential found in the session's vaults; an environment's stdio servers run
//! inside the session's sandbox ([`openma_sandbox::Sandboxes::spawn_stdio`]) and are spoken
//! to over their stdin and stdout — or, with a remote sandbox, over streamable HTTP to the
//! sandbox server, which carries the messages to the program in the session's sandbox there.
//!
//! Tokens live only in this process: they are opened from the vault for the connection's
//! `Authorization` header and never reach the sandbox, the event log, logs or responses.
//! An `mcp_oauth` token is refreshed (and the new tokens stored sealed) when it has
//! expired or the server answers 401. Credentials are looked up again before every call,
//! so a rotated or archived credential takes effect without a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openma_core::harness::tools::{McpToolDef, ToolOutput};
use openma_core::vaults::{self, StoredCredential};
use openma_core::{Platform, TenantId};
use openma_types::agents::{McpServer, McpToolset};
use openma_types::environments::StdioMcpServer;
use openma_types::sessions::Session;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::mcp_oauth::Validator;

mod legacy_sse;

/// How long a connection attempt (connect + `initialize` + `tools/list`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Settings of the MCP client.
#[derive(Clone, Debug)]
pub struct McpSettings {
    /// Longest a single `tools/call` may run.
    pub call_timeout: Duration,
    /// Connections unused for this long are closed (reopened on the next turn).
    pub idle_timeout: Duration,
    /// For tests against local servers only: allows loopback and private addresses.
    pub allow_private: bool,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings { call_timeout: Duration::from_secs(300), idle_timeout: Duration::from_secs(15 * 60), allow_private: false }
    }
}

pub use openma_core::mcp::{McpFailure, text_chars, tool_output};
use openma_core::mcp::{McpTarget as Target, targets};

/// The credential a connection was opened with, to notice rotation and archive.
#[derive(Clone, Debug, PartialEq)]
struct CredentialMark {
    id: String,
    updated_at: i64,
}

struct Connection {
    /// What the connection was opened to (URL, or stdio command and variables): a server
    /// whose definition changed is reconnected.
    fingerprint: String,
    service: RunningService<RoleClient, ()>,
    tools: Vec<McpToolDef>,
    credential: Option<CredentialMark>,
    /// The program of a stdio server, killed when the connection is dropped.
    process: Option<openma_sandbox::SandboxProcess>,
}

/// One session's connections, by server name.
#[derive(Default)]
struct SessionConnections {
    servers: BTreeMap<String, Connection>,
    last_used: Option<Instant>,
}

/// The MCP connections of every session this process runs.
pub struct McpHub {
    platform: Platform,
    /// Where results too long for the model are saved (the session's workspace).
    sandboxes: Option<openma_sandbox::Sandboxes>,
    /// Where the sessions' sandboxes run when not on this host (their stdio servers too).
    remote: Option<Arc<crate::remote_sandbox::RemoteSandbox>>,
    settings: McpSettings,
    oauth: Validator,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionConnections>>>>,
}

/// What a turn can use: the tools of the servers that are connected, and the servers that
/// could not be.
#[derive(Default)]
pub struct Prepared {
    pub tools: Vec<McpToolDef>,
    pub failures: Vec<(String, McpFailure)>,
}

impl McpHub {
    pub fn new(
        platform: Platform,
        sandboxes: Option<openma_sandbox::Sandboxes>,
        remote: Option<Arc<crate::remote_sandbox::RemoteSandbox>>,
        settings: McpSettings,
    ) -> Self {
        let oauth = Validator { allow_private: settings.allow_private };
        McpHub { platform, sandboxes, remote, settings, oauth, sessions: Mutex::new(HashMap::new()) }
    }

    /// A result whose text is longer than the sandbox's output limit (100,000 characters by
    /// default) is cut like command output: the model sees the head and the tail, and the
    /// whole text is saved in the session's workspace under the name the result gives.
    pub fn cap_output(&self, session_id: &str, out: ToolOutput) -> ToolOutput {
        let Some(sandboxes) = &self.sandboxes else { return out };
        if text_chars(&out) <= sandboxes.config().limits.output_chars {
            return out;
        }
        let text: Vec<&str> = out.content.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
        let capped = match sandboxes.cap_text(session_id, &text.join("\n")) {
            Ok(t) => t,
            Err(e) => return ToolOutput::error(format!("The MCP tool's result is too long for the model, and it could not be saved to the workspace: {e}")),
        };
        let mut content = vec![json!({"type": "text", "text": capped})];
        content.extend(out.content.into_iter().filter(|b| b.get("type").and_then(Value::as_str) != Some("text")));
        ToolOutput { content, is_error: out.is_error, usage: None }
    }

    fn entry(&self, session_id: &str) -> Arc<tokio::sync::Mutex<SessionConnections>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).entry(session_id.to_owned()).or_default().clone()
    }

    /// Connects every MCP server of the session's agent that is not connected yet (a
    /// server that failed before is tried again), and drops connections to servers the
    /// agent no longer has. Called when a turn starts.
    pub async fn prepare(&self, tenant: &TenantId, session: &Session) -> Prepared {
        let entry = self.entry(&session.id);
        let mut conns = entry.lock().await;
        conns.last_used = Some(Instant::now());
        let stdio = self.stdio_servers(session);
        let wanted = targets(&session.agent.mcp_servers, &stdio);
        let stale: Vec<String> = conns
            .servers
            .iter()
            .filter(|(name, c)| !wanted.iter().any(|s| s.name() == name.as_str() && s.fingerprint() == c.fingerprint))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(c) = conns.servers.remove(&name) {
                close(c).await;
            }
        }
        let mut out = Prepared::default();
        for server in wanted {
            let name = server.name();
            if !conns.servers.contains_key(name) {
                match self.connect(tenant, session, server, false).await {
                    Ok(c) => {
                        tracing::info!(session_id = %session.id, mcp_server = %name, tools = c.tools.len(), "connected to MCP server");
                        conns.servers.insert(name.to_owned(), c);
                    }
                    Err(f) => {
                        tracing::warn!(session_id = %session.id, mcp_server = %name, error = f.message(), "MCP server unavailable");
                        out.failures.push((name.to_owned(), f));
                    }
                }
            }
        }
        out.tools = conns.servers.values().flat_map(|c| c.tools.iter().cloned()).collect();
        out
    }

    /// Runs `tools/call` on the session's connection to `server`. The credential is looked
    /// up again first: a rotated, refreshed or archived one replaces the connection.
    pub async fn call(&self, tenant: &TenantId, session: &Session, server: &str, tool: &str, input: Value) -> ToolOutput {
        let stdio = self.stdio_servers(session);
        let Some(def) = targets(&session.agent.mcp_servers, &stdio).into_iter().find(|s| s.name() == server) else {
            return ToolOutput::error(format!("The MCP server `{server}` is not configured for this session."));
        };
        if let (Target::Stdio(_), Some(sandboxes)) = (def, &self.sandboxes) {
            sandboxes.touch(&session.id);
        }
        let entry = self.entry(&session.id);
        let peer = {
            let mut conns = entry.lock().await;
            conns.last_used = Some(Instant::now());
            match self.current_peer(tenant, session, def, &mut conns).await {
                Ok(p) => p,
                Err(f) => return ToolOutput::error(format!("The MCP server `{server}` is unavailable: {}", f.message())),
            }
        };
        let args = match input {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => return ToolOutput::error(format!("The input of an MCP tool must be an object, got {other}")),
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args.clone());
        let result = tokio::time::timeout(self.settings.call_timeout, peer.call_tool(params)).await;
        let result = match result {
            Err(_) => {
                return ToolOutput::error(format!(
                    "The MCP tool `{tool}` did not answer within {} s.",
                    self.settings.call_timeout.as_secs()
                ));
            }
            Ok(Err(e)) if e.is_authorization_required() => {
                // the token was refused before the tool ran: refresh (or re-read) and retry once
                let reopened = self.reopen(tenant, session, def, &mut *entry.lock().await, true).await;
                let peer = match reopened {
                    Ok(p) => p,
                    Err(f) => return ToolOutput::error(format!("The MCP server `{server}` refused the credential: {}", f.message())),
                };
                let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(args);
                match tokio::time::timeout(self.settings.call_timeout, peer.call_tool(params)).await {
                    Ok(r) => r,
                    Err(_) => return ToolOutput::error(format!("The MCP tool `{tool}` did not answer in time.")),
                }
            }
            Ok(r) => r,
        };
        match result {
            Ok(r) => {
                let value = serde_json::to_value(&r).unwrap_or(Value::Null);
                tool_output(&value)
            }
            Err(e) => {
                // the connection may be broken: open a new one on the next call
                if let Some(c) = entry.lock().await.servers.remove(server) {
                    close(c).await;
                }
                ToolOutput::error(format!("The MCP tool `{tool}` failed: {e}"))
            }
        }
    }

    /// The peer of a live connection whose credential is still the current one.
    async fn current_peer(
        &self,
        tenant: &TenantId,
        session: &Session,
        server: Target<'_>,
        conns: &mut SessionConnections,
    ) -> Result<Peer<RoleClient>, McpFailure> {
        let name = server.name();
        let fresh = match server {
            Target::Url(s) => {
                let current = self.find_credential(tenant, session, &s.url).await?.map(|c| mark(&c));
                conns.servers.get(name).is_some_and(|c| c.credential == current && !c.service.is_closed())
            }
            Target::Stdio(_) => conns
                .servers
                .get_mut(name)
                .is_some_and(|c| !c.service.is_closed() && c.process.as_mut().is_none_or(|p| p.alive())),
        };
        if !fresh {
            return self.reopen(tenant, session, server, conns, false).await;
        }
        Ok(conns.servers[name].service.peer().clone())
    }

    /// Replaces the session's connection to `server` (after `refused`: refreshing the token).
    async fn reopen(
        &self,
        tenant: &TenantId,
        session: &Session,
        server: Target<'_>,
        conns: &mut SessionConnections,
        refused: bool,
    ) -> Result<Peer<RoleClient>, McpFailure> {
        if let Some(c) = conns.servers.remove(server.name()) {
            close(c).await;
        }
        let c = self.connect(tenant, session, server, refused).await?;
        let peer = c.service.peer().clone();
        conns.servers.insert(server.name().to_owned(), c);
        Ok(peer)
    }

    async fn connect(&self, tenant: &TenantId, session: &Session, server: Target<'_>, refused: bool) -> Result<Connection, McpFailure> {
        match server {
            Target::Url(s) => self.connect_refreshing(tenant, session, s, refused).await,
            Target::Stdio(s) => self.open_stdio(session, s).await,
        }
    }

    /// Starts a stdio server in the session's sandbox and does the MCP handshake over its
    /// stdin and stdout.
    async fn open_stdio(&self, session: &Session, server: &StdioMcpServer) -> Result<Connection, McpFailure> {
        if let Some(remote) = &self.remote {
            return self.open_remote_stdio(session, server, remote).await;
        }
        let Some(sandboxes) = &self.sandboxes else {
            return Err(McpFailure::Connection("this server runs no sandboxes, so it cannot run stdio MCP servers".into()));
        };
        let program = &server.command[0];
        let mut process = sandboxes
            .spawn_stdio(&session.id, &server.command, &server.env)
            .await
            .map_err(|e| McpFailure::Connection(format!("cannot start `{program}` in the sandbox: {e}")))?;
        let io = process.take_io().ok_or_else(|| McpFailure::Connection("no stdio".into()))?;
        let service = match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(io)).await {
            Err(_) => return Err(McpFailure::Connection(format!("`{program}` did not complete the MCP handshake in time"))),
            Ok(Err(e)) => {
                let exited = if process.alive() { "" } else { " (it exited)" };
                return Err(McpFailure::Connection(format!("`{program}` did not complete the MCP handshake{exited}: {e}")));
            }
            Ok(Ok(s)) => s,
        };
        let tools = match list_tools(&service, &server.name).await {
            Ok(t) => t,
            Err(e) => return Err(McpFailure::Connection(format!("`{program}` {e}"))),
        };
        tracing::debug!(session_id = %session.id, mcp_server = %server.name, "MCP handshake over stdio done");
        Ok(Connection { fingerprint: Target::Stdio(server).fingerprint(), service, tools, credential: None, process: Some(process) })
    }

    /// Connects to a stdio server running on the remote sandbox server (it starts the
    /// program at `initialize`).
    async fn open_remote_stdio(&self, session: &Session, server: &StdioMcpServer, remote: &crate::remote_sandbox::RemoteSandbox) -> Result<Connection, McpFailure> {
        let program = &server.command[0];
        let transport = remote.mcp_transport(&session.id, &server.name).await.map_err(|e| McpFailure::Connection(format!("cannot start `{program}`: {e}")))?;
        let service = match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport)).await {
            Err(_) => return Err(McpFailure::Connection(format!("`{program}` did not complete the MCP handshake in time"))),
            Ok(Err(e)) => return Err(McpFailure::Connection(format!("`{program}` did not complete the MCP handshake on the sandbox server: {e}"))),
            Ok(Ok(s)) => s,
        };
        let tools = list_tools(&service, &server.name).await.map_err(|e| McpFailure::Connection(format!("`{program}` {e}")))?;
        tracing::debug!(session_id = %session.id, mcp_server = %server.name, "MCP handshake over the sandbox server done");
        Ok(Connection { fingerprint: Target::Stdio(server).fingerprint(), service, tools, credential: None, process: None })
    }

    /// The stdio servers the session took from its environment at create.
    fn stdio_servers(&self, session: &Session) -> Vec<StdioMcpServer> {
        self.sandboxes.as_ref().map(|s| s.environment(&session.id).mcp_servers).unwrap_or_default()
    }

    /// How the environment configures its stdio servers' tools, as toolsets (the servers
    /// whose name the agent also uses are left out: the agent's server wins).
    pub fn stdio_toolsets(&self, session: &Session) -> Vec<McpToolset> {
        self.stdio_servers(session)
            .into_iter()
            .filter(|s| !session.agent.mcp_servers.iter().any(|a| a.name == s.name))
            .map(|s| s.toolset())
            .collect()
    }

    /// Opens a connection with the session's credential for the server; an `mcp_oauth`
    /// token that has expired, or that the server refuses, is refreshed once.
    async fn connect_refreshing(&self, tenant: &TenantId, session: &Session, server: &McpServer, refused: bool) -> Result<Connection, McpFailure> {
        let mut stored = self.find_credential(tenant, session, &server.url).await?;
        let mut refreshed = false;
        if let Some(c) = &stored
            && (refused || openma_core::mcp::expired(c, self.platform.clock.now()))
            && openma_core::mcp::refreshable(c)
        {
            stored = Some(self.refresh(tenant, c).await?);
            refreshed = true;
        }
        loop {
            match self.open(session, server, stored.as_ref(), tenant).await {
                Ok(result) => return result,
                Err(Refused) => {
                    if !refreshed && let Some(c) = stored.as_ref().filter(|c| openma_core::mcp::refreshable(c)) {
                        stored = Some(self.refresh(tenant, c).await?);
                        refreshed = true;
                        continue;
                    }
                    return Err(openma_core::mcp::refusal(&server.url, stored.is_some(), refreshed));
                }
            }
        }
    }

    /// `Err(Refused)` when the server refused the credential; otherwise the connection or
    /// a connection failure.
    async fn open(
        &self,
        session: &Session,
        server: &McpServer,
        credential: Option<&StoredCredential>,
        tenant: &TenantId,
    ) -> Result<Result<Connection, McpFailure>, Refused> {
        let url = match reqwest::Url::parse(&server.url) {
            Ok(u) => u,
            Err(e) => return Ok(Err(McpFailure::Connection(format!("`{}` is not a valid URL: {e}", server.url)))),
        };
        let addr = match crate::tools::web::resolve_public(&url, self.settings.allow_private).await {
            Ok(a) => a,
            Err(e) => return Ok(Err(McpFailure::Connection(e))),
        };
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']).to_owned();
        let http = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .resolve(&host, addr)
            .user_agent(concat!("openma/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(h) => h,
            Err(e) => return Ok(Err(McpFailure::Connection(e.to_string()))),
        };
        let token = match credential {
            Some(c) => match self.token(tenant, c) {
                Some(t) => Some(t),
                None => return Ok(Err(McpFailure::Authentication("the credential's token cannot be read".into()))),
            },
            None => None,
        };
        let mut config = StreamableHttpClientTransportConfig::with_uri(server.url.clone());
        if let Some(t) = &token {
            config = config.auth_header(t.clone());
        }
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
        let service = match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport)).await {
            Err(_) => return Ok(Err(McpFailure::Connection(format!("`{}` did not complete the MCP handshake in time", server.url)))),
            Ok(Err(e)) if e.is_authorization_required() => return Err(Refused),
            Ok(Err(e)) => {
                // a server of the older HTTP+SSE transport refuses the POST: try that transport
                let failed = |legacy: &str| Ok(Err(McpFailure::Connection(format!("cannot connect to `{}`: {e} (HTTP+SSE: {legacy})", server.url))));
                match legacy_sse::LegacySse::open(http, url, token, CONNECT_TIMEOUT).await {
                    Err(legacy_sse::OpenError::Refused) => return Err(Refused),
                    Err(legacy_sse::OpenError::Failed(why)) => return failed(&why),
                    Ok(legacy) => match tokio::time::timeout(CONNECT_TIMEOUT, ().serve(legacy)).await {
                        Ok(Ok(s)) => {
                            tracing::info!(session_id = %session.id, mcp_server = %server.name, "the MCP server speaks the older HTTP+SSE transport");
                            s
                        }
                        Ok(Err(e)) if e.is_authorization_required() => return Err(Refused),
                        Ok(Err(e)) => return failed(&e.to_string()),
                        Err(_) => return failed("no answer to `initialize`"),
                    },
                }
            }
            Ok(Ok(s)) => s,
        };
        let tools = match list_tools(&service, &server.name).await {
            Err(ListFailure::Refused) => return Err(Refused),
            Err(e) => return Ok(Err(McpFailure::Connection(format!("`{}` {e}", server.url)))),
            Ok(t) => t,
        };
        tracing::debug!(session_id = %session.id, mcp_server = %server.name, "MCP handshake done");
        Ok(Ok(Connection { fingerprint: server.url.clone(), service, tools, credential: credential.map(mark), process: None }))
    }

    /// The first active `mcp_oauth` / `static_bearer` credential for the server's URL in
    /// the session's vaults, in the order the session lists them.
    async fn find_credential(&self, tenant: &TenantId, session: &Session, url: &str) -> Result<Option<StoredCredential>, McpFailure> {
        openma_core::mcp::find_credential(&*self.platform.store, tenant, &session.vault_ids, url)
            .await
            .map_err(|e| McpFailure::Connection(format!("cannot read the session's vaults: {e}")))
    }

    fn token(&self, tenant: &TenantId, c: &StoredCredential) -> Option<String> {
        let secrets = self.platform.secrets.as_deref()?;
        vaults::open_secret(secrets, tenant, c, openma_core::mcp::token_field(c))
    }

    async fn refresh(&self, tenant: &TenantId, c: &StoredCredential) -> Result<StoredCredential, McpFailure> {
        self.oauth.refresh_stored(&self.platform, tenant, c).await.map_err(McpFailure::Authentication)
    }

    /// Closes the session's connections (archive, delete).
    pub async fn close_session(&self, session_id: &str) {
        let entry = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
        if let Some(entry) = entry {
            let mut conns = entry.lock().await;
            for (_, c) in std::mem::take(&mut conns.servers) {
                close(c).await;
            }
        }
    }

    /// Closes connections of sessions idle for longer than the idle timeout.
    pub async fn reap_idle(&self) -> usize {
        let all: Vec<(String, Arc<tokio::sync::Mutex<SessionConnections>>)> =
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut closed = 0;
        for (id, entry) in all {
            let Ok(mut conns) = entry.try_lock() else { continue };
            if conns.last_used.is_some_and(|t| t.elapsed() < self.settings.idle_timeout) {
                continue;
            }
            for (_, c) in std::mem::take(&mut conns.servers) {
                close(c).await;
                closed += 1;
            }
            drop(conns);
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&id).is_some_and(|e| Arc::ptr_eq(e, &entry)) && Arc::strong_count(&entry) == 2 {
                map.remove(&id);
            }
        }
        closed
    }
}

/// The server refused the credential (HTTP 401/403).
struct Refused;

/// Why `tools/list` failed.
#[derive(Debug)]
enum ListFailure {
    Refused,
    Failed(String),
}

impl std::fmt::Display for ListFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListFailure::Refused => f.write_str("refused to list its tools"),
            ListFailure::Failed(why) => f.write_str(why),
        }
    }
}

/// Every tool the server lists, as the session knows them (`server` is its name there).
async fn list_tools(service: &RunningService<RoleClient, ()>, server: &str) -> Result<Vec<McpToolDef>, ListFailure> {
    let listed = match tokio::time::timeout(CONNECT_TIMEOUT, service.list_all_tools()).await {
        Err(_) => return Err(ListFailure::Failed("did not list its tools in time".into())),
        Ok(Err(e)) if e.is_authorization_required() => return Err(ListFailure::Refused),
        Ok(Err(e)) => return Err(ListFailure::Failed(format!("could not list its tools: {e}"))),
        Ok(Ok(t)) => t,
    };
    Ok(listed
        .into_iter()
        .map(|t| McpToolDef {
            server: server.to_owned(),
            name: t.name.to_string(),
            description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            input_schema: Value::Object((*t.input_schema).clone()),
        })
        .collect())
}

fn mark(c: &StoredCredential) -> CredentialMark {
    CredentialMark { id: c.credential.id.clone(), updated_at: c.credential.updated_at.as_micros() }
}

async fn close(c: Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(2), c.service.cancel()).await;
}
