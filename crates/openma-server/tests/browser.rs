//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver): sign in, create an agent, start a session, send a message and
//! watch the fake model's reply appear live without reloading, confirm an `always_ask`
//! tool call from the page, upload and download a file, create and revoke an API key, sign
//! out, archive the session, read the usage page. A screenshot of each step is saved under `target/tmp/console-screenshots/`.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply};
use serde_json::json;
use support::{Backend, TestApp, spawn_app_with_model};
use thirtyfour::prelude::*;

const PASSWORD: &str = "browser test password";

/// A chromedriver on a free port, stopped with the test.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let found = ["/usr/bin/chromedriver"].into_iter().find(|p| std::path::Path::new(p).exists());
    let Some(bin) = found else {
        assert!(std::env::var_os("CI").is_none(), "CI must install chromium-driver");
        eprintln!("skipping: chromedriver is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver { child, url })
}

/// A server on the fake model whose default tenant has an owner, `pat@example.com`.
async fn app_with_owner() -> (FakeModel, TestApp) {
    let model = FakeModel::start().await;
    let app: TestApp = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let hash = openma_server::console::hash_password(PASSWORD).unwrap();
    app.platform.add_member("pat@example.com", &hash, &tenant.id, openma_core::accounts::Role::Owner).await.unwrap();
    (model, app)
}

struct Shots {
    dir: std::path::PathBuf,
    n: u32,
}

impl Shots {
    async fn take(&mut self, driver: &WebDriver, name: &str) {
        self.n += 1;
        let path = self.dir.join(format!("{:02}-{name}.png", self.n));
        driver.screenshot(&path).await.expect("a screenshot");
    }
}

/// Waits until the page's source holds `text` (the page updates itself; nothing reloads it).
async fn wait_for(driver: &WebDriver, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let source = driver.source().await.unwrap();
        if source.contains(text) {
            return source;
        }
        assert!(Instant::now() < deadline, "the page never showed {text:?}: {source}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(driver: &WebDriver, name: &str, value: &str) {
    let field = driver.find(By::Name(name)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_works_the_console_in_a_real_browser() {
    if !support::sandboxes_available() {
        return;
    }
    let Some(chromedriver) = chromedriver() else { return };
    let (model, app) = app_with_owner().await;
    // an agent whose bash needs a confirmation
    let careful = app
        .ok("/v1/agents", json!({"name": "careful", "model": "claude-sonnet-4-6",
            "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]}))
        .await;

    let mut caps = DesiredCapabilities::chrome();
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"] {
        caps.add_arg(arg).unwrap();
    }
    let driver = WebDriver::new(&chromedriver.url, caps).await.expect("a browser session");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let mut shots = Shots { dir, n: 0 };

    // signed out, the console asks to sign in
    driver.goto(format!("{}/console", app.base)).await.unwrap();
    assert!(driver.current_url().await.unwrap().path().ends_with("/console/login"));
    fill(&driver, "email", "pat@example.com").await;
    fill(&driver, "password", PASSWORD).await;
    shots.take(&driver, "sign-in").await;
    driver.find(By::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "Recent sessions").await;
    shots.take(&driver, "dashboard").await;

    // create an agent from the form
    driver.goto(format!("{}/console/agents", app.base)).await.unwrap();
    fill(&driver, "name", "from-the-browser").await;
    driver.find(By::Css("form[action='/console/agents'] button")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "from-the-browser").await;
    assert!(driver.current_url().await.unwrap().path().starts_with("/console/agents/agent_"));
    shots.take(&driver, "agent-created").await;

    // start a session with the careful agent, send a message, confirm its tool call
    driver.goto(format!("{}/console/agents/{}", app.base, careful["id"].as_str().unwrap())).await.unwrap();
    driver.find(By::Id("start-session")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "id=\"timeline\"").await;
    model.script(vec![Reply::tool_use("bash", json!({"command": "echo from-the-sandbox"})), Reply::text("The browser saw this live.")]);
    fill(&driver, "text", "please run it").await;
    driver.find(By::Css("#send button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "Allow").await;
    shots.take(&driver, "confirmation-asked").await;
    driver.find(By::XPath("//button[text()='Allow']")).await.unwrap().click().await.unwrap();
    let page = wait_for(&driver, "The browser saw this live.").await;
    assert!(page.contains("from-the-sandbox"), "the tool's result is under its call");
    shots.take(&driver, "answer-live").await;
    driver.find(By::Id("archive")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "id=\"status\">archived").await;
    let session_url = driver.current_url().await.unwrap();
    let archived_id = session_url.path().rsplit('/').next().unwrap().to_owned();
    assert!(app.get(&format!("/v1/sessions/{archived_id}")).await.body["archived_at"].is_string());

    // upload a file, then download it with the browser's cookie
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), "uploaded from chromium").unwrap();
    driver.goto(format!("{}/console/files", app.base)).await.unwrap();
    driver.find(By::Css("input[type=file]")).await.unwrap().send_keys(upload.path().to_str().unwrap()).await.unwrap();
    driver.find(By::Css("#upload button")).await.unwrap().click().await.unwrap();
    let name = upload.path().file_name().unwrap().to_str().unwrap().to_owned();
    let files = wait_for(&driver, &format!(">{name}</a>")).await;
    shots.take(&driver, "file-uploaded").await;
    let href = files.split("href=\"/v1/files/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let cookie = driver.get_named_cookie("openma_console").await.unwrap();
    let body = reqwest::Client::new()
        .get(format!("{}/v1/files/{href}", app.base))
        .header("cookie", format!("openma_console={}", cookie.value))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "uploaded from chromium");

    // create an API key (shown once) and revoke it
    driver.goto(format!("{}/console/api-keys", app.base)).await.unwrap();
    fill(&driver, "name", "made-in-chromium").await;
    driver.find(By::Css("form[action='/console/api-keys'] button")).await.unwrap().click().await.unwrap();
    let shown = wait_for(&driver, "id=\"new-key\"").await;
    shots.take(&driver, "api-key-shown-once").await;
    let secret = shown.split("<pre id=\"new-key\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(app.http.get(format!("{}/v1/agents", app.base)).bearer_auth(&secret).send().await.unwrap().status(), 200);
    driver.goto(format!("{}/console/api-keys", app.base)).await.unwrap();
    let revoke = format!("//tr[td[text()='made-in-chromium']]//button[text()='Revoke']");
    driver.find(By::XPath(&revoke)).await.unwrap().click().await.unwrap();
    wait_for(&driver, "revoked").await;
    shots.take(&driver, "api-key-revoked").await;
    assert_eq!(app.http.get(format!("{}/v1/agents", app.base)).bearer_auth(&secret).send().await.unwrap().status(), 401);

    driver.goto(format!("{}/console/usage", app.base)).await.unwrap();
    wait_for(&driver, "usage-total").await;
    shots.take(&driver, "usage").await;

    // sign out: back to the sign-in page, and the console is closed again
    driver.find(By::XPath("//button[text()='Sign out']")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "Sign in").await;
    driver.goto(format!("{}/console", app.base)).await.unwrap();
    assert!(driver.current_url().await.unwrap().path().ends_with("/console/login"));
    shots.take(&driver, "signed-out").await;
    driver.quit().await.unwrap();
    assert_eq!(shots.n, 10, "a screenshot of every step");
}

/// The session page with 1,000 events, in Chromium: everything renders; prints the bytes
/// transferred and the time to render (recorded in docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_page_with_a_thousand_events_renders_and_is_measured() {
    let Some(chromedriver) = chromedriver() else { return };
    let (model, app) = app_with_owner().await;
    let agent = app.agent("chatty").await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    // turns until the log holds at least 1,000 events
    let mut n = 0;
    while n < 1000 {
        model.script(vec![Reply::text("An answer of a few words, one of many.")]);
        let mut stream = support::SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
        app.ok(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "next"}]}]})).await;
        stream.until(support::settled).await;
        n = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await.body["data"].as_array().unwrap().len();
    }
    let mut caps = DesiredCapabilities::chrome();
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] {
        caps.add_arg(arg).unwrap();
    }
    let driver = WebDriver::new(&chromedriver.url, caps).await.expect("a browser session");
    driver.goto(format!("{}/console/login", app.base)).await.unwrap();
    fill(&driver, "email", "pat@example.com").await;
    fill(&driver, "password", PASSWORD).await;
    driver.find(By::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&driver, "Recent sessions").await;
    driver.goto(format!("{}/console/sessions/{sid}", app.base)).await.unwrap();
    let rendered = driver
        .execute("const nav = performance.getEntriesByType('navigation')[0]; return [document.querySelectorAll('#timeline > li').length, nav.transferSize, nav.encodedBodySize, nav.domContentLoadedEventEnd, nav.loadEventEnd];", vec![])
        .await
        .unwrap()
        .json()
        .clone();
    let items = rendered[0].as_u64().unwrap();
    // user and agent messages plus usage lines: every displayable event of the log
    assert!(items >= 400, "the timeline shows the session's events: {rendered}");
    println!(
        "session page, {n} events: {items} timeline items, {} bytes transferred ({} body), DOMContentLoaded {:.0} ms, load {:.0} ms",
        rendered[1], rendered[2], rendered[3].as_f64().unwrap_or(0.0), rendered[4].as_f64().unwrap_or(0.0)
    );
    driver.quit().await.unwrap();
}
