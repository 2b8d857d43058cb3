//! `openma bench --scenario runtime`: the session runtime under an instant scripted
//! model. The server runs as a child process (the same binary), so its memory figures
//! are its own; the model is the in-process fake speaking Anthropic's wire format.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentile};

pub(crate) const KEY: &str = "sk-oma-bench-runtime-0123456789abcd";

pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

pub(crate) fn spawn_server(model: &str, dir: &std::path::Path, postgres: Option<&str>) -> anyhow::Result<ServerProcess> {
    spawn_server_with(model, dir, postgres, &[])
}

/// [`spawn_server`] with more environment (blob store, limits).
pub(crate) fn spawn_server_with(model: &str, dir: &std::path::Path, postgres: Option<&str>, env: &[(String, String)]) -> anyhow::Result<ServerProcess> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("OPENMA_BOOTSTRAP_API_KEY", KEY)
        .env("PLATFORM_ROOT_SECRET", "bench-root-secret-0123456789abcdefghijkl")
        .env("ANTHROPIC_API_KEY", "sk-ant-bench")
        .env("ANTHROPIC_BASE_URL", model)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = postgres {
        cmd.env("OPENMA_DATABASE_URL", url);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().context("cannot start the server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let base = line.trim().strip_prefix("openma listening on ").context("no ready line")?.to_owned();
    Ok(ServerProcess { child, base })
}

/// A minimal SSE reader for the benchmark's subscribers.
pub(crate) struct Subscriber {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Subscriber {
    pub(crate) async fn open(http: &reqwest::Client, base: &str, sid: &str) -> anyhow::Result<Subscriber> {
        let resp = http.get(format!("{base}/v1/sessions/{sid}/events/stream")).bearer_auth(KEY).send().await?.error_for_status()?;
        Ok(Subscriber { stream: Box::pin(resp.bytes_stream()), buf: String::new() })
    }

    /// The next event's type (pings skipped).
    async fn next_type(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                if let Some(kind) = raw.lines().find_map(|l| l.strip_prefix("event:")).map(|k| k.trim().to_owned())
                    && kind != "ping"
                {
                    return Ok(kind);
                }
                continue;
            }
            let chunk = self.stream.next().await.context("stream ended")??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    pub(crate) async fn until(&mut self, kind: &str) -> anyhow::Result<()> {
        while self.next_type().await? != kind {}
        Ok(())
    }
}

pub(crate) async fn post(http: &reqwest::Client, url: String, body: Value) -> anyhow::Result<Value> {
    Ok(http.post(url).bearer_auth(KEY).json(&body).send().await?.error_for_status()?.json().await?)
}

/// Runs `per` text turns on each `(node base URL, session)` at once, each turn waited for on
/// the session's stream.
pub(crate) async fn run_turns(http: &reqwest::Client, sessions: Vec<(String, String)>, per: usize) -> anyhow::Result<()> {
    let tasks = sessions.into_iter().map(|(base, sid)| {
        let http = http.clone();
        tokio::spawn(async move {
            let mut sub = Subscriber::open(&http, &base, &sid).await?;
            for _ in 0..per {
                post(&http, format!("{base}/v1/sessions/{sid}/events"), message()).await?;
                sub.until("session.status_idle").await?;
            }
            anyhow::Ok(())
        })
    });
    for t in futures::future::join_all(tasks).await {
        t??;
    }
    Ok(())
}

pub(crate) fn message() -> Value {
    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let model = openma_fake_model::FakeModel::start().await;
    let dir = std::env::temp_dir().join(format!("openma-bench-rt-{}", ulid::Ulid::new()));
    let server = spawn_server(&model.base_url(), &dir, args.postgres_url.as_deref())?;
    let base = server.base.clone();
    let pid = server.child.id();
    let http = reqwest::Client::builder().pool_max_idle_per_host(2048).build()?;
    let backend = if args.postgres_url.is_some() { "postgres" } else { "sqlite" };
    let rss_start = rss_kib(pid);
    println!("openma bench runtime — backend {backend}, instant scripted model (Anthropic wire format), server pid {pid}");

    let agent = post(&http, format!("{base}/v1/agents"), json!({"name": "bench", "model": "claude-sonnet-4-6"})).await?;
    let new_session = || {
        let (http, base, agent) = (http.clone(), base.clone(), agent["id"].clone());
        async move { anyhow::Ok(post(&http, format!("{base}/v1/sessions"), json!({"agent": agent})).await?["id"].as_str().unwrap_or_default().to_owned()) }
    };

    // 1. one session: POST → first frame, POST → idle
    let sid = new_session().await?;
    let mut sub = Subscriber::open(&http, &base, &sid).await?;
    let (mut first, mut turn) = (Vec::new(), Vec::new());
    for _ in 0..args.turns {
        let t = Instant::now();
        post(&http, format!("{base}/v1/sessions/{sid}/events"), message()).await?;
        sub.until("user.message").await?;
        first.push(t.elapsed());
        sub.until("session.status_idle").await?;
        turn.push(t.elapsed());
    }
    first.sort();
    turn.sort();
    println!("{:<44} {:>10} {:>10}", "figure", "p50 ms", "p99 ms");
    println!("{:<44} {:>10.2} {:>10.2}", "POST user.message -> its frame on the stream", ms(percentile(&first, 0.5)), ms(percentile(&first, 0.99)));
    println!("{:<44} {:>10.2} {:>10.2}", "text turn, POST -> session.status_idle", ms(percentile(&turn, 0.5)), ms(percentile(&turn, 0.99)));

    // 2. turns per second, 1 and 100 concurrent sessions
    for sessions in [1usize, 100] {
        let ids = futures::future::try_join_all((0..sessions).map(|_| new_session())).await?;
        let per = (args.turns / sessions.min(args.turns)).max(5);
        let start = Instant::now();
        run_turns(&http, ids.into_iter().map(|sid| (base.clone(), sid)).collect(), per).await?;
        let total = per * sessions;
        println!("{:<44} {:>10.0} turns/s ({total} turns)", format!("throughput, {sessions} concurrent session(s)"), total as f64 / start.elapsed().as_secs_f64());
    }

    // 3. fan-out: POST -> receipt on every subscriber
    for subscribers in [1usize, 1000] {
        let sid = new_session().await?;
        let mut subs = Vec::with_capacity(subscribers);
        let rss_before_streams = rss_kib(pid);
        for _ in 0..subscribers {
            subs.push(Subscriber::open(&http, &base, &sid).await?);
        }
        let rss_streams = rss_kib(pid);
        let rounds = if subscribers > 1 { 10 } else { args.turns.min(100) };
        let mut lat = Vec::new();
        for _ in 0..rounds {
            let t = Arc::new(Instant::now());
            let waits: Vec<_> = subs
                .drain(..)
                .map(|mut s| {
                    let t = t.clone();
                    tokio::spawn(async move {
                        s.until("user.message").await?;
                        let d = t.elapsed();
                        s.until("session.status_idle").await?;
                        anyhow::Ok((s, d))
                    })
                })
                .collect();
            post(&http, format!("{base}/v1/sessions/{sid}/events"), message()).await?;
            for w in futures::future::join_all(waits).await {
                let (s, d) = w??;
                lat.push(d);
                subs.push(s);
            }
        }
        lat.sort();
        println!(
            "{:<44} {:>10.2} {:>10.2}",
            format!("fan-out to {subscribers} subscriber(s), POST -> frame"),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99))
        );
        if subscribers == 1000 {
            let per = rss_streams.saturating_sub(rss_before_streams) as f64 / subscribers as f64;
            println!("{:<44} {:>10.1} KiB", "server memory per open stream", per);
        }
    }

    // 4. memory per session: 1000 sessions, each after one turn (actors still in memory)
    let rss_before = rss_kib(pid);
    let ids = futures::future::try_join_all((0..1000).map(|_| new_session())).await?;
    for chunk in ids.chunks(100) {
        futures::future::try_join_all(chunk.iter().map(|sid| post(&http, format!("{base}/v1/sessions/{sid}/events"), message()))).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    println!("{:<44} {:>10.1} KiB", "server memory per session with a live actor", rss_after.saturating_sub(rss_before) as f64 / 1000.0);
    println!("{:<44} {:>10} KiB", "server RSS at start / at end", format!("{rss_start} / {rss_after}"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
