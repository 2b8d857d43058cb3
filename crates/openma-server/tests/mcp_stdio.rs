//! Stdio MCP servers declared by an environment, end to end: the server program runs
//! inside the session's sandbox (its uid, its files, its pid namespace, nothing of the
//! host), its tools reach the model under the environment's configuration, a crashed
//! server is started again, and deleting the session ends it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_custom};

/// A small MCP server speaking newline-delimited JSON-RPC on stdio (the outside world's
/// kind of program: written here, run by python3 from the sandbox's /usr).
const SERVER: &str = r#"
import json, os, socket, sys
host_dir = sys.argv[1]
TOOLS = [
    {"name": "whoami", "description": "Where the server runs.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "note", "description": "Writes text to /workspace/from-mcp.txt.", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "read", "description": "Reads /workspace/from-agent.txt.", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "crash", "description": "Exits.", "inputSchema": {"type": "object", "properties": {}}},
]
def reply(i, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": i, "result": result}) + "\n")
    sys.stdout.flush()
def text(t):
    return {"content": [{"type": "text", "text": t}]}
for line in sys.stdin:
    req = json.loads(line)
    m, i = req.get("method"), req.get("id")
    if i is None:
        continue
    if m == "initialize":
        reply(i, {"protocolVersion": req["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "local", "version": "1"}})
    elif m == "tools/list":
        reply(i, {"tools": TOOLS})
    elif m == "tools/call":
        name, args = req["params"]["name"], req["params"].get("arguments") or {}
        if name == "whoami":
            reply(i, text(json.dumps({"uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "host": socket.gethostname(),
                "greeting": os.environ.get("GREETING"), "path": os.environ.get("PATH"),
                "sees_host_dir": os.path.exists(host_dir), "sees_root_home": os.path.exists("/root")})))
        elif name == "note":
            with open("/workspace/from-mcp.txt", "w") as f:
                f.write(args.get("text", ""))
            reply(i, text("written"))
        elif name == "read":
            reply(i, text(open("/workspace/from-agent.txt").read().strip()))
        elif name == "crash":
            os._exit(3)
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": "no such method"}}) + "\n")
        sys.stdout.flush()
"#;

/// A marker on the server's command line, to find its process on the host.
fn marker(app: &TestApp) -> String {
    app.data_dir().join("marker-of-this-test").to_string_lossy().into_owned()
}

async fn start(backend: Backend) -> Option<(TestApp, FakeModel)> {
    let model = FakeModel::start().await;
    let app = spawn_app_custom(backend, Some(model.base_url()), |_| {}).await?;
    Some((app, model))
}

async fn environment(app: &TestApp) -> Value {
    app.ok(
        "/v1/environments",
        json!({"name": "with-stdio", "config": {"type": "cloud", "mcp_servers": [{
            "type": "stdio", "name": "local",
            "command": ["python3", "-u", "-c", SERVER, marker(app)],
            "env": {"GREETING": "hello"},
            "default_config": {"permission_policy": {"type": "always_allow"}},
            "configs": [{"name": "crash", "permission_policy": {"type": "always_ask"}}]
        }]}}),
    )
    .await
}

/// Texts of the MCP tool results of a turn, in order, with their error flags.
fn mcp_results(events: &[support::Sse]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter(|e| e.event == "agent.mcp_tool_result")
        .map(|e| (e.data["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"), e.data["is_error"] == true))
        .collect()
}

/// Host pids whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
            && pid != std::process::id()
        {
            out.push(pid);
        }
    }
    out
}

async fn stdio_servers_run_in_the_sandbox(backend: Backend) {
    if !support::sandboxes_available() {
        return;
    }
    let Some((app, model)) = start(backend).await else { return };
    let env = environment(&app).await;
    assert_eq!(env["config"]["mcp_servers"][0]["default_config"]["permission_policy"]["type"], "always_allow");
    assert_eq!(env["config"]["mcp_servers"][0]["configs"][0]["enabled"], true);
    let agent = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"]})).await["id"].as_str().unwrap().to_owned();
    // the environment changing later does not reach the session
    app.ok(&format!("/v1/environments/{}", env["id"].as_str().unwrap()), json!({"config": {"type": "cloud", "mcp_servers": null}})).await;

    model.script(vec![
        Reply::tool_use("bash", json!({"command": "echo from-agent > /workspace/from-agent.txt"})),
        Reply::tool_use("mcp__local__whoami", json!({})),
        Reply::tool_use("mcp__local__note", json!({"text": "hello-from-mcp"})),
        Reply::tool_use("mcp__local__read", json!({})),
        Reply::tool_use("bash", json!({"command": "cat /workspace/from-mcp.txt; echo; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -c '^python3 -u -c'"})),
        Reply::text("done"),
    ]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn", "{:?}", events.iter().map(|e| (&e.event, &e.data)).collect::<Vec<_>>());
    assert!(!events.iter().any(|e| e.event == "session.error"), "no error: {:?}", events.iter().filter(|e| e.event == "session.error").map(|e| &e.data).collect::<Vec<_>>());

    // the model is offered the server's tools under the environment's names
    let offered: Vec<String> = model.requests()[0].body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    for name in ["mcp__local__whoami", "mcp__local__note", "mcp__local__read", "mcp__local__crash"] {
        assert!(offered.iter().any(|o| o == name), "{name} offered: {offered:?}");
    }
    let uses: Vec<&support::Sse> = events.iter().filter(|e| e.event == "agent.mcp_tool_use").collect();
    assert_eq!(uses[0].data["mcp_server_name"], "local");
    assert_eq!(uses[0].data["evaluated_permission"], "allow");

    let results = mcp_results(&events);
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|(_, err)| !err), "{results:?}");
    let who: Value = serde_json::from_str(&results[0].0).unwrap();
    // in the sandbox: its hostname, its workspace, its pid namespace, its PATH
    assert_eq!(who["host"], "sandbox");
    assert_eq!(who["cwd"], "/workspace");
    assert!(who["pid"].as_u64().unwrap() < 100, "a pid of the sandbox's namespace: {who}");
    assert_eq!(who["greeting"], "hello");
    assert!(who["path"].as_str().unwrap().starts_with("/usr/local/sbin"), "{who}");
    // nothing of the host
    assert_eq!(who["sees_host_dir"], false, "{who}");
    assert_eq!(who["sees_root_home"], false, "{who}");
    // the files the agent's commands see, both ways
    assert_eq!(results[2].0, "from-agent");
    let bash = events.iter().filter(|e| e.event == "agent.tool_result").nth(1).unwrap();
    let text = bash.data["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("hello-from-mcp"), "{text}");
    assert!(text.trim_end().ends_with('1'), "the agent sees the server among its processes: {text}");
    // as the session's uid (the workspace owner), never root
    let workspace = app.data_dir().join("sandboxes").join(&sid).join("workspace");
    let written = std::fs::metadata(workspace.join("from-mcp.txt")).unwrap();
    assert_eq!(written.uid(), std::fs::metadata(&workspace).unwrap().uid());
    assert_eq!(who["uid"].as_u64(), Some(u64::from(written.uid())));
    if nix_root() {
        assert_ne!(written.uid(), 0);
    }

    // a server that crashed is reported in the result and started again for the next call
    model.script(vec![Reply::tool_use("mcp__local__crash", json!({})), Reply::tool_use("mcp__local__whoami", json!({})), Reply::text("again")]);
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "crash"}]}]})).await;
    let ask = stream.until(settled).await;
    let crash_use = ask.iter().find(|e| e.event == "agent.mcp_tool_use").unwrap();
    assert_eq!(crash_use.data["evaluated_permission"], "ask", "the environment's per-tool config applies");
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.tool_confirmation", "tool_use_id": crash_use.data["id"], "result": "allow"}]})).await;
    let events = stream.until(settled).await;
    let results = mcp_results(&events);
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[0].1, "the crash is an error result: {results:?}");
    assert!(!results[1].1, "{results:?}");
    let again: Value = serde_json::from_str(&results[1].0).unwrap();
    assert_ne!(again["pid"], who["pid"], "a new process");
    assert_eq!(processes_with(&marker(&app)).len(), 2, "nsenter and the server, once");

    // deleting the session ends the server
    assert!(app.delete(&format!("/v1/sessions/{sid}")).await.status.is_success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !processes_with(&marker(&app)).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the server outlived its session: {:?}", processes_with(&marker(&app)));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn nix_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stdio_servers_run_in_the_sandbox() {
    stdio_servers_run_in_the_sandbox(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stdio_servers_run_in_the_sandbox() {
    stdio_servers_run_in_the_sandbox(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stdio_servers_are_refused() {
    let Some((app, model)) = start(Backend::Sqlite).await else { return };
    let cases = [
        (json!({"type": "stdio", "name": "x", "command": []}), "`command` must name a program"),
        (json!({"type": "stdio", "name": "", "command": ["a"]}), "name"),
        (json!({"type": "stdio", "name": "x", "command": ["a"], "env": {"PATH": "/evil"}}), "`PATH` is set by the sandbox"),
        (json!({"type": "stdio", "name": "x", "command": ["a"], "env": {"https_proxy": "http://x"}}), "set by the sandbox"),
        (json!({"type": "stdio", "name": "x", "command": ["a"], "env": {"1BAD": "v"}}), "not a valid variable name"),
        (json!({"type": "stdio", "name": "x", "command": ["a"], "cwd": "/"}), "cwd"),
        (json!({"type": "stdio", "name": "x", "command": ["a"], "default_config": {"permission_policy": {"type": "auto"}}}), "auto"),
    ];
    for (server, says) in cases {
        let r = app.post("/v1/environments", json!({"name": "bad", "config": {"type": "cloud", "mcp_servers": [server]}})).await;
        assert_eq!(r.status, 400, "{server}: {}", r.body);
        assert_eq!(r.error_type(), "invalid_request_error");
        assert!(r.body["error"]["message"].as_str().unwrap().contains(says), "{server}: {}", r.body);
    }
    let twice = json!({"type": "stdio", "name": "x", "command": ["a"]});
    let r = app.post("/v1/environments", json!({"name": "bad", "config": {"type": "cloud", "mcp_servers": [twice, twice]}})).await;
    assert!(r.body["error"]["message"].as_str().unwrap().contains("used twice"), "{}", r.body);

    // an agent and its environment may not both name a server `docs`
    let env = app.ok("/v1/environments", json!({"name": "e", "config": {"type": "cloud", "mcp_servers": [{"type": "stdio", "name": "docs", "command": ["true"]}]}})).await;
    let agent = app
        .ok("/v1/agents", json!({"name": "m", "model": "claude-sonnet-4-6",
            "mcp_servers": [{"type": "url", "name": "docs", "url": "https://mcp.example.com/mcp"}],
            "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs"}]}))
        .await;
    let r = app.post("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("both name a server `docs`"), "{}", r.body);
    assert!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().is_empty(), "nothing is left of the refused session");

    // a program that does not speak MCP is a connection error naming the server; the turn goes on
    let env = app.ok("/v1/environments", json!({"name": "mute", "config": {"type": "cloud", "mcp_servers": [{"type": "stdio", "name": "mute", "command": ["sh", "-c", "echo not json; exit 1"]}]}})).await;
    let agent = app.ok("/v1/agents", json!({"name": "b", "model": "claude-sonnet-4-6"})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::text("fine without it")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    let error = events.iter().find(|e| e.event == "session.error").expect("a connection error");
    assert_eq!(error.data["error"]["type"], "mcp_connection_failed_error", "{}", error.data);
    assert_eq!(error.data["error"]["mcp_server_name"], "mute");
    assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn");
}
