//! The client commands of the real binary against a real server.

mod support;

use openma_fake_model::{FakeModel, Reply};
use serde_json::Value;
use support::{Backend, spawn_app_with_model};

fn openma(app: &support::Handle, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
        .args(["--url", &app.base, "--api-key", &app.key])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sessions_and_chat_from_the_command_line() {
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let a = app.clone_handle();
    let (ok, out, err) = tokio::task::spawn_blocking(move || openma(&a, &["agents", "create", "--name", "cli", "--tools", "bash,read", "--json"])).await.unwrap();
    assert!(ok, "{err}");
    let agent: Value = serde_json::from_str(&out).unwrap();
    let agent_id = agent["id"].as_str().unwrap().to_owned();
    assert_eq!(agent["tools"][0]["configs"].as_array().unwrap().len(), 2);
    let a = app.clone_handle();
    let (ok, out, _) = tokio::task::spawn_blocking(move || openma(&a, &["agents", "list"])).await.unwrap();
    assert!(ok && out.contains(&agent_id) && out.contains("cli"), "{out}");

    model.script(vec![Reply::text("Hello from the model.")]);
    let a = app.clone_handle();
    let id = agent_id.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || openma(&a, &["chat", "--agent", &id, "say hello"])).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("Hello from the model."), "{out}");
    let session_id = err.lines().find_map(|l| l.strip_prefix("session ")).unwrap().trim().to_owned();
    let a = app.clone_handle();
    let (ok, out, _) = tokio::task::spawn_blocking(move || openma(&a, &["sessions", "events", &session_id])).await.unwrap();
    assert!(ok && out.contains("agent.message") && out.contains("end_turn"), "{out}");
    let a = app.clone_handle();
    let (ok, out, err) = tokio::task::spawn_blocking(move || openma(&a, &["usage", "--group-by", "model,kind"])).await.unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("claude-sonnet-4-6\toutput_tokens") && out.contains("total\t$"), "{out}");
    let a = app.clone_handle();
    let (ok, out, _) = tokio::task::spawn_blocking(move || openma(&a, &["usage", "--group-by", "kind", "--csv"])).await.unwrap();
    assert!(ok && out.starts_with("kind,quantity,amount_usd"), "{out}");
    let a = app.clone_handle();
    let (ok, _, err) = tokio::task::spawn_blocking(move || openma(&a, &["sessions", "get", "sesn_missing"])).await.unwrap();
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_from_the_command_line_take_secrets_from_files() {
    let app = support::spawn_app(Backend::Sqlite).await.unwrap();
    let agent = app.agent("published").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("signing");
    std::fs::write(&secret, "slack-signing-secret-from-a-file\n").unwrap();
    let (a, agent_id, file) = (app.clone_handle(), agent["id"].as_str().unwrap().to_owned(), secret.to_string_lossy().into_owned());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_openma"))
            .args(["--url", &a.base, "--api-key", &a.key, "integrations", "create", "--provider", "slack", "--agent", &agent_id, "--signing-secret-file", &file, "--json"])
            .env("OPENMA_INTEGRATION_BOT_TOKEN", "xoxb-from-the-environment")
            .output()
            .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned()))
            .unwrap()
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(made["events_path"].as_str().unwrap().ends_with("/events"));
    assert!(!out.contains("xoxb-from-the-environment") && !out.contains("from-a-file"));
    let a = app.clone_handle();
    let (ok, out, err) = tokio::task::spawn_blocking(move || openma(&a, &["integrations", "list"])).await.unwrap();
    assert!(ok && out.contains(&id) && out.contains("slack"), "{out} {err}");
    let (a, del) = (app.clone_handle(), id.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || openma(&a, &["integrations", "delete", &del])).await.unwrap();
    assert!(ok && out.contains(&format!("deleted {id}")), "{out} {err}");
    let a = app.clone_handle();
    let (ok, _, err) = tokio::task::spawn_blocking(move || openma(&a, &["integrations", "create", "--provider", "slack", "--agent", "x"])).await.unwrap();
    assert!(!ok && err.contains("signing secret is needed"), "{err}");
}

/// Runs the real binary in a pseudo-terminal (util-linux `script`); `typed` is what the
/// user types, each after a pause. Returns everything the terminal showed.
fn in_terminal(app: &support::Handle, args: &[&str], typed: Vec<(u64, &'static [u8])>) -> String {
    use std::io::{Read, Write};
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = format!("exec {} --url {} --api-key {}", quote(env!("CARGO_BIN_EXE_openma")), quote(&app.base), quote(&app.key));
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    let mut child = std::process::Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    let typist = std::thread::spawn(move || {
        for (pause_ms, bytes) in typed {
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            let _ = stdin.write_all(bytes);
            let _ = stdin.flush();
        }
        // keep the terminal open until the program is done
        std::thread::sleep(std::time::Duration::from_secs(20));
    });
    let mut shown = String::new();
    child.stdout.take().unwrap().read_to_string(&mut shown).unwrap();
    let _ = child.wait();
    drop(typist);
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_a_terminal_asks_before_a_tool_and_streams_the_answer() {
    if !support::sandboxes_available() {
        return;
    }
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    app.ok("/v1/agents", serde_json::json!({"name": "careful", "model": "claude-sonnet-4-6",
        "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]})).await;
    model.script(vec![Reply::tool_use("bash", serde_json::json!({"command": "echo from-bash"})), Reply::text("All done.")]);
    let a = app.clone_handle();
    let shown = tokio::task::spawn_blocking(move || in_terminal(&a, &["chat", "--agent", "careful", "run it"], vec![(2_000, b"y\n")])).await.unwrap();
    assert!(shown.contains("→ bash"), "{shown}");
    assert!(shown.contains("allow `bash`"), "the confirmation is asked: {shown}");
    assert!(shown.contains("from-bash"), "the tool's result is shown: {shown}");
    assert!(shown.contains("All done."), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_chat_interrupts_a_slow_turn() {
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    app.ok("/v1/agents", serde_json::json!({"name": "slow", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::text("a very slow answer").delay_ms(15_000)]);
    let a = app.clone_handle();
    let started = std::time::Instant::now();
    let shown = tokio::task::spawn_blocking(move || in_terminal(&a, &["chat", "--agent", "slow", "take your time"], vec![(2_000, b"\x03")])).await.unwrap();
    assert!(shown.contains("interrupting"), "{shown}");
    assert!(shown.contains("interrupted"), "{shown}");
    assert!(started.elapsed() < std::time::Duration::from_secs(12), "the turn was cut short: {:?}", started.elapsed());
    let sessions = app.get("/v1/sessions").await.body;
    let sid = sessions["data"][0]["id"].as_str().unwrap();
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=100")).await.body;
    assert!(log["data"].as_array().unwrap().iter().any(|e| e["type"] == "user.interrupt"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_session_until_it_ends() {
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let agent = app.agent("tailed").await;
    let sid = app.ok("/v1/sessions", serde_json::json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    let (a, id) = (app.clone_handle(), sid.clone());
    let tail = tokio::task::spawn_blocking(move || openma(&a, &["sessions", "tail", &id]));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    model.script(vec![Reply::text("Tailed answer.")]);
    app.ok(&format!("/v1/sessions/{sid}/events"), serde_json::json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    app.ok(&format!("/v1/sessions/{sid}/archive"), serde_json::json!(null)).await;
    let (ok, out, err) = tokio::time::timeout(std::time::Duration::from_secs(20), tail).await.expect("tail ends with the session").unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("user.message") && out.contains("Tailed answer.") && out.contains("session.status_terminated"), "{out}");
}
