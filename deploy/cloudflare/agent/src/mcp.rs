//! The session's MCP servers, reached by the SessionDO over MCP's streamable HTTP transport
//! (the native server's `rmcp` cannot run in a Worker; the JSON-RPC messages, the credential
//! lookup, the failures and the result blocks are the core's `openma_core::mcp`, shared with
//! it): the agent's with `fetch` (over the older HTTP+SSE transport when a server refuses
//! streamable HTTP: [`legacy`]), and the environment's stdio servers through the session's
//! sandbox server, which runs each program in the session's sandbox and carries the messages
//! over its stdin and stdout (`Sandbox::mcp`). The environment's servers are read at the
//! session's first turn and kept for its life, as natively at create.
//!
//! At the start of each turn every server is connected (`initialize`, then `tools/list`,
//! all pages) and its tools offered to the model; a server that cannot be used is a
//! `session.error` naming it, as natively, and the turn goes on without it. The list is kept
//! in the object's storage for the turn, so a turn resumed by an alarm offers the same
//! tools. A call opens its own MCP session (`initialize`, then `tools/call`): an object
//! holds no connection between alarms.
//!
//! The token is the session's vault credential for the server (`static_bearer`, or an
//! `mcp_oauth` access token), opened with the root secret for the request's `Authorization`
//! header only, and looked up again for every connection, so a rotated or archived
//! credential takes effect at once. An `mcp_oauth` token that has expired, or that the
//! server refuses, is refreshed once at its token endpoint and the new tokens stored sealed.

use std::time::Duration;

use openma_core::harness::tools::{McpToolDef, ToolOutput, ToolPlan};
use openma_core::mcp::{self, McpFailure, McpTarget as Target, RpcFailure, targets};
use openma_core::mcp_oauth::OAuth;
use openma_core::secrets::SecretBox;
use openma_core::vaults::{self, StoredCredential};
use openma_core::{IdGen, TenantId};
use openma_types::agents::McpServer;
use openma_types::environments::StdioMcpServer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use worker::Result;

mod legacy;

use crate::sandbox::Sandbox;
use crate::session::{Meta, SessionDO};
use futures::future::{Either, select};
use worker::Delay;
use openma_worker_common::adapters::WorkerIds;
use openma_worker_common::d1::D1;
use openma_worker_common::outbound::{NoAnswer, Outbound, exchange};

/// Storage key: the MCP tools of the turn that listed them.
const LISTED: &str = "mcp_tools";
/// How long `initialize` or one `tools/list` page may take, and a `tools/call`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a token endpoint has to answer a refresh.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(15);
/// `tools/list` pages read at most (a server paging for ever is cut off).
const MAX_PAGES: usize = 20;
/// Characters of text a result may give the model (the native default output limit).
const OUTPUT_CHARS: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct Listed {
    /// The `seq` of the event that began the turn.
    turn: i64,
    tools: Vec<McpToolDef>,
}

/// The turn's tool plan: the agent's own tools and those its MCP servers and its
/// environment's list. The first call of a turn connects the servers (reporting the ones
/// that cannot be used); the others reuse what it stored.
pub async fn plan(object: &SessionDO, meta: &Meta, base: &ToolPlan, turn: i64) -> Result<ToolPlan> {
    let agent = &meta.session.agent;
    let stdio = crate::session_environment::get(object, meta).await.map(|e| e.sandbox.mcp_servers)?;
    if agent.mcp_servers.is_empty() && stdio.is_empty() {
        return Ok(base.clone());
    }
    let storage = object.state.storage();
    let tools = match storage.get::<Listed>(LISTED).await? {
        Some(l) if l.turn == turn => l.tools,
        _ => {
            // a new turn connects anew: a credential changed in a vault applies from here
            object.mcp.clear();
            let mut tools = Vec::new();
            let mut errors = Vec::new();
            for server in targets(&meta.session.agent.mcp_servers, &stdio) {
                match list(object, meta, server).await {
                    Ok(mut t) => tools.append(&mut t),
                    Err(f) => {
                        worker::console_warn!("session {}: MCP server {} unavailable: {}", meta.session.id, server.name(), f.message());
                        errors.push(f.session_error(server.name()));
                    }
                }
            }
            storage.put(LISTED, Listed { turn, tools: tools.clone() }).await?;
            if !errors.is_empty() {
                crate::turn::emit_payloads(object, errors).await?;
            }
            tools
        }
    };
    let toolsets: Vec<_> = stdio.iter().map(StdioMcpServer::toolset).collect();
    Ok(base.clone().with_mcp_tools(agent, &toolsets, &tools))
}

/// Runs `tools/call` of `tool` on the session's server `server_name`: the result's blocks, or
/// an error result saying why there is none.
pub async fn call(object: &SessionDO, meta: &Meta, server_name: &str, tool: &str, input: &Value) -> ToolOutput {
    let stdio = match crate::session_environment::get(object, meta).await.map(|e| e.sandbox.mcp_servers) {
        Ok(s) => s,
        Err(e) => return ToolOutput::error(format!("The session's environment cannot be read: {e}")),
    };
    let Some(server) = targets(&meta.session.agent.mcp_servers, &stdio).into_iter().find(|s| s.name() == server_name) else {
        return ToolOutput::error(format!("The MCP server `{server_name}` is not configured for this session."));
    };
    let arguments = match input {
        Value::Object(map) => Value::Object(map.clone()),
        Value::Null => json!({}),
        other => return ToolOutput::error(format!("The input of an MCP tool must be an object, got {other}")),
    };
    let opened = |c: std::result::Result<Client, McpFailure>| c.map_err(|f| ToolOutput::error(format!("The MCP server `{server_name}` is unavailable: {}", f.message())));
    let (mut client, reused) = match object.mcp.take(server) {
        Some(c) => (c, true),
        None => match opened(Client::open(object, meta, server).await) {
            Ok(c) => (c, false),
            Err(out) => return out,
        },
    };
    let params = json!({"name": tool, "arguments": arguments});
    let mut answer = client.request(object, meta, "tools/call", params.clone(), CALL_TIMEOUT).await;
    // a held session the server has dropped, or whose credential it now refuses, did not run
    // the call: once more on a session opened afresh (the credential looked up again)
    if reused && matches!(answer, Err(Exchange::Gone | Exchange::Refused)) {
        client = match opened(Client::open(object, meta, server).await) {
            Ok(c) => c,
            Err(out) => return out,
        };
        answer = client.request(object, meta, "tools/call", params, CALL_TIMEOUT).await;
    }
    match answer {
        Ok(result) => {
            object.mcp.keep(server, client);
            capped(mcp::tool_output(&result))
        }
        Err(Exchange::Refused) => ToolOutput::error(format!("The MCP server `{server_name}` refused the credential.")),
        Err(Exchange::TimedOut) => ToolOutput::error(format!("The MCP tool `{tool}` did not answer within {} s.", CALL_TIMEOUT.as_secs())),
        Err(Exchange::Gone) => ToolOutput::error(format!("The MCP server `{server_name}` lost the MCP session.")),
        Err(Exchange::Failed(why)) => ToolOutput::error(format!("The MCP tool `{tool}` failed: {why}")),
    }
}

/// The MCP sessions a SessionDO holds open between calls, by server: a call reuses the one
/// the turn's listing or an earlier call of the turn opened (one `tools/call` exchange
/// instead of a handshake each time), and one that fails is dropped. Each turn starts
/// without any; memory only, so an evicted object opens new ones.
#[derive(Default)]
pub struct Clients(std::cell::RefCell<std::collections::HashMap<String, Client>>);

impl Clients {
    fn take(&self, server: Target<'_>) -> Option<Client> {
        self.0.borrow_mut().remove(server.name()).filter(|c| c.fingerprint == server.fingerprint())
    }

    fn keep(&self, server: Target<'_>, client: Client) {
        self.0.borrow_mut().insert(server.name().to_owned(), client);
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// Every tool the server lists, as the session knows them.
async fn list(object: &SessionDO, meta: &Meta, server: Target<'_>) -> std::result::Result<Vec<McpToolDef>, McpFailure> {
    let mut client = Client::open(object, meta, server).await?;
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({"cursor": c}));
        let page = client.request(object, meta, "tools/list", params, CONNECT_TIMEOUT).await.map_err(|e| e.failure(server, "could not list its tools"))?;
        let (mut listed, next) = mcp::listed_tools(server.name(), &page);
        tools.append(&mut listed);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    object.mcp.keep(server, client);
    Ok(tools)
}

/// A text longer than the model should get is cut, its head and tail kept.
fn capped(mut out: ToolOutput) -> ToolOutput {
    let total = mcp::text_chars(&out);
    if total <= OUTPUT_CHARS {
        return out;
    }
    let keep = OUTPUT_CHARS / 2;
    for block in &mut out.content {
        let Some(text) = block.get("text").and_then(Value::as_str) else { continue };
        let n = text.chars().count();
        if n > OUTPUT_CHARS {
            let head: String = text.chars().take(keep).collect();
            let tail: String = text.chars().skip(n - keep).collect();
            block["text"] = json!(format!("{head}\n[… {} characters cut …]\n{tail}", n - 2 * keep));
        }
    }
    out
}

/// Why one JSON-RPC exchange failed.
enum Exchange {
    /// 401 or 403: the credential was refused.
    Refused,
    /// 404 to a request in a session: the server no longer holds it.
    Gone,
    TimedOut,
    Failed(String),
}

impl Exchange {
    fn failure(self, server: Target<'_>, what: &str) -> McpFailure {
        let label = server.label();
        match self {
            Exchange::Refused => McpFailure::Authentication(format!("`{label}` refused the credential")),
            Exchange::TimedOut => McpFailure::Connection(format!("`{label}` {what} in time")),
            Exchange::Gone => McpFailure::Connection(format!("`{label}` {what}: it lost the MCP session")),
            Exchange::Failed(why) => McpFailure::Connection(format!("`{label}` {what}: {why}")),
        }
    }
}

/// Where a client's messages go.
enum Route {
    /// The agent's server at its URL, with the session's credential for it.
    Url { url: String, authorization: Option<String> },
    /// The same, over the older HTTP+SSE transport: its open event stream.
    Legacy { authorization: Option<String>, stream: legacy::LegacyStream },
    /// The environment's stdio server of this name, on the session's sandbox server.
    Sandbox { server: String },
}

/// One MCP session with a server.
struct Client {
    route: Route,
    /// What it was opened to ([`Target::fingerprint`]).
    fingerprint: String,
    /// `Mcp-Session-Id`, when the server gave one.
    session: Option<String>,
    next_id: u64,
}

impl Client {
    async fn open(object: &SessionDO, meta: &Meta, server: Target<'_>) -> std::result::Result<Client, McpFailure> {
        match server {
            Target::Url(s) => Client::open_url(object, meta, s).await,
            Target::Stdio(s) => {
                let mut client = Client { route: Route::Sandbox { server: s.name.clone() }, fingerprint: server.fingerprint(), session: None, next_id: 0 };
                client.handshake(object, meta).await.map_err(|e| e.failure(server, "did not complete the MCP handshake"))?;
                Ok(client)
            }
        }
    }

    /// `initialize`, then `notifications/initialized`.
    async fn handshake(&mut self, object: &SessionDO, meta: &Meta) -> std::result::Result<(), Exchange> {
        self.request(object, meta, "initialize", mcp::initialize_params(), CONNECT_TIMEOUT).await?;
        self.notify(object, meta, "notifications/initialized").await
    }

    /// Checks the destination, finds the credential and does the handshake. An `mcp_oauth`
    /// token that has expired, or that the server refuses, is refreshed once (as natively).
    async fn open_url(object: &SessionDO, meta: &Meta, server: &McpServer) -> std::result::Result<Client, McpFailure> {
        let allow_private = openma_worker_common::allow_private_addresses(&object.env);
        openma_core::web::check_destination(&server.url, allow_private).map_err(McpFailure::Connection)?;
        let vaults = Vaults::open(object, meta).await?;
        let mut stored = vaults.credential(server).await?;
        let mut refreshed = false;
        if let Some(c) = &stored
            && mcp::expired(c, object.now())
            && mcp::refreshable(c)
        {
            stored = Some(vaults.refresh(object, c).await?);
            refreshed = true;
        }
        loop {
            let authorization = match &stored {
                Some(c) => Some(vaults.bearer(c)?),
                None => None,
            };
            let fingerprint = Target::Url(server).fingerprint();
            let route = Route::Url { url: server.url.clone(), authorization: authorization.clone() };
            let mut client = Client { route, fingerprint: fingerprint.clone(), session: None, next_id: 0 };
            let mut shaken = client.handshake(object, meta).await;
            if let Err(Exchange::Failed(why)) = &shaken {
                // a server of the older HTTP+SSE transport refuses the POST: try that transport
                let why = why.clone();
                shaken = match legacy::LegacyStream::open(&server.url, authorization.as_deref(), CONNECT_TIMEOUT).await {
                    Ok(stream) => {
                        client = Client { route: Route::Legacy { authorization, stream }, fingerprint, session: None, next_id: 0 };
                        client.handshake(object, meta).await
                    }
                    Err(e) => Err(e),
                }
                .map_err(|e| match e {
                    Exchange::Failed(legacy) => Exchange::Failed(format!("{why} (HTTP+SSE: {legacy})")),
                    other => other,
                });
                if shaken.is_ok() {
                    worker::console_log!("session {}: MCP server {} speaks the older HTTP+SSE transport", meta.session.id, server.name);
                }
            }
            match shaken {
                Ok(()) => return Ok(client),
                Err(Exchange::Refused) => {
                    if !refreshed && let Some(c) = stored.as_ref().filter(|c| mcp::refreshable(c)) {
                        stored = Some(vaults.refresh(object, c).await?);
                        refreshed = true;
                        continue;
                    }
                    return Err(openma_core::mcp::refusal(&server.url, stored.is_some(), refreshed));
                }
                Err(e) => return Err(e.failure(Target::Url(server), "did not complete the MCP handshake")),
            }
        }
    }

    async fn request(&mut self, object: &SessionDO, meta: &Meta, method: &str, params: Value, timeout: Duration) -> std::result::Result<Value, Exchange> {
        self.next_id += 1;
        let id = self.next_id;
        let (content_type, body) = self.post(object, meta, mcp::rpc_message(Some(id), method, params), timeout).await?;
        mcp::response_result(&content_type, &body, id).map_err(|e| match e {
            RpcFailure::Error { .. } | RpcFailure::Malformed(_) => Exchange::Failed(e.to_string()),
        })
    }

    async fn notify(&mut self, object: &SessionDO, meta: &Meta, method: &str) -> std::result::Result<(), Exchange> {
        self.post(object, meta, mcp::rpc_message(None, method, json!({})), CONNECT_TIMEOUT).await.map(drop)
    }

    /// POSTs one message; the answer's content type and body.
    async fn post(&mut self, object: &SessionDO, meta: &Meta, message: Value, timeout: Duration) -> std::result::Result<(String, String), Exchange> {
        let (url, authorization) = match &mut self.route {
            Route::Url { url, authorization } => (url.clone(), authorization.clone()),
            Route::Legacy { authorization, stream } => {
                let body = stream.exchange(authorization.as_deref(), &message, timeout).await?;
                return Ok(("application/json".to_owned(), body));
            }
            Route::Sandbox { server } => {
                let server = server.clone();
                return self.post_to_sandbox(object, meta, &server, message, timeout).await;
            }
        };
        let mut headers = vec![("content-type", "application/json".to_owned()), ("accept", "application/json, text/event-stream".to_owned())];
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        if let Some(s) = &self.session {
            headers.push(("mcp-session-id", s.clone()));
            headers.push(("mcp-protocol-version", mcp::PROTOCOL_VERSION.to_owned()));
        }
        let (answer, got) = exchange(&url, &headers, &message.to_string(), timeout).await.map_err(|e| match e {
            NoAnswer::TimedOut(_) => Exchange::TimedOut,
            NoAnswer::Failed(why) => Exchange::Failed(why),
        })?;
        match answer.status {
            401 | 403 => return Err(Exchange::Refused),
            404 if self.session.is_some() => return Err(Exchange::Gone),
            s if !(200..300).contains(&s) => return Err(Exchange::Failed(format!("answered {s}"))),
            _ => {}
        }
        if let Some(s) = got.get("mcp-session-id").ok().flatten() {
            self.session = Some(s);
        }
        Ok((answer.content_type, answer.body))
    }

    /// POSTs one message to the sandbox server's bridge to the stdio server; an `initialize`
    /// makes the sandbox ready first and starts the program there.
    async fn post_to_sandbox(&mut self, object: &SessionDO, meta: &Meta, server: &str, message: Value, timeout: Duration) -> std::result::Result<(String, String), Exchange> {
        let initialize = message["method"] == "initialize";
        let failed = |e: worker::Error| Exchange::Failed(e.to_string());
        let sandbox = Sandbox::of(object, &meta.tenant, &meta.session.id)
            .await
            .map_err(failed)?
            .ok_or_else(|| Exchange::Failed("this deployment has no sandbox (no container binding nor OPENMA_SANDBOX_URL) to run it in".into()))?;
        let body = message.to_string();
        let sent = sandbox.mcp(object, meta, server, &body, self.session.as_deref(), initialize);
        let answer = match select(Box::pin(sent), Box::pin(Delay::from(timeout))).await {
            Either::Left((r, _)) => r.map_err(failed)?,
            Either::Right(_) => return Err(Exchange::TimedOut),
        };
        match answer.status {
            404 if self.session.is_some() => return Err(Exchange::Gone),
            s if !(200..300).contains(&s) => {
                let why = serde_json::from_str::<Value>(&answer.body).ok().and_then(|b| b["error"]["message"].as_str().map(str::to_owned));
                return Err(Exchange::Failed(why.unwrap_or_else(|| format!("the sandbox server answered {s}"))));
            }
            _ => {}
        }
        if let Some(s) = answer.session {
            self.session = Some(s);
        }
        Ok((answer.content_type, answer.body))
    }
}

/// The session's vaults, with the root secret that opens their tokens.
struct Vaults {
    db: D1,
    tenant: TenantId,
    vault_ids: Vec<String>,
    secrets: std::rc::Rc<SecretBox>,
}

impl Vaults {
    async fn open(object: &SessionDO, meta: &Meta) -> std::result::Result<Vaults, McpFailure> {
        let db = D1::new(object.env.d1("DB").map_err(|e| McpFailure::Connection(format!("cannot read the session's vaults: {e}")))?);
        let secrets = openma_worker_common::root_secret::secret_box(&object.env)
            .await
            .map_err(|e| McpFailure::Authentication(format!("the session's credentials cannot be opened: {}", e.message())))?;
        Ok(Vaults { db, tenant: TenantId::from_trusted(meta.tenant.clone()), vault_ids: meta.session.vault_ids.clone(), secrets })
    }

    /// The live credential for the server's URL in the session's vaults, if any.
    async fn credential(&self, server: &McpServer) -> std::result::Result<Option<StoredCredential>, McpFailure> {
        mcp::find_credential(&self.db, &self.tenant, &self.vault_ids, &server.url)
            .await
            .map_err(|e| McpFailure::Connection(format!("cannot read the session's vaults: {e}")))
    }

    fn open_secret(&self, c: &StoredCredential, field: &str) -> Option<String> {
        vaults::open_secret(&self.secrets, &self.tenant, c, field)
    }

    /// `Bearer <token>`, for the `Authorization` header only.
    fn bearer(&self, c: &StoredCredential) -> std::result::Result<String, McpFailure> {
        let token = self.open_secret(c, mcp::token_field(c)).ok_or_else(|| McpFailure::Authentication("the credential's token cannot be read".into()))?;
        Ok(format!("Bearer {token}"))
    }

    /// Refreshes an `mcp_oauth` credential at its token endpoint and stores the new tokens
    /// sealed (the core's flow, as natively); a failure is told to the tenant's webhook
    /// subscribers as `vault_credential.refresh_failed`.
    async fn refresh(&self, object: &SessionDO, c: &StoredCredential) -> std::result::Result<StoredCredential, McpFailure> {
        let http = Outbound::new(&object.env, REFRESH_TIMEOUT);
        let nonce = || WorkerIds.nonce();
        let oauth = OAuth { store: &self.db, secrets: &self.secrets, http: &http, announcer: &self.db, now: object.now(), nonce: &nonce };
        let refreshed = oauth.refresh_stored(&self.tenant, c).await.map_err(McpFailure::Authentication);
        openma_worker_common::webhooks::send_queued(&object.env);
        refreshed
    }
}
