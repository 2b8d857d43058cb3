//! MCP toolsets, the parts every runtime shares: which credential of the session's vaults
//! a server gets, why a server is unusable (and the `session.error` that says so), the
//! model's blocks of a `tools/call` result, and the JSON-RPC messages of MCP's streamable
//! HTTP transport for a client that speaks it by hand (a Worker, where the native server's
//! `rmcp` cannot run).

use serde_json::{Value, json};

use crate::TenantId;
use crate::error::StoreError;
use crate::harness::tools::{McpToolDef, ToolOutput};
use crate::ports::VaultStore;
use crate::vaults::{self, StoredCredential};
use openma_types::events::{EventPayload, RetryStatus, SessionErrorObject};
use openma_types::Timestamp;
use openma_types::vaults::{CredentialAuth, TokenEndpointAuthKind};
use openma_types::agents::McpServer;
use openma_types::environments::StdioMcpServer;

/// A server a session's MCP tools come from.
#[derive(Clone, Copy, Debug)]
pub enum McpTarget<'a> {
    /// One of the agent's `mcp_servers`, reached at its URL.
    Url(&'a McpServer),
    /// One of the environment's `config.mcp_servers`, run in the session's sandbox.
    Stdio(&'a StdioMcpServer),
}

impl McpTarget<'_> {
    pub fn name(&self) -> &str {
        match self {
            McpTarget::Url(s) => &s.name,
            McpTarget::Stdio(s) => &s.name,
        }
    }

    /// What a connection is opened to (the URL, or the program and its variables): one to a
    /// server whose definition changed is opened anew.
    pub fn fingerprint(&self) -> String {
        match self {
            McpTarget::Url(s) => s.url.clone(),
            McpTarget::Stdio(s) => serde_json::to_string(&(&s.command, &s.env)).unwrap_or_default(),
        }
    }

    /// How failures name it: the URL, or the program.
    pub fn label(&self) -> &str {
        match self {
            McpTarget::Url(s) => &s.url,
            McpTarget::Stdio(s) => s.command.first().map_or("", String::as_str),
        }
    }
}

/// The servers a session's MCP tools come from: the agent's, then the environment's stdio
/// servers whose names the agent does not use (session create refuses such a clash; older
/// sessions may hold one, and the agent's server wins).
pub fn targets<'a>(agent: &'a [McpServer], stdio: &'a [StdioMcpServer]) -> Vec<McpTarget<'a>> {
    agent.iter().map(McpTarget::Url).chain(stdio.iter().filter(|s| !agent.iter().any(|a| a.name == s.name)).map(McpTarget::Stdio)).collect()
}

/// The protocol revision a hand-written client asks for.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

/// Why an MCP server is not usable; becomes a `session.error` naming the server.
#[derive(Clone, Debug, PartialEq)]
pub enum McpFailure {
    /// `mcp_connection_failed_error`: unreachable, refused by policy, not speaking MCP.
    Connection(String),
    /// `mcp_authentication_failed_error`: the credential was refused or could not be refreshed.
    Authentication(String),
}

impl McpFailure {
    pub fn kind(&self) -> &'static str {
        match self {
            McpFailure::Connection(_) => "mcp_connection_failed_error",
            McpFailure::Authentication(_) => "mcp_authentication_failed_error",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            McpFailure::Connection(m) | McpFailure::Authentication(m) => m,
        }
    }

    /// The `session.error` a turn reports the server with: a connection may come back by
    /// the next turn, a refused credential will not.
    pub fn session_error(&self, server: &str) -> EventPayload {
        let retry = match self {
            McpFailure::Connection(_) => RetryStatus::Retrying,
            McpFailure::Authentication(_) => RetryStatus::Exhausted,
        };
        let mut error = SessionErrorObject::new(self.kind(), format!("MCP server `{server}`: {}", self.message()), retry);
        error.mcp_server_name = Some(server.to_owned());
        EventPayload::SessionError { error }
    }
}

/// Why a server refused the handshake (HTTP 401/403), by what was sent: the vaults'
/// credential, the token just refreshed, or nothing.
pub fn refusal(url: &str, had_credential: bool, refreshed: bool) -> McpFailure {
    McpFailure::Authentication(match (had_credential, refreshed) {
        (true, true) => format!("`{url}` refused the refreshed access token (HTTP 401/403)"),
        (true, false) => format!("`{url}` refused the credential from the session's vaults (HTTP 401/403)"),
        (false, _) => format!("`{url}` requires authorization and none of the session's vaults holds a credential for it"),
    })
}

/// The live credential for the server at `url` in the session's vaults, first vault first:
/// a `static_bearer` or `mcp_oauth` credential naming the same server (spellings normalised).
pub async fn find_credential(store: &dyn VaultStore, tenant: &TenantId, vault_ids: &[String], url: &str) -> Result<Option<StoredCredential>, StoreError> {
    let want = vaults::normalize_url(url);
    let found = vaults::live_credentials(store, tenant, vault_ids).await?.into_iter().find(|c| match &c.credential.auth {
        CredentialAuth::McpOauth { mcp_server_url, .. } | CredentialAuth::StaticBearer { mcp_server_url } => vaults::normalize_url(mcp_server_url) == want,
        CredentialAuth::EnvironmentVariable { .. } => false,
    });
    Ok(found)
}

/// The secret field a credential's token is sealed under.
pub fn token_field(c: &StoredCredential) -> &'static str {
    match c.credential.auth {
        CredentialAuth::McpOauth { .. } => "access_token",
        _ => "token",
    }
}

/// Whether an `mcp_oauth` credential can be refreshed: it has a refresh configuration and
/// a refresh token.
pub fn refreshable(c: &StoredCredential) -> bool {
    matches!(&c.credential.auth, CredentialAuth::McpOauth { refresh: Some(_), .. }) && c.secrets.contains_key("refresh_token")
}

/// An `mcp_oauth` access token past (or within a minute of) its expiry.
pub fn expired(c: &StoredCredential, now: Timestamp) -> bool {
    match &c.credential.auth {
        CredentialAuth::McpOauth { expires_at: Some(at), .. } => at.as_micros() <= now.as_micros() + 60_000_000,
        _ => false,
    }
}

/// The token endpoint request that refreshes an `mcp_oauth` credential (RFC 6749 §6): its
/// URL, headers and form body; none when the credential has no refresh configuration.
pub struct RefreshRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

pub fn refresh_request(c: &StoredCredential, refresh_token: &str, client_secret: Option<&str>) -> Option<RefreshRequest> {
    use base64::Engine;
    let CredentialAuth::McpOauth { refresh: Some(r), .. } = &c.credential.auth else { return None };
    let mut form = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.to_owned())];
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded".to_owned()), ("accept", "application/json".to_owned())];
    match (r.token_endpoint_auth.kind, client_secret) {
        (TokenEndpointAuthKind::ClientSecretBasic, Some(s)) => {
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{}:{s}", r.client_id));
            headers.push(("authorization", format!("Basic {pair}")));
        }
        (TokenEndpointAuthKind::ClientSecretPost, Some(s)) => {
            form.push(("client_id", r.client_id.clone()));
            form.push(("client_secret", s.to_owned()));
        }
        _ => form.push(("client_id", r.client_id.clone())),
    }
    if let Some(scope) = &r.scope {
        form.push(("scope", scope.clone()));
    }
    if let Some(resource) = &r.resource {
        form.push(("resource", resource.clone()));
    }
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str()))).finish();
    Some(RefreshRequest { url: r.token_endpoint.clone(), headers, body })
}

/// The tokens of a token endpoint's answer: the new access token, a rotated refresh token
/// and the access token's expiry (from `expires_in`); none without an access token.
pub fn refreshed_tokens(answer: &Value, now: Timestamp) -> Option<(String, Option<String>, Option<Timestamp>)> {
    let access = answer.get("access_token").and_then(Value::as_str)?;
    let rotated = answer.get("refresh_token").and_then(Value::as_str).map(str::to_owned);
    let expires = answer.get("expires_in").and_then(Value::as_i64).map(|s| Timestamp::from_micros(now.as_micros() + s * 1_000_000));
    Some((access.to_owned(), rotated, expires))
}

/// The model's content blocks of a `tools/call` result: text and images as they are,
/// embedded resources as their text, anything else as JSON text; structured content
/// when the result has no content blocks.
pub fn tool_output(result: &Value) -> ToolOutput {
    let is_error = result.get("isError").and_then(Value::as_bool).unwrap_or(false);
    let mut content = Vec::new();
    for block in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => content.push(json!({"type": "text", "text": block.get("text").and_then(Value::as_str).unwrap_or_default()})),
            Some("image") => content.push(json!({"type": "image", "source": {
                "type": "base64",
                "media_type": block.get("mimeType").and_then(Value::as_str).unwrap_or("image/png"),
                "data": block.get("data").and_then(Value::as_str).unwrap_or_default(),
            }})),
            Some("resource") => {
                let r = block.get("resource").cloned().unwrap_or(Value::Null);
                let text = match r.get("text").and_then(Value::as_str) {
                    Some(t) => t.to_owned(),
                    None => r.to_string(),
                };
                content.push(json!({"type": "text", "text": text}));
            }
            _ => content.push(json!({"type": "text", "text": block.to_string()})),
        }
    }
    if content.is_empty()
        && let Some(s) = result.get("structuredContent")
    {
        content.push(json!({"type": "text", "text": s.to_string()}));
    }
    ToolOutput { content, is_error, usage: None }
}

/// The characters of text in a result (what an output cap counts).
pub fn text_chars(out: &ToolOutput) -> usize {
    out.content.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).map(|t| t.chars().count()).sum()
}

/// A JSON-RPC request (with `id`) or notification (without).
pub fn rpc_message(id: Option<u64>, method: &str, params: Value) -> Value {
    let mut m = json!({"jsonrpc": "2.0", "method": method, "params": params});
    if let Some(id) = id {
        m["id"] = json!(id);
    }
    m
}

/// The `initialize` request's parameters.
pub fn initialize_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "openma", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// Why a JSON-RPC exchange did not give a result.
#[derive(Clone, Debug, PartialEq)]
pub enum RpcFailure {
    /// The server answered with a JSON-RPC error.
    Error { code: i64, message: String },
    /// The answer was not a JSON-RPC response to the request.
    Malformed(String),
}

impl std::fmt::Display for RpcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcFailure::Error { code, message } => write!(f, "error {code}: {message}"),
            RpcFailure::Malformed(why) => write!(f, "not an MCP answer: {why}"),
        }
    }
}

/// The result of request `id` in a streamable HTTP answer: one JSON response, or an SSE
/// stream whose `data` lines carry messages (server requests and notifications before the
/// response are passed over).
pub fn response_result(content_type: &str, body: &str, id: u64) -> Result<Value, RpcFailure> {
    let of = |m: Value| -> Option<Result<Value, RpcFailure>> {
        if m.get("id").and_then(Value::as_u64) != Some(id) || m.get("method").is_some() {
            return None;
        }
        if let Some(e) = m.get("error") {
            let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message = e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Some(Err(RpcFailure::Error { code, message }));
        }
        Some(m.get("result").cloned().ok_or_else(|| RpcFailure::Malformed("a response without `result`".into())))
    };
    let messages: Vec<Value> = if content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream") {
        sse_data(body).iter().filter_map(|d| serde_json::from_str(d).ok()).collect()
    } else {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Array(batch)) => batch,
            Ok(one) => vec![one],
            Err(e) => return Err(RpcFailure::Malformed(format!("invalid JSON: {e}"))),
        }
    };
    messages.into_iter().find_map(of).unwrap_or_else(|| Err(RpcFailure::Malformed(format!("no response to request {id}"))))
}

/// The `data` of each event of an SSE stream (multi-line data joined by `\n`).
fn sse_data(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in body.lines().chain(std::iter::once("")) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                out.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    out
}

/// The tools of one `tools/list` page, as the session knows them (`server` is the agent's
/// name for it), and the cursor of the next page.
pub fn listed_tools(server: &str, result: &Value) -> (Vec<McpToolDef>, Option<String>) {
    let tools = result
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(McpToolDef {
                server: server.to_owned(),
                name: t.get("name")?.as_str()?.to_owned(),
                description: t.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
                input_schema: t.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
            })
        })
        .collect();
    let next = result.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_owned);
    (tools, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_become_model_blocks() {
        let out = tool_output(&json!({"content": [
            {"type": "text", "text": "hi"},
            {"type": "image", "data": "AAAA", "mimeType": "image/gif"},
            {"type": "resource", "resource": {"uri": "file:///a", "text": "body"}},
            {"type": "audio", "data": "x", "mimeType": "audio/wav"}
        ], "isError": true}));
        assert!(out.is_error);
        assert_eq!(out.content[0], json!({"type": "text", "text": "hi"}));
        assert_eq!(out.content[1]["source"]["media_type"], "image/gif");
        assert_eq!(out.content[2]["text"], "body");
        assert_eq!(out.content[3]["type"], "text");
        let structured = tool_output(&json!({"content": [], "structuredContent": {"n": 1}}));
        assert_eq!(structured.content, vec![json!({"type": "text", "text": "{\"n\":1}"})]);
        assert!(!structured.is_error);
    }

    #[test]
    fn answers_are_read_as_json_or_as_an_event_stream() {
        let json_answer = r#"{"jsonrpc":"2.0","id":3,"result":{"ok":true}}"#;
        assert_eq!(response_result("application/json", json_answer, 3), Ok(json!({"ok": true})));
        assert!(matches!(response_result("application/json", json_answer, 4), Err(RpcFailure::Malformed(_))));
        let sse = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\r\n\r\n\
                   id: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\ndata: \"result\":{\"tools\":[]}}\n\n";
        assert_eq!(response_result("text/event-stream; charset=utf-8", sse, 2), Ok(json!({"tools": []})));
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no such method"}}"#;
        assert_eq!(response_result("application/json", err, 1), Err(RpcFailure::Error { code: -32601, message: "no such method".into() }));
        assert!(matches!(response_result("application/json", "<html>", 1), Err(RpcFailure::Malformed(_))));
    }

    #[test]
    fn listed_tools_keep_their_schema_and_the_cursor() {
        let page = json!({"tools": [{"name": "lookup", "description": "d", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}, {"nameless": 1}], "nextCursor": "c2"});
        let (tools, next) = listed_tools("kb", &page);
        assert_eq!(tools.len(), 1);
        assert_eq!((tools[0].server.as_str(), tools[0].name.as_str(), tools[0].description.as_str()), ("kb", "lookup", "d"));
        assert_eq!(tools[0].input_schema["properties"]["q"]["type"], "string");
        assert_eq!(next.as_deref(), Some("c2"));
    }

    #[test]
    fn a_refused_credential_is_not_retried_and_names_its_server() {
        let EventPayload::SessionError { error } = McpFailure::Authentication("401".into()).session_error("kb") else { panic!() };
        assert_eq!((error.kind.as_str(), error.retry_status, error.mcp_server_name.as_deref()), ("mcp_authentication_failed_error", RetryStatus::Exhausted, Some("kb")));
        assert!(error.message.starts_with("MCP server `kb`: "));
    }
}
