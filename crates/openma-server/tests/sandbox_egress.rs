//! Sandbox networking end to end: the scripted model's bash calls `curl` from a real
//! bubblewrap sandbox, whose only way out is the session's egress proxy. An environment's
//! `networking` decides what it reaches; the openma server itself, the database port and
//! the metadata address are never reachable.
//!
//! The fake "outside" site listens on the host's loopback; the server reaches it by name
//! through the test-only `OPENMA_UNSAFE_EGRESS_RESOLVE` overrides (set here through the
//! settings), the only names exempt from the private-address rule.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use openma_fake_model::FakeModel;
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_custom, tool_turn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

macro_rules! stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Sqlite, super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Postgres, super::$name).await } )*
        }
    };
}

stories!(
    an_unrestricted_sandbox_fetches_from_outside_but_never_reaches_the_server,
    a_limited_environment_refuses_hosts_outside_allowed_hosts,
);

/// A plain HTTP site answering `hello from outside: <request line>`.
async fn fake_site() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_owned();
                let body = format!("hello from outside: {line}\n");
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

async fn run<F, Fut>(backend: Backend, story: F)
where
    F: FnOnce(TestApp, FakeModel) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let site = fake_site().await;
    let model = FakeModel::start().await;
    let resolve = format!("allowed.test={site},denied.test={site},mcp.test={site}");
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| o.unsafe_egress_resolve = Some(resolve)).await else { return };
    tokio::time::timeout(Duration::from_secs(120), story(app, model)).await.expect("story finished within 120 s");
}

fn bash(command: &str) -> (&'static str, Value) {
    ("bash", json!({"command": command}))
}

async fn session(app: &TestApp, environment: Option<&str>, agent_extra: Value) -> String {
    let mut agent = json!({"name": "net", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]});
    agent.as_object_mut().unwrap().extend(agent_extra.as_object().unwrap().clone());
    let a = app.ok("/v1/agents", agent).await;
    let mut body = json!({"agent": a["id"]});
    if let Some(env) = environment {
        body["environment_id"] = json!(env);
    }
    app.ok("/v1/sessions", body).await["id"].as_str().unwrap().to_owned()
}

async fn an_unrestricted_sandbox_fetches_from_outside_but_never_reaches_the_server(app: TestApp, model: FakeModel) {
    // no environment named: the tenant's default, whose networking is unrestricted
    let sid = session(&app, None, json!({})).await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let via = "curl -sS --max-time 10 --noproxy '' -x http://127.0.0.1:3128";
    let r = tool_turn(&app, &model, &sid, vec![
        bash("curl -sS --max-time 10 http://allowed.test/hello"),
        bash(&format!("{via} http://127.0.0.1:{port}/health; echo; {via} http://localhost:{port}/health; echo")),
        bash(&format!("curl -sS --max-time 5 http://127.0.0.1:{port}/health 2>&1; echo rc=$?")),
        bash(&format!("{via} http://127.0.0.1:5432/; echo; {via} http://169.254.169.254/latest/meta-data/; echo")),
        bash(&format!("curl -sS --max-time 10 https://127.0.0.1:{port}/health 2>&1; echo rc=$?")),
    ])
    .await;
    assert_eq!(r.len(), 5, "{r:?}");
    assert!(r[0].0.contains("hello from outside: GET /hello HTTP/1.1"), "{r:?}");
    let blocked: String = r[1..].iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join("\n");
    assert!(!blocked.contains("\"status\"") && !blocked.contains("hello from"), "the sandbox reached the server: {blocked}");
    assert_eq!(r[1].0.matches("refused").count(), 2, "both names of the server are refused: {}", r[1].0);
    assert!(r[1].0.contains("loopback"), "{}", r[1].0);
    assert!(!r[2].0.contains("rc=0"), "{}", r[2].0);
    assert!(r[3].0.contains("loopback") && r[3].0.contains("link-local"), "{}", r[3].0);
    assert!(!r[4].0.contains("rc=0"), "{}", r[4].0);
    let h = app.get("/health").await;
    assert_eq!(h.body["status"], "ok", "the server stays healthy: {}", h.body);
    assert!(h.body["backends"]["sandbox_egress"].as_str().unwrap().contains("UNSAFE"), "{}", h.body);
}

async fn a_limited_environment_refuses_hosts_outside_allowed_hosts(app: TestApp, model: FakeModel) {
    let env = app
        .ok(
            "/v1/environments",
            json!({"name": "limited", "config": {"type": "cloud", "networking":
                {"type": "limited", "allowed_hosts": ["allowed.test"], "allow_mcp_servers": true}}}),
        )
        .await;
    let mcp = json!({
        "mcp_servers": [{"type": "url", "name": "tools", "url": "http://mcp.test/mcp"}],
        "tools": [{"type": "agent_toolset_20260401"}, {"type": "mcp_toolset", "mcp_server_name": "tools"}],
    });
    let sid = session(&app, env["id"].as_str(), mcp).await;
    let r = tool_turn(&app, &model, &sid, vec![
        bash("curl -sS --max-time 10 http://allowed.test/ok"),
        bash("curl -sS --max-time 10 -w ' status=%{http_code}' http://denied.test/no"),
        bash("curl -sS --max-time 10 http://mcp.test/mcp-host"),
        bash("curl -sS --max-time 10 https://pypi.org/simple/ 2>&1; echo rc=$?"),
    ])
    .await;
    assert!(r[0].0.contains("hello from outside: GET /ok"), "{r:?}");
    assert!(r[1].0.contains("status=403") && r[1].0.contains("denied.test") && r[1].0.contains("allowed_hosts"), "{}", r[1].0);
    assert!(!r[1].0.contains("hello from"), "{}", r[1].0);
    assert!(r[2].0.contains("hello from outside: GET /mcp-host"), "the agent's MCP host is allowed: {}", r[2].0);
    assert!(r[3].0.contains("403") && !r[3].0.contains("rc=0"), "no package registries without allow_package_managers: {}", r[3].0);
    // a second environment without networking limits: the same host is reachable there
    let open = session(&app, None, json!({})).await;
    let r = tool_turn(&app, &model, &open, vec![bash("curl -sS --max-time 10 http://denied.test/open")]).await;
    assert!(r[0].0.contains("hello from outside: GET /open"), "{r:?}");
}
