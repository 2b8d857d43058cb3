//! `environment_variable` credentials end to end: the sandbox's shell sees only a
//! placeholder; the egress proxy puts the secret in its place in requests to the
//! credential's allowed hosts, in the enabled locations only — over HTTPS, terminated with
//! the deployment's egress CA, which the sandbox trusts. A local HTTPS server (its own test
//! CA, trusted by the proxy through the test-only `OPENMA_UNSAFE_EGRESS_UPSTREAM_CA`) echoes
//! what it received.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use openma_fake_model::FakeModel;
use serde_json::json;
use support::{Backend, spawn_app_custom, tool_turn};

const SECRET: &str = "sk-live-REAL-secret-8fQ2";

const ECHO: &str = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        out = json.dumps({"host": self.headers.get("host"), "auth": self.headers.get("authorization"), "x": self.headers.get("x-token"), "body": body}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test CA and an HTTPS echo server for `api.test` and `other.test` signed by it.
fn echo_server(dir: &std::path::Path) -> (Child, u16, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "egress test upstream CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["api.test".to_owned(), "other.test".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let (ca_path, cert_path, key_path, script) = (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"), dir.join("echo.py"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&script, ECHO).unwrap();
    let mut child = Command::new("python3").arg(&script).arg(&cert_path).arg(&key_path).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Child(child), line.trim().parse().expect("the echo server's port"), ca_path)
}

/// The same echo server over plain HTTP.
fn plain_echo_server(dir: &std::path::Path) -> (Child, u16) {
    let script = dir.join("plain.py");
    std::fs::write(&script, ECHO).unwrap();
    let mut child = Command::new("python3").arg(&script).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (Child(child), line.trim().parse().expect("the echo server's port"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_goes_only_to_allowed_hosts_in_enabled_locations() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_echo, port, ca) = echo_server(dir.path());
    let (_plain, plain_port) = plain_echo_server(dir.path());
    let model = FakeModel::start().await;
    let resolve = format!("api.test=127.0.0.1:{port},other.test=127.0.0.1:{port},plain.test=127.0.0.1:{plain_port}");
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| {
        o.unsafe_egress_resolve = Some(resolve);
        o.unsafe_egress_upstream_ca = Some(ca);
    })
    .await
    .unwrap();
    let sid = substitution_turn(&app, &model).await;
    no_secret_under(&app.data_dir().join("sandboxes").join(&sid));
}

/// The same through a remote sandbox (`OPENMA_SANDBOX_URL`): the server looks the
/// credentials up before each tool and gives them to the sandbox server, whose egress proxy
/// substitutes them; they never reach its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_sandbox_server_substitutes_them_the_same_way() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let (_echo, port, ca) = echo_server(dir.path());
    let (_plain, plain_port) = plain_echo_server(dir.path());
    let root = dir.path().join("sessions");
    let mut config = openma_sandbox::SandboxConfig::new(&root);
    config.egress.bridge = env!("CARGO_BIN_EXE_openma").into();
    config.egress.resolve = openma_sandbox::ResolveOverrides::parse(&format!("api.test=127.0.0.1:{port},other.test=127.0.0.1:{port},plain.test=127.0.0.1:{plain_port}")).unwrap();
    config.egress.ca = Some(std::sync::Arc::new(openma_sandbox::intercept::EgressCa::load_or_create(&dir.path().join("egress-ca")).unwrap()));
    config.egress.upstream_roots = Some(openma_sandbox::intercept::upstream_roots(&[std::fs::read_to_string(&ca).unwrap()]));
    let credentials = openma_sandbox_server::HeldCredentials::install(&mut config);
    let server = openma_sandbox_server::Server::new(openma_sandbox::Sandboxes::new(config), REMOTE_TOKEN.to_owned().into(), credentials);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server.serve(listener, std::future::pending()));
    let model = FakeModel::start().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), move |o| {
        o.sandbox_url = Some(url);
        o.sandbox_token = Some(REMOTE_TOKEN.to_owned());
    })
    .await
    .unwrap();
    let sid = substitution_turn(&app, &model).await;
    assert!(root.join(&sid).join("workspace").is_dir(), "the tools ran on the sandbox server");
    no_secret_under(&root);
}

const REMOTE_TOKEN: &str = "test-remote-sandbox-token-0123456789";

/// Two credentials, a turn of requests through the egress proxy, and what the echo servers
/// received; the session's id.
async fn substitution_turn(app: &support::TestApp, model: &FakeModel) -> String {
    let vault = app.ok("/v1/vaults", json!({"display_name": "deploy"})).await["id"].as_str().unwrap().to_owned();
    app.ok(&format!("/v1/vaults/{vault}/credentials"), json!({"auth": {"type": "environment_variable", "secret_name": "DEPLOY_TOKEN", "secret_value": SECRET,
        "networking": {"type": "limited", "allowed_hosts": ["api.test"]}, "injection_location": {"header": true, "body": false}}}))
    .await;
    // a second credential, for the body only, to a plain-HTTP host
    app.ok(&format!("/v1/vaults/{vault}/credentials"), json!({"auth": {"type": "environment_variable", "secret_name": "FORM_TOKEN", "secret_value": "form-SECRET-77",
        "networking": {"type": "limited", "allowed_hosts": ["plain.test"]}, "injection_location": {"header": false, "body": true}}}))
    .await;
    let agent = app.ok("/v1/agents", json!({"name": "deployer", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "vault_ids": [vault]})).await["id"].as_str().unwrap().to_owned();
    let python = "import os, urllib.request\nr = urllib.request.Request('https://api.test/py', headers={'X-Token': os.environ['DEPLOY_TOKEN']})\nprint(urllib.request.urlopen(r, timeout=20).read().decode())";
    let results = tokio::time::timeout(
        Duration::from_secs(120),
        tool_turn(app, model, &sid, vec![
            ("bash", json!({"command": "echo \"seen=$DEPLOY_TOKEN\""})),
            ("bash", json!({"command": "curl -sS --max-time 20 https://api.test/curl -H \"Authorization: Bearer $DEPLOY_TOKEN\" --data \"token=$DEPLOY_TOKEN\""})),
            // not intercepted: the sandbox sees the test server's own certificate, from a CA it
            // does not know (a public host's would verify), hence -k
            ("bash", json!({"command": "curl -sS -k --max-time 20 https://other.test/curl -H \"Authorization: Bearer $DEPLOY_TOKEN\""})),
            ("bash", json!({"command": format!("python3 -c \"{python}\"")})),
            ("bash", json!({"command": "curl -sS --max-time 20 http://plain.test/form -H \"X-Token: $FORM_TOKEN\" --data \"token=$FORM_TOKEN&more=1\""})),
        ]),
    )
    .await
    .expect("the turn finished");
    let texts: Vec<&str> = results.iter().map(|(t, _)| t.as_str()).collect();
    let placeholder = texts[0].trim().strip_prefix("seen=").expect("the variable is set").to_owned();
    assert!(placeholder.starts_with("openma_placeholder_") && !placeholder.contains(SECRET), "{placeholder}");

    let allowed: serde_json::Value = serde_json::from_str(texts[1].trim()).unwrap_or_else(|e| panic!("{e}: {}", texts[1]));
    assert_eq!(allowed["auth"], format!("Bearer {SECRET}"), "the header location is enabled and the host allowed");
    assert_eq!(allowed["body"], format!("token={placeholder}"), "the body location is disabled: the placeholder goes as it is");

    let other: serde_json::Value = serde_json::from_str(texts[2].trim()).unwrap_or_else(|e| panic!("{e}: {}", texts[2]));
    assert_eq!(other["auth"], format!("Bearer {placeholder}"), "a host the credential does not allow never gets the secret");

    let py: serde_json::Value = serde_json::from_str(texts[3].trim()).unwrap_or_else(|e| panic!("{e}: {}", texts[3]));
    assert_eq!(py["x"], SECRET, "Python's urllib trusts the sandbox's CA bundle too");

    // plain HTTP: the body location is enabled, the header one is not
    let plain: serde_json::Value = serde_json::from_str(texts[4].trim()).unwrap_or_else(|e| panic!("{e}: {}", texts[4]));
    assert_eq!(plain["body"], "token=form-SECRET-77&more=1", "{plain}");
    assert!(plain["x"].as_str().unwrap().starts_with("openma_placeholder_"), "{plain}");

    sid
}

/// No file under `dir` holds the secret (but what a command printed to outputs).
fn no_secret_under(dir: &std::path::Path) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()) || p.to_string_lossy().contains(".openma/outputs"), "the secret is in {}", p.display());
            }
        }
    }
}

/// A credential allowed to reach a host the environment's network policy forbids is
/// reported once, with its ids; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_host_the_environment_forbids_is_reported_once() {
    let model = FakeModel::start().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |_| {}).await.unwrap();
    let vault = app.ok("/v1/vaults", json!({"display_name": "deploy"})).await["id"].as_str().unwrap().to_owned();
    let cred = app
        .ok(&format!("/v1/vaults/{vault}/credentials"), json!({"auth": {"type": "environment_variable", "secret_name": "DEPLOY_TOKEN", "secret_value": SECRET,
            "networking": {"type": "limited", "allowed_hosts": ["api.example.com", "deploy.example.org"]}}}))
        .await;
    let env = app.ok("/v1/environments", json!({"name": "limited", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]}}})).await;
    let agent = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"], "environment_id": env["id"], "vault_ids": [vault]})).await["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        model.script(vec![openma_fake_model::Reply::text("ok")]);
        let mut stream = support::SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
        app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
        stream.until(support::settled).await;
    }
    let errors = app.get(&format!("/v1/sessions/{sid}/events?types[]=session.error")).await.body;
    let errors = errors["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "reported once: {errors:?}");
    let e = &errors[0]["error"];
    assert_eq!(e["type"], "credential_host_unreachable_error");
    assert_eq!((e["credential_id"].as_str(), e["vault_id"].as_str()), (cred["id"].as_str(), Some(vault.as_str())));
    assert!(e["message"].as_str().unwrap().contains("deploy.example.org") && !e["message"].as_str().unwrap().contains("api.example.com,"), "{e}");
}
