//! `openma bench --scenario memory`: what a mounted memory store adds to a tool call. Two
//! sessions run the same turns — a bash call writing one small file, then a text reply —
//! one writing into `/workspace`, the other into a read-write memory store of 50
//! memories; the latter's write is a memory version by the time the turn is idle (the
//! figure checks it). Server as a child process, scripted model in process.

use std::time::{Duration, Instant};

use anyhow::Context;
use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentile};
use crate::bench_runtime::{KEY, spawn_server};

pub(crate) async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> anyhow::Result<Value> {
    let mut req = http.request(method, url).bearer_auth(KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// How many turns of the session have ended (`session.status_idle` events in its log).
pub(crate) async fn idle_count(http: &reqwest::Client, base: &str, sid: &str) -> anyhow::Result<usize> {
    let idle = call(http, reqwest::Method::GET, format!("{base}/v1/sessions/{sid}/events?types[]=session.status_idle&limit=1000"), None).await?;
    Ok(idle["data"].as_array().map_or(0, Vec::len))
}

/// Sends a user message (the model's answer already scripted) and waits for the turn's
/// `session.status_idle` in the log; returns the POST → idle latency.
pub(crate) async fn one_turn(http: &reqwest::Client, base: &str, sid: &str) -> anyhow::Result<Duration> {
    let before = idle_count(http, base, sid).await?;
    let t = Instant::now();
    call(http, reqwest::Method::POST, format!("{base}/v1/sessions/{sid}/events"), Some(json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]}))).await?;
    while idle_count(http, base, sid).await? == before {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(120), "the turn did not end within 120 s");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(t.elapsed())
}

/// Runs `turns` turns of one bash write each; returns the sorted POST → idle latencies.
pub(crate) async fn turns(http: &reqwest::Client, base: &str, model: &FakeModel, sid: &str, path: &str, turns: usize) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(turns);
    for i in 0..turns {
        model.script(vec![Reply::tool_use("bash", json!({"command": format!("echo {i} > {path}")})), Reply::text("ok")]);
        out.push(one_turn(http, base, sid).await?);
    }
    out.sort();
    Ok(out)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if openma_sandbox::Sandboxes::check().is_err() {
        println!("openma bench memory — skipped: bubblewrap is not available");
        return Ok(());
    }
    let model = FakeModel::start().await;
    let dir = std::env::temp_dir().join(format!("openma-bench-mem-{}", ulid::Ulid::new()));
    let server = spawn_server(&model.base_url(), &dir, args.postgres_url.as_deref())?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    use reqwest::Method;
    let store = call(&http, Method::POST, format!("{base}/v1/memory_stores"), Some(json!({"name": "bench"}))).await?;
    let store_id = store["id"].as_str().context("store id")?.to_owned();
    for i in 0..50 {
        call(&http, Method::POST, format!("{base}/v1/memory_stores/{store_id}/memories"), Some(json!({"path": format!("/notes/{i}.md"), "content": "x".repeat(200)}))).await?;
    }
    let agent = call(&http, Method::POST, format!("{base}/v1/agents"), Some(json!({"name": "bench", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}))).await?;
    let plain = call(&http, Method::POST, format!("{base}/v1/sessions"), Some(json!({"agent": agent["id"]}))).await?;
    let mounted = call(&http, Method::POST, format!("{base}/v1/sessions"), Some(json!({"agent": agent["id"], "resources": [{"type": "memory_store", "memory_store_id": store_id}]}))).await?;
    let n = args.turns.clamp(10, 200);
    println!("openma bench memory — {n} turns each: one bash write, then a text reply; store of 50 memories");
    let a = turns(&http, &base, &model, plain["id"].as_str().unwrap_or_default(), "/workspace/note.md", n).await?;
    let b = turns(&http, &base, &model, mounted["id"].as_str().unwrap_or_default(), "/mnt/memory/bench/note.md", n).await?;
    let versions = call(&http, Method::GET, format!("{base}/v1/memory_stores/{store_id}/memory_versions?limit=100"), None).await?;
    let by_session = versions["data"].as_array().map_or(0, |v| v.iter().filter(|v| v["created_by"]["type"] == "session_actor").count());
    anyhow::ensure!(by_session >= n.min(50), "the session's writes were not versions by the end of their turns ({by_session})");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{:<52} {:>10} {:>10}", "figure", "p50 ms", "p99 ms");
    println!("{:<52} {:>10.2} {:>10.2}", "turn with a bash write to /workspace", ms(percentile(&a, 0.5)), ms(percentile(&a, 0.99)));
    println!("{:<52} {:>10.2} {:>10.2}", "same, writing a mounted memory (version saved)", ms(percentile(&b, 0.5)), ms(percentile(&b, 0.99)));
    println!("{:<52} {:>10.2}x", "ratio (p50)", percentile(&b, 0.5).as_secs_f64() / percentile(&a, 0.5).as_secs_f64());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
