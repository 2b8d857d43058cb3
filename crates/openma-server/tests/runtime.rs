//! The session runtime against a scripted model that speaks Anthropic's real streaming
//! wire format: turns, tools, confirmations, interrupts, retries, streaming and resume.
//! Each story runs on SQLite and on PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use openma_fake_model::{FakeModel, Reply, ScriptUsage};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Backend, SseReader, TestApp, settled, spawn_app_with_model};

macro_rules! stories {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Sqlite, super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run(super::Backend::Postgres, super::$name).await } )*
        }
    };
}

async fn run<F, Fut>(backend: Backend, story: F)
where
    F: FnOnce(TestApp, FakeModel) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_with_model(backend, Some(model.base_url())).await else { return };
    tokio::time::timeout(Duration::from_secs(60), story(app, model)).await.expect("story finished within 60 s");
}

stories!(
    a_text_turn_streams_the_same_events_the_list_returns,
    custom_tool_round_trip,
    always_ask_tool_waits_for_confirmation_and_deny_continues_the_loop,
    answers_that_name_no_pending_tool_use_are_refused,
    interrupt_stops_a_slow_stream_within_a_second_and_keeps_the_partial_text,
    persistent_rate_limits_end_in_retries_exhausted,
    a_single_server_error_is_retried_and_the_turn_completes,
    a_bad_provider_key_terminates_the_session,
    message_previews_accumulate_to_the_final_message,
    a_stream_resumed_with_last_event_id_has_no_gap,
    archived_sessions_refuse_events,
    the_model_sees_the_whole_conversation,
    initial_events_start_the_session_running,
    the_primary_thread_mirrors_the_session,
    an_openai_compatible_model_runs_tools_too,
    a_budget_stops_the_session_and_raising_it_resumes,
    a_message_sent_while_running_is_answered_in_the_same_turn,
    the_ledger_reconciles_with_what_the_model_reported,
    the_ledger_export_pages_with_a_stable_cursor_and_acknowledgements,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_conversations_are_compacted_and_keep_working() {
    let model = FakeModel::start().await;
    let app = support::spawn_app_custom(Backend::Sqlite, Some(model.base_url()), |o| o.context_window_tokens = Some(1500))
        .await
        .unwrap();
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    let mut compacted = false;
    for turn in 0..8 {
        let long = format!("turn {turn}: {}", "lorem ipsum dolor sit amet ".repeat(40));
        // a summary request may come first; answer it, then the turn itself
        model.script(vec![Reply::text(format!("answer {turn} {}", "x".repeat(200)))]);
        let before = model.requests().len();
        send(&app, &sid, user(&long)).await;
        let events = stream.until(settled).await;
        assert_eq!(events.last().unwrap().data["stop_reason"]["type"], "end_turn");
        if events.iter().any(|e| e.event == "agent.thread_context_compacted") {
            compacted = true;
            let reqs = model.requests();
            let summary_req = &reqs[before].body;
            assert!(summary_req.to_string().contains("Summarize the conversation"), "the first request of this turn asks for a summary");
            let next = &reqs[before + 1].body.to_string();
            assert!(!next.contains("turn 0:"), "the oldest turn is summarised away");
            assert!(next.contains(&format!("turn {turn}:")), "the current turn is kept");
            assert!(next.contains("summary of the earlier conversation"));
            break;
        }
    }
    assert!(compacted, "a long conversation was compacted");
}

async fn session_for(app: &TestApp, agent: Value) -> String {
    let a = app.ok("/v1/agents", agent).await;
    let s = app.ok("/v1/sessions", json!({"agent": a["id"]})).await;
    s["id"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, sid: &str, events: Value) -> support::Reply {
    app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": events})).await
}

fn user(text: &str) -> Value {
    json!([{"type": "user.message", "content": [{"type": "text", "text": text}]}])
}

fn kinds(events: &[support::Sse]) -> Vec<String> {
    events.iter().map(|e| e.event.clone()).collect()
}

async fn listed(app: &TestApp, sid: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

async fn a_text_turn_streams_the_same_events_the_list_returns(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "system": "be brief"})).await;
    model.script(vec![Reply::text("Hello there, human.")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    let sent = send(&app, &sid, user("hi")).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let echo = sent.body["data"][0].clone();
    assert_eq!(echo["type"], "user.message");
    assert!(echo["id"].as_str().unwrap().starts_with("sevt_"));
    let streamed = stream.until(settled).await;
    assert_eq!(
        kinds(&streamed),
        ["user.message", "session.status_running", "span.model_request_start", "agent.message", "span.model_request_end", "session.usage", "session.status_idle"]
    );
    let idle = streamed.last().unwrap();
    assert_eq!(idle.data["stop_reason"], json!({"type": "end_turn"}));
    assert_eq!(streamed[3].data["content"], json!([{"type": "text", "text": "Hello there, human."}]));
    assert!(streamed[4].data["model_usage"]["output_tokens"].as_u64().unwrap() > 0);
    let list = listed(&app, &sid).await;
    let stream_ids: Vec<&str> = streamed.iter().map(|e| e.data["id"].as_str().unwrap()).collect();
    let list_ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(stream_ids, list_ids, "the stream and the list show the same events in the same order");
    for (e, l) in streamed.iter().zip(&list) {
        assert_eq!(e.id.as_deref(), l["id"].as_str(), "SSE id: is the event id");
        assert_eq!(&e.data, l);
        assert!(l["processed_at"].is_string());
    }
    let s = app.get(&format!("/v1/sessions/{sid}")).await.body;
    assert_eq!(s["status"], "idle");
    assert!(s["usage"]["input_tokens"].as_u64().unwrap() > 0);
    let only = app.get(&format!("/v1/sessions/{sid}/events?types[]=agent.message")).await.body;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let m = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    for series in ["openma_model_request_duration_seconds_bucket{outcome=\"ok\"", "openma_session_idle_total{stop_reason=\"end_turn\"}", "openma_sse_streams", "openma_model_tokens_total{kind=\"output\"}"] {
        assert!(m.contains(series), "metrics miss {series}: {m}");
    }
}

async fn custom_tool_round_trip(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [
        {"type": "custom", "name": "get_weather", "description": "Weather for a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    ]})).await;
    model.script(vec![Reply::tool_use("get_weather", json!({"city": "Paris"})), Reply::text("It is sunny in Paris.")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("weather in Paris?")).await;
    let first = stream.until(settled).await;
    let call = first.iter().find(|e| e.event == "agent.custom_tool_use").expect("custom tool use");
    assert_eq!(call.data["name"], "get_weather");
    assert_eq!(call.data["input"], json!({"city": "Paris"}));
    let call_id = call.data["id"].as_str().unwrap().to_owned();
    let idle = first.last().unwrap();
    assert_eq!(idle.data["stop_reason"], json!({"type": "requires_action", "event_ids": [call_id]}));
    assert_eq!(app.get(&format!("/v1/sessions/{sid}")).await.body["status"], "idle");
    let r = send(&app, &sid, json!([{"type": "user.custom_tool_result", "custom_tool_use_id": call_id, "content": [{"type": "text", "text": "22C sunny"}]}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = stream.until(settled).await;
    assert_eq!(second.last().unwrap().data["stop_reason"], json!({"type": "end_turn"}));
    assert!(second.iter().any(|e| e.event == "agent.message" && e.data["content"][0]["text"] == "It is sunny in Paris."));
    let requests = model.requests();
    let last = &requests.last().unwrap().body;
    let msgs = last["messages"].as_array().unwrap();
    let result = &msgs.last().unwrap()["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], call_id.as_str());
    assert_eq!(last["tools"][0]["name"], "get_weather");
}

async fn always_ask_tool_waits_for_confirmation_and_deny_continues_the_loop(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [
        {"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "always_ask"}}}
    ]})).await;
    model.script(vec![Reply::tool_use("bash", json!({"command": "rm -rf /tmp/x"})), Reply::text("Understood, I will not.")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("clean up")).await;
    let first = stream.until(settled).await;
    let call = first.iter().find(|e| e.event == "agent.tool_use").expect("tool use");
    assert_eq!(call.data["evaluated_permission"], "ask");
    assert_eq!(call.data["evaluation"], json!({"type": "always_ask"}));
    let call_id = call.data["id"].as_str().unwrap().to_owned();
    assert_eq!(first.last().unwrap().data["stop_reason"]["event_ids"], json!([call_id]));
    assert!(!first.iter().any(|e| e.event == "agent.tool_result"), "nothing runs before confirmation");
    let r = send(&app, &sid, json!([{"type": "user.tool_confirmation", "tool_use_id": call_id, "result": "deny", "deny_message": "not on my machine"}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = stream.until(settled).await;
    let result = second.iter().find(|e| e.event == "agent.tool_result").expect("deny becomes an error result");
    assert_eq!(result.data["tool_use_id"], call_id.as_str());
    assert_eq!(result.data["is_error"], true);
    assert_eq!(result.data["content"][0]["text"], "not on my machine");
    assert_eq!(second.last().unwrap().data["stop_reason"], json!({"type": "end_turn"}));
}

async fn answers_that_name_no_pending_tool_use_are_refused(app: TestApp, _model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    for events in [
        json!([{"type": "user.tool_confirmation", "tool_use_id": "sevt_nope", "result": "allow"}]),
        json!([{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_nope"}]),
        json!([{"type": "user.tool_confirmation", "tool_use_id": "sevt_nope", "result": "allow", "deny_message": "x"}]),
        json!([{"type": "user.define_outcome", "description": "x", "rubric": {"type": "text", "content": "y"}}]),
        json!([{"type": "user.message", "content": []}]),
        json!([]),
    ] {
        let r = send(&app, &sid, events.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{events}: {}", r.body);
    }
    assert!(listed(&app, &sid).await.is_empty(), "a refused batch writes nothing");
}

async fn interrupt_stops_a_slow_stream_within_a_second_and_keeps_the_partial_text(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::text("word ".repeat(200)).delay_ms(50)]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream?event_deltas[]=agent.message"), None).await;
    send(&app, &sid, user("talk a lot")).await;
    stream.until(|e| e.event == "event_delta").await;
    let t = Instant::now();
    let r = send(&app, &sid, json!([{"type": "user.interrupt"}])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rest = stream.until(settled).await;
    assert!(t.elapsed() < Duration::from_secs(1), "interrupt took {:?}", t.elapsed());
    assert_eq!(rest.last().unwrap().data["stop_reason"], json!({"type": "end_turn"}));
    let partial = rest.iter().find(|e| e.event == "agent.message").expect("partial text kept");
    let text = partial.data["content"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty() && text.len() < 1000, "partial: {text:?}");
    assert!(rest.iter().any(|e| e.event == "user.interrupt"));
    // an interrupt on an idle session does nothing
    let again = send(&app, &sid, json!([{"type": "user.interrupt"}])).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(app.get(&format!("/v1/sessions/{sid}")).await.body["status"], "idle");
}

async fn persistent_rate_limits_end_in_retries_exhausted(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::error(429), Reply::error(429), Reply::error(429)]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("hi")).await;
    let events = stream.until(settled).await;
    let errors: Vec<&support::Sse> = events.iter().filter(|e| e.event == "session.error").collect();
    assert_eq!(errors.len(), 3, "{:?}", kinds(&events));
    assert_eq!(errors[0].data["error"]["type"], "model_rate_limited_error");
    assert_eq!(errors[0].data["error"]["retry_status"], json!({"type": "retrying"}));
    assert_eq!(errors[2].data["error"]["retry_status"], json!({"type": "exhausted"}));
    assert_eq!(events.iter().filter(|e| e.event == "session.status_rescheduled").count(), 2);
    assert_eq!(events.last().unwrap().data["stop_reason"], json!({"type": "retries_exhausted"}));
    assert_eq!(events[events.len() - 2].event, "session.usage");
}

async fn a_single_server_error_is_retried_and_the_turn_completes(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::error(500), Reply::text("recovered")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("hi")).await;
    let events = stream.until(settled).await;
    let k = kinds(&events);
    let resched = k.iter().position(|e| e == "session.status_rescheduled").expect("rescheduled");
    let running = resched + k[resched..].iter().position(|e| e == "session.status_running").expect("running again");
    let message = k.iter().position(|e| e == "agent.message").unwrap();
    assert!(running < message, "the retried request runs as `running`: {k:?}");
    assert!(events.iter().any(|e| e.event == "agent.message" && e.data["content"][0]["text"] == "recovered"));
    assert_eq!(events.last().unwrap().data["stop_reason"], json!({"type": "end_turn"}));
}

async fn a_bad_provider_key_terminates_the_session(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::error(401)]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("hi")).await;
    let events = stream.until(settled).await;
    assert_eq!(events.last().unwrap().event, "session.status_terminated");
    let err = events.iter().find(|e| e.event == "session.error").unwrap();
    assert_eq!(err.data["error"]["retry_status"], json!({"type": "terminal"}));
    assert_eq!(app.get(&format!("/v1/sessions/{sid}")).await.body["status"], "terminated");
    let refused = send(&app, &sid, user("again")).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
}

async fn message_previews_accumulate_to_the_final_message(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let text = "The quick brown fox jumps over the lazy dog, twice over.";
    model.script(vec![Reply::text(text)]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream?event_deltas[]=agent.message"), None).await;
    send(&app, &sid, user("hi")).await;
    let events = stream.until(settled).await;
    let start = events.iter().find(|e| e.event == "event_start").expect("event_start");
    let id = start.data["event"]["id"].as_str().unwrap();
    assert_eq!(start.data["event"]["type"], "agent.message");
    let mut acc = String::new();
    let mut deltas = 0;
    for e in events.iter().filter(|e| e.event == "event_delta") {
        assert_eq!(e.data["event_id"], id);
        acc.push_str(e.data["delta"]["content"]["text"].as_str().unwrap());
        deltas += 1;
    }
    assert!(deltas > 1, "the text arrives in several deltas");
    let fin = events.iter().find(|e| e.event == "agent.message").unwrap();
    assert_eq!(fin.data["id"], id, "the final event reconciles the preview");
    assert_eq!(acc, fin.data["content"][0]["text"].as_str().unwrap());
    assert!(!listed(&app, &sid).await.iter().any(|e| e["type"] == "event_start" || e["type"] == "event_delta"));
}

async fn a_stream_resumed_with_last_event_id_has_no_gap(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::text("one"), Reply::text("two")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("first")).await;
    let first = stream.until(settled).await;
    drop(stream);
    let cut = first[2].id.clone().unwrap();
    // more happens while no stream is open
    send(&app, &sid, user("second")).await;
    for _ in 0..200 {
        if app.get(&format!("/v1/sessions/{sid}")).await.body["status"] == "idle" && listed(&app, &sid).await.len() > first.len() + 5 { break; }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut resumed = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), Some(&cut)).await;
    let list = listed(&app, &sid).await;
    let after: Vec<&str> = list.iter().skip(3).map(|e| e["id"].as_str().unwrap()).collect();
    let mut got = Vec::new();
    while got.len() < after.len() {
        got.push(resumed.next().await.unwrap().data["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, after, "replay starts right after Last-Event-ID, in order, without gaps");
}

async fn archived_sessions_refuse_events(app: TestApp, _model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let a = app.ok(&format!("/v1/sessions/{sid}/archive"), json!(null)).await;
    assert_eq!(a["status"], "terminated");
    let r = send(&app, &sid, user("hi")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "conflict_error");
    assert!(listed(&app, &sid).await.iter().any(|e| e["type"] == "session.status_terminated"));
}

async fn the_model_sees_the_whole_conversation(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "system": "You are terse."})).await;
    model.script(vec![Reply::text("first answer"), Reply::text("second answer")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("q1")).await;
    stream.until(settled).await;
    send(&app, &sid, user("q2")).await;
    stream.until(settled).await;
    let reqs = model.requests();
    assert_eq!(reqs.len(), 2);
    let body = &reqs[1].body;
    assert_eq!(body["model"], "claude-sonnet-4-6");
    assert_eq!(body["stream"], true);
    let system = body["system"].to_string();
    assert!(system.contains("You are terse."), "{system}");
    let msgs = body["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert!(msgs[1].to_string().contains("first answer"));
    assert!(msgs[2].to_string().contains("q2"));
}

async fn initial_events_start_the_session_running(app: TestApp, model: FakeModel) {
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::text("started")]);
    let s = app
        .ok("/v1/sessions", json!({"agent": a["id"], "initial_events": [
            {"type": "user.message", "content": [{"type": "text", "text": "one"}]},
            {"type": "user.message", "content": [{"type": "text", "text": "two"}]}
        ]}))
        .await;
    let sid = s["id"].as_str().unwrap();
    assert!(s["status"] == "running" || s["status"] == "idle", "{}", s["status"]);
    let first = listed(&app, sid).await;
    assert_eq!(first[0]["type"], "user.message", "initial events are persisted before the response");
    assert_eq!(first[1]["type"], "user.message");
    for _ in 0..250 {
        if app.get(&format!("/v1/sessions/{sid}")).await.body["status"] == "idle" { break; }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = listed(&app, sid).await;
    assert!(all.iter().any(|e| e["type"] == "agent.message" && e["content"][0]["text"] == "started"));
    let too_many: Vec<Value> = (0..51).map(|_| json!({"type": "user.message", "content": [{"type": "text", "text": "x"}]})).collect();
    let r = app.post("/v1/sessions", json!({"agent": a["id"], "initial_events": too_many})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let wrong = app.post("/v1/sessions", json!({"agent": a["id"], "initial_events": [{"type": "user.interrupt"}]})).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
}

async fn the_primary_thread_mirrors_the_session(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let threads = app.get(&format!("/v1/sessions/{sid}/threads")).await.body;
    let t = &threads["data"][0];
    assert_eq!(threads["data"].as_array().unwrap().len(), 1);
    assert_eq!(t["type"], "session_thread");
    assert_eq!(t["session_id"], sid.as_str());
    assert!(t["parent_thread_id"].is_null());
    let tid = t["id"].as_str().unwrap();
    assert!(tid.starts_with("sthr_"));
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/threads/{tid}")).await.body["id"], tid);
    assert_eq!(app.get(&format!("/v1/sessions/{sid}/threads/sthr_other")).await.status, StatusCode::NOT_FOUND);
    model.script(vec![Reply::text("via thread")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/threads/{tid}/stream"), None).await;
    send(&app, &sid, user("hi")).await;
    let events = stream.until(settled).await;
    let thread_events = app.get(&format!("/v1/sessions/{sid}/threads/{tid}/events")).await.body;
    let ids: Vec<&str> = thread_events["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, events.iter().map(|e| e.data["id"].as_str().unwrap()).collect::<Vec<_>>());
    assert_eq!(app.post(&format!("/v1/sessions/{sid}/threads/{tid}/archive"), json!(null)).await.status, StatusCode::BAD_REQUEST);
}

async fn an_openai_compatible_model_runs_tools_too(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "openai/llama-3.3-70b", "tools": [
        {"type": "custom", "name": "lookup", "description": "Look a word up", "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}}}
    ]})).await;
    model.script(vec![Reply::tool_use("lookup", json!({"word": "rust"})), Reply::text("Rust is a language.")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("what is rust?")).await;
    let first = stream.until(settled).await;
    let call = first.iter().find(|e| e.event == "agent.custom_tool_use").expect("tool call over chat completions");
    assert_eq!(call.data["input"], json!({"word": "rust"}));
    let id = call.data["id"].as_str().unwrap();
    send(&app, &sid, json!([{"type": "user.custom_tool_result", "custom_tool_use_id": id, "content": [{"type": "text", "text": "a systems language"}]}])).await;
    let second = stream.until(settled).await;
    assert!(second.iter().any(|e| e.event == "agent.message" && e.data["content"][0]["text"] == "Rust is a language."));
    let reqs = model.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/chat/completions"), "{:?}", reqs.iter().map(|r| &r.path).collect::<Vec<_>>());
    assert_eq!(reqs[0].body["model"], "llama-3.3-70b");
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    assert!(msgs.iter().any(|m| m["role"] == "tool" && m["tool_call_id"] == id), "{msgs:?}");
}

async fn a_budget_stops_the_session_and_raising_it_resumes(app: TestApp, model: FakeModel) {
    let a = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "read"}]})).await;
    // malformed or unenforceable budgets are refused
    for amount in ["025", "0", "1.5", "abc", ""] {
        let r = app.post("/v1/sessions", json!({"agent": a["id"], "budget": {"type": "limit", "max_list_cost": {"amount": amount, "currency": "USD"}}})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{amount}");
    }
    let eur = app.post("/v1/sessions", json!({"agent": a["id"], "budget": {"type": "limit", "max_list_cost": {"amount": "100", "currency": "EUR"}}})).await;
    assert_eq!(eur.status, StatusCode::BAD_REQUEST);
    let unpriced = app.ok("/v1/agents", json!({"name": "b", "model": "openai/llama-3.3-70b"})).await;
    let r = app.post("/v1/sessions", json!({"agent": unpriced["id"], "budget": {"type": "limit", "max_list_cost": {"amount": "100", "currency": "USD"}}})).await;
    assert_eq!(r.body["error"]["details"]["error_code"], "model_not_budgetable");

    // one cent: a single request with 1,000 output tokens at $15/MTok overshoots it
    let s = app.ok("/v1/sessions", json!({"agent": a["id"], "budget": {"type": "limit", "max_list_cost": {"amount": "1", "currency": "USD"}}})).await;
    let sid = s["id"].as_str().unwrap();
    assert_eq!(s["budget"]["max_list_cost"], json!({"amount": "1", "currency": "USD"}));
    let usage = ScriptUsage { input_tokens: 100, output_tokens: 1000, ..Default::default() };
    model.script(vec![Reply::tool_use("read", json!({"file_path": "/workspace/x"})).usage(usage), Reply::text("done")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, sid, user("go")).await;
    let events = stream.until(settled).await;
    let idle = events.last().unwrap();
    assert_eq!(idle.data["stop_reason"], json!({"type": "budget_reached"}));
    let usage_event = &events[events.len() - 2];
    assert_eq!(usage_event.event, "session.usage");
    assert_eq!(usage_event.data["usage"]["list_cost"]["amount"], "2", "1,000 × $15/MTok + 100 × $3/MTok ≈ 1.53 cents");
    assert_eq!(usage_event.data["budget"]["max_list_cost"]["amount"], "1");
    assert_eq!(model.requests().len(), 1, "no request after the cap");
    let refused = send(&app, sid, user("more")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"]["details"]["error_code"], "budget_reached");
    let too_low = app.post(&format!("/v1/sessions/{sid}"), json!({"budget": {"type": "limit", "max_list_cost": {"amount": "1", "currency": "USD"}}})).await;
    assert_eq!(too_low.status, StatusCode::BAD_REQUEST);
    let raised = app.ok(&format!("/v1/sessions/{sid}"), json!({"budget": {"type": "limit", "max_list_cost": {"amount": "500", "currency": "USD"}}})).await;
    assert_eq!(raised["budget"]["max_list_cost"]["amount"], "500");
    let resumed = stream.until(settled).await;
    assert!(resumed.iter().any(|e| e.event == "session.updated" && e.data["budget"]["max_list_cost"]["amount"] == "500"));
    assert!(resumed.iter().any(|e| e.event == "session.status_running"), "a raised budget resumes the session");
    assert_eq!(resumed.last().unwrap().data["stop_reason"], json!({"type": "end_turn"}));
    let removed = app.ok(&format!("/v1/sessions/{sid}"), json!({"budget": null})).await;
    assert!(removed["budget"].is_null());
    let readd = app.post(&format!("/v1/sessions/{sid}"), json!({"budget": {"type": "limit", "max_list_cost": {"amount": "900", "currency": "USD"}}})).await;
    assert_eq!(readd.status, StatusCode::BAD_REQUEST, "a removed budget cannot be added back");
}

async fn a_message_sent_while_running_is_answered_in_the_same_turn(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    model.script(vec![Reply::text("a slow first answer").delay_ms(40).split(2), Reply::text("answer to two")]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("one")).await;
    stream.until(|e| e.event == "span.model_request_start").await;
    let queued = send(&app, &sid, user("two")).await;
    assert_eq!(queued.status, StatusCode::OK);
    assert!(queued.body["data"][0]["processed_at"].is_null(), "queued, not yet processed");
    let events = stream.until(settled).await;
    assert!(events.iter().any(|e| e.event == "agent.message" && e.data["content"][0]["text"] == "answer to two"), "{:?}", kinds(&events));
    assert_eq!(model.requests().len(), 2);
    assert!(model.requests()[1].body.to_string().contains("two"));
}

async fn the_ledger_reconciles_with_what_the_model_reported(app: TestApp, model: FakeModel) {
    let u = |i: u64, o: u64| ScriptUsage { input_tokens: i, output_tokens: o, ..Default::default() };
    let mut sessions = Vec::new();
    for n in 0..3u64 {
        let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "read"}]})).await;
        model.script(vec![
            Reply::error(500),
            Reply::tool_use("read", json!({"file_path": "/workspace/nope"})).usage(u(100 + n, 10)),
            Reply::text("done").usage(u(200, 20 + n)),
        ]);
        let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
        send(&app, &sid, user("go")).await;
        stream.until(settled).await;
        sessions.push(sid);
    }
    // what the model reported, from the span events of completed requests
    let (mut input, mut output, mut active_ms) = (0i64, 0i64, 0f64);
    for sid in &sessions {
        for e in listed(&app, sid).await {
            if e["type"] == "span.model_request_end" && e["is_error"] == false {
                input += e["model_usage"]["input_tokens"].as_i64().unwrap();
                output += e["model_usage"]["output_tokens"].as_i64().unwrap();
            }
        }
        active_ms += app.get(&format!("/v1/sessions/{sid}")).await.body["stats"]["active_seconds"].as_f64().unwrap() * 1000.0;
    }
    assert_eq!((input, output), (200 * 3 + 303, 3 * 10 + 63));
    let report = app.get("/v1/usage?group_by[]=kind").await.body;
    let by_kind = |k: &str| report["data"].as_array().unwrap().iter().find(|l| l["kind"] == k).map(|l| l["quantity"].as_i64().unwrap()).unwrap_or(0);
    assert_eq!(by_kind("input_tokens"), input, "{report}");
    assert_eq!(by_kind("output_tokens"), output);
    assert!((by_kind("runtime_ms") as f64 - active_ms).abs() <= 3.0 * sessions.len() as f64, "runtime {} vs {active_ms}", by_kind("runtime_ms"));
    // list prices: $3/MTok in, $15/MTok out, $0.08/h
    let expected = (input * 3 + output * 15) + by_kind("runtime_ms") * 80_000 / 3_600_000;
    assert!((report["total_amount_micros"].as_i64().unwrap() - expected).abs() <= 12, "{report}");
    let per_session = app.get("/v1/usage?group_by[]=session&group_by[]=kind").await.body;
    assert_eq!(per_session["data"].as_array().unwrap().iter().filter(|l| l["kind"] == "input_tokens").count(), 3);
    let csv = app.http.get(format!("{}/v1/usage?group_by[]=model&group_by[]=day&format=csv", app.base)).bearer_auth(&app.key).send().await.unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    assert!(text.starts_with("model,day,quantity,amount_usd\nclaude-sonnet-4-6,"), "{text}");
    let bad = app.get("/v1/usage?group_by[]=planet").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

async fn the_ledger_export_pages_with_a_stable_cursor_and_acknowledgements(app: TestApp, model: FakeModel) {
    let sid = session_for(&app, json!({"name": "a", "model": "claude-sonnet-4-6", "tools": [{"type": "read"}]})).await;
    let u = ScriptUsage { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 3, cache_creation_input_tokens: 2 };
    model.script(vec![Reply::tool_use("read", json!({"file_path": "/x"})).usage(u), Reply::text("ok").usage(u)]);
    let mut stream = SseReader::open(&app, &format!("/v1/sessions/{sid}/events/stream"), None).await;
    send(&app, &sid, user("go")).await;
    stream.until(settled).await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // the export's settle lag
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after { Some(c) => format!("/v1/usage/export?limit=3&after={c}"), None => "/v1/usage/export?limit=3".into() };
        let page = app.get(&url).await.body;
        seen.extend(page["data"].as_array().unwrap().iter().map(|e| (e["source"].as_str().unwrap().to_owned(), e["kind"].as_str().unwrap().to_owned())));
        after = Some(page["next_cursor"].as_str().unwrap().to_owned());
        if page["has_more"] == false { break; }
    }
    // 2 requests × 4 token kinds + 1 running interval
    assert_eq!(seen.len(), 9, "{seen:?}");
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "each (source, kind) once");
    let first = app.get("/v1/usage/export?limit=4").await.body;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let acked = app.ok("/v1/usage/export/ack", json!({"cursor": cursor})).await;
    assert_eq!(acked["cursor"], cursor.as_str());
    let rest = app.get("/v1/usage/export").await.body;
    assert_eq!(rest["data"].as_array().unwrap().len(), 5, "after an ack the export resumes there");
    assert_eq!(rest["acknowledged_cursor"], cursor.as_str());
    let backwards = app.ok("/v1/usage/export/ack", json!({"cursor": "ledger_0"})).await;
    assert_eq!(backwards["cursor"], cursor.as_str(), "acknowledgements never move back");
    assert_eq!(app.get("/v1/usage/export?after=garbage").await.status, StatusCode::BAD_REQUEST);
}
