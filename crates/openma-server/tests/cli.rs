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
