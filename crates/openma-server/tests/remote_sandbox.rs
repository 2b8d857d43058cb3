//! A remote sandbox: the server runs the sessions' tools on an `openma-sandbox-server` (here
//! on a loopback listener of its own, with its own directory) instead of in bubblewrap on
//! its own host. The shell lives there, the files come back when a turn ends, a server that
//! lost its disk is sent the session again, an environment's packages are built there and
//! its stdio MCP servers run there.

mod support;

use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::json;
use support::{Backend, TestApp, spawn_app_custom, tool_turn as turn};

const TOKEN: &str = "test-remote-sandbox-token-0123456789";

struct SandboxServer {
    url: String,
    root: std::path::PathBuf,
    _dir: tempfile::TempDir,
    /// Shuts the server down (gracefully: idle connections are closed).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn sandbox_server() -> SandboxServer {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let root = dir.path().join("sessions");
    let mut config = openma_sandbox::SandboxConfig::new(&root);
    config.egress.bridge = env!("CARGO_BIN_EXE_openma").into();
    let credentials = openma_sandbox_server::HeldCredentials::install(&mut config);
    let server = openma_sandbox_server::Server::new(openma_sandbox::Sandboxes::new(config), TOKEN.to_owned().into(), credentials);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move { stopped.await.ok(); }));
    SandboxServer { url, root, _dir: dir, stop: Some(stop) }
}

async fn app_on(remote: &SandboxServer, model: &FakeModel) -> TestApp {
    let (url, token) = (remote.url.clone(), TOKEN.to_owned());
    spawn_app_custom(Backend::Sqlite, Some(model.base_url()), move |o| {
        o.sandbox_url = Some(url);
        o.sandbox_token = Some(token);
    })
    .await
    .unwrap()
}

/// A sandbox server, the scripted model and a server using both; `None` without bubblewrap.
async fn setup() -> Option<(SandboxServer, FakeModel, TestApp)> {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return None;
    }
    let remote = sandbox_server().await;
    let model = FakeModel::start().await;
    let app = app_on(&remote, &model).await;
    Some((remote, model, app))
}

/// Every regular file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let (p, t) = (e.path(), e.file_type().unwrap());
        if t.is_dir() { out.extend(walk(&p)) } else if t.is_file() { out.push(p) }
    }
    out
}

async fn coder(app: &TestApp) -> String {
    let a = app.ok("/v1/agents", json!({"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    a["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_run_on_the_sandbox_server_and_the_files_come_back() {
    let Some((remote, model, app)) = setup().await else { return };
    let health = app.get("/health").await.body;
    assert!(health["backends"]["sandbox"].as_str().unwrap().starts_with(&format!("remote {}", remote.url)), "{health}");
    let data = app.upload("data.csv", "text/csv", b"a,b\n1,2\n").await;
    let agent = coder(&app).await;
    let s = app.ok("/v1/sessions", json!({"agent": agent, "resources": [{"type": "file", "file_id": data["id"], "mount_path": "/data.csv"}]})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let there = remote.root.join(&sid);
    let here = app.data_dir().join("sandboxes").join(&sid);
    assert!(!there.exists(), "nothing is sent before a tool runs");

    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cd /workspace && export STAGE=two && wc -l < /mnt/session/uploads/data.csv"})),
        ("write", json!({"file_path": "/workspace/app/main.py", "content": "print('made remotely')\n"})),
        ("bash", json!({"command": "python3 app/main.py > /mnt/session/outputs/report.txt && echo ok"})),
    ]).await;
    assert!(r.iter().all(|(_, err)| !err), "{r:?}");
    assert!(r[0].0.contains('2'), "the mounted file reached the sandbox server: {:?}", r[0]);
    assert!(there.join("workspace/app/main.py").exists(), "the tools ran on the sandbox server");
    assert_eq!(std::fs::read_to_string(here.join("workspace/app/main.py")).unwrap(), "print('made remotely')\n", "the files came back when the turn ended");
    // the output was taken into the Files API from the copy that came back
    let files = app.get(&format!("/v1/files?scope_id={sid}")).await.body["data"].as_array().unwrap().clone();
    let report = files.iter().find(|f| f["filename"] == "report.txt").unwrap_or_else(|| panic!("{files:?}"));
    let (_, _, bytes) = app.get_bytes(&format!("/v1/files/{}/content", report["id"].as_str().unwrap()), &app.key).await;
    assert_eq!(bytes, b"made remotely\n");

    // the shell lives on the sandbox server: its directory and variables persist, and a file
    // added to the session meanwhile is laid over without ending it
    let extra = app.upload("extra.txt", "text/plain", b"more").await;
    app.ok(&format!("/v1/sessions/{sid}/resources"), json!({"type": "file", "file_id": extra["id"]})).await;
    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": format!("pwd; echo stage=$STAGE; cat /mnt/session/uploads/{}", extra["id"].as_str().unwrap())})),
        ("glob", json!({"pattern": "**/*.py"})),
    ]).await;
    assert!(r[0].0.contains("/workspace") && r[0].0.contains("stage=two") && r[0].0.contains("more"), "{:?}", r[0]);
    assert!(r[1].0.contains("app/main.py"), "{:?}", r[1]);

    // nothing of the control plane's secrets reaches the sandbox server's disk
    let (mut leaked, files) = (Vec::new(), walk(&remote.root));
    assert!(files.len() >= 3, "{files:?}");
    for path in files {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for secret in [b"test-root-secret".as_slice(), app.key.as_bytes(), b"sk-ant-fake-test-key", TOKEN.as_bytes()] {
            if bytes.windows(secret.len()).any(|w| w == secret) {
                leaked.push(path.clone());
            }
        }
    }
    assert!(leaked.is_empty(), "secrets on the sandbox server's disk: {leaked:?}");

    // a sandbox server that lost its disk is sent the session whole from this server's copy
    std::fs::remove_dir_all(&there).unwrap();
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": "cat app/main.py 2>&1 || cat /workspace/app/main.py"}))]).await;
    assert!(r[0].0.contains("made remotely"), "{:?}", r[0]);

    app.delete(&format!("/v1/sessions/{sid}")).await;
    assert!(!there.exists() && !here.exists(), "deleting the session deletes it on both sides");

    // /health asks the sandbox server each time: one that goes away is reported at once
    let mut remote = remote;
    remote.stop.take().unwrap().send(()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let health = app.get("/health").await.body;
        let sandbox = health["backends"]["sandbox"].as_str().unwrap().to_owned();
        if sandbox.starts_with(&format!("unavailable: remote {} cannot be reached", remote.url)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "/health still says {sandbox}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environments_stdio_mcp_server_runs_in_the_session_sandbox_on_the_sandbox_server() {
    let Some((remote, model, app)) = setup().await else { return };
    let agent = coder(&app).await;
    let server = json!({"type": "stdio", "name": "local", "command": ["python3", "-u", "-c", openma_fake_model::STDIO_MCP_SERVER], "env": {"GREETING": "from the sandbox server"},
        "default_config": {"permission_policy": {"type": "always_allow"}}});
    let env = app.ok("/v1/environments", json!({"name": "stdio", "config": {"type": "cloud", "mcp_servers": [server]}})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent, "environment_id": env["id"]})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &sid, vec![("mcp__local__note", json!({"text": "hello"})), ("bash", json!({"command": "cat /workspace/from-mcp.txt; echo; id -u"}))]).await;
    assert!(!r[0].1 && r[0].0.starts_with("noted by uid "), "{:?}", r[0]);
    assert_eq!(r[1].0.lines().next(), Some("hello from the sandbox server"), "the program and the shell share the sandbox: {:?}", r[1]);
    assert_eq!(r[0].0.trim_start_matches("noted by uid "), r[1].0.lines().nth(1).unwrap(), "as the session's user");
    // the model was offered the server's tool under the environment's name
    let tools = model.requests().last().unwrap().body["tools"].clone();
    assert!(tools.as_array().unwrap().iter().any(|t| t["name"] == "mcp__local__note"), "{tools}");
    let there = remote.root.join(&sid).join("workspace/from-mcp.txt");
    assert!(there.is_file(), "it ran on the sandbox server");

    // the next turn speaks to the same program
    let r = turn(&app, &model, &sid, vec![("mcp__local__note", json!({"text": "again"}))]).await;
    assert!(!r[0].1, "{:?}", r[0]);
    assert_eq!(std::fs::read_to_string(&there).unwrap(), "again from the sandbox server");

    app.delete(&format!("/v1/sessions/{sid}")).await;
    assert!(!remote.root.join(&sid).exists(), "deleting the session ends it there, its program with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_sandbox_server_is_a_tool_error() {
    let model2 = FakeModel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gone = SandboxServer { url: "http://127.0.0.1:9".into(), root: dir.path().to_owned(), _dir: dir, stop: None };
    let app2 = app_on(&gone, &model2).await;
    assert!(app2.get("/health").await.body["backends"]["sandbox"].as_str().unwrap().starts_with("unavailable"));
    let agent2 = coder(&app2).await;
    let sid = app2.ok("/v1/sessions", json!({"agent": agent2})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app2, &model2, &sid, vec![("bash", json!({"command": "echo hi"}))]).await;
    assert!(r[0].1 && r[0].0.contains("cannot be reached"), "{:?}", r[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environments_packages_are_built_on_the_sandbox_server_and_its_limits_reach_it() {
    let Some((remote, model, app)) = setup().await else { return };
    let env = app
        .ok("/v1/environments", json!({"name": "tools", "config": {"type": "cloud", "packages": {"pip": ["six"]}, "limits": {"open_files": 300}}}))
        .await;
    let env_id = env["id"].as_str().unwrap();
    // saving the environment started the build there; the build endpoint asks the server
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let built = loop {
        let b = app.get(&format!("/v1/environments/{env_id}/build")).await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        if b.body["state"] == "ready" || b.body["state"] == "failed" {
            break b.body;
        }
        assert!(std::time::Instant::now() < deadline, "the build did not settle: {}", b.body);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(built["state"], "ready", "{}", built["log"]);
    assert!(built["log"].as_str().unwrap().contains("layer ready") && built["finished_at"].is_string(), "{built}");
    let hash = built["packages_hash"].as_str().unwrap();
    assert!(remote.root.parent().unwrap().join("layers").join(hash).join("root").is_dir(), "the layer is on the sandbox server");
    assert!(!app.data_dir().join("layers").join(hash).exists(), "and not on this node");

    let agent = coder(&app).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent, "environment_id": env_id})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": "python3 -c 'import six; print(\"six\", six.__version__)'; ulimit -n"}))]).await;
    assert!(!r[0].1 && r[0].0.contains("six 1."), "{:?}", r[0]);
    assert!(r[0].0.lines().any(|l| l.trim() == "300"), "the environment's limit applies there: {:?}", r[0]);

    // a build that failed there refuses new sessions, as on this node
    let broken = app.ok("/v1/environments", json!({"name": "broken", "config": {"type": "cloud", "packages": {"pip": ["openma-no-such-package-zq9"]}}})).await;
    let broken_id = broken["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while app.get(&format!("/v1/environments/{broken_id}/build")).await.body["state"] != "failed" {
        assert!(std::time::Instant::now() < deadline, "the broken build did not fail");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let r = app.post("/v1/sessions", json!({"agent": agent, "environment_id": broken_id})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("failed to build"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_the_remote_command_as_it_would_a_local_one() {
    let Some((remote, model, app)) = setup().await else { return };
    let agent = coder(&app).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![openma_fake_model::Reply::tool_use("bash", json!({"command": "touch /workspace/started; sleep 60; touch /workspace/finished"}))]);
    let mut stream = support::SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    stream.until(|e| e.event == "agent.tool_use").await;
    let started = remote.root.join(&sid).join("workspace/started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the command never started on the sandbox server");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let t = std::time::Instant::now();
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.interrupt"}]})).await;
    stream.until(support::settled).await;
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": "echo back; ls /workspace"}))]).await;
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "the next command waited for the interrupted one: {:?}", t.elapsed());
    assert!(r[0].0.contains("back") && r[0].0.contains("interrupted"), "the next result says the shell was ended: {:?}", r[0]);
    assert!(!r[0].0.contains("finished"), "the interrupted command was killed: {:?}", r[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_memory_store_is_read_and_written_through_the_sandbox_server() {
    let Some((remote, model, app)) = setup().await else { return };
    let notes = app.ok("/v1/memory_stores", json!({"name": "Team Notes"})).await;
    let nid = notes["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/memory_stores/{nid}/memories"), json!({"path": "/prefs/lang.md", "content": "Rust"})).await;
    let agent = coder(&app).await;
    let s = app.ok("/v1/sessions", json!({"agent": agent, "resources": [{"type": "memory_store", "memory_store_id": nid}]})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &sid, vec![
        ("bash", json!({"command": "cat /mnt/memory/team-notes/prefs/lang.md; echo Python > /mnt/memory/team-notes/prefs/lang.md"})),
        ("write", json!({"file_path": "/mnt/memory/team-notes/todo.md", "content": "ship it"})),
    ]).await;
    assert!(r[0].0.contains("Rust") && !r[0].1 && !r[1].1, "{r:?}");
    assert!(remote.root.join(&sid).join("memory/team-notes/todo.md").exists(), "written on the sandbox server");
    let listed = app.get(&format!("/v1/memory_stores/{nid}/memories?view=full&limit=20")).await.body;
    let content = |path: &str| listed["data"].as_array().unwrap().iter().find(|m| m["path"] == path).map(|m| m["content"].clone());
    assert_eq!(content("/todo.md"), Some(json!("ship it")), "the sandbox's write is a memory: {listed}");
    assert_eq!(content("/prefs/lang.md"), Some(json!("Python\n")), "{listed}");
    // a change made through the API reaches the sandbox server before the next tool call
    app.ok(&format!("/v1/memory_stores/{nid}/memories"), json!({"path": "/news.md", "content": "fresh"})).await;
    let r = turn(&app, &model, &sid, vec![("bash", json!({"command": "cat /mnt/memory/team-notes/news.md"}))]).await;
    assert!(r[0].0.contains("fresh"), "{:?}", r[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limit_on_running_sandboxes_counts_remote_ones() {
    let Some((_remote, model, app)) = setup().await else { return };
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let limits = openma_core::tenancy::TenantLimits { max_running_sandboxes: Some(1), ..Default::default() };
    app.platform.set_tenant_limits(&tenant.id, &limits).await.unwrap();
    let agent = coder(&app).await;
    let s1 = app.ok("/v1/sessions", json!({"agent": agent})).await["id"].as_str().unwrap().to_owned();
    let s2 = app.ok("/v1/sessions", json!({"agent": agent})).await["id"].as_str().unwrap().to_owned();
    let r = turn(&app, &model, &s1, vec![("bash", json!({"command": "echo started"}))]).await;
    assert!(r[0].0.contains("started") && !r[0].1, "{r:?}");
    let busy = app.post(&format!("/v1/sessions/{s2}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS, "the remote sandbox of s1 counts: {}", busy.body);
    // once s1 is deleted (its remote sandbox with it), s2 may start one
    app.delete(&format!("/v1/sessions/{s1}")).await;
    let r = turn(&app, &model, &s2, vec![("bash", json!({"command": "echo second"}))]).await;
    assert!(r[0].0.contains("second") && !r[0].1, "{r:?}");
}
