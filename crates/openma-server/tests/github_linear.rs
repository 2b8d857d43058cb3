//! GitHub and Linear as front doors, end to end against fake APIs:
//! - GitHub: a signed `issue_comment` mentioning the App starts the issue's session with
//!   the repository cloned by an installation token minted from a real RS256 App JWT (which
//!   the fake verifies); the agent's question for a confirmation and its answer arrive as
//!   comments; `@slug allow` confirms; a retried delivery, a bot's comment and a forged
//!   signature change nothing; the trigger label engages it on another issue.
//! - Linear: a signed `AgentSessionEvent` starts a session and gets a `thought` then a
//!   `response` activity; `prompted` continues the same session; stale or forged deliveries
//!   are refused.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use sha2::Sha256;
use support::git::{TOKEN, fake_github, make_repo};
use support::{Backend, TestApp, spawn_app_custom};

const WEBHOOK_SECRET: &str = "github-webhook-secret-Qz7";
const APP_ID: &str = "424242";
const LINEAR_SECRET: &str = "lin_wh_signing_secret_5Tq";
const LINEAR_TOKEN: &str = "lin_oauth_token_secret_9Kd";

fn hex_hmac(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// An RSA key pair made by openssl: (PKCS#1 private key PEM, PKCS#1 public key DER).
fn rsa_key(dir: &Path) -> (String, Vec<u8>) {
    let key = dir.join("app.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run(&["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"]);
    let public = run(&["rsa", "-in", key.to_str().unwrap(), "-RSAPublicKey_out", "-outform", "DER"]);
    (std::fs::read_to_string(&key).unwrap(), public)
}

/// Calls to the fake APIs: (path, authorization, body).
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, String, Value)>>,
    public_key: Vec<u8>,
}

impl Recorder {
    fn calls_to(&self, suffix: &str) -> Vec<(String, String, Value)> {
        self.calls.lock().unwrap().iter().filter(|c| c.0.ends_with(suffix)).cloned().collect()
    }

    async fn wait_for(&self, suffix: &str, n: usize) -> Vec<(String, String, Value)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let calls = self.calls_to(suffix);
            if calls.len() >= n {
                return calls;
            }
            assert!(std::time::Instant::now() < deadline, "expected {n} calls to {suffix}, got {:?}", self.calls.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// The fake GitHub REST API: installation tokens for a valid App JWT, issue comments for
/// that token.
async fn github_api(State(rec): State<Arc<Recorder>>, UrlPath(path): UrlPath<String>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    rec.calls.lock().unwrap().push((format!("/{path}"), auth.clone(), body));
    if path.ends_with("/access_tokens") {
        let Some(jwt) = auth.strip_prefix("Bearer ") else { return StatusCode::UNAUTHORIZED.into_response() };
        let parts: Vec<&str> = jwt.split('.').collect();
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &rec.public_key);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        if parts.len() != 3 || key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).is_err() {
            return (StatusCode::UNAUTHORIZED, "bad JWT").into_response();
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        if claims["iss"] != APP_ID || claims["exp"].as_i64().unwrap() <= now || claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() > 600 {
            return (StatusCode::UNAUTHORIZED, "bad claims").into_response();
        }
        return (StatusCode::CREATED, axum::Json(json!({"token": TOKEN, "expires_at": "2099-01-01T00:00:00Z"}))).into_response();
    }
    if path == "app" {
        // the App itself: only for its JWT
        let valid = auth.strip_prefix("Bearer ").is_some_and(|jwt| {
            let parts: Vec<&str> = jwt.split('.').collect();
            let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &rec.public_key);
            parts.len() == 3 && key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default()).is_ok()
        });
        return if valid { axum::Json(json!({"slug": "helper-bot", "id": 424242})).into_response() } else { StatusCode::UNAUTHORIZED.into_response() };
    }
    if auth != format!("Bearer {TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    (StatusCode::CREATED, axum::Json(json!({"id": 1}))).into_response()
}

/// The fake Linear GraphQL API: records `agentActivityCreate` calls.
async fn linear_api(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    rec.calls.lock().unwrap().push(("/graphql".into(), auth.clone(), body));
    if auth != format!("Bearer {LINEAR_TOKEN}") {
        return axum::Json(json!({"errors": [{"message": "authentication required"}]})).into_response();
    }
    if rec.calls.lock().unwrap().last().is_some_and(|c| c.2["query"].as_str().unwrap_or("").contains("viewer")) {
        return axum::Json(json!({"data": {"viewer": {"id": "u1", "name": "Helper Agent"}}})).into_response();
    }
    axum::Json(json!({"data": {"agentActivityCreate": {"success": true}}})).into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn deliver(app: &TestApp, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let mut req = app.http.post(format!("{}{path}", app.base)).header("content-type", "application/json").body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn github_delivery(app: &TestApp, path: &str, event: &str, delivery: &str, body: &Value, secret: &str) -> u16 {
    let body = body.to_string();
    let headers = [("x-github-event", event.to_owned()), ("x-github-delivery", delivery.to_owned()), ("x-hub-signature-256", format!("sha256={}", hex_hmac(secret, &body)))];
    deliver(app, path, &headers, &body).await
}

fn comment(number: u64, body: &str, user_type: &str) -> Value {
    json!({
        "action": "created",
        "issue": {"number": number, "title": "README question", "body": "What does the README say?"},
        "comment": {"body": body, "user": {"login": "octocat", "type": user_type}, "performed_via_github_app": null},
        "repository": {"full_name": "acme/app"},
        "installation": {"id": 99},
        "sender": {"login": "octocat", "type": user_type}
    })
}

fn user_messages(app_log: &Value) -> usize {
    app_log["data"].as_array().unwrap().iter().filter(|e| e["type"] == "user.message").count()
}

async fn github_issues_drive_sessions(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    make_repo(dir.path());
    let git = fake_github(dir.path().to_path_buf()).await;
    let (private_key, public_key) = rsa_key(dir.path());
    let rec = Arc::new(Recorder { public_key, ..Default::default() });
    let api = serve(Router::new().route("/api/{*path}", post(github_api).get(github_api)).with_state(rec.clone())).await;
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| {
        o.unsafe_allow_private_fetch = true;
        o.github_url = Some(git.clone());
    })
    .await
    else {
        return;
    };
    let agent = app
        .ok("/v1/agents", json!({"name": "gh", "model": "claude-sonnet-4-6",
            "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]}))
        .await;
    let integration = app
        .ok("/v1/integrations", json!({"provider": "github", "agent_id": agent["id"], "app_id": APP_ID, "app_slug": "helper-bot",
            "private_key": private_key, "signing_secret": WEBHOOK_SECRET, "trigger_label": "agent", "api_base_url": format!("{api}/api")}))
        .await;
    assert_eq!((integration["clone_repository"].as_bool(), integration.get("interactivity_path")), (Some(true), None));
    assert!(!integration.to_string().contains("PRIVATE KEY"));
    let path = integration["events_path"].as_str().unwrap().to_owned();
    // the console's Check button: the App's JWT is accepted by GitHub
    let member = support::console_member(&app, "ops@example.com", openma_core::accounts::Role::Admin).await;
    let checked = support::console_check(&app, &member, integration["id"].as_str().unwrap()).await;
    assert!(checked.contains("✓ GitHub: the App is helper-bot"), "{checked}");

    // forged and unsigned deliveries are refused
    let first = comment(7, "@helper-bot what does the README say?", "User");
    assert_eq!(github_delivery(&app, &path, "issue_comment", "d-1", &first, "wrong").await, 401);
    assert_eq!(deliver(&app, &path, &[("x-github-event", "issue_comment".into()), ("x-github-delivery", "d-1".into())], &first.to_string()).await, 401);

    // the mention starts the issue's session, with the repository cloned
    model.script(vec![Reply::tool_use("bash", json!({"command": "cat /workspace/app/README.md"})), Reply::text("The README says: second")]);
    assert_eq!(github_delivery(&app, &path, "issue_comment", "d-1", &first, WEBHOOK_SECRET).await, 200);
    assert_eq!(github_delivery(&app, &path, "issue_comment", "d-1", &first, WEBHOOK_SECRET).await, 200, "a redelivery is acknowledged");
    // bash waits for a confirmation: the comment says how to give it
    let comments = rec.wait_for("/repos/acme/app/issues/7/comments", 1).await;
    let ask = comments[0].2["body"].as_str().unwrap();
    assert!(ask.contains("`@helper-bot allow`") && ask.contains("cat /workspace/app/README.md"), "{ask}");
    let sessions = app.get("/v1/sessions").await.body["data"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    let sid = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions[0]["metadata"]["github_repository"], "acme/app");

    // a bot's comment changes nothing; `@helper-bot allow` confirms and the answer is posted
    assert_eq!(github_delivery(&app, &path, "issue_comment", "d-2", &comment(7, "@helper-bot allow", "Bot"), WEBHOOK_SECRET).await, 200);
    assert_eq!(github_delivery(&app, &path, "issue_comment", "d-3", &comment(7, "@helper-bot allow", "User"), WEBHOOK_SECRET).await, 200);
    let comments = rec.wait_for("/repos/acme/app/issues/7/comments", 2).await;
    assert_eq!(comments[1].2["body"], "The README says: second");
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=200")).await.body;
    let result = log["data"].as_array().unwrap().iter().find(|e| e["type"] == "agent.tool_result").expect("bash ran");
    assert!(result["content"][0]["text"].as_str().unwrap().contains("second"), "the clone is in the workspace: {result}");
    assert_eq!(user_messages(&log), 1, "the redelivery and the confirmation added no message");
    // the installation token was minted with a JWT the fake verified, and is shown nowhere
    assert!(!rec.calls_to("/access_tokens").is_empty());
    for p in [format!("/v1/sessions/{sid}/events?limit=200"), format!("/v1/sessions/{sid}"), format!("/v1/sessions/{sid}/resources")] {
        assert!(!app.get(&p).await.body.to_string().contains(TOKEN), "{p}");
    }

    // the trigger label engages it on another issue: a second session
    model.script(vec![Reply::text("On it.")]);
    let labeled = json!({"action": "labeled", "label": {"name": "agent"}, "issue": {"number": 8, "title": "Bug", "body": "It breaks."},
        "repository": {"full_name": "acme/app"}, "installation": {"id": 99}, "sender": {"login": "octocat", "type": "User"}});
    assert_eq!(github_delivery(&app, &path, "issues", "d-4", &labeled, WEBHOOK_SECRET).await, 200);
    let comments = rec.wait_for("/repos/acme/app/issues/8/comments", 1).await;
    assert_eq!(comments[0].2["body"], "On it.");
    assert_eq!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().len(), 2);
}

async fn linear_agent_sessions_drive_sessions(backend: Backend) {
    let rec = Arc::new(Recorder::default());
    let api = serve(Router::new().route("/graphql", post(linear_api)).with_state(rec.clone())).await;
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| o.unsafe_allow_private_fetch = true).await else { return };
    let agent = app.ok("/v1/agents", json!({"name": "lin", "model": "claude-sonnet-4-6"})).await;
    let integration = app
        .ok("/v1/integrations", json!({"provider": "linear", "agent_id": agent["id"], "signing_secret": LINEAR_SECRET, "bot_token": LINEAR_TOKEN, "api_base_url": api}))
        .await;
    let path = integration["events_path"].as_str().unwrap().to_owned();
    let member = support::console_member(&app, "ops@example.com", openma_core::accounts::Role::Admin).await;
    let checked = support::console_check(&app, &member, integration["id"].as_str().unwrap()).await;
    assert!(checked.contains("✓ Linear: acting as Helper Agent"), "{checked}");
    rec.calls.lock().unwrap().clear();
    let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let send = |delivery: &'static str, body: Value, secret: &'static str| {
        let app = &app;
        let path = path.clone();
        async move {
            let body = body.to_string();
            let headers = [("linear-delivery", delivery.to_owned()), ("linear-signature", hex_hmac(secret, &body))];
            deliver(app, &path, &headers, &body).await
        }
    };
    let created = json!({"type": "AgentSessionEvent", "action": "created", "webhookTimestamp": now_ms(),
        "agentSession": {"id": "as-1", "issue": {"identifier": "ENG-12", "title": "Slow page"}},
        "promptContext": "<issue identifier=\"ENG-12\"><title>Slow page</title></issue>"});
    assert_eq!(send("l-1", created.clone(), "wrong").await, 401);
    let stale = json!({"type": "AgentSessionEvent", "action": "created", "webhookTimestamp": now_ms() - 120_000, "agentSession": {"id": "as-1"}});
    assert_eq!(send("l-0", stale, LINEAR_SECRET).await, 401);

    model.script(vec![Reply::text("The page is slow because of N+1 queries.")]);
    assert_eq!(send("l-1", created.clone(), LINEAR_SECRET).await, 200);
    assert_eq!(send("l-1", created, LINEAR_SECRET).await, 200, "a redelivery is acknowledged");
    let calls = rec.wait_for("/graphql", 2).await;
    let kinds: Vec<&str> = calls.iter().map(|c| c.2["variables"]["input"]["content"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thought", "response"]);
    assert_eq!(calls[1].2["variables"]["input"]["agentSessionId"], "as-1");
    assert_eq!(calls[1].2["variables"]["input"]["content"]["body"], "The page is slow because of N+1 queries.");
    assert_eq!(calls[1].1, format!("Bearer {LINEAR_TOKEN}"));
    let sessions = app.get("/v1/sessions").await.body["data"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    let sid = sessions[0]["id"].as_str().unwrap().to_owned();
    assert!(app.get(&format!("/v1/sessions/{sid}/events")).await.body.to_string().contains("ENG-12"));

    // a follow-up continues the same session
    model.script(vec![Reply::text("Batch them with a join.")]);
    let prompted = json!({"type": "AgentSessionEvent", "action": "prompted", "webhookTimestamp": now_ms(),
        "agentSession": {"id": "as-1"}, "agentActivity": {"content": {"type": "prompt", "body": "How do I fix it?"}}});
    assert_eq!(send("l-2", prompted, LINEAR_SECRET).await, 200);
    let calls = rec.wait_for("/graphql", 3).await;
    assert_eq!(calls[2].2["variables"]["input"]["content"]["body"], "Batch them with a join.");
    assert_eq!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().len(), 1);
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=100")).await.body;
    assert_eq!(user_messages(&log), 2);
    assert!(!log.to_string().contains(LINEAR_TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_github_issues_drive_sessions() {
    if !support::sandboxes_available() {
        return;
    }
    github_issues_drive_sessions(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_github_issues_drive_sessions() {
    if !support::sandboxes_available() {
        return;
    }
    github_issues_drive_sessions(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_linear_agent_sessions_drive_sessions() {
    linear_agent_sessions_drive_sessions(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_linear_agent_sessions_drive_sessions() {
    linear_agent_sessions_drive_sessions(Backend::Postgres).await
}
