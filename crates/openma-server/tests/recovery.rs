//! Crash recovery against the real binary: `kill -9` in the middle of a turn, start the
//! server again on the same data dir, and the session finishes by itself; nothing the
//! API acknowledged is lost.

use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use support::ServerProcess;

mod support;

const KEY: &str = "sk-oma-recovery-0123456789abcdef";

fn start(data_dir: &std::path::Path, model: &str) -> ServerProcess {
    ServerProcess::start(
        data_dir,
        &[("OPENMA_BOOTSTRAP_API_KEY", KEY), ("ANTHROPIC_API_KEY", "sk-ant-fake"), ("ANTHROPIC_BASE_URL", model), ("OPENMA_MODEL_RETRY_BASE_MS", "20")],
    )
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut r = http.request(method, url).bearer_auth(KEY);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

async fn events(http: &reqwest::Client, base: &str, sid: &str) -> Vec<Value> {
    call(http, reqwest::Method::GET, format!("{base}/v1/sessions/{sid}/events?limit=1000"), None).await["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_kill_9_resumes_by_itself_and_loses_nothing() {
    openma_models::install_tls_provider();
    let model = FakeModel::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let server = start(dir.path(), &model.base_url());
    let base = server.base.clone();
    let agent = call(&http, reqwest::Method::POST, format!("{base}/v1/agents"), Some(json!({"name": "a", "model": "claude-sonnet-4-6"}))).await;
    let sid = call(&http, reqwest::Method::POST, format!("{base}/v1/sessions"), Some(json!({"agent": agent["id"]}))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // a slow answer that will be cut, then the answers after the restart
    model.script(vec![
        Reply::text("slow ".repeat(400)).delay_ms(20),
        Reply::text("answer after restart"),
    ]);
    let send = |text: &str| json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": text}]}]});
    call(&http, reqwest::Method::POST, format!("{base}/v1/sessions/{sid}/events"), Some(send("first"))).await;
    // wait until the model is streaming, then queue a second message (acknowledged = durable)
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.requests().is_empty() {
        assert!(Instant::now() < deadline, "model never called");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queued = call(&http, reqwest::Method::POST, format!("{base}/v1/sessions/{sid}/events"), Some(send("second"))).await;
    let queued_id = queued["data"][0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(server); // SIGKILL
    let t = Instant::now();
    let server = start(dir.path(), &model.base_url());
    let base = server.base.clone();
    let status = call(&http, reqwest::Method::GET, format!("{base}/health"), None).await;
    assert_eq!(status["status"], "ok");
    let healthy_after = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = call(&http, reqwest::Method::GET, format!("{base}/v1/sessions/{sid}"), None).await;
        let log = events(&http, &base, &sid).await;
        let done = s["status"] == "idle" && log.iter().any(|e| e["type"] == "agent.message" && e["content"][0]["text"] == "answer after restart");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "session did not resume: {} {:?}", s["status"], log.iter().map(|e| e["type"].clone()).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = events(&http, &base, &sid).await;
    let ids: Vec<&str> = log.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let unique: std::collections::BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicate events");
    assert!(log.iter().any(|e| e["id"] == queued_id.as_str() && e["type"] == "user.message"), "the acknowledged queued message was applied");
    let starts = log.iter().filter(|e| e["type"] == "span.model_request_start").count();
    let ends = log.iter().filter(|e| e["type"] == "span.model_request_end").count();
    assert_eq!(starts, ends, "the cut model request was closed");
    assert!(log.iter().any(|e| e["type"] == "span.model_request_end" && e["is_error"] == true));
    let queued_at = log.iter().position(|e| e["id"] == queued_id.as_str()).unwrap();
    let answer_at = log.iter().position(|e| e["type"] == "agent.message").unwrap();
    assert!(queued_at < answer_at, "the queued message is part of the resumed turn");
    let last_request = model.requests().last().unwrap().body.to_string();
    assert!(last_request.contains("first") && last_request.contains("second"), "the resumed request carries both messages");
    // the ledger holds exactly the requests that completed, each once
    let (mut input, mut output) = (0, 0);
    for e in log.iter().filter(|e| e["type"] == "span.model_request_end" && e["is_error"] == false) {
        input += e["model_usage"]["input_tokens"].as_i64().unwrap();
        output += e["model_usage"]["output_tokens"].as_i64().unwrap();
    }
    let report = call(&http, reqwest::Method::GET, format!("{base}/v1/usage?group_by[]=kind"), None).await;
    let kind = |k: &str| report["data"].as_array().unwrap().iter().find(|l| l["kind"] == k).map(|l| l["quantity"].as_i64().unwrap()).unwrap_or(0);
    assert_eq!((kind("input_tokens"), kind("output_tokens")), (input, output), "{report}");
    assert!(kind("runtime_ms") > 0);
    println!("kill -9 → healthy again in {healthy_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_cut_again_and_again_without_progress_is_stopped_not_resumed_forever() {
    openma_models::install_tls_provider();
    let model = FakeModel::start().await;
    // every request is slower than the time the server gets before it is killed again
    model.set_default_reply(Reply::text("never finished ".repeat(400)).delay_ms(50));
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut server = start(dir.path(), &model.base_url());
    let agent = call(&http, reqwest::Method::POST, format!("{}/v1/agents", server.base), Some(json!({"name": "a", "model": "claude-sonnet-4-6"}))).await;
    let sid = call(&http, reqwest::Method::POST, format!("{}/v1/sessions", server.base), Some(json!({"agent": agent["id"]}))).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "go"}]}]});
    call(&http, reqwest::Method::POST, format!("{}/v1/sessions/{sid}/events", server.base), Some(body)).await;
    // the first run and five recoveries are each cut while the model streams
    for cut in 1..=6 {
        let deadline = Instant::now() + Duration::from_secs(10);
        while model.requests().len() < cut {
            assert!(Instant::now() < deadline, "request {cut} never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(server);
        server = start(dir.path(), &model.base_url());
    }
    // the sixth recovery gives up: idle, with an error that says why
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = call(&http, reqwest::Method::GET, format!("{}/v1/sessions/{sid}", server.base), None).await;
        if s["status"] == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "the session is still {}", s["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = events(&http, &server.base, &sid).await;
    let error = log.iter().rev().find(|e| e["type"] == "session.error").expect("an error says why");
    assert!(error["error"]["message"].as_str().unwrap().contains("interrupted 6 times"), "{error}");
    assert_eq!(error["error"]["retry_status"]["type"], "exhausted");
    assert_eq!(log.last().unwrap()["stop_reason"]["type"], "retries_exhausted");
    assert_eq!(model.requests().len(), 6, "no seventh attempt");
    // every request it started is closed
    let starts = log.iter().filter(|e| e["type"] == "span.model_request_start").count();
    let ends = log.iter().filter(|e| e["type"] == "span.model_request_end").count();
    assert_eq!(starts, ends);
    // and the session works again when the user says so
    model.set_default_reply(Reply::text("back"));
    let body = json!({"events": [{"type": "user.message", "content": [{"type": "text", "text": "again"}]}]});
    call(&http, reqwest::Method::POST, format!("{}/v1/sessions/{sid}/events", server.base), Some(body)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = events(&http, &server.base, &sid).await;
        if log.last().is_some_and(|e| e["type"] == "session.status_idle") && log.iter().any(|e| e["type"] == "agent.message") {
            break;
        }
        assert!(Instant::now() < deadline, "no answer after the stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
