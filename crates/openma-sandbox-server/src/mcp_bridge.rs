//! An environment's stdio MCP servers, for a client elsewhere (the native server with a
//! remote sandbox, a Workers `SessionDO`): the sandbox server speaks MCP's streamable HTTP
//! transport at [`wire::mcp_path`] and carries each message to the program in the session's
//! sandbox over its stdin, and its answers back from its stdout (newline-delimited JSON-RPC,
//! as the stdio transport has it). The program runs as a native session's would
//! ([`openma_sandbox::Sandboxes::spawn_stdio`]): in the session's sandbox, its uid, its egress.
//!
//! - `initialize` starts the program afresh (killing the one before) and answers with a new
//!   `Mcp-Session-Id`;
//! - any other message names that MCP session; one this server no longer holds (the program
//!   exited, the sandbox was stopped, the server restarted) is `404`, upon which the client
//!   initializes anew, as the transport's specification says;
//! - a request waits for the program's response, given back as `application/json`; a
//!   notification or a response is passed on (`202`);
//! - what the program asks of the client is answered here — `ping`, and an error for anything
//!   else, since the clients offer neither sampling nor roots — and its notifications
//!   (progress, logs) are dropped;
//! - `DELETE` ends the MCP session and kills the program, as deleting the session does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use openma_sandbox::SandboxProcess;
use openma_types::environments::StdioMcpServer;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::{ApiError, Server, wire};

/// Longest a request waits for the program's answer (a client gives up sooner).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Longest line the program may write (a larger one ends the MCP session).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// The MCP sessions this server holds, by session and server name.
#[derive(Default)]
pub struct Bridges {
    live: Mutex<HashMap<(String, String), Arc<Bridge>>>,
    started: AtomicU64,
}

impl Bridges {
    fn get(&self, session_id: &str, server: &str) -> Option<Arc<Bridge>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).get(&(session_id.to_owned(), server.to_owned())).cloned()
    }

    /// Makes `bridge` the session's MCP session with `server`; the one before ends.
    fn replace(&self, session_id: &str, server: &str, bridge: Arc<Bridge>) {
        let old = self.live.lock().unwrap_or_else(|e| e.into_inner()).insert((session_id.to_owned(), server.to_owned()), bridge);
        drop(old);
    }

    fn end(&self, session_id: &str, server: &str, mcp_session: &str) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let key = (session_id.to_owned(), server.to_owned());
        if live.get(&key).is_some_and(|b| b.id == mcp_session) {
            live.remove(&key);
            return true;
        }
        false
    }

    /// Ends every MCP session of a session (deleted).
    pub fn end_session(&self, session_id: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).retain(|(s, _), _| s != session_id);
    }

    fn next_id(&self) -> String {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{now:x}-{n}")
    }
}

/// One MCP session: the program, and the requests waiting for its answers.
struct Bridge {
    id: String,
    stdin: tokio::sync::Mutex<ChildStdin>,
    /// By the request's id as JSON text (`1` and `"1"` are different ids).
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Dropping it kills the program.
    process: Mutex<SandboxProcess>,
    /// The program's output ended: no answer will come (its process may linger a moment,
    /// `nsenter` outliving the program it forked).
    ended: AtomicBool,
}

impl Bridge {
    async fn start(s: &Server, session_id: &str, server: &StdioMcpServer) -> Result<Arc<Bridge>, ApiError> {
        let mut process = s.sandboxes.spawn_stdio(session_id, &server.command, &server.env).await.map_err(|e| unavailable(format!("`{}` cannot start: {e}", server.name)))?;
        let (stdout, stdin) = process.take_io().ok_or_else(|| ApiError::internal("the program has no stdio"))?;
        let bridge = Arc::new(Bridge {
            id: s.bridges.next_id(),
            stdin: tokio::sync::Mutex::new(stdin),
            waiting: Default::default(),
            process: Mutex::new(process),
            ended: AtomicBool::new(false),
        });
        tokio::spawn(read(Arc::downgrade(&bridge), FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE)), session_id.to_owned(), server.name.clone()));
        Ok(bridge)
    }

    fn alive(&self) -> bool {
        !self.ended.load(Ordering::SeqCst) && self.process.lock().unwrap_or_else(|e| e.into_inner()).alive()
    }

    async fn write(&self, message: &Value) -> Result<(), ApiError> {
        // JSON text has no raw newline: one message, one line
        let mut line = message.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        written.await.map_err(|e| unavailable(format!("the MCP server's program does not read its input: {e}")))
    }

    /// Sends a request and waits for the program's answer to it.
    async fn request(&self, message: &Value) -> Result<Value, ApiError> {
        let key = message["id"].to_string();
        let (tx, rx) = oneshot::channel();
        if self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), tx).is_some() {
            return Err(ApiError::invalid(format!("a request with id {key} is already waiting for its answer")));
        }
        // the reader sets `ended` before it drops the waiters: one of the two is seen
        if self.ended.load(Ordering::SeqCst) {
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            return Err(unavailable("the MCP server's program has exited".into()));
        }
        if let Err(e) = self.write(message).await {
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            return Err(e);
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(unavailable("the MCP server's program exited before it answered".into())),
            Err(_) => {
                self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                Err(ApiError { status: StatusCode::GATEWAY_TIMEOUT, kind: "timeout_error", message: format!("the MCP server's program did not answer within {} s", ANSWER_TIMEOUT.as_secs()), code: None })
            }
        }
    }

    /// One message from the program.
    async fn received(&self, message: Value) {
        let id = message.get("id").filter(|i| !i.is_null());
        match (message.get("method").and_then(Value::as_str), id) {
            // the program asks the client: answered here
            (Some(method), Some(id)) => {
                let answer = if method == "ping" {
                    json!({"jsonrpc": "2.0", "id": id, "result": {}})
                } else {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("the client does not take `{method}` requests")}})
                };
                let _ = self.write(&answer).await;
            }
            (Some(method), None) => tracing::trace!(method, "MCP notification from a stdio server dropped"),
            (None, Some(id)) => {
                let waiter = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id.to_string());
                if let Some(tx) = waiter {
                    let _ = tx.send(message);
                }
            }
            (None, None) => tracing::debug!("a stdio MCP server wrote a message that is neither a request nor an answer"),
        }
    }
}

/// Reads the program's messages until its stdout ends (it exited or was killed) or the
/// MCP session is dropped; then the requests still waiting fail.
async fn read(bridge: Weak<Bridge>, mut lines: FramedRead<tokio::process::ChildStdout, LinesCodec>, session_id: String, server: String) {
    while let Some(line) = lines.next().await {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%session_id, mcp_server = %server, error = %e, "stdio MCP server output unreadable: the MCP session ends");
                break;
            }
        };
        let Some(b) = bridge.upgrade() else { return };
        match serde_json::from_str::<Value>(&line) {
            Ok(message) => b.received(message).await,
            Err(_) => tracing::debug!(%session_id, mcp_server = %server, "stdio MCP server wrote a line that is not JSON"),
        }
    }
    if let Some(b) = bridge.upgrade() {
        // their answers will not come (the entry itself goes at the next `initialize`)
        b.ended.store(true, Ordering::SeqCst);
        b.waiting.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    tracing::debug!(%session_id, mcp_server = %server, "stdio MCP server's output ended");
}

fn unavailable(message: String) -> ApiError {
    ApiError { status: StatusCode::BAD_GATEWAY, kind: "api_error", message, code: None }
}

fn gone(server: &str) -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, kind: "not_found_error", message: format!("the MCP session with `{server}` is over: initialize anew"), code: None }
}

fn answer(message: Value, mcp_session: &str) -> Response {
    let mut r = (StatusCode::OK, axum::Json(message)).into_response();
    if let Ok(v) = HeaderValue::from_str(mcp_session) {
        r.headers_mut().insert(wire::MCP_SESSION, v);
    }
    r
}

fn mcp_session(headers: &HeaderMap) -> Option<&str> {
    headers.get(wire::MCP_SESSION).and_then(|v| v.to_str().ok())
}

/// `POST …/mcp/{server}`: one JSON-RPC message (batches are not taken: the transport's
/// current revision has none).
pub async fn post(State(s): State<Server>, Path((id, name)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if !headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json")) {
        return Err(ApiError::invalid("an MCP message is sent as `application/json`"));
    }
    let message: Value = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    if !message.is_object() {
        return Err(ApiError::invalid("the body must be one JSON-RPC message (an object)"));
    }
    let method = message.get("method").and_then(Value::as_str);
    let is_request = method.is_some() && message.get("id").is_some_and(|i| !i.is_null());
    if method == Some("initialize") {
        if !is_request {
            return Err(ApiError::invalid("`initialize` is a request: it needs an `id`"));
        }
        s.held(&id)?;
        let environment = s.sandboxes.environment(&id);
        let server = environment.mcp_servers.iter().find(|m| m.name == name).ok_or_else(|| no_server(&name))?;
        let bridge = Bridge::start(&s, &id, server).await?;
        s.bridges.replace(&id, &name, bridge.clone());
        tracing::info!(session_id = %id, mcp_server = %name, "stdio MCP server started for a remote client");
        let result = bridge.request(&message).await?;
        return Ok(answer(result, &bridge.id));
    }
    let given = mcp_session(&headers).ok_or_else(|| ApiError::invalid(format!("a message other than `initialize` needs the `{}` header its answer gave", wire::MCP_SESSION)))?;
    let bridge = s.bridges.get(&id, &name).filter(|b| b.id == given && b.alive()).ok_or_else(|| gone(&name))?;
    s.sandboxes.touch(&id);
    if is_request {
        let result = bridge.request(&message).await?;
        return Ok(answer(result, &bridge.id));
    }
    bridge.write(&message).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `DELETE …/mcp/{server}`: ends the MCP session the header names, killing its program.
pub async fn delete(State(s): State<Server>, Path((id, name)): Path<(String, String)>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let given = mcp_session(&headers).ok_or_else(|| ApiError::invalid(format!("`DELETE` needs the `{}` header", wire::MCP_SESSION)))?;
    if s.bridges.end(&id, &name, given) {
        tracing::info!(session_id = %id, mcp_server = %name, "stdio MCP session ended by its client");
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(gone(&name))
}

fn no_server(name: &str) -> ApiError {
    ApiError { status: StatusCode::NOT_FOUND, kind: "not_found_error", message: format!("the session's environment has no stdio MCP server named `{name}`"), code: None }
}
