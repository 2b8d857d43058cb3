//! A fake GitHub for git: bare repositories served over git's "dumb" HTTP protocol to
//! callers that present the installation token the way GitHub takes it.

use std::path::Path;
use std::process::Command;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The installation token the fake demands.
pub const TOKEN: &str = "ghs_fake-installation-token-0123456789";

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1").env("HOME", dir).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository `acme/app.git` with `main` (two commits) and `feature`; returns the
/// first commit's sha.
pub fn make_repo(root: &Path) -> String {
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
pub async fn fake_github(root: std::path::PathBuf) -> String {
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

