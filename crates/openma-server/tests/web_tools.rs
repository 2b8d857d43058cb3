//! `web_fetch` and `web_search` through the API, with the scripted model calling them.
//! A local HTTP server stands in for the web.

mod support;

use axum::Router;
use axum::routing::get;
use openma_fake_model::{FakeModel, Reply};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_custom};

async fn site() -> String {
    let app = Router::new()
        .route("/page", get(|| async { axum::response::Html("<html><head><title>T</title></head><body><h1>Otters</h1><p>Otters hold hands while sleeping.</p><script>evil()</script></body></html>") }))
        .route("/moved", get(|| async { axum::response::Redirect::temporary("/page") }))
        .route("/search", get(|| async {
            axum::Json(json!({"results": [
                {"title": "Otter facts", "url": "https://otters.example/facts", "content": "They hold hands."},
                {"title": "Blocked", "url": "https://spam.example/x", "content": "spam"}
            ]}))
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn tool_result(app: &TestApp, model: &FakeModel, agent: Value, tool: &str, input: Value) -> Value {
    let a = app.ok("/v1/agents", agent).await;
    let sid = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::tool_use(tool, input), Reply::text("done")]);
    let mut stream = SseReader::open(app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    let events = stream.until(settled).await;
    events.into_iter().find(|e| e.event == "agent.tool_result").expect("a tool result").data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_fetch_returns_readable_text_and_follows_redirects() {
    let model = FakeModel::start().await;
    let base = site().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.unsafe_allow_private_fetch = true).await.unwrap();
    let r = tool_result(&app, &model, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "web_fetch"}]}), "web_fetch", json!({"url": format!("{base}/moved")})).await;
    assert_eq!(r["is_error"], false, "{r}");
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Otters hold hands while sleeping."), "{text}");
    assert!(!text.contains("<p>"), "HTML is turned into text: {text}");
    assert!(text.contains("/page"), "the final URL after the redirect is named: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_fetch_refuses_loopback_private_and_metadata_addresses() {
    let model = FakeModel::start().await;
    let base = site().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |_| {}).await.unwrap();
    for url in [format!("{base}/page"), "http://169.254.169.254/latest/meta-data/".into(), "http://10.0.0.1/".into(), "file:///etc/passwd".into(), app.base.clone() + "/health"] {
        let r = tool_result(&app, &model, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "web_fetch"}]}), "web_fetch", json!({"url": url})).await;
        assert_eq!(r["is_error"], true, "{url}: {r}");
    }
    let allowed_only = tool_result(
        &app,
        &model,
        json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401", "default_config": {"enabled": false}, "configs": [{"name": "web_fetch", "enabled": true, "allowed_domains": ["docs.example.com"]}]}]}),
        "web_fetch",
        json!({"url": "https://evil.example.org/"}),
    )
    .await;
    assert!(allowed_only["content"][0]["text"].as_str().unwrap().contains("allowed_domains"), "{allowed_only}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_search_needs_a_backend_and_filters_blocked_domains() {
    let model = FakeModel::start().await;
    let base = site().await;
    let without = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |_| {}).await.unwrap();
    let r = without.post("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "web_search"}]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"]["details"]["error_code"], "tool_unavailable");
    // the default toolset simply does not offer it
    let a = without.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401"}]})).await;
    let sid = without.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![Reply::text("hi")]);
    let mut stream = SseReader::open(&without, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    without.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]})).await;
    stream.until(settled).await;
    let offered: Vec<String> = model.requests()[0].body["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect();
    assert!(!offered.contains(&"web_search".to_owned()) && offered.contains(&"bash".to_owned()), "{offered:?}");
    drop(without);

    model.reset();
    let with = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.search_url = Some(format!("{base}/search"))).await.unwrap();
    let r = tool_result(
        &with,
        &model,
        json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "web_search", "blocked_domains": ["spam.example"]}]}]}),
        "web_search",
        json!({"query": "otters"}),
    )
    .await;
    let text = r["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("Otter facts") && text.contains("https://otters.example/facts"), "{text}");
    assert!(!text.contains("spam"), "blocked domains are filtered: {text}");
}

/// `web_fetch.url_sources`: a URL the user gave is fetched; one the model made up is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_let_web_fetch_take_only_urls_from_permitted_sources() {
    let model = FakeModel::start().await;
    let base = site().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.unsafe_allow_private_fetch = true).await.unwrap();
    let agent = app
        .ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "agent_toolset_20260401", "configs": [
            {"name": "web_fetch", "url_sources": {"user_input": "all", "server_tool_results": "none", "client_tool_results": "none"}}]}]}))
        .await;
    let cfg = agent["tools"][0]["configs"].as_array().unwrap().iter().find(|c| c["name"] == "web_fetch").unwrap().clone();
    assert_eq!(cfg["url_sources"]["user_input"], json!({"type": "all"}), "{cfg}");
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    model.script(vec![
        Reply::tool_use("web_fetch", json!({"url": format!("{base}/page")})),
        Reply::tool_use("web_fetch", json!({"url": format!("{base}/moved")})),
        Reply::text("done"),
    ]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    let msg = format!("Summarise {base}/page please.");
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": msg}]}]})).await;
    let results: Vec<Value> = stream.until(settled).await.into_iter().filter(|e| e.event == "agent.tool_result").map(|e| e.data).collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["is_error"], false, "the user's URL is fetched: {}", results[0]);
    assert_eq!(results[1]["is_error"], true, "an invented URL is not: {}", results[1]);
    assert!(results[1]["content"][0]["text"].as_str().unwrap().contains("url_sources"));
}
