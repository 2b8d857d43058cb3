//! Egress figures: a `curl` from a warm sandbox through the bridge and the egress proxy to a
//! local HTTP site, against `sh -c true` in the same sandbox (the cost of any forked command)
//! and the same `curl` run directly on the host (curl's own cost, no sandbox, no proxy).
//!
//! `cargo run --release -p openma-sandbox --example egress_bench` (as root, with bubblewrap
//! and curl). The site is reached by name through the test-only resolution override.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openma_core::harness::tools::{Tool, ToolContext};
use openma_core::tenancy::TenantId;
use openma_sandbox::{EgressPolicy, ResolveOverrides, SandboxConfig, Sandboxes};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const N: usize = 200;

fn ctx(session: &str) -> ToolContext {
    ToolContext { tenant: TenantId::from_trusted("tnt_bench"), session_id: session.into(), environment_id: "env_bench".into(), config: None }
}

async fn bash(tool: &Arc<dyn Tool>, command: &str) -> Duration {
    let t = Instant::now();
    let out = tool.run(&ctx("bench"), json!({"command": command})).await;
    let took = t.elapsed();
    let text = out.content[0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(!out.is_error && !text.contains("Exit code"), "{text}");
    took
}

fn line(name: &str, samples: &mut [Duration]) -> Duration {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    println!("{name:<52} p50 {:>10}   p99 {:>10}   (n={})", ms(at(0.5)), ms(at(0.99)), samples.len());
    at(0.5)
}

#[tokio::main]
async fn main() {
    println!("{}", Sandboxes::check().expect("bubblewrap"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n").await;
            });
        }
    });
    let base = std::env::temp_dir().join(format!("openma-egress-bench-{}", ulid::Ulid::new()));
    let mut config = SandboxConfig::new(base.join("sandboxes"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    config.egress.bridge = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target").join(profile).join("openma-sandbox-bridge");
    if let Ok(b) = std::env::var("OPENMA_BRIDGE") {
        config.egress.bridge = b.into();
    }
    config.egress.resolve = ResolveOverrides::parse(&format!("site.test={site}")).unwrap();
    let sandboxes = Sandboxes::new(config);
    sandboxes.set_egress_policy("bench", &EgressPolicy::Unrestricted).unwrap();
    let tool = sandboxes.tools().into_iter().find(|(n, _)| *n == "bash").unwrap().1;
    bash(&tool, "true").await;

    let (mut base_runs, mut http, mut tunnel, mut host) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..N {
        base_runs.push(bash(&tool, "sh -c true").await);
        http.push(bash(&tool, "curl -sf -o /dev/null http://site.test/").await);
        tunnel.push(bash(&tool, "curl -sf -o /dev/null --proxytunnel http://site.test/").await);
        let t = Instant::now();
        let ok = std::process::Command::new("curl").args(["-sf", "-o", "/dev/null", &format!("http://{site}/")]).status().unwrap();
        host.push(t.elapsed());
        assert!(ok.success());
    }
    let b = line("bash tool: `sh -c true` in the sandbox (baseline)", &mut base_runs);
    let h = line("bash tool: curl http:// through bridge + proxy", &mut http);
    let c = line("bash tool: curl through bridge + proxy (CONNECT)", &mut tunnel);
    let d = line("host: the same curl spawned directly (no sandbox)", &mut host);
    println!("ratio curl-through-proxy / sh -c true (p50)        {:.2}x", h.as_secs_f64() / b.as_secs_f64());
    let added = |x: Duration| (x.as_secs_f64() - d.as_secs_f64()) * 1e3;
    println!("added by the sandbox path over a direct curl (p50)   {:.3} ms (http), {:.3} ms (CONNECT)", added(h), added(c));
    sandboxes.destroy("bench").await.unwrap();
    let _ = std::fs::remove_dir_all(base);
}
