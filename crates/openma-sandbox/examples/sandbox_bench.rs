//! Sandbox figures: cold start, warm bash round trip against a plain process spawn, file
//! tool latency, idle memory, and 50 sandboxes at once.
//!
//! `cargo run --release -p openma-sandbox --example sandbox_bench` (as root, with bubblewrap).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openma_core::harness::tools::{Tool, ToolContext};
use openma_core::tenancy::TenantId;
use openma_sandbox::{SandboxConfig, Sandboxes};
use serde_json::{Value, json};

fn ctx(session: &str) -> ToolContext {
    ToolContext {
        tenant: TenantId::from_trusted("tnt_bench"),
        session_id: session.into(),
        environment_id: "env_bench".into(),
        config: None,
    }
}

struct Tools {
    bash: Arc<dyn Tool>,
    read: Arc<dyn Tool>,
    write: Arc<dyn Tool>,
}

async fn call(tool: &Arc<dyn Tool>, session: &str, input: Value) -> Duration {
    let t = Instant::now();
    let out = tool.run(&ctx(session), input).await;
    let took = t.elapsed();
    assert!(!out.is_error, "{:?}", out.content);
    took
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn line(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let (p50, p99) = (pct(samples, 0.5), pct(samples, 0.99));
    println!(
        "{name:<44} p50 {:>12}   p99 {:>12}   (n={})",
        ms(p50),
        ms(p99),
        samples.len()
    );
    (p50, p99)
}

#[tokio::main]
async fn main() {
    println!("{}", Sandboxes::check().expect("bubblewrap"));
    let base = std::env::temp_dir().join(format!("openma-sandbox-bench-{}", ulid::Ulid::new()));
    let sandboxes = Sandboxes::new(SandboxConfig::new(base.join("sandboxes")));
    sandboxes.preflight().expect("preflight");
    let mut by_name: std::collections::HashMap<_, _> = sandboxes.tools().into_iter().collect();
    let tools = Tools {
        bash: by_name.remove("bash").unwrap(),
        read: by_name.remove("read").unwrap(),
        write: by_name.remove("write").unwrap(),
    };

    // Cold start: a new session's first command (workspace, /etc, bwrap, bash, handshake).
    let mut cold = Vec::new();
    for i in 0..30 {
        let s = format!("cold-{i}");
        cold.push(call(&tools.bash, &s, json!({"command": "true"})).await);
        sandboxes.destroy(&s).await.unwrap();
    }
    line("cold start to first result", &mut cold);

    // Warm round trip vs a plain process spawn, interleaved so both see the same machine.
    call(&tools.bash, "warm", json!({"command": "true"})).await;
    let mut warm = Vec::new();
    let mut spawn = Vec::new();
    for _ in 0..300 {
        warm.push(call(&tools.bash, "warm", json!({"command": "true"})).await);
        let t = Instant::now();
        let st = tokio::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .await
            .unwrap();
        assert!(st.success());
        spawn.push(t.elapsed());
    }
    let (w50, _) = line("warm bash round trip (`true`)", &mut warm);
    let (s50, _) = line("plain `sh -c true` spawn", &mut spawn);
    println!(
        "{:<44} {:.2}x",
        "ratio warm bash / plain spawn (p50)",
        w50.as_secs_f64() / s50.as_secs_f64()
    );

    // File tools on a 4 KiB file.
    let content = "x".repeat(4095) + "\n";
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for i in 0..300 {
        let path = format!("/workspace/bench/f{}.txt", i % 10);
        writes.push(
            call(
                &tools.write,
                "warm",
                json!({"file_path": path, "content": content}),
            )
            .await,
        );
        reads.push(call(&tools.read, "warm", json!({"file_path": path})).await);
    }
    line("write 4 KiB", &mut writes);
    line("read 4 KiB", &mut reads);

    // Memory of an idle sandbox.
    let pids = sandboxes.sandbox_pids("warm");
    println!(
        "{:<44} {} KiB over {} processes (bwrap, bwrap pid 1, bash)",
        "RSS of one idle sandbox",
        sandboxes.memory_kib("warm"),
        pids.len()
    );

    // 50 sandboxes at once, each starting and running a command.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let bash = tools.bash.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &bash,
                &format!("many-{i}"),
                json!({"command": "echo hi $RANDOM"}),
            )
            .await
        }));
    }
    let mut each = Vec::new();
    for task in tasks {
        each.push(task.await.unwrap());
    }
    println!(
        "{:<44} {}",
        "50 concurrent cold sandboxes, total wall",
        ms(t.elapsed())
    );
    line("  per call", &mut each);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let bash = tools.bash.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &bash,
                &format!("many-{i}"),
                json!({"command": "echo hi $RANDOM"}),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "{:<44} {}",
        "50 concurrent warm commands, total wall",
        ms(t.elapsed())
    );
    let total: u64 = (0..50)
        .map(|i| sandboxes.memory_kib(&format!("many-{i}")))
        .sum();
    println!("{:<44} {} KiB", "RSS of 50 idle sandboxes", total);

    for i in 0..50 {
        sandboxes.destroy(&format!("many-{i}")).await.unwrap();
    }
    sandboxes.destroy("warm").await.unwrap();
    let _ = std::fs::remove_dir_all(&base);
}
