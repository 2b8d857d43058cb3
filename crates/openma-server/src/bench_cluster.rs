//! `openma bench --scenario cluster --postgres-url …`: nodes of this binary in cluster mode
//! on one PostgreSQL database, the scripted model in process. Measures cross-node fan-out
//! (the same events' arrival on the owner's streams and on other nodes' streams, side by
//! side), takeover after `kill -9` of the owner and after SIGTERM (repeated trials), and
//! session-create and turn throughput with 1 node and with 3.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::bench::{BenchArgs, percentile};
use crate::bench_runtime::{ServerProcess, Subscriber, message, ms, post, run_turns, spawn_server_with};

struct Nodes {
    dir: std::path::PathBuf,
    model: String,
    postgres: String,
    lease_ttl_ms: u64,
}

impl Nodes {
    fn start(&self, name: &str) -> anyhow::Result<ServerProcess> {
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data)?;
        let env = [
            ("OPENMA_CLUSTER", "true".to_owned()),
            ("OPENMA_NODE_ID", name.to_owned()),
            ("OPENMA_LEASE_TTL_MS", self.lease_ttl_ms.to_string()),
            ("OPENMA_BLOB_URL", format!("file://{}", self.dir.join("blobs").display())),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        spawn_server_with(&self.model, &data, Some(&self.postgres), &env)
    }
}

fn row(label: &str, mut v: Vec<Duration>) {
    v.sort();
    println!("{label:<58} {:>9.2} {:>9.2} {:>9.2}", ms(percentile(&v, 0.5)), ms(percentile(&v, 0.99)), ms(*v.last().unwrap_or(&Duration::ZERO)));
}

async fn session(http: &reqwest::Client, base: &str, agent: &Value) -> anyhow::Result<String> {
    Ok(post(http, format!("{base}/v1/sessions"), json!({"agent": agent})).await?["id"].as_str().context("no id")?.to_owned())
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let postgres = args.postgres_url.clone().context("the cluster scenario needs --postgres-url (one database the nodes share)")?;
    let model = openma_fake_model::FakeModel::start().await;
    let dir = std::env::temp_dir().join(format!("openma-bench-cluster-{}", ulid::Ulid::new()));
    let nodes = Nodes { dir: dir.clone(), model: model.base_url(), postgres, lease_ttl_ms: args.lease_ttl_ms };
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    println!("openma bench cluster — PostgreSQL, lease TTL {} ms, instant scripted model (Anthropic wire format)", args.lease_ttl_ms);
    println!("{:<58} {:>9} {:>9} {:>9}", "figure", "p50 ms", "p99 ms", "max ms");

    // 1. fan-out: the owner's own streams next to two other nodes' streams
    let a = nodes.start("node-a")?;
    let b = nodes.start("node-b")?;
    let c = nodes.start("node-c")?;
    let agent = post(&http, format!("{}/v1/agents", a.base), json!({"name": "bench", "model": "claude-sonnet-4-6"})).await?["id"].clone();
    let sid = session(&http, &a.base, &agent).await?;
    let per_node = 10;
    let mut subs = Vec::new();
    for (i, node) in [&a, &b, &c].into_iter().enumerate() {
        for _ in 0..per_node {
            subs.push((i, Subscriber::open(&http, &node.base, &sid).await?));
        }
    }
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    let rounds = args.turns.clamp(10, 200);
    for _ in 0..rounds {
        let t = Arc::new(Instant::now());
        let waits: Vec<_> = subs
            .drain(..)
            .map(|(i, mut s)| {
                let t = t.clone();
                tokio::spawn(async move {
                    s.until("user.message").await?;
                    let d = t.elapsed();
                    s.until("session.status_idle").await?;
                    anyhow::Ok((i, s, d))
                })
            })
            .collect();
        post(&http, format!("{}/v1/sessions/{sid}/events", a.base), message()).await?;
        for w in futures::future::join_all(waits).await {
            let (i, s, d) = w??;
            if i == 0 { local.push(d) } else { remote.push(d) }
            subs.push((i, s));
        }
    }
    drop(subs);
    row(&format!("POST -> frame, {per_node} streams on the owning node"), local);
    row(&format!("POST -> frame, {} streams on 2 other nodes", 2 * per_node), remote);

    // 2. takeover: the owner killed mid-turn (kill -9), and stopped (SIGTERM)
    let trials = args.trials.max(1);
    for (k, how) in ["kill -9", "SIGTERM"].into_iter().enumerate() {
        let mut times = Vec::new();
        for t in 0..trials {
            let x = nodes.start(&format!("node-x{k}-{t}"))?;
            let sid = session(&http, &b.base, &agent).await?;
            let mut watch = Subscriber::open(&http, &b.base, &sid).await?;
            let before = model.requests().len();
            model.script(vec![openma_fake_model::Reply::text("slow ".repeat(2000)).delay_ms(50)]);
            post(&http, format!("{}/v1/sessions/{sid}/events", x.base), message()).await?;
            let deadline = Instant::now() + Duration::from_secs(10);
            while model.requests().len() == before {
                anyhow::ensure!(Instant::now() < deadline, "the model was never called");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            watch.until("span.model_request_start").await?;
            let start = Instant::now();
            if how == "kill -9" {
                drop(x);
            } else {
                std::process::Command::new("kill").arg("-TERM").arg(x.child.id().to_string()).status()?;
                let mut x = x;
                tokio::task::spawn_blocking(move || x.child.wait());
            }
            // the next node closes the cut request first thing when it takes over
            watch.until("span.model_request_end").await?;
            times.push(start.elapsed());
            watch.until("session.status_idle").await?;
        }
        row(&format!("takeover after {how} of the owner ({trials} trials)"), times);
    }
    drop((a, b, c));

    // 3. throughput with 1 node and with 3, clients spread over the nodes
    println!("{:<58} {:>12} {:>12}", "throughput", "1 node", "3 nodes");
    let mut creates = Vec::new();
    let mut turns = Vec::new();
    for n in [1usize, 3] {
        let running: Vec<ServerProcess> = (0..n).map(|i| nodes.start(&format!("node-t{n}-{i}"))).collect::<anyhow::Result<_>>()?;
        let bases: Arc<Vec<String>> = Arc::new(running.iter().map(|s| s.base.clone()).collect());
        let requests = args.requests.min(2000);
        let start = Instant::now();
        let made: Vec<String> = futures::future::try_join_all((0..32).map(|c| {
            let (http, bases, agent) = (http.clone(), bases.clone(), agent.clone());
            async move {
                let mut ids = Vec::new();
                for i in 0..requests / 32 {
                    ids.push(session(&http, &bases[(c + i) % bases.len()], &agent).await?);
                }
                anyhow::Ok(ids)
            }
        }))
        .await?
        .into_iter()
        .flatten()
        .collect();
        creates.push(made.len() as f64 / start.elapsed().as_secs_f64());
        let per = (args.turns / 30).max(5);
        let start = Instant::now();
        run_turns(&http, made.into_iter().take(30).enumerate().map(|(i, sid)| (bases[i % bases.len()].clone(), sid)).collect(), per).await?;
        turns.push((30 * per) as f64 / start.elapsed().as_secs_f64());
    }
    println!("{:<58} {:>12.0} {:>12.0}", "session create /s (32 clients)", creates[0], creates[1]);
    println!("{:<58} {:>12.0} {:>12.0}", "turns /s (30 sessions)", turns[0], turns[1]);
    println!("(all nodes share this machine's cores and its one PostgreSQL server)");
    let _ = std::fs::remove_dir_all(&dir);
    packs(&dir.with_extension("packs")).await
}

/// What cluster mode adds to the end of every turn (packing the session's sandbox directory
/// into the blob store) and to a session's first turn on another node (unpacking it), for
/// workspaces of three shapes. Text-like content, so compression does some work.
async fn packs(dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::session_snapshots::Snapshots;
    let sandboxes = openma_sandbox::Sandboxes::new(openma_sandbox::SandboxConfig::new(dir.join("sandboxes")));
    let blobs: Arc<dyn openma_core::ports::BlobStore> = Arc::new(crate::blobs::ObjectBlobs::open(&crate::blobs::BlobUrl::Local(dir.join("blobs")))?);
    let snapshots = Snapshots::new(sandboxes.clone(), blobs, Arc::new(crate::adapters::UlidIds::default()));
    println!("{:<34} {:>7} {:>8} {:>8} {:>10} {:>10}", "workspace (local blob store)", "MiB", "pack MiB", "pack ms", "unpack ms", "same ms");
    for (label, files, lines) in [("200 files of ~4 KiB", 200usize, 64usize), ("5,000 files of ~4 KiB", 5_000, 64), ("20 files of ~5 MiB", 20, 80_000)] {
        let sid = format!("sesn_bench_pack_{files}");
        let ws = sandboxes.session_dir(&sid).context("session dir")?.join("workspace");
        std::fs::create_dir_all(&ws)?;
        let mut total = 0u64;
        for f in 0..files {
            let text: String = (0..lines).map(|l| format!("{f:05} {l:06} let value_{l} = compute({f}, {l}) * {};\n", (f * 31 + l * 17) % 1009)).collect();
            total += text.len() as u64;
            std::fs::write(ws.join(format!("file_{f:05}.rs")), text)?;
        }
        let start = Instant::now();
        let size = snapshots.save(&sid).await?.unwrap_or(0);
        let pack = start.elapsed();
        std::fs::remove_file(sandboxes.session_dir(&sid).context("session dir")?.join(".generation"))?;
        let start = Instant::now();
        anyhow::ensure!(snapshots.restore(&sid).await?, "nothing restored");
        let unpack = start.elapsed();
        // the end of a turn that changed nothing: one walk of the metadata, no pack
        let start = Instant::now();
        anyhow::ensure!(snapshots.save(&sid).await?.is_none(), "an unchanged workspace was packed again");
        let same = start.elapsed();
        println!(
            "{label:<34} {:>7.1} {:>8.1} {:>8.0} {:>10.0} {:>10.1}",
            total as f64 / 1048576.0,
            size as f64 / 1048576.0,
            ms(pack),
            ms(unpack),
            ms(same)
        );
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
