//! `openma bench`: starts a real server (SQLite in a temporary data dir, or the
//! PostgreSQL database given) and measures agent and session creation over HTTP.
//! Prints figures; asserts nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::app;
use crate::config::{Overrides, Settings};

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Requests per scenario and concurrency level.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrency levels to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub clients: Vec<usize>,
    /// Benchmark against this PostgreSQL database instead of a fresh SQLite file.
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// A second PostgreSQL database, for the `metering` scenario's ledger-off server.
    #[arg(long)]
    pub postgres_url_b: Option<String>,
    /// What to measure: `api` (agent and session creation), `runtime` (turns, streams,
    /// fan-out, memory), `files` (upload and download throughput, server memory), `memory` (tool calls on a
    /// mounted memory store), `mcp` (MCP tool calls against a direct client), `metering` (turn
    /// latency with the billing ledger on and off, side by side), `sandbox` (turns on the local
    /// sandbox and on a remote sandbox server, side by side), `cluster` (nodes on one
    /// PostgreSQL: cross-node fan-out, takeover, 1 vs 3 nodes; needs `--postgres-url`) or
    /// `all` (every one but `cluster`).
    #[arg(long, default_value = "all")]
    pub scenario: Scenario,
    /// Turns per runtime figure.
    #[arg(long, default_value_t = 200)]
    pub turns: usize,
    /// Size of the file the `files` scenario uploads and downloads, in MiB.
    #[arg(long, default_value_t = 200)]
    pub file_mb: u64,
    /// Repetitions of each takeover in the `cluster` scenario.
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Lease TTL of the `cluster` scenario's nodes, in milliseconds (the takeover bound).
    #[arg(long, default_value_t = 6000)]
    pub lease_ttl_ms: u64,
    /// Blob store of the `files` scenario (e.g. `s3://bucket?endpoint=…`; credentials from
    /// `AWS_*`) instead of a local directory.
    #[arg(long)]
    pub blob_url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Api,
    Runtime,
    Files,
    Memory,
    Mcp,
    Metering,
    Sandbox,
    Cluster,
    All,
}

/// Latency figures of one run.
pub struct Figures {
    pub throughput: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn measure<F, Fut>(requests: usize, clients: usize, op: F) -> anyhow::Result<Figures>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        let share = requests / clients + usize::from(c < requests % clients);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(share);
            for i in 0..share {
                let t = Instant::now();
                op(c * 1_000_000 + i).await?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = start.elapsed();
    all.sort();
    Ok(Figures { throughput: all.len() as f64 / wall.as_secs_f64(), p50: percentile(&all, 0.5), p99: percentile(&all, 0.99) })
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    openma_models::install_tls_provider();
    if matches!(args.scenario, Scenario::Api | Scenario::All) {
        run_api(args).await?;
    }
    if matches!(args.scenario, Scenario::Runtime | Scenario::All) {
        crate::bench_runtime::run(args).await?;
    }
    if matches!(args.scenario, Scenario::Files | Scenario::All) {
        crate::bench_files::run(args).await?;
    }
    if matches!(args.scenario, Scenario::Memory | Scenario::All) {
        crate::bench_memory::run(args).await?;
    }
    if matches!(args.scenario, Scenario::Mcp | Scenario::All) {
        crate::bench_mcp::run(args).await?;
    }
    if args.scenario == Scenario::Cluster {
        crate::bench_cluster::run(args).await?;
    }
    if matches!(args.scenario, Scenario::Metering | Scenario::All) {
        crate::bench_metering::run(args).await?;
    }
    if matches!(args.scenario, Scenario::Sandbox | Scenario::All) {
        crate::bench_sandbox::run(args).await?;
    }
    Ok(())
}

async fn run_api(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("openma-bench-{}", ulid::Ulid::new()));
    let key = "sk-oma-bench-0123456789abcdefghijkl".to_owned();
    let settings = Settings::resolve(Overrides {
        data_dir: Some(dir.clone()),
        listen: Some("127.0.0.1:0".parse()?),
        database_url: args.postgres_url.clone(),
        bootstrap_api_key: Some(key.clone()),
        root_secret: Some(format!("bench-root-secret-{}", ulid::Ulid::new())),
        ..Default::default()
    })?;
    let backend = if args.postgres_url.is_some() { "postgres" } else { "sqlite" };
    let prepared = app::prepare(&settings).await?;
    let base = format!("http://{}", prepared.addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(prepared, async {
        let _ = stop_rx.await;
    }));
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let auth = format!("Bearer {key}");

    let agent: serde_json::Value = http
        .post(format!("{base}/v1/agents"))
        .header("authorization", &auth)
        .json(&json!({"name": "bench", "model": "claude-sonnet-4-6"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let agent_id = agent["id"].as_str().unwrap_or_default().to_owned();

    println!("openma bench — backend {backend}, {} requests per row, HTTP/1.1 keep-alive on loopback", args.requests);
    println!("{:<16} {:>8} {:>12} {:>10} {:>10}", "operation", "clients", "req/s", "p50 ms", "p99 ms");
    for &clients in &args.clients {
        for op in ["agent-create", "session-create"] {
            let (http, base, auth, agent_id) = (http.clone(), base.clone(), auth.clone(), agent_id.clone());
            let f = measure(args.requests, clients.max(1), move |i| {
                let (http, base, auth, agent_id) = (http.clone(), base.clone(), auth.clone(), agent_id.clone());
                async move {
                    let (path, body) = if op == "agent-create" {
                        ("agents", json!({"name": format!("bench-{i}"), "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}))
                    } else {
                        ("sessions", json!({"agent": agent_id}))
                    };
                    http.post(format!("{base}/v1/{path}")).header("authorization", &auth).json(&body).send().await?.error_for_status()?;
                    anyhow::Ok(())
                }
            })
            .await?;
            println!(
                "{:<16} {:>8} {:>12.0} {:>10.2} {:>10.2}",
                op,
                clients,
                f.throughput,
                f.p50.as_secs_f64() * 1000.0,
                f.p99.as_secs_f64() * 1000.0
            );
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
