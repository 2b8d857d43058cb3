//! `spawn_app`: a real server on 127.0.0.1:0 over a fresh database (a SQLite file in a
//! temp dir, or a new PostgreSQL database from `OPENMA_TEST_POSTGRES_URL`); and
//! `ServerProcess`: the real binary as a child process, for crash and restart tests.
#![allow(dead_code)]

pub mod git;

/// A console member of the default tenant, signed in: a client that does not follow
/// redirects, its session cookie and the CSRF token of its pages.
pub async fn console_member(app: &TestApp, email: &str, role: openma_core::accounts::Role) -> (reqwest::Client, String, String) {
    const PASSWORD: &str = "a console password for tests";
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let hash = openma_server::console::hash_password(PASSWORD).unwrap();
    app.platform.add_member(email, &hash, &tenant.id, role).await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs([("email", email), ("password", PASSWORD)]).finish();
    let login = http.post(format!("{}/console/login", app.base)).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = http.get(format!("{}/console", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (http, cookie, csrf)
}

/// The console's **Check** button for an integration: the text the page shows.
pub async fn console_check(app: &TestApp, member: &(reqwest::Client, String, String), integration_id: &str) -> String {
    let (http, cookie, csrf) = member;
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs([("csrf", csrf.as_str())]).finish();
    http.post(format!("{}/console/integrations/{integration_id}/check", app.base))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Whether this host can run sandboxes; CI must be able to (a test that needs them skips
/// elsewhere).
pub fn sandboxes_available() -> bool {
    let ok = openma_sandbox::Sandboxes::check().is_ok();
    assert!(ok || std::env::var_os("CI").is_none(), "CI must install bubblewrap");
    ok
}

/// Runs each story `async fn name(app: TestApp)` once per backend.
#[allow(unused_macros)]
macro_rules! backend_stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { if let Some(app) = super::spawn_app(super::Backend::Sqlite).await { super::$name(app).await } } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { if let Some(app) = super::spawn_app(super::Backend::Postgres).await { super::$name(app).await } } )*
        }
    };
}

/// `openma serve` as a child process on a free port; killed (SIGKILL) when dropped.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts the binary on `data_dir` with extra environment and waits for its ready line.
    pub fn start(data_dir: &std::path::Path, env: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_openma"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("PLATFORM_ROOT_SECRET")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("openma starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready line");
        let base = line.trim().strip_prefix("openma listening on ").expect("ready line format").to_owned();
        ServerProcess { child, base }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use std::time::Duration;

use openma_core::Platform;
use openma_server::app;
use openma_server::config::{Overrides, Settings};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub key: String,
    pub http: reqwest::Client,
    pub platform: Platform,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A response reduced to what tests look at.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts the Anthropic error envelope and returns `error.type`.
    pub fn error_type(&self) -> &str {
        assert_eq!(self.body["type"], "error", "not an error envelope: {}", self.body);
        assert!(self.body["request_id"].as_str().is_some_and(|r| r.starts_with("req_")), "{}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        assert_eq!(self.headers.get("request-id").and_then(|v| v.to_str().ok()), self.body["request_id"].as_str());
        self.body["error"]["type"].as_str().unwrap_or_default()
    }
}

const KEY: &str = "sk-oma-test-0123456789abcdefghij";

/// Returns `None` (after saying why) when PostgreSQL is not configured outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with_model(backend, None).await
}

/// A server whose Anthropic provider is the fake model at `model_base`, with quick
/// retries (base 20 ms, at most 2).
pub async fn spawn_app_with_model(backend: Backend, model_base: Option<String>) -> Option<TestApp> {
    spawn_app_custom(backend, model_base, |_| {}).await
}

/// [`spawn_app_with_model`] with a last word on the settings.
pub async fn spawn_app_custom(
    backend: Backend,
    model_base: Option<String>,
    adjust: impl FnOnce(&mut Overrides),
) -> Option<TestApp> {
    openma_models::install_tls_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    // sandboxes run as their own uid and must pass through the test's temp dir
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgDatabase::create().await?),
    };
    let database_url = pg.as_ref().map(|d| d.url.clone());
    let mut overrides = Overrides {
        data_dir: Some(dir.path().join("data")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        database_url,
        bootstrap_api_key: Some(KEY.into()),
        root_secret: Some("test-root-secret-0123456789abcdefghijklmnop".into()),
        // the in-process server's own executable is the test binary: bind the real one
        sandbox_bridge: Some(env!("CARGO_BIN_EXE_openma").into()),
        model_max_retries: Some(2),
        model_retry_base_ms: Some(20),
        providers: openma_server::config::Providers {
            anthropic_api_key: model_base.as_ref().map(|_| secrecy::SecretString::from("sk-ant-fake-test-key")),
            anthropic_base_url: model_base.clone(),
            openai_api_key: model_base.as_ref().map(|_| secrecy::SecretString::from("sk-openai-fake-test-key")),
            openai_base_url: model_base,
        },
        ..Default::default()
    };
    adjust(&mut overrides);
    let settings = Settings::resolve(overrides).unwrap();
    let prepared = app::prepare(&settings).await.expect("server starts");
    let base = format!("http://{}", prepared.addr);
    let mut platform = app::open_platform(&settings).await.expect("admin handle");
    openma_server::secrets::install(&mut platform, &settings).await.expect("root secret");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app::serve(prepared, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    Some(TestApp { base, key: KEY.into(), http, platform, _dir: dir, _pg: pg, stop: Some(tx) })
}

async fn sqlx_admin(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.expect("connect to OPENMA_TEST_POSTGRES_URL")
}

/// Replaces the database name of a PostgreSQL URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = &base[scheme_end..];
    let prefix = match host_part.find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A fresh PostgreSQL database of its own, dropped with this value.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// `None` (after saying why) when PostgreSQL is not configured outside CI.
    pub async fn create() -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("OPENMA_TEST_POSTGRES_URL") else {
            assert!(std::env::var_os("CI").is_none(), "CI must set OPENMA_TEST_POSTGRES_URL");
            eprintln!("skipping: OPENMA_TEST_POSTGRES_URL is not set");
            return None;
        };
        let name = format!("openma_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = sqlx_admin(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create database");
        admin.close().await;
        Some(PgDatabase { url: with_database(&admin_url, &name), admin_url, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // best effort, on a thread of its own: Drop cannot await
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(admin) = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await;
                }
            });
        })
        .join();
    }
}

/// What a blocking helper needs to reach the server.
#[derive(Clone)]
pub struct Handle {
    pub base: String,
    pub key: String,
}

impl TestApp {
    pub fn clone_handle(&self) -> Handle {
        Handle { base: self.base.clone(), key: self.key.clone() }
    }

    /// The data dir (SQLite file, root secret, blobs).
    pub fn data_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("data")
    }

    /// The database the server uses: the SQLite file in the data dir, or its own PostgreSQL database.
    pub fn database_url(&self) -> String {
        match &self._pg {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.data_dir().join("openma.db").display()),
        }
    }

    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.key), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.key), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.key), None).await
    }

    /// POST expecting 200; returns the body.
    pub async fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        assert_eq!(r.status, StatusCode::OK, "POST {path}: {}", r.body);
        r.body
    }

    /// `POST /v1/files` with a hand-built multipart body: `parts` are (name, filename,
    /// content type, bytes), in order.
    pub async fn upload_parts(&self, key: &str, parts: &[(&str, Option<&str>, Option<&str>, &[u8])]) -> Reply {
        self.post_multipart("/v1/files", key, parts).await
    }

    /// `POST path` with a hand-built multipart body: `parts` are (name, filename, content
    /// type, bytes), in order.
    pub async fn post_multipart(&self, path: &str, key: &str, parts: &[(&str, Option<&str>, Option<&str>, &[u8])]) -> Reply {
        let boundary = "openma-test-boundary-7MA4YWxkTrZu0gW";
        let mut body: Vec<u8> = Vec::new();
        for (name, filename, ctype, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
            if let Some(f) = filename {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            if let Some(c) = ctype {
                body.extend_from_slice(format!("Content-Type: {c}\r\n").as_bytes());
            }
            body.extend_from_slice(b"\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .expect("upload sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// Uploads one file with the test key; returns its metadata.
    pub async fn upload(&self, filename: &str, ctype: &str, bytes: &[u8]) -> Value {
        let r = self.upload_parts(&self.key, &[("file", Some(filename), Some(ctype), bytes)]).await;
        assert_eq!(r.status, StatusCode::OK, "upload {filename}: {}", r.body);
        r.body
    }

    /// `GET` of raw bytes: status, headers and body.
    pub async fn get_bytes(&self, path: &str, key: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("request sent");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.bytes().await.unwrap_or_default().to_vec())
    }

    /// A second tenant with its own key, made through the admin path.
    pub async fn other_tenant(&self, name: &str) -> String {
        let t = self.platform.create_tenant(name).await.expect("tenant");
        self.platform.create_api_key(&t.id, "test").await.expect("key").1
    }

    pub async fn agent(&self, name: &str) -> Value {
        self.ok("/v1/agents", serde_json::json!({"name": name, "model": "claude-sonnet-4-6"})).await
    }

    /// Follows `next_page` to the end and returns every id.
    pub async fn collect_ids(&self, path: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut page: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        for _ in 0..1000 {
            let url = match &page {
                Some(p) => format!("{path}{sep}page={p}"),
                None => path.to_owned(),
            };
            let r = self.get(&url).await;
            assert_eq!(r.status, StatusCode::OK, "GET {url}: {}", r.body);
            ids.extend(r.body["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()));
            match r.body["next_page"].as_str() {
                Some(p) if !p.is_empty() => page = Some(p.to_owned()),
                _ => return ids,
            }
        }
        panic!("pagination did not end");
    }
}

/// A Server-Sent Events reader over a real HTTP response.
pub struct SseReader {
    stream: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

/// One decoded SSE event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

impl SseReader {
    pub async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> SseReader {
        SseReader::connect(&app.http, &format!("{}{path}", app.base), &app.key, last_event_id).await
    }

    pub async fn connect(http: &reqwest::Client, url: &str, key: &str, last_event_id: Option<&str>) -> SseReader {
        let path = url;
        let mut req = http.get(url).bearer_auth(key).header("accept", "application/json");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("stream opens");
        assert_eq!(resp.status(), StatusCode::OK, "stream {path}");
        SseReader { stream: Box::pin(resp.bytes_stream()), buf: String::new() }
    }

    /// The next event that is not a ping, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Sse> {
        use futures::StreamExt;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), None, String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event:") { event = v.trim_start().to_owned(); }
                    else if let Some(v) = line.strip_prefix("id:") { id = Some(v.trim_start().to_owned()); }
                    else if let Some(v) = line.strip_prefix("data:") { data.push_str(v.trim_start()); }
                }
                if event.is_empty() || event == "ping" { continue; }
                return Some(Sse { event, id, data: serde_json::from_str(&data).unwrap_or(Value::Null) });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.stream.next()).await.expect("stream stalled for 20 s")?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.ok()?).replace("\r\n", "\n"));
        }
    }

    /// Reads until an event satisfies `pred`, returning everything read (inclusive).
    pub async fn until(&mut self, pred: impl Fn(&Sse) -> bool) -> Vec<Sse> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await.expect("stream ended early");
            let stop = pred(&e);
            seen.push(e);
            if stop { return seen; }
        }
    }
}

/// True for `session.status_idle` (any stop reason) and `session.status_terminated`.
pub fn settled(e: &Sse) -> bool {
    e.event == "session.status_idle" || e.event == "session.status_terminated"
}

/// One turn in which the scripted model calls `calls` in order, then answers; the tool
/// results' texts and error flags, in order.
pub async fn tool_turn(app: &TestApp, model: &openma_fake_model::FakeModel, sid: &str, calls: Vec<(&str, Value)>) -> Vec<(String, bool)> {
    let mut script: Vec<openma_fake_model::Reply> = calls.into_iter().map(|(name, input)| openma_fake_model::Reply::tool_use(name, input)).collect();
    script.push(openma_fake_model::Reply::text("done"));
    model.script(script);
    let mut stream = SseReader::open(app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), serde_json::json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    stream
        .until(settled)
        .await
        .into_iter()
        .filter(|e| e.event == "agent.tool_result" || e.event == "agent.mcp_tool_result")
        .map(|e| (e.data["content"].as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join("\n"), e.data["is_error"] == true))
        .collect()
}

/// A tiny deterministic generator, so a failure can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Plenty of quick tool-using answers (`read`, then `last`) for the kill loops; turns that
/// outlast the queue end with the model's default reply.
pub fn kill_loop_script(last: &str) -> Vec<openma_fake_model::Reply> {
    use openma_fake_model::Reply;
    (0..200)
        .flat_map(|i| {
            [Reply::tool_use("read", serde_json::json!({"file_path": format!("/workspace/f{i}")})).delay_ms(5), Reply::text(last).delay_ms(5).split(4)]
        })
        .collect()
}
