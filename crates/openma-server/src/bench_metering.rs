//! `openma bench --scenario metering`: what the billing ledger costs on the hot path. Two
//! servers run side by side on the same kind of store, one writing the ledger and one with
//! it off (`OPENMA_UNSAFE_DISABLE_LEDGER=1`, a bench-only switch); turns alternate between
//! them so drift (disk, the other load on the machine) falls on both alike.
//!
//! Two kinds of turn: a text turn (one model request: its token rows and the running-time
//! row) and a tool turn (the scripted model calls `web_fetch` on an address the server
//! refuses, then answers: two model requests' token rows and the running-time row). Each
//! row is written in the transaction that appends its event.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentile};
use crate::bench_runtime::{KEY, ServerProcess, Subscriber, spawn_server_with};

async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    Ok(http.post(url).bearer_auth(KEY).json(&body).send().await?.error_for_status()?.json().await?)
}

async fn get(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    Ok(http.get(url).bearer_auth(KEY).send().await?.error_for_status()?.json().await?)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One server under test, with its session and a stream of it.
struct Side {
    server: ServerProcess,
    session: String,
    stream: Subscriber,
    text_turns: Vec<Duration>,
    tool_turns: Vec<Duration>,
}

impl Side {
    async fn start(http: &reqwest::Client, model: &str, dir: &std::path::Path, postgres: Option<&str>, ledger: bool) -> anyhow::Result<Side> {
        let env: Vec<(String, String)> = if ledger { Vec::new() } else { vec![("OPENMA_UNSAFE_DISABLE_LEDGER".into(), "1".into())] };
        let server = spawn_server_with(model, dir, postgres, &env)?;
        let base = &server.base;
        let tools = json!([{"type": "agent_toolset_20260401", "default_config": {"enabled": false}, "configs": [{"name": "web_fetch", "enabled": true}]}]);
        let agent = post(http, format!("{base}/v1/agents"), json!({"name": "bench", "model": "claude-sonnet-4-6", "tools": tools})).await?;
        let session = post(http, format!("{base}/v1/sessions"), json!({"agent": agent["id"]})).await?["id"].as_str().unwrap_or_default().to_owned();
        let stream = Subscriber::open(http, base, &session).await?;
        Ok(Side { server, session, stream, text_turns: Vec::new(), tool_turns: Vec::new() })
    }

    /// One turn, POST → its `session.status_idle` on the stream.
    async fn turn(&mut self, http: &reqwest::Client, model: &openma_fake_model::FakeModel, tool: bool) -> anyhow::Result<()> {
        use openma_fake_model::{Reply, ScriptUsage};
        let usage = ScriptUsage { input_tokens: 1200, output_tokens: 80, ..Default::default() };
        let answer = Reply::text("done").usage(usage);
        model.script(match tool {
            true => vec![Reply::tool_use("web_fetch", json!({"url": "http://127.0.0.1:9/refused"})).usage(usage), answer],
            false => vec![answer],
        });
        let (base, sid) = (&self.server.base, &self.session);
        let t = Instant::now();
        post(http, format!("{base}/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await?;
        self.stream.until("session.status_idle").await?;
        match tool {
            true => self.tool_turns.push(t.elapsed()),
            false => self.text_turns.push(t.elapsed()),
        }
        Ok(())
    }

    async fn ledger_rows(&self, http: &reqwest::Client) -> anyhow::Result<i64> {
        let report = get(http, format!("{}/v1/usage?group_by=kind", self.server.base)).await?;
        Ok(report["data"].as_array().map_or(0, |d| d.iter().filter(|l| l["kind"] == "input_tokens").filter_map(|l| l["quantity"].as_i64()).sum()))
    }
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.postgres_url.is_none() || args.postgres_url_b.is_some(), "the metering scenario on PostgreSQL needs a second database: --postgres-url-b");
    let model = openma_fake_model::FakeModel::start().await;
    let root = std::env::temp_dir().join(format!("openma-bench-metering-{}", ulid::Ulid::new()));
    let http = reqwest::Client::new();
    let mut on = Side::start(&http, &model.base_url(), &root.join("on"), args.postgres_url.as_deref(), true).await?;
    let mut off = Side::start(&http, &model.base_url(), &root.join("off"), args.postgres_url_b.as_deref(), false).await?;
    let backend = if args.postgres_url.is_some() { "postgres" } else { "sqlite" };
    println!("openma bench metering — backend {backend}, {} text and {} tool turns per side, alternating, instant scripted model", args.turns, args.turns);
    // warm-up, not measured
    for tool in [false, true, false, true] {
        on.turn(&http, &model, tool).await?;
        off.turn(&http, &model, tool).await?;
    }
    for side in [&mut on, &mut off] {
        side.text_turns.clear();
        side.tool_turns.clear();
    }
    for i in 0..args.turns * 2 {
        let tool = i % 2 == 1;
        if (i / 2) % 2 == 0 {
            on.turn(&http, &model, tool).await?;
            off.turn(&http, &model, tool).await?;
        } else {
            off.turn(&http, &model, tool).await?;
            on.turn(&http, &model, tool).await?;
        }
    }
    println!("{:<34} {:>10} {:>10}", "POST -> session.status_idle", "p50 ms", "p99 ms");
    for (label, a, b) in [("text turn", &mut on.text_turns, &mut off.text_turns), ("tool turn", &mut on.tool_turns, &mut off.tool_turns)] {
        a.sort();
        b.sort();
        let (on50, on99) = (percentile(a, 0.5), percentile(a, 0.99));
        let (off50, off99) = (percentile(b, 0.5), percentile(b, 0.99));
        println!("{:<34} {:>10.2} {:>10.2}", format!("{label}, ledger on"), ms(on50), ms(on99));
        println!("{:<34} {:>10.2} {:>10.2}", format!("{label}, ledger off"), ms(off50), ms(off99));
        println!("{:<34} {:>10.3} {:>10.3}", format!("{label}, ratio on / off"), ms(on50) / ms(off50), ms(on99) / ms(off99));
    }
    // the switch did what it says: input tokens counted on one side only
    let (rows_on, rows_off) = (on.ledger_rows(&http).await?, off.ledger_rows(&http).await?);
    println!("ledger input tokens: on {rows_on}, off {rows_off}");
    anyhow::ensure!(rows_on > 0 && rows_off == 0, "the ledger switch did not take effect (on {rows_on}, off {rows_off})");
    drop(on);
    drop(off);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
