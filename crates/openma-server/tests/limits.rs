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
