//! Property tests of the event log and the session state machine: random conversations
//! (messages, tool calls of every kind, answers, interrupts, provider failures) against
//! a real server and a scripted model, then invariants over the resulting log.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openma_fake_model::{FakeModel, Reply};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::{Backend, TestApp, spawn_app_with_model};

#[derive(Clone, Debug)]
enum ModelTurn {
    Text,
    CustomTool,
    AskTool,
    AllowedTool,
    RateLimited,
    ServerError,
    Slow,
}

#[derive(Clone, Debug)]
enum Action {
    Message(ModelTurn, ModelTurn),
    Interrupt,
    Answer { allow: bool },
}

fn turn() -> impl Strategy<Value = ModelTurn> {
    prop_oneof![
        3 => Just(ModelTurn::Text),
        2 => Just(ModelTurn::CustomTool),
        2 => Just(ModelTurn::AskTool),
        1 => Just(ModelTurn::AllowedTool),
        1 => Just(ModelTurn::RateLimited),
        1 => Just(ModelTurn::ServerError),
        1 => Just(ModelTurn::Slow),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (turn(), turn()).prop_map(|(a, b)| Action::Message(a, b)),
        1 => Just(Action::Interrupt),
        3 => any::<bool>().prop_map(|allow| Action::Answer { allow }),
    ]
}

fn reply(t: &ModelTurn) -> Reply {
    match t {
        ModelTurn::Text => Reply::text("fine"),
        ModelTurn::CustomTool => Reply::tool_use("lookup", json!({"q": "x"})),
        ModelTurn::AskTool => Reply::tool_use("write", json!({"file_path": "/workspace/a", "content": "b"})),
        ModelTurn::AllowedTool => Reply::tool_use("read", json!({"file_path": "/workspace/a"})),
        ModelTurn::RateLimited => Reply::error(429),
        ModelTurn::ServerError => Reply::error(500),
        ModelTurn::Slow => Reply::text("slow ".repeat(40)).delay_ms(5),
    }
}

async fn status(app: &TestApp, sid: &str) -> String {
    app.get(&format!("/v1/sessions/{sid}")).await.body["status"].as_str().unwrap_or_default().to_owned()
}

async fn settle(app: &TestApp, sid: &str) {
    for _ in 0..500 {
        let s = status(app, sid).await;
        if s == "idle" || s == "terminated" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("session did not settle");
}

async fn play(app: &TestApp, model: &FakeModel, actions: &[Action]) -> String {
    let agent = app
        .ok("/v1/agents", json!({"name": "p", "model": "claude-sonnet-4-6", "tools": [
            {"type": "agent_toolset_20260401", "configs": [{"name": "write", "permission_policy": {"type": "always_ask"}}]},
            {"type": "custom", "name": "lookup", "description": "d", "input_schema": {"type": "object"}}
        ]}))
        .await;
    let sid = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    for a in actions {
        let events = match a {
            Action::Message(first, then) => {
                model.reset();
                model.script(vec![reply(first), reply(then), Reply::text("done"), Reply::text("done")]);
                json!([{"type": "user.message", "content": [{"type": "text", "text": "go"}]}])
            }
            Action::Interrupt => json!([{"type": "user.interrupt"}]),
            Action::Answer { allow } => {
                let list = app.get(&format!("/v1/sessions/{sid}/events?order=desc&types[]=session.status_idle&limit=1")).await.body;
                let pending: Vec<String> = list["data"]
                    .get(0)
                    .and_then(|e| e["stop_reason"]["event_ids"].as_array())
                    .map(|ids| ids.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let Some(id) = pending.first() else { continue };
                let all = app.get(&format!("/v1/sessions/{sid}/events?limit=1000")).await.body;
                let custom = all["data"].as_array().unwrap().iter().any(|e| e["id"] == id.as_str() && e["type"] == "agent.custom_tool_use");
                if custom {
                    json!([{"type": "user.custom_tool_result", "custom_tool_use_id": id, "content": [{"type": "text", "text": "r"}], "is_error": !allow}])
                } else {
                    json!([{"type": "user.tool_confirmation", "tool_use_id": id, "result": if *allow { "allow" } else { "deny" }}])
                }
            }
        };
        let r = app.post(&format!("/v1/sessions/{sid}/events"), json!({"events": events})).await;
        assert!(r.status.is_success() || r.status.as_u16() == 409 || r.status.as_u16() == 400, "{}", r.body);
        if !matches!(a, Action::Message(ModelTurn::Slow, _)) {
            settle(app, &sid).await;
        }
    }
    settle(app, &sid).await;
    sid
}

fn check_invariants(log: &[(i64, Value)]) -> Result<(), TestCaseError> {
    if log.is_empty() {
        return Ok(());
    }
    // seq strictly increasing and contiguous from 1; ids unique
    for (i, (seq, _)) in log.iter().enumerate() {
        prop_assert_eq!(*seq, i as i64 + 1);
    }
    let ids: BTreeSet<&str> = log.iter().map(|(_, e)| e["id"].as_str().unwrap()).collect();
    prop_assert_eq!(ids.len(), log.len());
    // no event after terminated
    if let Some(pos) = log.iter().position(|(_, e)| e["type"] == "session.status_terminated") {
        prop_assert_eq!(pos, log.len() - 1, "events after terminated");
    }
    // every tool use has at most one result; those without are exactly the final pending ones
    let mut results: BTreeMap<String, usize> = BTreeMap::new();
    let mut uses = Vec::new();
    for (_, e) in log {
        match e["type"].as_str().unwrap() {
            "agent.tool_use" | "agent.custom_tool_use" => uses.push(e["id"].as_str().unwrap().to_owned()),
            "agent.tool_result" => *results.entry(e["tool_use_id"].as_str().unwrap().to_owned()).or_default() += 1,
            "user.custom_tool_result" => *results.entry(e["custom_tool_use_id"].as_str().unwrap().to_owned()).or_default() += 1,
            _ => {}
        }
    }
    for (id, n) in &results {
        prop_assert_eq!(*n, 1, "tool use {} has {} results", id, n);
        prop_assert!(uses.contains(id), "result for unknown tool use {}", id);
    }
    let unanswered: Vec<String> = uses.iter().filter(|u| !results.contains_key(*u)).cloned().collect();
    // the calls left unanswered are exactly those the last status change waits on
    let last_status = log.iter().rev().map(|(_, e)| e).find(|e| e["type"].as_str().is_some_and(|t| t.starts_with("session.status_")));
    if !unanswered.is_empty() {
        let last = last_status.expect("a status event");
        if last["type"] != "session.status_terminated" {
            prop_assert_eq!(&last["type"], "session.status_idle");
            let pending: Vec<String> = serde_json::from_value(last["stop_reason"]["event_ids"].clone()).unwrap_or_default();
            prop_assert_eq!(pending, unanswered);
        }
    }
    // every model request span closes once; every idle is announced with usage first
    let starts: Vec<&str> = log.iter().filter(|(_, e)| e["type"] == "span.model_request_start").map(|(_, e)| e["id"].as_str().unwrap()).collect();
    let ends: Vec<&str> = log.iter().filter(|(_, e)| e["type"] == "span.model_request_end").map(|(_, e)| e["model_request_start_id"].as_str().unwrap()).collect();
    prop_assert_eq!(starts, ends);
    for (i, (_, e)) in log.iter().enumerate() {
        if e["type"] == "session.status_idle" && e["stop_reason"]["type"] != "requires_action" {
            prop_assert_eq!(&log[i - 1].1["type"], "session.usage");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_conversations_keep_the_log_consistent() {
    let model = FakeModel::start().await;
    let app = spawn_app_with_model(Backend::Sqlite, Some(model.base_url())).await.unwrap();
    let cases = std::env::var("OPENMA_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = proptest::collection::vec(action(), 1..8);
    // proptest drives a sync closure; each case runs on this runtime's handle
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&strategy, |actions| {
            handle.block_on(async {
                let sid = play(&app, &model, &actions).await;
                let tenant = app.platform.find_tenant("default").await.unwrap();
                let log = app
                    .platform
                    .store
                    .list_events(&tenant.id, &sid, &openma_core::ports::EventQuery { limit: 10_000, ..Default::default() })
                    .await
                    .unwrap();
                let log: Vec<(i64, Value)> = log.into_iter().map(|e| (e.seq, serde_json::to_value(&e.event).unwrap())).collect();
                check_invariants(&log)
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
