//! The sandbox server's HTTP API on a real listener: authentication, the session lifecycle
//! (sent whole, laid over, taken back, deleted), files by sandbox path, and what it refuses.

use std::io::Write;

use openma_sandbox::archive;
use openma_sandbox_server::Server;
use serde_json::{Value, json};

const TOKEN: &str = "test-sandbox-token-0123456789";
const SID: &str = "sesn_01REMOTETEST";

struct Remote {
    base: String,
    root: std::path::PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Remote {
    openma_models::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let root = dir.path().join("sessions");
    let mut config = openma_sandbox::SandboxConfig::new(&root);
    let credentials = openma_sandbox_server::HeldCredentials::install(&mut config);
    let sandboxes = openma_sandbox::Sandboxes::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(Server::new(sandboxes, TOKEN.to_owned().into(), credentials).serve(listener, std::future::pending()));
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
    Remote { base, root, http, _dir: dir }
}

impl Remote {
    async fn tool(&self, name: &str, input: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}/v1/sessions/{SID}/tools/{name}", self.base)).bearer_auth(TOKEN).json(&json!({"input": input})).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn memory(&self, slug: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}/v1/sessions/{SID}/memory/{slug}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn put_state(&self, mode: &str, pack: Vec<u8>) -> (u16, String) {
        let r = self.http.put(format!("{}/v1/sessions/{SID}/state?mode={mode}", self.base)).bearer_auth(TOKEN).body(pack).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A session directory with `files` (relative path, content), packed.
fn pack_of(files: &[(&str, &str)]) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = src.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(p).unwrap().write_all(content.as_bytes()).unwrap();
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    archive::pack(src.path(), &[], out.path()).unwrap();
    std::fs::read(out.path()).unwrap()
}

fn text(v: &Value) -> String {
    v["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn only_the_token_holder_gets_in_and_health_is_public() {
    let r = start().await;
    let h: Value = r.http.get(format!("{}/health", r.base)).send().await.unwrap().json().await.unwrap();
    assert!(h["status"] == "ok" || h["status"] == "degraded", "{h}");
    assert_eq!(h["sessions"], 0);
    let url = format!("{}/v1/sessions/{SID}/tools/read", r.base);
    for auth in [None, Some("Bearer wrong-token-0123456789"), Some(TOKEN), Some("Bearer ")] {
        let mut req = r.http.post(&url).json(&json!({"input": {"file_path": "/workspace/x"}}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
}

#[tokio::test]
async fn a_session_is_sent_whole_used_by_the_file_tools_laid_over_taken_back_and_deleted() {
    let r = start().await;
    // a session it does not hold: the client learns it must send it whole
    let (status, body) = r.tool("read", json!({"file_path": "/workspace/a.txt"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("session_unknown")), "{body}");
    assert!(!r.root.join(SID).exists(), "asking does not create the session");
    let (status, _) = r.put_state("mounts", pack_of(&[("uploads/u.csv", "1,2")])).await;
    assert_eq!(status, 404, "mounts need a session the server holds");

    let (status, body) = r.put_state("full", pack_of(&[("workspace/a.txt", "alpha\n"), ("uploads/u.csv", "1,2\n")])).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = r.tool("read", json!({"file_path": "/workspace/a.txt"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(text(&body).contains("alpha"), "{body}");
    let (_, body) = r.tool("write", json!({"file_path": "/workspace/b/c.txt", "content": "gamma"})).await;
    assert_eq!(body["is_error"], false, "{body}");
    let (_, body) = r.tool("grep", json!({"pattern": "gamma", "path": "/workspace"})).await;
    assert!(text(&body).contains("c.txt"), "{body}");
    let (_, body) = r.tool("read", json!({"file_path": "/mnt/session/uploads/u.csv"})).await;
    assert!(text(&body).contains("1,2"), "mounted uploads are readable: {body}");
    let (_, body) = r.tool("write", json!({"file_path": "/mnt/session/uploads/u.csv", "content": "x"})).await;
    assert_eq!(body["is_error"], true, "uploads stay read-only: {body}");
    let (_, body) = r.tool("read", json!({"file_path": "/etc/passwd"})).await;
    assert_eq!(body["is_error"], true, "nothing outside the session: {body}");
    let (status, body) = r.tool("rm", json!({})).await;
    assert_eq!(status, 400, "{body}");
    // malformed requests get the error envelope too
    let bad = r.http.post(format!("{}/v1/sessions/{SID}/tools/read", r.base)).bearer_auth(TOKEN).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
    let bad = r.http.put(format!("{}/v1/sessions/{SID}/state?mode=sideways", r.base)).bearer_auth(TOKEN).body(vec![]).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");

    // a mounts pack replaces the uploads (one removed, one added) and leaves the workspace
    let (status, _) = r.put_state("mounts", pack_of(&[("uploads/v.csv", "3,4\n")])).await;
    assert_eq!(status, 204);
    let (_, body) = r.tool("glob", json!({"pattern": "**/*", "path": "/mnt/session/uploads"})).await;
    assert!(text(&body).contains("v.csv") && !text(&body).contains("u.csv"), "{body}");
    let (_, body) = r.tool("read", json!({"file_path": "/workspace/b/c.txt"})).await;
    assert!(text(&body).contains("gamma"), "the workspace is untouched: {body}");

    // files by sandbox path, both ways, without leaving the session
    let file = |p: &str| format!("{}/v1/sessions/{SID}/files?path={p}", r.base);
    let put = r.http.put(file("/mnt/session/outputs/report.md")).bearer_auth(TOKEN).body("# done\n").send().await.unwrap();
    assert_eq!(put.status().as_u16(), 204);
    let got = r.http.get(file("/mnt/session/outputs/report.md")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"# done\n");
    for escape in ["/workspace/../../../etc/shadow", "/etc/passwd", "../sessions"] {
        let got = r.http.get(file(escape)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(got.status().as_u16(), 400, "{escape}");
    }
    std::os::unix::fs::symlink("/etc/passwd", r.root.join(SID).join("workspace/link")).unwrap();
    let got = r.http.get(file("/workspace/link")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 400, "a symlink out of the session is not followed");

    // the whole directory comes back
    let got = r.http.get(format!("{}/v1/sessions/{SID}/state", r.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(got.status().as_u16(), 200);
    let tmp = tempfile::tempdir().unwrap();
    let file_path = tmp.path().join("p.tar.gz");
    std::fs::write(&file_path, got.bytes().await.unwrap()).unwrap();
    archive::unpack(&file_path, &tmp.path().join("back")).unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join("back/workspace/b/c.txt")).unwrap(), "gamma");
    assert_eq!(std::fs::read_to_string(tmp.path().join("back/outputs/report.md")).unwrap(), "# done\n");

    let del = r.http.delete(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(del.status().as_u16(), 204);
    assert!(!r.root.join(SID).exists(), "deleted");
    let (status, _) = r.tool("read", json!({"file_path": "/workspace/a.txt"})).await;
    assert_eq!(status, 404);
    let bad = r.http.delete(format!("{}/v1/sessions/..", r.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert!(bad.status().is_client_error());
}

#[tokio::test]
async fn bash_keeps_its_shell_between_calls_and_across_a_mounts_push() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    assert_eq!(r.put_state("full", pack_of(&[("workspace/app/x.py", "print(6*7)\n")])).await.0, 204);
    let (_, body) = r.tool("bash", json!({"command": "cd app && export ANSWER=yes && python3 x.py"})).await;
    assert!(text(&body).contains("42"), "{body}");
    assert_eq!(r.put_state("mounts", pack_of(&[("uploads/new.txt", "hello")])).await.0, 204);
    let (_, body) = r.tool("bash", json!({"command": "pwd; echo $ANSWER; cat /mnt/session/uploads/new.txt"})).await;
    let out = text(&body);
    assert!(out.contains("/workspace/app") && out.contains("yes") && out.contains("hello"), "the shell survives a mounts push and sees it: {out}");
    assert!(body["usage"]["wall_ms"].is_u64(), "{body}");
    assert_eq!(body["running"], true, "{body}");
    let running: Value = r.http.get(format!("{}/v1/sessions", r.base)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(running["running"], json!([SID]));
    r.http.delete(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).send().await.unwrap();
    let running: Value = r.http.get(format!("{}/v1/sessions", r.base)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(running["running"], json!([]));
}

#[test]
fn the_binary_refuses_to_start_without_a_token_and_prints_its_address_with_one() {
    let bin = env!("CARGO_BIN_EXE_openma-sandbox-server");
    let root = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin).args(["--listen", "127.0.0.1:0", "--root"]).arg(root.path()).env_remove("OPENMA_SANDBOX_TOKEN").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPENMA_SANDBOX_TOKEN"), "{out:?}");
    let mut child = std::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--root"])
        .arg(root.path())
        .env("OPENMA_SANDBOX_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("openma-sandbox-server listening on http://127.0.0.1:"), "{line}");
}

#[tokio::test]
async fn the_state_comes_back_whole_once_then_as_deltas_or_not_at_all() {
    let r = start().await;
    let files: Vec<(String, String)> = (0..200).map(|i| (format!("workspace/tree/f{i}.txt"), "x".repeat(512))).collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    assert_eq!(r.put_state("full", pack_of(&refs)).await.0, 204);
    let get = |since: Option<String>| {
        let url = match since {
            Some(t) => format!("{}/v1/sessions/{SID}/state?since={t}", r.base),
            None => format!("{}/v1/sessions/{SID}/state", r.base),
        };
        r.http.get(url).bearer_auth(TOKEN).send()
    };
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("copy");
    let full = get(None).await.unwrap();
    assert_eq!(full.headers()["x-openma-state"], "full");
    let token = full.headers()["x-openma-state-token"].to_str().unwrap().to_owned();
    let full_bytes = full.bytes().await.unwrap();
    std::fs::write(tmp.path().join("full"), &full_bytes).unwrap();
    archive::unpack(&tmp.path().join("full"), &copy).unwrap();

    let none = get(Some(token.clone())).await.unwrap();
    assert_eq!(none.status().as_u16(), 204, "nothing changed");

    r.tool("write", json!({"file_path": "/workspace/tree/f7.txt", "content": "changed"})).await;
    r.tool("write", json!({"file_path": "/workspace/new.txt", "content": "new"})).await;
    std::fs::remove_file(r.root.join(SID).join("workspace/tree/f9.txt")).unwrap();
    let delta = get(Some(token.clone())).await.unwrap();
    assert_eq!(delta.headers()["x-openma-state"], "delta");
    let next = delta.headers()["x-openma-state-token"].to_str().unwrap().to_owned();
    assert_ne!(next, token);
    let delta_bytes = delta.bytes().await.unwrap();
    assert!(delta_bytes.len() * 4 < full_bytes.len(), "the delta ({}) is far smaller than the whole ({})", delta_bytes.len(), full_bytes.len());
    std::fs::write(tmp.path().join("delta"), &delta_bytes).unwrap();
    archive::apply_delta(&tmp.path().join("delta"), &copy).unwrap();
    assert_eq!(std::fs::read_to_string(copy.join("workspace/tree/f7.txt")).unwrap(), "changed");
    assert_eq!(std::fs::read_to_string(copy.join("workspace/new.txt")).unwrap(), "new");
    assert!(!copy.join("workspace/tree/f9.txt").exists() && copy.join("workspace/tree/f8.txt").exists());

    // an old or unknown token gets the whole directory again
    let again = get(Some(token)).await.unwrap();
    assert_eq!(again.headers()["x-openma-state"], "full");
    assert_eq!(get(Some("nonsense".into())).await.unwrap().headers()["x-openma-state"], "full");
}

#[tokio::test]
async fn a_session_opened_without_a_pack_gets_an_empty_workspace_and_its_network_policy_and_stays_fresh_until_a_tool_runs() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    let open = |body: Value| r.http.put(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).json(&body).send();
    let bad = open(json!({"networking": {"type": "sideways"}})).await.unwrap();
    assert_eq!(bad.status(), 400, "an unknown networking type is refused");
    assert!(!r.root.join(SID).exists(), "a refused open creates nothing");
    assert_eq!(open(json!({})).await.unwrap().status(), 201);
    assert_eq!(open(json!({})).await.unwrap().status(), 201, "fresh until a tool runs: a client cut off mid-open restores then");
    let (status, body) = r.tool("bash", json!({"command": "pwd; ls -A; echo kept > note.txt"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(text(&body).trim(), "/workspace", "an empty workspace: {body}");
    let policy: Value = serde_json::from_slice(&std::fs::read(r.root.join(SID).join("egress.json")).unwrap()).unwrap();
    assert_eq!(policy, json!({"type": "none"}), "no networking: no network");
    let limited = json!({"networking": {"type": "limited", "allowed_hosts": ["API.example.com"], "allow_mcp_servers": true, "allow_package_managers": false},
        "mcp_servers": [{"type": "url", "name": "docs", "url": "https://mcp.example.org/sse"}]});
    assert_eq!(open(limited).await.unwrap().status(), 204, "reopening a held session");
    let policy: Value = serde_json::from_slice(&std::fs::read(r.root.join(SID).join("egress.json")).unwrap()).unwrap();
    assert_eq!(policy, json!({"type": "limited", "allowed_hosts": ["api.example.com"], "package_managers": false, "mcp_hosts": ["mcp.example.org"]}));
    let (_, body) = r.tool("read", json!({"file_path": "/workspace/note.txt"})).await;
    assert!(text(&body).contains("kept"), "the files stay: {body}");
}

#[tokio::test]
async fn a_clone_needs_a_held_session_an_http_remote_and_a_reachable_repository_and_its_token_is_not_echoed() {
    let r = start().await;
    let clone = |body: Value| r.http.post(format!("{}/v1/sessions/{SID}/repositories", r.base)).bearer_auth(TOKEN).json(&body).send();
    let token = "ghs_never-echoed-0123456789";
    let body = |remote: &str, mount: &str| json!({"remote": remote, "mount_path": mount, "token": token});
    let unknown = clone(body("http://127.0.0.1:9/acme/app.git", "/workspace/app")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["code"], "session_unknown");
    let opened = r.http.put(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).json(&json!({})).send().await.unwrap();
    assert_eq!(opened.status(), 201);
    for (remote, why) in [("file:///etc", "http(s)"), ("ext::sh -c touch% /tmp/pwned", "http(s)"), ("http://127.0.0.1:9/acme/app.git", "127.0.0.1")] {
        let refused = clone(body(remote, "/workspace/app")).await.unwrap();
        assert_eq!(refused.status(), 400, "{remote}");
        let text = refused.text().await.unwrap();
        assert!(text.contains(why) && !text.contains(token), "{remote}: {text}");
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    let unknown_field = clone(json!({"remote": "https://github.com/a/b.git", "mount_path": "/workspace/b", "depth": 1})).await.unwrap();
    assert_eq!(unknown_field.status(), 400, "unknown fields are refused");
}

#[tokio::test]
async fn memory_mounts_are_laid_read_back_replaced_and_kept_to_the_mounts_given() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    let lay = |body: Value| r.http.put(format!("{}/v1/sessions/{SID}/memory", r.base)).bearer_auth(TOKEN).json(&body).send();
    let mounts = json!([{"slug": "notes", "writable": true}, {"slug": "rules", "writable": false}]);
    let before = lay(json!({"mounts": mounts})).await.unwrap();
    assert_eq!(before.status(), 404, "a session the server does not hold");
    assert_eq!(before.json::<Value>().await.unwrap()["error"]["code"], "session_unknown");
    assert_eq!(r.http.put(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).json(&json!({})).send().await.unwrap().status(), 201);

    let first = json!({"mounts": mounts, "replace": true, "writes": [
        {"slug": "notes", "path": "/prefs.md", "content": "tabs"},
        {"slug": "rules", "path": "/deep/er/rule.md", "content": "no force pushes"}]});
    assert_eq!(lay(first).await.unwrap().status(), 204);
    let (_, body) = r.tool("bash", json!({"command": "cat /mnt/memory/notes/prefs.md; echo; cat /mnt/memory/rules/deep/er/rule.md; echo; \
        echo spaces > /mnt/memory/notes/prefs.md; printf '\\377' > /mnt/memory/notes/bin.dat; echo x > /mnt/memory/rules/deep/er/rule.md"})).await;
    let out = text(&body);
    assert!(out.starts_with("tabs\nno force pushes"), "{out}");
    assert!(out.contains("Read-only file system"), "a read-only mount refuses writes: {out}");
    let (status, body) = r.memory("notes").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"files": [
        {"slug": "notes", "path": "/bin.dat", "problem": "is not UTF-8 text"},
        {"slug": "notes", "path": "/prefs.md", "content": "spaces\n"}]}));
    assert_eq!(r.memory("rules").await.1["files"][0]["content"], "no force pushes");

    // a change through the API: one file removed, one written; then a replace empties first
    let change = json!({"mounts": mounts, "writes": [{"slug": "notes", "path": "/new.md", "content": "n"}], "removes": [{"slug": "notes", "path": "/prefs.md"}]});
    assert_eq!(lay(change).await.unwrap().status(), 204);
    let paths = |v: &Value| v["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(paths(&r.memory("notes").await.1), ["/bin.dat", "/new.md"]);
    let replace = json!({"mounts": mounts, "replace": true, "writes": [{"slug": "notes", "path": "/only.md", "content": "o"}]});
    assert_eq!(lay(replace).await.unwrap().status(), 204);
    assert_eq!(paths(&r.memory("notes").await.1), ["/only.md"]);
    assert_eq!(paths(&r.memory("rules").await.1), Vec::<String>::new());

    for bad in [
        json!({"mounts": mounts, "writes": [{"slug": "other", "path": "/a.md", "content": "a"}]}),
        json!({"mounts": mounts, "writes": [{"slug": "notes", "path": "/../../escape.md", "content": "a"}]}),
        json!({"mounts": [{"slug": "../up", "writable": true}]}),
        json!({"mounts": mounts, "surprise": true}),
    ] {
        let resp = lay(bad.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    assert!(!r.root.join("escape.md").exists() && !r.root.join(SID).join("escape.md").exists());
    assert_eq!(r.memory("nope").await, (200, json!({"files": []})), "a mount the session does not have holds nothing");
    assert_eq!(r.memory("Not-A-Slug").await.0, 400, "nor is an invalid name");
}

#[tokio::test]
async fn credentials_need_a_held_session_and_plain_names_and_their_secrets_stay_in_memory() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    let put = |body: Value| r.http.put(format!("{}/v1/sessions/{SID}/credentials", r.base)).bearer_auth(TOKEN).json(&body).send();
    let secret = "sk-held-in-memory-only-4242";
    let good = json!({"variables": [{"name": "DEPLOY_TOKEN", "value": "openma_placeholder_00ff"}],
        "substitutions": [{"placeholder": "openma_placeholder_00ff", "secret": secret, "hosts": ["api.test"], "header": true, "body": false}]});
    let before = put(good.clone()).await.unwrap();
    assert_eq!(before.status(), 404, "a session the server does not hold");
    assert_eq!(before.json::<Value>().await.unwrap()["error"]["code"], "session_unknown");
    assert_eq!(r.http.put(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).json(&json!({})).send().await.unwrap().status(), 201);
    for bad in [
        json!({"variables": [{"name": "1BAD", "value": "x"}]}),
        json!({"variables": [{"name": "OK", "value": "x", "extra": 1}]}),
        json!({"substitutions": [{"placeholder": "p", "secret": "s", "header": true}]}),
    ] {
        let resp = put(bad.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
    }
    assert_eq!(put(good).await.unwrap().status(), 204);
    let (_, body) = r.tool("bash", json!({"command": "echo \"seen=$DEPLOY_TOKEN\""})).await;
    assert_eq!(text(&body).trim(), "seen=openma_placeholder_00ff", "the shell has the placeholder");
    // the secret is held in memory only: in no file of the session
    let mut stack = vec![r.root.join(SID)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in {}", p.display());
            }
        }
    }
}

/// `Packages` as the API shows them: every manager's list.
fn packages(pip: &[&str], cargo: &[&str]) -> Value {
    json!({"type": "packages", "apt": [], "cargo": cargo, "gem": [], "go": [], "npm": [], "pip": pip})
}

#[tokio::test]
async fn an_environments_packages_are_built_into_a_layer_its_shell_waits_for_and_its_limits_apply() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    // pip fetches from the real index: more time than the other calls
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(400)).build().unwrap();
    let layer = |body: Value| http.post(format!("{}/v1/layers", r.base)).bearer_auth(TOKEN).json(&body).send();
    let open = |sid: &str, body: Value| http.put(format!("{}/v1/sessions/{sid}", r.base)).bearer_auth(TOKEN).json(&body).send();
    let bash = |sid: &str, command: &str| {
        http.post(format!("{}/v1/sessions/{sid}/tools/bash", r.base)).bearer_auth(TOKEN).json(&json!({"input": {"command": command}})).send()
    };
    for bad in [
        json!({"packages": packages(&[], &["ripgrep"])}),
        json!({"packages": packages(&[], &[])}),
        json!({"packages": packages(&["six"], &[]), "build": "now"}),
    ] {
        let res = layer(bad.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }
    let refused = open(SID, json!({"environment": {"packages": packages(&[], &["ripgrep"])}})).await.unwrap();
    assert_eq!(refused.status(), 400, "a manager the builder does not run is refused, not dropped");
    assert!(!r.root.join(SID).exists(), "a refused open creates nothing");
    let before: Value = layer(json!({"packages": packages(&["six"], &[])})).await.unwrap().json().await.unwrap();
    assert_eq!(before["state"], "pending", "asking how it stands starts nothing: {before}");

    // opening the session starts the build; its first shell waits for it
    let environment = json!({"packages": packages(&["six"], &[]), "limits": {"open_files": 300}});
    assert_eq!(open(SID, json!({"environment": environment})).await.unwrap().status(), 201);
    let started: Value = layer(json!({"packages": packages(&["six"], &[])})).await.unwrap().json().await.unwrap();
    assert!(started["state"] == "building" || started["state"] == "ready", "{started}");
    let res = bash(SID, "python3 -c 'import six; print(\"six\", six.__version__)'; ulimit -n").await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let out = text(&body);
    assert_eq!(body["is_error"], false, "{out}");
    assert!(out.contains("six 1.") && out.lines().any(|l| l.trim() == "300"), "the layer is mounted and the limit applies: {out}");
    let built: Value = layer(json!({"packages": packages(&["six"], &[])})).await.unwrap().json().await.unwrap();
    assert_eq!(built["state"], "ready", "{built}");
    assert!(built["log"].as_str().unwrap().contains("layer ready") && built["hash"] == before["hash"], "{built}");
    assert!(r.root.parent().unwrap().join("layers").join(built["hash"].as_str().unwrap()).join("root").is_dir());

    // a package that does not exist: the build fails, and the shell's start says why
    let broken = "sesn_01REMOTEBROKEN";
    let environment = json!({"packages": packages(&["openma-no-such-package-zq9"], &[])});
    assert_eq!(open(broken, json!({"environment": environment})).await.unwrap().status(), 201);
    let body: Value = bash(broken, "echo never").await.unwrap().json().await.unwrap();
    let out = text(&body);
    assert_eq!(body["is_error"], true, "{out}");
    assert!(out.contains("failed to build") && out.contains("pip"), "{out}");
    let failed: Value = layer(json!({"packages": packages(&["openma-no-such-package-zq9"], &[])})).await.unwrap().json().await.unwrap();
    assert_eq!(failed["state"], "failed", "{failed}");
    // a retry builds again (and fails again, here)
    let retried: Value = layer(json!({"packages": packages(&["openma-no-such-package-zq9"], &[]), "build": "retry"})).await.unwrap().json().await.unwrap();
    assert_eq!(retried["state"], "building", "{retried}");
}

/// A stdio MCP server (newline-delimited JSON-RPC): `note` writes into the workspace,
/// `ask` pings its client first and answers once the ping's answer came, `crash` exits.
const STDIO_SERVER: &str = r#"
import json, os, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
def text(i, t):
    send({"jsonrpc": "2.0", "id": i, "result": {"content": [{"type": "text", "text": t}]}})
for line in sys.stdin:
    req = json.loads(line)
    m, i = req.get("method"), req.get("id")
    if m == "initialize":
        send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "starting"}})
        send({"jsonrpc": "2.0", "id": i, "result": {"protocolVersion": req["params"]["protocolVersion"], "capabilities": {"tools": {}}, "serverInfo": {"name": "s", "version": "1"}}})
    elif m == "tools/list":
        send({"jsonrpc": "2.0", "id": i, "result": {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ("note", "ask", "crash")]}})
    elif m == "tools/call":
        name = req["params"]["name"]
        if name == "note":
            open("/workspace/from-mcp.txt", "w").write(os.environ["GREETING"] + " uid=" + str(os.getuid()))
            text(i, "written")
        elif name == "ask":
            send({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})
            send({"jsonrpc": "2.0", "id": "srv-2", "method": "roots/list"})
            answers = [json.loads(sys.stdin.readline()) for _ in range(2)]
            text(i, json.dumps(answers))
        elif name == "crash":
            os._exit(3)
"#;

#[tokio::test]
async fn a_stdio_mcp_server_runs_in_the_session_sandbox_and_is_spoken_to_over_streamable_http() {
    if openma_sandbox::Sandboxes::check().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install bubblewrap");
        return;
    }
    let r = start().await;
    let url = format!("{}{}", r.base, openma_types::sandbox::mcp_path(SID, "local tools"));
    let post = |session: Option<&str>, body: Value| {
        let mut req = r.http.post(&url).bearer_auth(TOKEN).json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let call = |id: i64, name: &str| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": {}}});

    let res = post(None, initialize.clone()).await.unwrap();
    assert_eq!(res.status(), 404, "the server does not hold the session yet");
    assert!(res.text().await.unwrap().contains(openma_types::sandbox::SESSION_UNKNOWN), "the client knows to open it");
    let server = json!({"type": "stdio", "name": "local tools", "command": ["python3", "-u", "-c", STDIO_SERVER], "env": {"GREETING": "hello"},
        "configs": [], "default_config": {"enabled": true, "permission_policy": {"type": "always_allow"}}});
    let opened = r.http.put(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).json(&json!({"environment": {"mcp_servers": [server]}})).send().await.unwrap();
    assert_eq!(opened.status(), 201);
    let other = format!("{}{}", r.base, openma_types::sandbox::mcp_path(SID, "other"));
    let res = r.http.post(&other).bearer_auth(TOKEN).json(&initialize).send().await.unwrap();
    assert_eq!(res.status(), 404, "a server the environment does not name");
    let res = r.http.post(&url).json(&initialize).send().await.unwrap();
    assert_eq!(res.status(), 401, "the bridge is behind the token like the rest");

    // the handshake starts the program; its answer carries the MCP session
    let res = post(None, initialize.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    let session = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "s", "the response, not the notification before it: {body}");
    let res = post(Some(&session), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await.unwrap();
    assert_eq!(res.status(), 202);
    let listed: Value = post(Some(&session), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).await.unwrap().json().await.unwrap();
    assert_eq!(listed["result"]["tools"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(post(None, call(3, "note")).await.unwrap().status(), 400, "other messages need the MCP session");
    assert_eq!(post(Some("not-it"), call(3, "note")).await.unwrap().status(), 404);

    // it runs in the session's sandbox: the shell sees what it wrote, as the session's user
    let written: Value = post(Some(&session), call(3, "note")).await.unwrap().json().await.unwrap();
    assert_eq!(written["result"]["content"][0]["text"], "written", "{written}");
    let (status, out) = r.tool("bash", json!({"command": "cat /workspace/from-mcp.txt; echo; id -u"})).await;
    assert_eq!(status, 200);
    let lines: Vec<String> = text(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], format!("hello uid={}", lines[1]), "{lines:?}");

    // what the program asks of its client is answered by the bridge
    let asked: Value = post(Some(&session), call(4, "ask")).await.unwrap().json().await.unwrap();
    let answers: Value = serde_json::from_str(asked["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": "srv-1", "result": {}}));
    assert_eq!(answers[1]["id"], "srv-2");
    assert_eq!(answers[1]["error"]["code"], -32601);

    // a program that exits fails the request it was answering, and its MCP session is over
    let crashed = post(Some(&session), call(5, "crash")).await.unwrap();
    assert_eq!(crashed.status(), 502);
    assert!(crashed.text().await.unwrap().contains("exited"));
    assert_eq!(post(Some(&session), call(6, "note")).await.unwrap().status(), 404, "the client is told to initialize anew");

    // a new handshake starts the program again, under a new MCP session; the old one is gone
    let res = post(None, initialize.clone()).await.unwrap();
    let again = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert_ne!(again, session);
    assert_eq!(post(Some(&again), call(7, "note")).await.unwrap().status(), 200);
    assert_eq!(post(Some(&session), call(8, "note")).await.unwrap().status(), 404);
    let deleted = r.http.delete(&url).bearer_auth(TOKEN).header("mcp-session-id", &again).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(post(Some(&again), call(9, "note")).await.unwrap().status(), 404);

    // deleting the session ends its MCP sessions
    let res = post(None, initialize.clone()).await.unwrap();
    let last = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert_eq!(r.http.delete(format!("{}/v1/sessions/{SID}", r.base)).bearer_auth(TOKEN).send().await.unwrap().status(), 204);
    assert_eq!(post(Some(&last), call(10, "note")).await.unwrap().status(), 404);
}
