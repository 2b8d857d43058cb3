//! The root secret end to end with the real binary: generated on first start into a
//! 0600 file, rotated with `openma secrets rotate`, and a wrong one refused at start-up.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;

fn openma(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_openma"));
    c.arg("--data-dir").arg(dir).env_remove("PLATFORM_ROOT_SECRET").env("RUST_LOG", "warn");
    c
}

/// Starts the server; `Ok` once it is listening (then stops it), `Err(stderr)` when it
/// refuses to start.
fn start_and_stop(dir: &Path, env: &[(&str, &str)]) -> Result<(), String> {
    let mut cmd = openma(dir);
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    if line.starts_with("openma listening on") {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(());
    }
    let out = child.wait_with_output().unwrap();
    Err(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn root_secret_is_generated_rotated_and_checked_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(dir.path(), &[]).expect("first start");
    let file = dir.path().join("root.secret");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated root secret is private");
    let first = std::fs::read_to_string(&file).unwrap();

    let out = openma(dir.path()).args(["secrets", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(first, second, "rotation writes a new root");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(second.trim()), "the new secret is not printed in file mode");
    start_and_stop(dir.path(), &[]).expect("starts with the rotated root");

    // the old root no longer opens anything
    std::fs::write(&file, &first).unwrap();
    let err = start_and_stop(dir.path(), &[]).expect_err("a wrong root must be refused");
    assert!(err.contains("does not match"), "{err}");
    std::fs::write(&file, &second).unwrap();

    // an explicit root must be long enough, and must match the database too
    let short = start_and_stop(dir.path(), &[("PLATFORM_ROOT_SECRET", "too-short")]).expect_err("short root");
    assert!(short.contains("at least 32 characters"), "{short}");
    let other = start_and_stop(dir.path(), &[("PLATFORM_ROOT_SECRET", &"y".repeat(40))]).expect_err("other root");
    assert!(other.contains("does not match"), "{other}");
    std::thread::sleep(Duration::from_millis(10));
    start_and_stop(dir.path(), &[]).expect("the right root still works");
}

/// A model card's key is re-sealed by rotation: after the old root is gone, the card still
/// serves its tenant's turns with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_model_card_keys() {
    use std::time::Instant;

    use openma_fake_model::{FakeModel, sha256_hex};
    use serde_json::{Value, json};

    openma_models::install_tls_provider();
    let card_key = "sk-card-rotated-key-0123456789";
    let api_key = "sk-oma-rotation-0123456789abcdef";
    let model = FakeModel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let post = async |base: &str, path: &str, body: Value| {
        let r = http.post(format!("{base}{path}")).bearer_auth(api_key).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json::<Value>().await.unwrap()
    };
    let env = [("OPENMA_BOOTSTRAP_API_KEY", api_key)];
    let agent = {
        let server = support::ServerProcess::start(dir.path(), &env);
        post(&server.base, "/v1/model_cards", json!({"name": "c", "provider": "anthropic_compatible", "base_url": model.base_url(), "api_key": card_key, "models": ["claude-sonnet-4-6"]})).await;
        post(&server.base, "/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await
    };

    let out = openma(dir.path()).args(["secrets", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let server = support::ServerProcess::start(dir.path(), &env);
    let s = post(&server.base, "/v1/sessions", json!({"agent": agent["id"]})).await;
    let sid = s["id"].as_str().unwrap();
    post(&server.base, &format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let text = http.get(format!("{}/v1/sessions/{sid}/events?limit=1000", server.base)).bearer_auth(api_key).send().await.unwrap().text().await.unwrap();
        if text.contains("session.status_idle") || text.contains("session.status_terminated") {
            break text;
        }
        assert!(Instant::now() < deadline, "the turn did not settle: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!events.contains("session.error"), "the card's key opens under the new root: {events}");
    let reqs = model.requests();
    assert_eq!(reqs.len(), 1, "{events}");
    assert_eq!(reqs[0].credentials.get("x-api-key"), Some(&sha256_hex(card_key)));
}

/// Vault credential secrets are re-sealed by rotation: with only the new root, every
/// sealed field still opens to what the client sent, and the old root alone opens none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_vault_credentials() {
    use openma_core::secrets::{RootSecret, SecretBox};
    use serde_json::{Value, json};

    openma_models::install_tls_provider();
    let api_key = "sk-oma-rotation-vault-0123456789ab";
    let token = "bearer-token-that-must-survive-rotation-0123";
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let env = [("OPENMA_BOOTSTRAP_API_KEY", api_key)];
    let cred = {
        let server = support::ServerProcess::start(dir.path(), &env);
        let post = async |path: &str, body: Value| {
            let r = http.post(format!("{}{path}", server.base)).bearer_auth(api_key).json(&body).send().await.unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
            r.json::<Value>().await.unwrap()
        };
        let vault = post("/v1/vaults", json!({"display_name": "v"})).await;
        let vid = vault["id"].as_str().unwrap();
        post(&format!("/v1/vaults/{vid}/credentials"), json!({"auth": {"type": "static_bearer", "mcp_server_url": "https://mcp.example.com/mcp", "token": token}})).await
    };
    let old_root = std::fs::read_to_string(dir.path().join("root.secret")).unwrap();

    let out = openma(dir.path()).args(["secrets", "rotate"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new_root = std::fs::read_to_string(dir.path().join("root.secret")).unwrap();
    assert_ne!(old_root.trim(), new_root.trim());

    let settings = openma_server::config::Settings::resolve(openma_server::config::Overrides { data_dir: Some(dir.path().into()), ..Default::default() }).unwrap();
    let platform = openma_server::app::open_platform(&settings).await.unwrap();
    let tenant = platform.find_tenant("default").await.unwrap().id;
    let stored = platform.store.get_credential(&tenant, cred["vault_id"].as_str().unwrap(), cred["id"].as_str().unwrap()).await.unwrap().unwrap();
    let only = |root: &str| SecretBox::new(RootSecret::from_text(root.trim()).unwrap(), vec![]);
    assert_eq!(openma_core::vaults::open_secret(&only(&new_root), &tenant, &stored, "token").as_deref(), Some(token));
    assert_eq!(openma_core::vaults::open_secret(&only(&old_root), &tenant, &stored, "token"), None, "sealed under the new root only");
}
