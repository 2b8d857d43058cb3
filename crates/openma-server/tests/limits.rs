//! Per-API-key rate limits.

mod support;

use reqwest::{Method, StatusCode};
use support::{Backend, spawn_app_custom};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_gets_its_own_rate_limit_with_retry_after() {
    let app = spawn_app_custom(Backend::Sqlite, None, |o| o.rate_limit_per_minute = Some(3)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(app.get("/v1/agents").await.status, StatusCode::OK);
    }
    let limited = app.get("/v1/agents").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.error_type(), "rate_limit_error");
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "retry-after {wait}");
    // another key has its own budget; unauthenticated endpoints are not limited
    let tenant = app.platform.find_tenant("default").await.unwrap();
    let (_, other) = app.platform.create_api_key(&tenant.id, "other").await.unwrap();
    assert_eq!(app.call(Method::GET, "/v1/agents", Some(&other), None).await.status, StatusCode::OK);
    assert_eq!(app.call(Method::GET, "/health", None, None).await.status, StatusCode::OK);
}

use openma_fake_model::{FakeModel, Reply, ScriptUsage};
use serde_json::json;
use support::{SseReader, settled};

fn user(text: &str) -> serde_json::Value {
    json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_new_work_and_spare_what_runs() {
    let model = FakeModel::start().await;
    let app = spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |_| {}).await.unwrap();
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let s1 = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    let s2 = app.ok("/v1/sessions", json!({"agent": a["id"]})).await["id"].as_str().unwrap().to_owned();
    let tenant = app.platform.find_tenant("default").await.unwrap();

    // one running session at a time: a second session's turn waits with 429
    app.platform.set_tenant_limits(&tenant.id, &openma_core::tenancy::TenantLimits { max_running_sessions: Some(1), ..Default::default() }).await.unwrap();
    model.script(vec![Reply::text("slow ".repeat(60)).delay_ms(10).usage(ScriptUsage { input_tokens: 1000, output_tokens: 1000, ..Default::default() })]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{s1}/events/stream"), None).await;
    app.post(&format!("/v1/sessions/{s1}/events"), user("go")).await;
    stream.until(|e| e.event == "span.model_request_start").await;
    let busy = app.post(&format!("/v1/sessions/{s2}/events"), user("me too")).await;
    assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS, "{}", busy.body);
    assert_eq!(busy.error_type(), "rate_limit_error");
    assert!(busy.headers.get("retry-after").is_some());
    // a hard monthly limit set while s1 runs: the running turn still finishes
    app.platform.set_tenant_limits(&tenant.id, &openma_core::tenancy::TenantLimits { monthly_hard_micros: Some(1), ..Default::default() }).await.unwrap();
    let done = stream.until(settled).await;
    assert_eq!(done.last().unwrap().data["stop_reason"]["type"], "end_turn", "work already running is not lost");
    for (path, body) in [(format!("/v1/sessions/{s1}/events"), user("more")), ("/v1/sessions".to_owned(), json!({"agent": a["id"]}))] {
        let r = app.post(&path, body).await;
        assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{path}: {}", r.body);
        assert_eq!(r.error_type(), "billing_error");
    }
    // reads and settling still work
    assert_eq!(app.get(&format!("/v1/sessions/{s1}")).await.status, StatusCode::OK);
    app.platform.set_tenant_limits(&tenant.id, &Default::default()).await.unwrap();
    assert_eq!(app.post("/v1/sessions", json!({"agent": a["id"]})).await.status, StatusCode::OK);
}
