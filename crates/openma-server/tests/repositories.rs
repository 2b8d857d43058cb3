//! `github_repository` session resources against a fake GitHub (git's HTTP protocol, served
//! from a real bare repository, demanding the token): cloned into the workspace before the
//! agent starts, on the branch or commit asked for, owned by the session; the token never
//! reaches the resource, the event log, the database, `.git/config` or the sandbox.

mod support;

use std::path::Path;
use std::process::Command;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::json;
use support::{Backend, spawn_app_custom, tool_turn};

const TOKEN: &str = "ghs_fake-installation-token-0123456789";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `acme/app.git` with `main` (two commits) and `feature`; returns the
/// first commit's sha.
fn make_repo(root: &Path) -> String {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["config", "user.email", "t@example.com"]);
    git(&work, &["config", "user.name", "t"]);
    std::fs::write(work.join("README.md"), "first\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("README.md"), "second\n").unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    git(&work, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(work.join("feature.txt"), "on the branch\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "feature"]);
    std::fs::create_dir_all(root.join("acme")).unwrap();
    git(root, &["clone", "-q", "--bare", "work", "acme/app.git"]);
    git(&root.join("acme/app.git"), &["update-server-info"]);
    first
}

/// Serves the bare repositories under `root` over git's "dumb" HTTP protocol, to callers
/// that present the token the way GitHub takes it.
async fn fake_github(root: std::path::PathBuf) -> String {
    async fn serve(State(root): State<std::path::PathBuf>, req: Request) -> Response {
        let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}")));
        if req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            let mut r = (AxumStatus::UNAUTHORIZED, "token required").into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"fake\""));
            return r;
        }
        let path = req.uri().path().trim_start_matches('/');
        if path.split('/').any(|s| s == ".." || s.is_empty()) {
            return AxumStatus::NOT_FOUND.into_response();
        }
        match std::fs::read(root.join(path)) {
            Ok(bytes) => Response::new(Body::from(bytes)),
            Err(_) => AxumStatus::NOT_FOUND.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(axum::serve(listener, axum::Router::new().fallback(serve).with_state(root)).into_future());
    format!("http://{addr}")
}

fn everything_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if m.is_dir() {
            everything_under(&p, out)
        } else if m.is_file() {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap_or_default()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_are_cloned_with_the_token_which_goes_nowhere_else() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let repos = tempfile::tempdir().unwrap();
    let first = make_repo(repos.path());
    let github = fake_github(repos.path().to_path_buf()).await;
    let model = FakeModel::start().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.github_url = Some(github.clone())).await.unwrap();
    let agent = app.ok("/v1/agents", json!({"name": "dev", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let repo = "https://github.com/acme/app";

    for (bad, status) in [
        (json!({"type": "github_repository", "url": "https://github.com/acme/app.git", "authorization_token": TOKEN}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": "git@github.com:acme/app", "authorization_token": TOKEN}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": repo, "authorization_token": "wrong-token"}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": repo}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": repo, "authorization_token": TOKEN, "checkout": {"type": "branch", "name": "nope"}}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": "https://github.com/acme/missing", "authorization_token": TOKEN}), StatusCode::BAD_REQUEST),
        (json!({"type": "github_repository", "url": repo, "authorization_token": TOKEN, "mount_path": "/etc/app"}), StatusCode::BAD_REQUEST),
    ] {
        let r = app.post("/v1/sessions", json!({"agent": agent["id"], "resources": [bad]})).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert!(!r.body.to_string().contains(TOKEN));
    }
    assert_eq!(app.get("/v1/sessions").await.body["data"], json!([]), "refused creates leave no session");

    let s = app
        .ok("/v1/sessions", json!({"agent": agent["id"], "resources": [
            {"type": "github_repository", "url": repo, "authorization_token": TOKEN, "checkout": {"type": "branch", "name": "feature"}},
            {"type": "github_repository", "url": repo, "authorization_token": TOKEN, "mount_path": "/workspace/pinned", "checkout": {"type": "commit", "sha": first}},
        ]}))
        .await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let r0 = &s["resources"][0];
    assert_eq!((r0["type"].as_str(), r0["url"].as_str(), r0["mount_path"].as_str()), (Some("github_repository"), Some(repo), Some("/workspace/app")));
    assert_eq!(r0["checkout"], json!({"type": "branch", "name": "feature"}));
    assert_eq!(s["resources"][1]["mount_path"], "/workspace/pinned");
    assert!(!s.to_string().contains(TOKEN));

    let out = tool_turn(&app, &model, &sid, vec![("bash", json!({"command": "cd /workspace/app && cat feature.txt && git log --oneline | wc -l && git -C /workspace/pinned rev-parse HEAD && cat /workspace/pinned/README.md && stat -c %U /workspace/app/feature.txt && cat .git/config && env"}))]).await.remove(0).0;
    assert!(out.contains("on the branch\n3\n"), "{out}");
    assert!(out.contains(&format!("{first}\nfirst\nuser\n")), "{out}");
    assert!(!out.contains(TOKEN) && !out.contains("x-access-token"), "the token reached the sandbox: {out}");

    let rid = r0["id"].as_str().unwrap();
    let rot = app.post(&format!("/v1/sessions/{sid}/resources/{rid}"), json!({"authorization_token": "ghs_new"})).await;
    assert_eq!(rot.status, StatusCode::BAD_REQUEST);
    assert_eq!(rot.body["error"]["details"]["error_code"], "unsupported_feature");
    assert_eq!(app.delete(&format!("/v1/sessions/{sid}/resources/{rid}")).await.status, StatusCode::BAD_REQUEST);

    let events = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await.body.to_string();
    assert!(!events.contains(TOKEN));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    everything_under(&app.data_dir(), &mut files);
    assert!(files.iter().any(|(p, _)| p.ends_with("/app/.git/config")), "the clone is in the data dir's sandboxes");
    for (path, bytes) in &files {
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is stored in {path}");
    }
}
