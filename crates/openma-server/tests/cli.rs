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
