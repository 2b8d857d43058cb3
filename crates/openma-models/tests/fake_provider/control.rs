//! The fake's control API over plain HTTP, as a Python test would use it, and its
//! non-streaming answers.

use openma_fake_model::{FakeModel, Reply, sha256_hex};
use openma_models::{AnthropicClient, http_client};
use serde_json::{Value, json};

use crate::support::{API_KEY, request, run, within};

async fn get(http: &reqwest::Client, url: String) -> Value {
    within(async { http.get(url).send().await.unwrap().json().await.unwrap() }).await
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    within(async {
        let response = http.post(url).json(&body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    })
    .await
}

#[tokio::test]
async fn script_requests_health_reset_and_default_over_http() {
    let fake = within(FakeModel::start()).await;
    let http = http_client().unwrap();
    let base = fake.base_url();

    let health = get(&http, format!("{base}/_fake/health")).await;
    assert_eq!(health["status"], json!("ok"));
    assert_eq!(
        health["default_reply"],
        json!({"kind": "message", "blocks": [{"type": "text", "text": "ok"}], "chunk_delay_ms": 0, "split": 8})
    );

    let script = json!([
        {"kind": "message", "blocks": [{"type": "text", "text": "scripted over http"}]},
        {"kind": "error", "status": 429, "type": "rate_limit_error", "message": "slow down", "retry_after": 1},
    ]);
    assert_eq!(post(&http, format!("{base}/_fake/script"), script).await, (200, json!({"added": 2, "queued": 2})));
    let (status, body) = post(&http, format!("{base}/_fake/script"), json!({"kind": "nonsense"})).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("invalid script"));

    let client = AnthropicClient::new(base.clone(), API_KEY, http.clone());
    let outcome = run(&client, request("claude-x")).await;
    assert_eq!(outcome.text_deltas(0), "scripted over http");
    assert!(run(&client, request("claude-x")).await.error.unwrap().is_transient());
    // Script empty: the default answer.
    assert_eq!(run(&client, request("claude-x")).await.text_deltas(0), "ok");

    let requests = get(&http, format!("{base}/_fake/requests")).await;
    let requests = requests.as_array().unwrap();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["path"], json!("/v1/messages"));
    assert_eq!(requests[0]["credentials"]["x-api-key"], json!(sha256_hex(API_KEY)));
    assert!(requests[0]["headers"].get("x-api-key").is_none());
    assert!(!Value::Array(requests.clone()).to_string().contains(API_KEY));

    // A new default, visible and used.
    let (status, _) = post(
        &http,
        format!("{base}/_fake/default"),
        json!({"kind": "message", "blocks": [{"type": "text", "text": "fallback"}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get(&http, format!("{base}/_fake/default")).await["blocks"][0]["text"], json!("fallback"));
    assert_eq!(run(&client, request("claude-x")).await.text_deltas(0), "fallback");

    let (status, _) = post(&http, format!("{base}/_fake/reset"), json!({})).await;
    assert_eq!(status, 200);
    let health = get(&http, format!("{base}/_fake/health")).await;
    assert_eq!((health["queued"].clone(), health["requests"].clone()), (json!(0), json!(0)));
    assert_eq!(fake.default_reply(), Reply::default_reply());
}

#[tokio::test]
async fn non_streaming_answers() {
    let fake = within(FakeModel::start()).await;
    let http = http_client().unwrap();
    let base = fake.base_url();
    fake.script(vec![
        Reply::message(vec![
            openma_fake_model::Block::text("plain"),
            openma_fake_model::Block::tool_use("t", json!({"a": 1})),
        ]),
        Reply::text("plain too").stop_reason("max_tokens"),
    ]);
    let message: Value = within(async {
        http.post(format!("{base}/v1/messages"))
            .header("x-api-key", API_KEY)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(message["type"], json!("message"));
    assert_eq!(message["content"][0], json!({"type": "text", "text": "plain"}));
    assert_eq!(message["content"][1]["input"], json!({"a": 1}));
    assert_eq!(message["stop_reason"], json!("tool_use"));
    assert_eq!(message["usage"]["input_tokens"], json!(10));

    let completion: Value = within(async {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(API_KEY)
            .json(&json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(completion["object"], json!("chat.completion"));
    assert_eq!(completion["choices"][0]["message"]["content"], json!("plain too"));
    assert_eq!(completion["choices"][0]["finish_reason"], json!("length"));
}

#[tokio::test]
async fn requests_the_real_api_would_refuse_do_not_consume_the_script() {
    let fake = within(FakeModel::start()).await;
    let http = http_client().unwrap();
    let base = fake.base_url();
    fake.script(vec![Reply::text("kept")]);
    let send = |builder: reqwest::RequestBuilder| async move {
        let response = within(builder.send()).await.unwrap();
        let status = response.status().as_u16();
        (status, within(response.json::<Value>()).await.unwrap())
    };
    let ok_body = json!({"model": "claude-x", "max_tokens": 10, "messages": []});
    // No key.
    let (status, body) =
        send(http.post(format!("{base}/v1/messages")).header("anthropic-version", "2023-06-01").json(&ok_body)).await;
    assert_eq!((status, body["error"]["type"].clone()), (401, json!("authentication_error")));
    // No version header.
    let (status, _) = send(http.post(format!("{base}/v1/messages")).header("x-api-key", "k").json(&ok_body)).await;
    assert_eq!(status, 400);
    // No max_tokens.
    let (status, body) = send(
        http.post(format!("{base}/v1/messages"))
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "claude-x", "messages": []})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens"));
    // OpenAI without a bearer token.
    let (status, body) =
        send(http.post(format!("{base}/v1/chat/completions")).json(&json!({"model": "m", "messages": []}))).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("invalid_api_key")));
    assert_eq!(fake.queued(), 1);
    assert_eq!(fake.requests().len(), 4, "refused requests are still captured");
}
