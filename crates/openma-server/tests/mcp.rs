//! MCP toolsets in sessions, end to end: a scripted model calls the tools of fake MCP
//! servers (one wanting a static bearer token, one an OAuth token that it refuses once so
//! that the session refreshes it, one that is down), through the confirmation flow, with
//! the credentials taken from the session's vaults and never shown anywhere.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_custom};

const STATIC_TOKEN: &str = "static-secret-token-7Qx";
const OLD_ACCESS: &str = "old-access-token-Wm2";
const FRESH_ACCESS: &str = "fresh-access-token-Zp9";
const REFRESH_1: &str = "refresh-token-one-Lk4";
const REFRESH_2: &str = "refresh-token-two-Hd8";
const SECRETS: [&str; 5] = [STATIC_TOKEN, OLD_ACCESS, FRESH_ACCESS, REFRESH_1, REFRESH_2];

/// The fake outside world: MCP servers and an OAuth token endpoint.
#[derive(Default)]
struct World {
    /// `(server, method)` of every JSON-RPC request that passed authentication.
    calls: Mutex<Vec<(String, String)>>,
    refused: AtomicUsize,
    refreshes: AtomicUsize,
}

impl World {
    fn calls_of(&self, server: &str, method: &str) -> usize {
        self.calls.lock().unwrap().iter().filter(|(s, m)| s == server && m == method).count()
    }
}

fn rpc(id: &Value, result: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))).into_response()
}

async fn mcp(server: &'static str, token: &'static str, world: Arc<World>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth != format!("Bearer {token}") {
        world.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer error=\"invalid_token\"")], "").into_response();
    }
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let method = req["method"].as_str().unwrap_or("").to_owned();
    world.calls.lock().unwrap().push((server.to_owned(), method.clone()));
    let id = &req["id"];
    if id.is_null() {
        return StatusCode::ACCEPTED.into_response();
    }
    match method.as_str() {
        "initialize" => rpc(id, json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": server, "version": "1"}})),
        "tools/list" => rpc(id, json!({"tools": [
            {"name": "echo", "description": "Echoes `text`.", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
            {"name": "big", "description": "A very long answer.", "inputSchema": {"type": "object", "properties": {}}},
            {"name": "hidden", "description": "Disabled by the agent.", "inputSchema": {"type": "object", "properties": {}}}
        ]})),
        "tools/call" => {
            let args = &req["params"]["arguments"];
            match req["params"]["name"].as_str() {
                Some("echo") => rpc(id, json!({"content": [{"type": "text", "text": format!("{server} echo: {}", args["text"].as_str().unwrap_or(""))}]})),
                Some("big") => rpc(id, json!({"content": [{"type": "text", "text": format!("HEAD{}TAIL", "x".repeat(150_000))}]})),
                _ => rpc(id, json!({"content": [{"type": "text", "text": "no such tool"}], "isError": true})),
            }
        }
        "ping" => rpc(id, json!({})),
        _ => (StatusCode::OK, axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}))).into_response(),
    }
}

async fn token(State(world): State<Arc<World>>, body: String) -> Response {
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") && form.get("refresh_token").map(String::as_str) == Some(REFRESH_1) {
        world.refreshes.fetch_add(1, Ordering::SeqCst);
        (StatusCode::OK, axum::Json(json!({"access_token": FRESH_ACCESS, "refresh_token": REFRESH_2, "expires_in": 3600, "token_type": "Bearer"}))).into_response()
    } else {
        (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response()
    }
}

/// Starts the fake world; returns it and its base URL.
async fn world() -> (Arc<World>, String) {
    let world = Arc::new(World::default());
    let (w1, w2) = (world.clone(), world.clone());
    let app = Router::new()
        .route("/bearer/mcp", post(move |h: HeaderMap, b: String| mcp("docs", STATIC_TOKEN, w1.clone(), h, b)).get(|| async { StatusCode::METHOD_NOT_ALLOWED }))
        .route("/oauth/mcp", post(move |h: HeaderMap, b: String| mcp("calendar", FRESH_ACCESS, w2.clone(), h, b)).get(|| async { StatusCode::METHOD_NOT_ALLOWED }))
        .route("/oauth/token", post(token))
        .with_state(world.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (world, format!("http://{addr}"))
}

/// A URL where nothing listens.
async fn down_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/mcp")
}

async fn start(backend: Backend) -> Option<(TestApp, FakeModel)> {
    let model = FakeModel::start().await;
    let app = spawn_app_custom(backend, Some(model.base_url()), |o| o.unsafe_allow_private_fetch = true).await?;
    Some((app, model))
}

async fn vaults(app: &TestApp, base: &str) -> (String, String) {
    let v1 = app.ok("/v1/vaults", json!({"display_name": "docs"})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/vaults/{v1}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": format!("{base}/bearer/mcp"), "token": STATIC_TOKEN}})).await;
    let v2 = app.ok("/v1/vaults", json!({"display_name": "calendar"})).await["id"].as_str().unwrap().to_owned();
    // spelled differently from the agent's URL: matched after normalisation
    let oauth_url = format!("{}/oauth/mcp/", base.replace("http://", "HTTP://"));
    app.ok(&format!("/v1/vaults/{v2}/credentials"), json!({"auth": {"type": "mcp_oauth", "mcp_server_url": oauth_url, "access_token": OLD_ACCESS,
        "refresh": {"client_id": "client-1", "refresh_token": REFRESH_1, "token_endpoint": format!("{base}/oauth/token"), "token_endpoint_auth": {"type": "none"}}}})).await;
    (v1, v2)
}

fn assert_no_secrets(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows a secret");
    }
}

async fn mcp_tools_run_with_vault_credentials_and_confirmation(backend: Backend) {
    let Some((app, model)) = start(backend).await else { return };
    let (world, base) = world().await;
    let (v1, v2) = vaults(&app, &base).await;
    let down = down_url().await;
    let agent = app
        .ok("/v1/agents", json!({"name": "mcp", "model": "claude-sonnet-4-6",
            "mcp_servers": [
                {"type": "url", "name": "docs", "url": format!("{base}/bearer/mcp")},
                {"type": "url", "name": "calendar", "url": format!("{base}/oauth/mcp")},
                {"type": "url", "name": "down", "url": down}
            ],
            "tools": [
                {"type": "mcp_toolset", "mcp_server_name": "docs", "default_config": {"permission_policy": {"type": "always_allow"}},
                 "configs": [{"name": "hidden", "enabled": false}]},
                {"type": "mcp_toolset", "mcp_server_name": "calendar"},
                {"type": "mcp_toolset", "mcp_server_name": "down"}
            ]}))
        .await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "vault_ids": [v1, v2]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![
        Reply::tool_use("mcp__docs__echo", json!({"text": "hi"})),
        Reply::tool_use("mcp__calendar__echo", json!({"text": "cal"})),
        Reply::text("done"),
    ]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let first = stream.until(settled).await;
    let idle = first.last().unwrap();
    assert_eq!(idle.data["stop_reason"]["type"], "requires_action", "{:?}", first.iter().map(|e| &e.event).collect::<Vec<_>>());

    // the server that is down is reported, named, and the session goes on without it
    let error = first.iter().find(|e| e.event == "session.error").expect("a session.error for the down server");
    assert_eq!(error.data["error"]["type"], "mcp_connection_failed_error");
    assert_eq!(error.data["error"]["mcp_server_name"], "down");

    // the model was offered exactly the enabled tools of the connected servers
    let offered: Vec<String> = model.requests()[0].body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(offered, ["mcp__docs__echo", "mcp__docs__big", "mcp__calendar__echo", "mcp__calendar__big", "mcp__calendar__hidden"]);

    // always_allow: run at once with the static bearer token
    let docs_use = first.iter().find(|e| e.event == "agent.mcp_tool_use" && e.data["mcp_server_name"] == "docs").expect("docs tool use");
    assert_eq!((docs_use.data["name"].as_str(), docs_use.data["evaluated_permission"].as_str()), (Some("echo"), Some("allow")));
    let docs_result = first.iter().find(|e| e.event == "agent.mcp_tool_result").expect("docs result");
    assert_eq!(docs_result.data["mcp_tool_use_id"], docs_use.data["id"]);
    assert_eq!(docs_result.data["content"][0]["text"], "docs echo: hi");
    assert_eq!(docs_result.data["is_error"], false);

    // the MCP toolset's default policy is always_ask: the calendar call waits for the user
    let cal_use = first.iter().find(|e| e.event == "agent.mcp_tool_use" && e.data["mcp_server_name"] == "calendar").expect("calendar tool use");
    assert_eq!(cal_use.data["evaluated_permission"], "ask");
    assert_eq!(idle.data["stop_reason"]["event_ids"], json!([cal_use.data["id"]]));
    assert_eq!(world.calls_of("calendar", "tools/call"), 0);
    // the stale OAuth token was refused once and refreshed when the session connected
    assert_eq!(world.refreshes.load(Ordering::SeqCst), 1);

    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": cal_use.data["id"], "result": "allow"}]})).await;
    let second = stream.until(settled).await;
    assert_eq!(second.last().unwrap().data["stop_reason"]["type"], "end_turn");
    let cal_result = second.iter().find(|e| e.event == "agent.mcp_tool_result").expect("calendar result");
    assert_eq!(cal_result.data["content"][0]["text"], "calendar echo: cal");
    // one connection per server, reused across turns: one handshake each
    assert_eq!((world.calls_of("docs", "initialize"), world.calls_of("calendar", "initialize")), (1, 1));

    // the model got the results as tool results of the names it called
    let last = model.requests().last().unwrap().body.to_string();
    assert!(last.contains("calendar echo: cal") && last.contains("mcp__calendar__echo"), "{last}");

    // the refreshed tokens are stored, sealed
    let tenant = app.platform.find_tenant("default").await.unwrap().id;
    let secrets = app.platform.secrets.clone().unwrap();
    let creds = app.get(&format!("/v1/vaults/{v2}/credentials")).await.body;
    let cid = creds["data"][0]["id"].as_str().unwrap();
    let stored = app.platform.store.get_credential(&tenant, &v2, cid).await.unwrap().unwrap();
    assert_eq!(openma_core::vaults::open_secret(&secrets, &tenant, &stored, "access_token").as_deref(), Some(FRESH_ACCESS));
    assert_eq!(openma_core::vaults::open_secret(&secrets, &tenant, &stored, "refresh_token").as_deref(), Some(REFRESH_2));
    assert!(creds["data"][0]["auth"]["expires_at"].is_string());

    // no token in the event log, the responses or the model's requests
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await.body.to_string();
    assert_no_secrets("the event log", &log);
    assert_no_secrets("the vault listing", &creds.to_string());
    let requests: String = model.requests().iter().map(|r| r.body.to_string()).collect();
    assert_no_secrets("the model requests", &requests);

    // a denied call gets an error result without reaching the server
    model.script(vec![Reply::tool_use("mcp__calendar__echo", json!({"text": "no"})), Reply::text("ok")]);
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]})).await;
    let third = stream.until(settled).await;
    let ask = third.iter().find(|e| e.event == "agent.mcp_tool_use").unwrap();
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": ask.data["id"], "result": "deny", "deny_message": "not now"}]})).await;
    let fourth = stream.until(settled).await;
    let denied = fourth.iter().find(|e| e.event == "agent.mcp_tool_result").expect("denial result");
    assert_eq!((denied.data["is_error"].as_bool(), denied.data["content"][0]["text"].as_str()), (Some(true), Some("not now")));
    assert_eq!(world.calls_of("calendar", "tools/call"), 1);
    // the down server is retried when the next turn starts, and reported again
    assert!(third.iter().any(|e| e.event == "session.error" && e.data["error"]["mcp_server_name"] == "down"));
}

async fn refused_credentials_are_an_authentication_error(backend: Backend) {
    let Some((app, model)) = start(backend).await else { return };
    let (_world, base) = world().await;
    let v = app.ok("/v1/vaults", json!({"display_name": "wrong"})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/vaults/{v}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": format!("{base}/bearer/mcp"), "token": "wrong-token"}})).await;
    let agent = app
        .ok("/v1/agents", json!({"name": "mcp", "model": "claude-sonnet-4-6",
            "mcp_servers": [{"type": "url", "name": "docs", "url": format!("{base}/bearer/mcp")}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs"}]}))
        .await;
    for vault_ids in [json!([v]), json!([])] {
        let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "vault_ids": vault_ids})).await["id"].as_str().unwrap().to_owned();
        model.script(vec![Reply::text("fine without it")]);
        let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
        app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
        let events = stream.until(settled).await;
        let error = events.iter().find(|e| e.event == "session.error").expect("an authentication error");
        assert_eq!(error.data["error"]["type"], "mcp_authentication_failed_error", "{}", error.data);
        assert_eq!(error.data["error"]["mcp_server_name"], "docs");
        assert!(!error.data.to_string().contains("wrong-token"));
        assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn");
        assert!(events.iter().any(|e| e.event == "agent.message"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mcp_results_are_saved_to_the_workspace() {
    let Some((app, model)) = start(Backend::Sqlite).await else { return };
    let (_world, base) = world().await;
    let v = app.ok("/v1/vaults", json!({"display_name": "docs"})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/vaults/{v}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": format!("{base}/bearer/mcp"), "token": STATIC_TOKEN}})).await;
    let agent = app
        .ok("/v1/agents", json!({"name": "mcp", "model": "claude-sonnet-4-6",
            "mcp_servers": [{"type": "url", "name": "docs", "url": format!("{base}/bearer/mcp")}],
            "tools": [{"type": "agent_toolset_20260401"}, {"type": "mcp_toolset", "mcp_server_name": "docs", "default_config": {"permission_policy": {"type": "always_allow"}}}]}))
        .await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "vault_ids": [v]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::tool_use("mcp__docs__big", json!({})), Reply::text("done")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    let result = events.iter().find(|e| e.event == "agent.mcp_tool_result").expect("result");
    let text = result.data["content"][0]["text"].as_str().unwrap();
    assert!(text.chars().count() <= 101_000, "cut to the output limit: {}", text.len());
    assert!(text.starts_with("HEAD") && text.contains("TAIL"), "head and tail kept");
    let path = text.split_whitespace().find(|w| w.starts_with("/workspace/.openma/outputs/")).expect("the saved file is named");
    let path = path.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    // the agent can read the whole result from its workspace
    let rel = path.trim_start_matches("/workspace/");
    let host = app.data_dir().join("sandboxes").join(&sid).join("workspace").join(rel);
    let saved = std::fs::read_to_string(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
    assert_eq!(saved.len(), 150_008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_mcp_tools_run_with_vault_credentials_and_confirmation() {
    mcp_tools_run_with_vault_credentials_and_confirmation(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_mcp_tools_run_with_vault_credentials_and_confirmation() {
    mcp_tools_run_with_vault_credentials_and_confirmation(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refused_credentials_are_an_authentication_error() {
    refused_credentials_are_an_authentication_error(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refused_credentials_are_an_authentication_error() {
    refused_credentials_are_an_authentication_error(Backend::Postgres).await
}

/// A server of the 2024-11-05 HTTP+SSE transport: `GET /legacy/sse` streams an `endpoint`
/// event, then the answers to what is `POST`ed there; a `POST` to the stream URL is 405.
async fn legacy_server() -> String {
    use axum::response::sse::{Event, Sse};
    type Tx = Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>>;
    let tx: Tx = Arc::default();
    let (t1, t2) = (tx.clone(), tx.clone());
    let app = Router::new()
        .route(
            "/legacy/sse",
            axum::routing::get(move || {
                let (s, r) = tokio::sync::mpsc::unbounded_channel::<String>();
                *t1.lock().unwrap() = Some(s);
                let first = futures::stream::once(async { Ok::<_, std::convert::Infallible>(Event::default().event("endpoint").data("/legacy/messages?session=1")) });
                let rest = futures::stream::unfold(r, |mut r| async move { r.recv().await.map(|m| (Ok(Event::default().event("message").data(m)), r)) });
                async move { Sse::new(futures::StreamExt::chain(first, rest)) }
            })
            .post(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route(
            "/legacy/messages",
            post(move |body: String| {
                let tx = t2.clone();
                async move {
                    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let id = req["id"].clone();
                    if !id.is_null() {
                        let result = match req["method"].as_str() {
                            Some("initialize") => json!({"protocolVersion": "2024-11-05", "capabilities": {"tools": {}}, "serverInfo": {"name": "old", "version": "0"}}),
                            Some("tools/list") => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
                            _ => json!({"content": [{"type": "text", "text": format!("old echo: {}", req["params"]["arguments"]["text"].as_str().unwrap_or(""))}]}),
                        };
                        let msg = json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
                        if let Some(tx) = tx.lock().unwrap().as_ref() {
                            let _ = tx.send(msg);
                        }
                    }
                    StatusCode::ACCEPTED
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/legacy/sse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_of_the_older_sse_transport_are_reached_by_fallback() {
    let Some((app, model)) = start(Backend::Sqlite).await else { return };
    let url = legacy_server().await;
    let agent = app
        .ok("/v1/agents", json!({"name": "old", "model": "claude-sonnet-4-6",
            "mcp_servers": [{"type": "url", "name": "old", "url": url}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "old", "default_config": {"permission_policy": {"type": "always_allow"}}}]}))
        .await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::tool_use("mcp__old__echo", json!({"text": "still works"})), Reply::text("done")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    assert!(!events.iter().any(|e| e.event == "session.error"), "{:?}", events.iter().map(|e| &e.data).collect::<Vec<_>>());
    let result = events.iter().find(|e| e.event == "agent.mcp_tool_result").expect("a result");
    assert_eq!(result.data["content"][0]["text"], "old echo: still works");
}
