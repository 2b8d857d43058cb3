//! Slack as a front door, end to end against a fake Slack API: a signed app mention starts
//! the thread's session and the agent's answer is posted into that thread; a second
//! mention continues the same session; a tool call that needs confirmation becomes
//! Allow/Deny buttons whose (signed) click lets the turn go on; forged, stale and replayed
//! deliveries are refused or ignored; the bot token is shown nowhere.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use openma_fake_model::{FakeModel, Reply};
use serde_json::{Value, json};
use sha2::Sha256;
use support::{Backend, TestApp, spawn_app_custom};

const SIGNING_SECRET: &str = "slack-signing-secret-8c1f";
const BOT_TOKEN: &str = "xoxb-bot-token-secret-4Rt";

/// The fake Slack Web API: `chat.postMessage` and `chat.update`, with the bearer token of
/// each call and the current state of every message.
#[derive(Default)]
struct FakeSlack {
    /// `(method, authorization, body)` of every call.
    calls: Mutex<Vec<(String, String, Value)>>,
    /// Messages in order of posting: the last body posted or updated for each `ts`.
    messages: Mutex<Vec<(String, Value)>>,
}

async fn web_api(State(slack): State<Arc<FakeSlack>>, axum::extract::Path(method): axum::extract::Path<String>, headers: HeaderMap, body: String) -> axum::Json<Value> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    slack.calls.lock().unwrap().push((method.clone(), auth, body.clone()));
    let mut messages = slack.messages.lock().unwrap();
    match method.as_str() {
        "chat.postMessage" => {
            let ts = format!("1700000100.{:06}", messages.len() + 1);
            messages.push((ts.clone(), body));
            axum::Json(json!({"ok": true, "ts": ts}))
        }
        "chat.update" => match messages.iter_mut().find(|(ts, _)| body["ts"] == ts.as_str()) {
            Some((_, m)) => {
                m["text"] = body["text"].clone();
                axum::Json(json!({"ok": true}))
            }
            None => axum::Json(json!({"ok": false, "error": "message_not_found"})),
        },
        "auth.test" if slack.calls.lock().unwrap().last().is_some_and(|c| c.1 == format!("Bearer {BOT_TOKEN}")) => {
            axum::Json(json!({"ok": true, "user": "openma-bot", "team": "Acme"}))
        }
        "auth.test" => axum::Json(json!({"ok": false, "error": "invalid_auth"})),
        _ => axum::Json(json!({"ok": false, "error": "unknown_method"})),
    }
}

async fn fake_slack() -> (Arc<FakeSlack>, String) {
    let slack = Arc::new(FakeSlack::default());
    let app = Router::new().route("/api/{method}", post(web_api)).with_state(slack.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (slack, format!("http://{addr}/api"))
}

impl FakeSlack {
    fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().iter().map(|(_, m)| m.clone()).collect()
    }

    /// Waits until a message shows `text`; returns it.
    async fn wait_for_text(&self, text: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m["text"] == text) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "no Slack message says {text:?}: {:?}", self.messages());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until a message has buttons; returns it.
    async fn wait_for_buttons(&self) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| m["blocks"].is_array()) {
                return m;
            }
            assert!(std::time::Instant::now() < deadline, "no buttons: {:?}", self.messages());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn signature(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

/// Sends a request to the integration the way Slack does; the status and the body.
async fn deliver(app: &TestApp, path: &str, content_type: &str, body: &str, secret: &str, ts: i64) -> (u16, String) {
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature(secret, ts, body))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn mention(event_id: &str, ts: &str, thread_ts: Option<&str>, text: &str) -> String {
    let mut event = json!({"type": "app_mention", "user": "U123", "text": text, "ts": ts, "channel": "C42", "event_ts": ts});
    if let Some(t) = thread_ts {
        event["thread_ts"] = json!(t);
    }
    json!({"type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": event_id, "event_time": now(), "event": event}).to_string()
}

async fn slack_threads_drive_sessions(backend: Backend) {
    let model = FakeModel::start().await;
    let Some(app) = spawn_app_custom(backend, Some(model.base_url()), |o| o.unsafe_allow_private_fetch = true).await else { return };
    let (slack, api) = fake_slack().await;
    let agent = app
        .ok("/v1/agents", json!({"name": "helper", "model": "claude-sonnet-4-6",
            "tools": [{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}]}))
        .await;
    let integration = app
        .ok("/v1/integrations", json!({"provider": "slack", "agent_id": agent["id"], "name": "team bot",
            "signing_secret": SIGNING_SECRET, "bot_token": BOT_TOKEN, "api_base_url": api}))
        .await;
    let events_path = integration["events_path"].as_str().unwrap().to_owned();
    let interactivity_path = integration["interactivity_path"].as_str().unwrap().to_owned();
    assert_eq!(integration["provider"], "slack");
    assert!(!integration.to_string().contains(BOT_TOKEN) && !integration.to_string().contains(SIGNING_SECRET));

    // Slack's URL check
    let challenge = json!({"type": "url_verification", "token": "legacy", "challenge": "ch4ll3nge"}).to_string();
    let (status, body) = deliver(&app, &events_path, "application/json", &challenge, SIGNING_SECRET, now()).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["challenge"].as_str()), (200, Some("ch4ll3nge")));

    // forged, stale and unsigned deliveries are refused before anything happens
    let first = mention("Ev1", "1700000000.000100", None, "<@UBOT> what is 2+2?");
    assert_eq!(deliver(&app, &events_path, "application/json", &first, "wrong-secret", now()).await.0, 401);
    assert_eq!(deliver(&app, &events_path, "application/json", &first, SIGNING_SECRET, now() - 600).await.0, 401);
    let unsigned = app.http.post(format!("{}{events_path}", app.base)).body(first.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    assert!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().is_empty());

    // a mention starts the thread's session; the answer is posted into the thread
    model.script(vec![Reply::text("It is 4.")]);
    assert_eq!(deliver(&app, &events_path, "application/json", &first, SIGNING_SECRET, now()).await.0, 200);
    // Slack's retry of the same event (and a replay) is acknowledged and ignored
    assert_eq!(deliver(&app, &events_path, "application/json", &first, SIGNING_SECRET, now()).await.0, 200);
    // a progress message is posted into the thread at once and becomes the answer
    let answer = slack.wait_for_text("It is 4.").await;
    assert_eq!((answer["channel"].as_str(), answer["thread_ts"].as_str()), (Some("C42"), Some("1700000000.000100")));
    let calls = slack.calls.lock().unwrap().clone();
    assert_eq!(calls[0].0, "chat.postMessage");
    assert!(calls[0].2["text"].as_str().unwrap().contains("Working on it"), "{calls:?}");
    assert!(calls.iter().any(|c| c.0 == "chat.update"), "{calls:?}");
    assert!(calls.iter().all(|c| c.1 == format!("Bearer {BOT_TOKEN}")));
    assert_eq!(slack.messages().len(), 1, "one message for the answer");
    let sessions = app.get("/v1/sessions").await.body["data"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1, "one session for the thread");
    let sid = sessions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(sessions[0]["metadata"]["slack_channel"], "C42");
    let user_messages = |log: &Value| log["data"].as_array().unwrap().iter().filter(|e| e["type"] == "user.message").count();
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=100")).await.body;
    assert_eq!(user_messages(&log), 1, "the retried delivery was not processed twice");
    assert!(log.to_string().contains("what is 2+2?"));

    // a second mention in the thread continues the same session, with its history
    model.script(vec![Reply::tool_use("bash", json!({"command": "echo 8"})), Reply::text("It is 8.")]);
    let second = mention("Ev2", "1700000000.000200", Some("1700000000.000100"), "<@UBOT> and 4+4? check with bash");
    assert_eq!(deliver(&app, &events_path, "application/json", &second, SIGNING_SECRET, now()).await.0, 200);
    // bash needs a confirmation: it is offered as buttons in the thread
    let ask = slack.wait_for_buttons().await;
    assert_eq!(ask["thread_ts"], "1700000000.000100");
    let buttons = ask["blocks"][1]["elements"].as_array().expect("buttons");
    assert_eq!(buttons[0]["text"]["text"], "Allow");
    assert_eq!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().len(), 1, "still one session");
    let second_request = &model.requests()[1].body;
    assert!(second_request.to_string().contains("It is 4."), "the session kept the thread's history");

    // a click from another integration's secret is refused; the real click goes through
    let click = json!({"type": "block_actions", "user": {"id": "U123"}, "actions": [{"action_id": buttons[0]["action_id"], "value": buttons[0]["value"]}]});
    let form = format!("payload={}", url::form_urlencoded::byte_serialize(click.to_string().as_bytes()).collect::<String>());
    assert_eq!(deliver(&app, &interactivity_path, "application/x-www-form-urlencoded", &form, "wrong-secret", now()).await.0, 401);
    assert_eq!(deliver(&app, &interactivity_path, "application/x-www-form-urlencoded", &form, SIGNING_SECRET, now()).await.0, 200);
    slack.wait_for_text("It is 8.").await;
    let log = app.get(&format!("/v1/sessions/{sid}/events?limit=100")).await.body;
    let result = log["data"].as_array().unwrap().iter().find(|e| e["type"] == "agent.tool_result").expect("bash ran after the click");
    assert!(result["content"][0]["text"].as_str().unwrap().contains('8'));

    // a button naming a session of no integration is refused
    let other = app.ok("/v1/sessions", json!({"agent": agent["id"]})).await["id"].as_str().unwrap().to_owned();
    let forged = json!({"type": "block_actions", "user": {"id": "U9"}, "actions": [{"action_id": "openma_allow", "value": format!("{other}|sevt_x")}]});
    let form = format!("payload={}", url::form_urlencoded::byte_serialize(forged.to_string().as_bytes()).collect::<String>());
    assert_eq!(deliver(&app, &interactivity_path, "application/x-www-form-urlencoded", &form, SIGNING_SECRET, now()).await.0, 403);

    // a new thread is a new session; the bot's own messages are ignored
    let own = json!({"type": "event_callback", "event_id": "Ev3", "event": {"type": "message", "channel_type": "im", "bot_id": "B1", "text": "It is 8.", "ts": "1.1", "channel": "D1"}}).to_string();
    assert_eq!(deliver(&app, &events_path, "application/json", &own, SIGNING_SECRET, now()).await.0, 200);
    model.script(vec![Reply::text("Hello there.")]);
    let dm = json!({"type": "event_callback", "event_id": "Ev4", "event": {"type": "message", "channel_type": "im", "user": "U7", "text": "hi", "ts": "1700000300.000001", "channel": "D9"}}).to_string();
    assert_eq!(deliver(&app, &events_path, "application/json", &dm, SIGNING_SECRET, now()).await.0, 200);
    let hello = slack.wait_for_text("Hello there.").await;
    assert_eq!(hello["channel"], "D9");
    assert!(!slack.messages().iter().any(|m| m["channel"] == "D1"), "the bot's own message got no answer");
    assert_eq!(app.get("/v1/sessions").await.body["data"].as_array().unwrap().len(), 3);

    // the token and the signing secret appear in no response or event
    for path in [format!("/v1/integrations/{}", integration["id"].as_str().unwrap()), "/v1/integrations".into(), format!("/v1/sessions/{sid}/events?limit=100")] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let text = r.body.to_string();
        assert!(!text.contains(BOT_TOKEN) && !text.contains(SIGNING_SECRET), "{path}");
    }
    // a deleted integration takes no more deliveries
    assert!(app.delete(&format!("/v1/integrations/{}", integration["id"].as_str().unwrap())).await.status.is_success());
    let late = mention("Ev5", "1700000400.000001", None, "<@UBOT> hello?");
    assert_eq!(deliver(&app, &events_path, "application/json", &late, SIGNING_SECRET, now()).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_slack_threads_drive_sessions() {
    slack_threads_drive_sessions(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slack_threads_drive_sessions() {
    slack_threads_drive_sessions(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_are_validated() {
    let Some(app) = support::spawn_app(Backend::Sqlite).await else { return };
    let agent = app.ok("/v1/agents", json!({"name": "a", "model": "claude-sonnet-4-6"})).await;
    let base = json!({"provider": "slack", "agent_id": agent["id"], "signing_secret": "s", "bot_token": "t"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, status, says) in [
        (with("provider", json!("github")), 400, "github"),
        (with("provider", json!("teams")), 400, "provider"),
        (with("agent_id", json!("agent_missing")), 404, "agent"),
        (with("bot_token", json!("")), 400, "bot_token"),
        (with("api_base_url", json!("http://127.0.0.1:9/api")), 400, "api_base_url"),
        (with("surprise", json!(1)), 400, "surprise"),
    ] {
        let r = app.post("/v1/integrations", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(says), "{body}: {}", r.body);
    }
    let made = app.ok("/v1/integrations", base.clone()).await;
    assert_eq!(made["api_base_url"], "https://slack.com/api");
    // another tenant sees nothing of it
    let other = app.other_tenant("other").await;
    let r = app.call(reqwest::Method::GET, &format!("/v1/integrations/{}", made["id"].as_str().unwrap()), Some(&other), None).await;
    assert_eq!(r.status, 404);
}

/// The console's setup page: publish an agent to Slack from a form, check its token with
/// the provider (the test button), and delete it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publishes_checks_and_deletes_an_integration() {
    let Some(app) = spawn_app_custom(Backend::Sqlite, None, |o| o.unsafe_allow_private_fetch = true).await else { return };
    let (_slack, api) = fake_slack().await;
    let agent = app.agent("published").await;
    let member = support::console_member(&app, "ops@example.com", openma_core::accounts::Role::Admin).await;
    let (http, cookie, csrf) = member.clone();
    let page = http.get(format!("{}/console/integrations", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("No integrations"), "{page}");
    let post = |path: String, pairs: Vec<(&'static str, String)>| {
        let (http, cookie, base) = (http.clone(), cookie.clone(), app.base.clone());
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).finish();
            http.post(format!("{base}{path}")).header("cookie", cookie).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap()
        }
    };
    let made = post("/console/integrations".into(), vec![
        ("csrf", csrf.clone()), ("provider", "slack".into()), ("agent_id", agent["id"].as_str().unwrap().into()),
        ("signing_secret", SIGNING_SECRET.into()), ("bot_token", BOT_TOKEN.into()), ("api_base_url", api.clone()),
    ]).await;
    assert!(made.status().is_redirection(), "{}", made.status());
    let page = http.get(format!("{}/console/integrations", app.base)).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/integrations/slack/") && !page.contains(BOT_TOKEN) && !page.contains(SIGNING_SECRET), "{page}");
    let id = page.split("action=\"/console/integrations/").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let checked = support::console_check(&app, &member, &id).await;
    assert!(checked.contains("✓ Slack: signed in as openma-bot in Acme"), "{checked}");
    let gone = post(format!("/console/integrations/{id}/delete"), vec![("csrf", csrf.clone())]).await;
    assert!(gone.status().is_redirection());
    assert!(app.get("/v1/integrations").await.body["data"].as_array().unwrap().is_empty());
}
