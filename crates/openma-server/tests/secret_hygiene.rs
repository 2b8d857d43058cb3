//! Secret hygiene, end to end with the real binary: after vault credentials of every type
//! and a model card are created and a session that uses them runs a turn with tools in its
//! sandbox and an MCP tool authorised by the vault's bearer token, no plaintext secret appears in any API response, the server log (at debug
//! level), the event log, the database files, the blob store, or the sandbox's files and
//! environment.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};

const API_KEY: &str = "sk-oma-hygiene-0123456789abcdefgh";

/// Every file below `dir` (not following links), with its bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            files(&p, out);
        } else if meta.is_file() {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap_or_default()));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// An MCP server on 127.0.0.1 that answers only requests bearing `token`.
async fn fake_mcp(token: String) -> String {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let handler = move |headers: HeaderMap, body: String| {
        let token = token.clone();
        async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {token}")) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if req["id"].is_null() {
                return StatusCode::ACCEPTED.into_response();
            }
            let result = match req["method"].as_str() {
                Some("initialize") => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "kb", "version": "1"}}),
                Some("tools/list") => json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
                _ => json!({"content": [{"type": "text", "text": format!("echo: {}", req["params"]["arguments"]["text"].as_str().unwrap_or(""))}]}),
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": req["id"], "result": result})).into_response()
        }
    };
    let app = axum::Router::new().route("/mcp", axum::routing::post(handler).get(|| async { StatusCode::METHOD_NOT_ALLOWED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_leaks_into_responses_logs_events_database_blobs_or_sandbox() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    openma_models::install_tls_provider();
    let secrets: Vec<String> = ["bearer", "access", "refresh", "client", "envvar", "cardkey"]
        .iter()
        .map(|tag| format!("{tag}-SECRET-{}", ulid::Ulid::new()))
        .collect();
    let [bearer, access, refresh, client_secret, env_value, card_key] = <[String; 6]>::try_from(secrets.clone()).unwrap();

    let model = FakeModel::start().await;
    let mcp_url = fake_mcp(bearer.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_openma"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("PLATFORM_ROOT_SECRET")
        .env("OPENMA_BOOTSTRAP_API_KEY", API_KEY)
        // the env provider must not be what serves the turn: the card is
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("ANTHROPIC_API_KEY", "sk-ant-env-not-used")
        .env("RUST_LOG", "debug")
        // the fake MCP server is on 127.0.0.1
        .env("OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("openma listening on ").expect("ready line").to_owned();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);

    let http = reqwest::Client::new();
    let mut responses: Vec<String> = Vec::new();
    let mut call = async |method: reqwest::Method, path: &str, body: Option<Value>| -> Value {
        let mut req = http.request(method, format!("{base}{path}")).bearer_auth(API_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        responses.push(text.clone());
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    use reqwest::Method;

    let vault = call(Method::POST, "/v1/vaults", Some(json!({"display_name": "hygiene"}))).await;
    let vid = vault["id"].as_str().unwrap().to_owned();
    let creds = [
        json!({"auth": {"type": "static_bearer", "mcp_server_url": mcp_url, "token": bearer}}),
        json!({"auth": {"type": "mcp_oauth", "mcp_server_url": "https://mcp.example.com/b", "access_token": access, "expires_at": "2099-01-01T00:00:00Z",
            "refresh": {"client_id": "cid", "refresh_token": refresh, "token_endpoint": "https://mcp.example.com/token",
                "token_endpoint_auth": {"type": "client_secret_post", "client_secret": client_secret}}}}),
        json!({"auth": {"type": "environment_variable", "secret_name": "DEPLOY_TOKEN", "secret_value": env_value, "networking": {"type": "unrestricted"}}}),
    ];
    for c in creds {
        let created = call(Method::POST, &format!("/v1/vaults/{vid}/credentials"), Some(c)).await;
        call(Method::GET, &format!("/v1/vaults/{vid}/credentials/{}", created["id"].as_str().unwrap()), None).await;
    }
    call(Method::GET, &format!("/v1/vaults/{vid}/credentials"), None).await;
    let card = call(Method::POST, "/v1/model_cards", Some(json!({"name": "mine", "provider": "anthropic_compatible", "base_url": model.base_url(), "api_key": card_key, "models": ["claude-sonnet-4-6"]}))).await;
    call(Method::GET, &format!("/v1/model_cards/{}", card["id"].as_str().unwrap()), None).await;
    call(Method::GET, "/v1/model_cards", None).await;

    let agent = call(Method::POST, "/v1/agents", Some(json!({"name": "a", "model": "claude-sonnet-4-6",
        "mcp_servers": [{"type": "url", "name": "kb", "url": mcp_url}],
        "tools": [{"type": "agent_toolset_20260401"}, {"type": "mcp_toolset", "mcp_server_name": "kb", "default_config": {"permission_policy": {"type": "always_allow"}}}]}))).await;
    let s = call(Method::POST, "/v1/sessions", Some(json!({"agent": agent["id"], "vault_ids": [vid]}))).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    model.script(vec![
        Reply::tool_use("bash", json!({"command": "env; cat /proc/self/environ; ls -la / /mnt /workspace 2>&1; env > /workspace/env.txt; grep -rs SECRET /workspace /mnt /etc /tmp -l | head"})),
        Reply::tool_use("write", json!({"file_path": "/mnt/session/outputs/report.txt", "content": "nothing secret here"})),
        Reply::tool_use("mcp__kb__echo", json!({"text": "hello"})),
        Reply::text("done"),
    ]);
    call(Method::POST, &format!("/v1/sessions/{sid}/events"), Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "look around"}]}]}))).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let e = call(Method::GET, &format!("/v1/sessions/{sid}/events?limit=1000"), None).await;
        if e["data"].as_array().unwrap().iter().any(|e| e["type"] == "session.status_idle" || e["type"] == "session.status_terminated") {
            break e;
        }
        assert!(Instant::now() < deadline, "the turn did not settle: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let types: Vec<&str> = events["data"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"agent.tool_result") && !types.contains(&"session.error"), "the turn ran on the card: {types:?}");
    let mcp_result = events["data"].as_array().unwrap().iter().find(|e| e["type"] == "agent.mcp_tool_result").expect("the MCP call ran");
    assert_eq!(mcp_result["content"][0]["text"], "echo: hello", "the MCP server accepted the bearer token");
    assert_eq!(model.requests().len(), 4, "every model call went to the card's provider");
    call(Method::GET, &format!("/v1/sessions/{sid}"), None).await;
    call(Method::GET, &format!("/v1/files?scope_id={sid}"), None).await;

    // now look everywhere
    let mut places: Vec<(String, Vec<u8>)> = responses.iter().enumerate().map(|(i, r)| (format!("response #{i}"), r.clone().into_bytes())).collect();
    places.push(("event log".into(), events.to_string().into_bytes()));
    places.push(("server log".into(), std::fs::read(&log_path).unwrap()));
    files(&data, &mut places); // database (and WAL), root secret file, blobs, sandboxes
    let sandbox_files = places.iter().filter(|(p, _)| p.contains("/sandboxes/")).count();
    assert!(sandbox_files > 0 && places.iter().any(|(p, _)| p.ends_with("env.txt")), "the sandbox was scanned");
    assert!(places.iter().any(|(p, _)| p.contains("/blobs/")), "the blob store was scanned");
    assert!(places.iter().any(|(p, _)| p.ends_with("openma.db")), "the database was scanned");
    for secret in &secrets {
        for (place, bytes) in &places {
            assert!(!contains(bytes, secret), "a secret ({}) leaked into {place}", &secret[..secret.find('-').unwrap()]);
        }
    }
    let log = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    assert!(log.contains("DEBUG") || log.contains("debug"), "the log was written at debug level");
}
