//! `openma bench --scenario sandbox`: what a remote sandbox (`OPENMA_SANDBOX_URL`, an
//! `openma-sandbox-server` on loopback) costs a turn, next to the local bubblewrap sandbox.
//! Two servers as child processes run the same turns — one bash write, then a text reply —
//! first in an empty workspace, then in one of 2,000 small files (a remote turn ends by taking
//! the session's directory back, so its size shows); then turns of one call to an
//! environment's stdio MCP server (a program in the session's sandbox: over a pipe locally,
//! through the sandbox server's streamable-HTTP bridge remotely). Scripted model in process.

use std::time::Duration;

use anyhow::Context;
use openma_fake_model::FakeModel;
use serde_json::json;

use crate::bench::{BenchArgs, percentile};
use crate::bench_memory::{call, one_turn, turns};
use crate::bench_runtime::{spawn_server, spawn_server_with};

const TOKEN: &str = "bench-sandbox-token-0123456789abcdef";


/// A sandbox server in this process; its listener's URL.
async fn sandbox_server(root: &std::path::Path) -> anyhow::Result<String> {
    let mut config = openma_sandbox::SandboxConfig::new(root);
    // networked sandboxes run the bridge: this very binary answers `sandbox-bridge`
    config.egress.bridge = std::env::current_exe()?;
    let credentials = openma_sandbox_server::HeldCredentials::install(&mut config);
    let server = openma_sandbox_server::Server::new(openma_sandbox::Sandboxes::new(config), TOKEN.to_owned().into(), credentials);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(server.serve(listener, std::future::pending()));
    Ok(url)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if openma_sandbox::Sandboxes::check().is_err() {
        println!("openma bench sandbox — skipped: bubblewrap is not available");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("openma-bench-sbx-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    let url = sandbox_server(&dir.join("remote/sessions")).await?;
    let model = FakeModel::start().await;
    let local = spawn_server(&model.base_url(), &dir.join("local"), args.postgres_url.as_deref())?;
    let env = [("OPENMA_SANDBOX_URL".to_owned(), url), ("OPENMA_SANDBOX_TOKEN".to_owned(), TOKEN.to_owned())];
    let remote = spawn_server_with(&model.base_url(), &dir.join("remote-cp"), args.postgres_url_b.as_deref().or(args.postgres_url.as_deref()), &env)?;
    let http = reqwest::Client::new();
    let mut agents = Vec::new();
    for base in [&local.base, &remote.base] {
        let agent = call(&http, reqwest::Method::POST, format!("{base}/v1/agents"), Some(json!({"name": "bench", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]}))).await?;
        agents.push(agent["id"].as_str().context("agent id")?.to_owned());
    }
    let n = args.turns.clamp(10, 300);
    println!("openma bench sandbox — {n} turns each: one bash write, then a text reply; local bubblewrap vs a sandbox server on loopback");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{:<58} {:>10} {:>10}", "figure", "p50 ms", "p99 ms");
    for (label, populate) in [("empty workspace", false), ("workspace of 2,000 files of 1 KiB", true)] {
        let mut figures = Vec::new();
        // a fresh session per figure: the turn-end poll reads the session's idle events
        for (base, agent) in [(&local.base, &agents[0]), (&remote.base, &agents[1])] {
            let s = call(&http, reqwest::Method::POST, format!("{base}/v1/sessions"), Some(json!({"agent": agent}))).await?;
            let sid = s["id"].as_str().context("session id")?;
            if populate {
                model.script(vec![
                    openma_fake_model::Reply::tool_use("bash", json!({"command": "mkdir -p /workspace/tree && cd /workspace/tree && for i in $(seq 1 2000); do head -c 1024 /dev/zero > f$i; done"})),
                    openma_fake_model::Reply::text("ok"),
                ]);
                one_turn(&http, base, sid).await?;
            }
            // a warm-up turn starts the shell
            let mut t = turns(&http, base, &model, sid, "/workspace/note.txt", n + 1).await?;
            t.remove(t.len() - 1);
            figures.push(t);
        }
        let (a, b) = (&figures[0], &figures[1]);
        println!("{:<58} {:>10.2} {:>10.2}", format!("local sandbox, {label}"), ms(percentile(a, 0.5)), ms(percentile(a, 0.99)));
        println!("{:<58} {:>10.2} {:>10.2}", format!("remote sandbox, {label}"), ms(percentile(b, 0.5)), ms(percentile(b, 0.99)));
        println!("{:<58} {:>10.2}x", "ratio remote/local (p50)", percentile(b, 0.5).as_secs_f64() / percentile(a, 0.5).as_secs_f64());
    }
    let mut figures = Vec::new();
    for (base, agent) in [(&local.base, &agents[0]), (&remote.base, &agents[1])] {
        let server = json!({"type": "stdio", "name": "echo", "command": ["python3", "-u", "-c", openma_fake_model::STDIO_MCP_SERVER], "default_config": {"permission_policy": {"type": "always_allow"}}});
        let env = call(&http, reqwest::Method::POST, format!("{base}/v1/environments"), Some(json!({"name": "bench-stdio", "config": {"type": "cloud", "mcp_servers": [server]}}))).await?;
        let s = call(&http, reqwest::Method::POST, format!("{base}/v1/sessions"), Some(json!({"agent": agent, "environment_id": env["id"]}))).await?;
        let sid = s["id"].as_str().context("session id")?;
        let mut t = Vec::with_capacity(n + 1);
        // the first turn starts the program (a warm-up, dropped)
        for _ in 0..=n {
            model.script(vec![openma_fake_model::Reply::tool_use("mcp__echo__echo", json!({})), openma_fake_model::Reply::text("ok")]);
            t.push(one_turn(&http, base, sid).await?);
        }
        let results = call(&http, reqwest::Method::GET, format!("{base}/v1/sessions/{sid}/events?types[]=agent.mcp_tool_result&limit=1000"), None).await?;
        let ok = results["data"].as_array().map_or(0, |d| d.iter().filter(|e| e["is_error"] == false).count());
        anyhow::ensure!(ok == n + 1, "{ok} of {} stdio MCP calls succeeded on {base}", n + 1);
        t.remove(0);
        t.sort();
        figures.push(t);
    }
    let (a, b) = (&figures[0], &figures[1]);
    println!("{:<58} {:>10.2} {:>10.2}", "local sandbox, one stdio MCP call", ms(percentile(a, 0.5)), ms(percentile(a, 0.99)));
    println!("{:<58} {:>10.2} {:>10.2}", "remote sandbox, one stdio MCP call (bridge)", ms(percentile(b, 0.5)), ms(percentile(b, 0.99)));
    println!("{:<58} {:>10.2}x", "ratio remote/local (p50)", percentile(b, 0.5).as_secs_f64() / percentile(a, 0.5).as_secs_f64());
    drop((local, remote));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
