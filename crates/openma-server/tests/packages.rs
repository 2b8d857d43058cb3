//! Environment packages end to end, on SQLite and PostgreSQL: an environment's apt, npm and
//! pip packages are built from the real registries into a cached layer, shown by the build
//! endpoint, used by a fake-model-driven session through bash, reused by the next session;
//! a build that fails is a clear error for the sessions that need it; environment limits
//! reach the sandbox.

mod support;

use std::time::{Duration, Instant};

use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_with_model, tool_turn};

macro_rules! package_stories {
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

package_stories!(packages_build_once_into_a_layer_that_sessions_use, a_failed_build_is_a_clear_error_for_its_sessions);

async fn run<F: std::future::Future<Output = ()>>(backend: Backend, story: fn(TestApp, FakeModel) -> F) {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_with_model(backend, Some(model.base_url())).await else { return };
    tokio::time::timeout(Duration::from_secs(400), story(app, model)).await.expect("the story ends within 400 s");
}

/// Polls the environment's build until `done` holds (or panics after `limit`).
async fn build_until(app: &TestApp, env_id: &str, limit: Duration, done: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let b = app.get(&format!("/v1/environments/{env_id}/build")).await;
        assert_eq!(b.status, StatusCode::OK, "{}", b.body);
        if done(b.body["state"].as_str().unwrap_or_default()) {
            return b.body;
        }
        assert!(Instant::now() < deadline, "the build did not settle within {limit:?}: {}", b.body);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn coder(app: &TestApp) -> String {
    let a = app.ok("/v1/agents", json!({"name": "coder", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    a["id"].as_str().unwrap().to_owned()
}

async fn packages_build_once_into_a_layer_that_sessions_use(app: TestApp, model: FakeModel) {
    let env = app
        .ok("/v1/environments", json!({"name": "tools", "config": {"type": "cloud",
            "packages": {"apt": ["hello"], "npm": ["is-number@7"], "pip": ["six"]},
            "limits": {"open_files": 300, "bash_timeout_max_s": 60}}}))
        .await;
    let env_id = env["id"].as_str().unwrap();
    assert_eq!(env["config"]["limits"], json!({"open_files": 300, "bash_timeout_max_s": 60}), "limits are shown once set");
    assert_eq!(env["config"]["packages"]["pip"], json!(["six"]));
    let too_high = app.post(&format!("/v1/environments/{env_id}"), json!({"config": {"type": "cloud", "limits": {"open_files": 1_000_000}}})).await;
    assert_eq!(too_high.status, StatusCode::BAD_REQUEST, "limits above the server's are refused: {}", too_high.body);

    let built = build_until(&app, env_id, Duration::from_secs(300), |s| s == "ready" || s == "failed").await;
    assert_eq!(built["state"], "ready", "{}", built["log"].as_str().unwrap_or_default());
    assert!(built["log"].as_str().unwrap().contains("layer ready"), "{built}");
    assert!(built["started_at"].is_string() && built["finished_at"].is_string(), "{built}");

    let agent = coder(&app).await;
    let command = "hello; python3 -c 'import six; print(\"six\", six.__version__)'; \
                   node -e 'console.log(\"is-number\", require(\"is-number\")(42))'; ulimit -n";
    for round in 0..2 {
        let sid = app.ok("/v1/sessions", json!({"agent": agent, "environment_id": env_id})).await["id"].as_str().unwrap().to_owned();
        let results = tool_turn(&app, &model, &sid, vec![("bash", json!({"command": command}))]).await;
        let (out, is_error) = &results[0];
        assert!(!is_error, "round {round}: {out}");
        assert!(out.contains("Hello, world!") && out.contains("six 1.") && out.contains("is-number true"), "round {round}: {out}");
        assert!(out.lines().any(|l| l.trim() == "300"), "the environment's open_files limit applies: {out}");
    }
    // the second session reused the layer: the build is the same one
    let after = app.get(&format!("/v1/environments/{env_id}/build")).await.body;
    assert_eq!((&after["started_at"], &after["finished_at"]), (&built["started_at"], &built["finished_at"]), "no rebuild");
    // another environment with the same packages (in another order) shares the layer
    let twin = app.ok("/v1/environments", json!({"name": "twin", "config": {"type": "cloud",
        "packages": {"pip": ["six"], "npm": ["is-number@7"], "apt": ["hello"]}}})).await;
    let twin_build = app.get(&format!("/v1/environments/{}/build", twin["id"].as_str().unwrap())).await.body;
    assert_eq!((&twin_build["state"], &twin_build["packages_hash"]), (&json!("ready"), &built["packages_hash"]));
}

async fn a_failed_build_is_a_clear_error_for_its_sessions(app: TestApp, model: FakeModel) {
    let env = app.ok("/v1/environments", json!({"name": "broken", "config": {"type": "cloud", "packages": {"pip": ["openma-no-such-package-zq9"]}}})).await;
    let env_id = env["id"].as_str().unwrap();
    let agent = coder(&app).await;
    // while the build runs, a session may start; its first command waits, then says why it cannot run
    let early = app.post("/v1/sessions", json!({"agent": agent, "environment_id": env_id})).await;
    if early.status == StatusCode::OK {
        let sid = early.body["id"].as_str().unwrap();
        let results = tool_turn(&app, &model, sid, vec![("bash", json!({"command": "echo hi"}))]).await;
        let (out, is_error) = &results[0];
        assert!(*is_error && out.contains("failed to build") && out.contains("openma-no-such-package-zq9"), "{out}");
    }
    let failed = build_until(&app, env_id, Duration::from_secs(120), |s| s == "failed" || s == "ready").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("pip")), "{failed}");
    assert!(failed["log"].as_str().unwrap().contains("openma-no-such-package-zq9"), "{failed}");
    let refused = app.post("/v1/sessions", json!({"agent": agent, "environment_id": env_id})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_type(), "invalid_request_error");
    assert_eq!(refused.body["error"]["details"]["error_code"], "environment_build_failed");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("failed to build"), "{}", refused.body);
    // fixing the packages builds again (here: nothing to install for pip at all)
    let fixed = app.ok(&format!("/v1/environments/{env_id}"), json!({"config": {"type": "cloud", "packages": {"pip": []}}})).await;
    assert_eq!(fixed["config"]["packages"]["pip"], json!([]));
    app.ok("/v1/sessions", json!({"agent": agent, "environment_id": env_id})).await;
}
