//! `github_repository` session resources against a fake GitHub (git's HTTP protocol, served
//! from a real bare repository, demanding the token): cloned into the workspace before the
//! agent starts, on the branch or commit asked for, owned by the session; the token never
//! reaches the resource, the event log, the database, `.git/config` or the sandbox.

mod support;

use std::path::Path;

use openma_fake_model::FakeModel;
use reqwest::StatusCode;
use serde_json::json;
use support::git::{TOKEN, fake_github, make_repo};
use support::{Backend, spawn_app_custom, tool_turn};

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
