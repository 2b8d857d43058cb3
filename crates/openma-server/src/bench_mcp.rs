//! `openma bench --scenario mcp`: what the platform adds to an MCP tool call. A fake MCP
//! server (in process, bearer-protected, answering JSON) is called two ways in one run:
//! directly with the same MCP client library (`rmcp`, one connection, `tools/call` in a
//! loop) — the baseline — and by sessions of the server (a child process), where the
//! scripted model calls the tool and the figure is the time between the
//! `agent.mcp_tool_use` and `agent.mcp_tool_result` events of the log (credential look-up,
//! the call, the result's append).

use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use openma_fake_model::{FakeModel, Reply};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentile};
use crate::bench_runtime::{KEY, spawn_server_with};

const TOKEN: &str = "bench-mcp-token";

async fn fake_mcp(headers: HeaderMap, body: String) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer bench-mcp-token") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let id = req["id"].clone();
    if id.is_null() {
        return StatusCode::ACCEPTED.into_response();
    }
    let result = match req["method"].as_str() {
        Some("initialize") => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "bench", "version": "1"}}),
        Some("tools/list") => json!({"tools": [{"name": "echo", "description": "echo", "inputSchema": {"type": "object"}}]}),
        Some("tools/call") => json!({"content": [{"type": "text", "text": "pong"}]}),
        _ => json!({}),
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let calls = args.turns.max(10);
    let app = axum::Router::new().route("/mcp", axum::routing::post(fake_mcp).get(|| async { StatusCode::METHOD_NOT_ALLOWED }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // baseline: the MCP client library straight to the server
    let config = StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(TOKEN);
    let client = ().serve(StreamableHttpClientTransport::with_client(reqwest::Client::new(), config)).await.context("MCP handshake")?;
    let mut direct = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        client.call_tool(CallToolRequestParams::new("echo").with_arguments(serde_json::Map::new())).await?;
        direct.push(t.elapsed());
    }
    direct.sort();
    let _ = client.cancel().await;

    // through sessions of the platform
    let model = FakeModel::start().await;
    let dir = std::env::temp_dir().join(format!("openma-bench-mcp-{}", ulid::Ulid::new()));
    let env = [("OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES".to_owned(), "1".to_owned())];
    let server = spawn_server_with(&model.base_url(), &dir, args.postgres_url.as_deref(), &env)?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { anyhow::Ok(http.post(url).bearer_auth(KEY).json(&body).send().await?.error_for_status()?.json::<Value>().await?) }
    };
    let vault = post("/v1/vaults".into(), json!({"display_name": "bench"})).await?;
    let vid = vault["id"].as_str().context("vault id")?.to_owned();
    post(format!("/v1/vaults/{vid}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": url, "token": TOKEN}})).await?;
    let agent = post("/v1/agents".into(), json!({"name": "bench", "model": "claude-sonnet-4-6",
        "mcp_servers": [{"type": "url", "name": "bench", "url": url}],
        "tools": [{"type": "mcp_toolset", "mcp_server_name": "bench", "default_config": {"permission_policy": {"type": "always_allow"}}}]}))
    .await?;
    let session = post("/v1/sessions".into(), json!({"agent": agent["id"], "vault_ids": [vid]})).await?;
    let sid = session["id"].as_str().context("session id")?.to_owned();
    let mut replies = Vec::new();
    for _ in 0..calls {
        replies.push(Reply::tool_use("mcp__bench__echo", json!({})));
    }
    replies.push(Reply::text("done"));
    model.script(replies);
    let started = Instant::now();
    post(format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await?;
    let events = loop {
        let page: Value = http.get(format!("{base}/v1/sessions/{sid}/events?limit=1000")).bearer_auth(KEY).send().await?.json().await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if data.iter().any(|e| e["type"] == "session.status_idle") {
            break data;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "the session did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let at = |e: &Value| serde_json::from_value::<openma_types::Timestamp>(e["processed_at"].clone()).ok().map(|t| t.as_micros());
    let mut through = Vec::new();
    for use_ev in events.iter().filter(|e| e["type"] == "agent.mcp_tool_use") {
        let Some(result) = events.iter().find(|e| e["type"] == "agent.mcp_tool_result" && e["mcp_tool_use_id"] == use_ev["id"]) else { continue };
        anyhow::ensure!(result["is_error"] == false, "an MCP call failed: {result}");
        if let (Some(a), Some(b)) = (at(use_ev), at(result)) {
            through.push(Duration::from_micros((b - a).max(0) as u64));
        }
    }
    through.sort();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(through.len() == calls, "{} of {calls} MCP calls completed", through.len());
    let (d50, d99, s50, s99) = (percentile(&direct, 0.5), percentile(&direct, 0.99), percentile(&through, 0.5), percentile(&through, 0.99));
    println!("openma bench mcp — {calls} tools/call round trips to a local fake MCP server");
    println!("  direct (rmcp client, one connection)   p50 {:.3} ms  p99 {:.3} ms", ms(d50), ms(d99));
    println!("  session (tool_use → tool_result)       p50 {:.3} ms  p99 {:.3} ms", ms(s50), ms(s99));
    println!("  overhead of the platform               p50 {:+.3} ms  p99 {:+.3} ms  (ratio p50 {:.2}×)", ms(s50) - ms(d50), ms(s99) - ms(d99), ms(s50) / ms(d50).max(1e-9));
    Ok(())
}
