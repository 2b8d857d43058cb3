//! `openma backup` while the server runs, then `openma restore` into a new data dir.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::ServerProcess;

mod support;

const KEY: &str = "sk-oma-backup-test-0123456789abcdef";

fn serve(dir: &Path) -> ServerProcess {
    ServerProcess::start(dir, &[("OPENMA_BOOTSTRAP_API_KEY", KEY)])
}

fn admin(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_openma")).args(args).arg("--data-dir").arg(dir).env_remove("PLATFORM_ROOT_SECRET").output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

async fn post(base: &str, path: &str, body: Value) -> Value {
    reqwest::Client::new().post(format!("{base}{path}")).bearer_auth(KEY).json(&body).send().await.unwrap().json().await.unwrap()
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(format!("{base}{path}")).bearer_auth(KEY).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_everything() {
    openma_models::install_tls_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("backup"), tmp.path().join("c"));
    let server = serve(&a);
    let agent = post(&server.base, "/v1/agents", json!({"name": "kept", "model": "claude-sonnet-4-6"})).await;
    let session = post(&server.base, "/v1/sessions", json!({"agent": agent["id"]})).await;
    let vault = post(&server.base, "/v1/vaults", json!({"display_name": "v"})).await;
    let vid = vault["id"].as_str().unwrap();
    let cred = post(&server.base, &format!("/v1/vaults/{vid}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://m.example.com", "token": "tok"}})).await;
    let (ok, out) = admin(&["backup", "--to", b.to_str().unwrap()], &a);
    assert!(ok, "{out}");
    assert!(b.join("manifest.json").exists() && b.join("openma.db").exists() && b.join("root.secret").exists());
    drop(server);

    let (ok, out) = admin(&["restore", "--from", b.to_str().unwrap()], &c);
    assert!(ok, "{out}");
    let (again, out) = admin(&["restore", "--from", b.to_str().unwrap()], &c);
    assert!(!again && out.contains("--force"), "an existing database is not overwritten: {out}");
    let restored = serve(&c);
    for path in [
        format!("/v1/agents/{}", agent["id"].as_str().unwrap()),
        format!("/v1/sessions/{}", session["id"].as_str().unwrap()),
        format!("/v1/vaults/{vid}/credentials/{}", cred["id"].as_str().unwrap()),
    ] {
        assert_eq!(get(&restored.base, &path).await.status(), 200, "{path} survives the round trip");
    }
    let (not_empty, out) = admin(&["backup", "--to", b.to_str().unwrap()], &c);
    assert!(!not_empty && out.contains("not empty"), "{out}");
}
