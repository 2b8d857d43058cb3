//! Slack as a front door to an agent: the Events API receiver (signing-secret check,
//! `url_verification`, app mentions and direct messages start or resume the session of
//! their thread), the agent's answers posted to the thread when its turn ends, and tool
//! calls that need a confirmation offered as Allow/Deny buttons (the interactivity
//! endpoint, verified the same way).
//!
//! Every request is verified with the app's signing secret (`v0` HMAC-SHA256 over
//! `v0:{timestamp}:{body}`, timestamps older than five minutes refused) and every event is
//! processed once: its `event_id` is recorded before it is acted on, so Slack's retries and
//! replays are acknowledged and ignored. The bot token stays in this process.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use openma_core::harness::input::Input;
use openma_core::integrations::{StoredIntegration, open_secrets, slack_thread_key};
use openma_core::ports::EventQuery;
use openma_core::{DomainError, Platform, TenantId};
use openma_types::integrations::Integration;
use openma_types::sessions::CreateSessionRequest;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::AppState;
use crate::extract::ApiPath;

/// Oldest request timestamp accepted, in seconds (Slack's own recommendation).
const MAX_SKEW_S: i64 = 300;
const ALLOW: &str = "openma_allow";
const DENY: &str = "openma_deny";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/integrations/slack/{integration_id}/events", post(events))
        .route("/integrations/slack/{integration_id}/interactivity", post(interactivity))
}

/// Why a request was refused before anything was read from it.
#[derive(Debug, PartialEq)]
pub enum Rejected {
    MissingHeaders,
    Stale,
    BadSignature,
}

/// Checks Slack's `v0` signature of `body`; `now` in Unix seconds.
pub fn verify(signing_secret: &str, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Rejected> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (header("x-slack-request-timestamp"), header("x-slack-signature")) else {
        return Err(Rejected::MissingHeaders);
    };
    let at: i64 = ts.parse().map_err(|_| Rejected::MissingHeaders)?;
    if (now - at).abs() > MAX_SKEW_S {
        return Err(Rejected::Stale);
    }
    let expected = sig.strip_prefix("v0=").and_then(hex_decode).ok_or(Rejected::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).map_err(|_| Rejected::BadSignature)?;
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| Rejected::BadSignature)
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": "authentication_error", "message": message}}))).into_response()
}

/// The integration a delivery names, after its signature was checked with its secret.
async fn verified(app: &AppState, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<(TenantId, StoredIntegration, String), Response> {
    let found = app.platform.store.find_integration(id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read integrations");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })?;
    let Some((tenant, stored)) = found else {
        return Err(refuse(StatusCode::NOT_FOUND, "no such integration"));
    };
    let secrets = app.platform.secrets.as_deref().ok_or_else(|| StatusCode::SERVICE_UNAVAILABLE.into_response())?;
    let (signing, token) = open_secrets(secrets, &tenant, &stored).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
    let now = app.platform.clock.now().as_micros() / 1_000_000;
    if let Err(why) = verify(&signing, headers, body, now) {
        tracing::warn!(integration_id = %id, reason = ?why, "refused a Slack request");
        metrics::counter!("openma_integration_rejected_total", "provider" => "slack").increment(1);
        let message = match why {
            Rejected::MissingHeaders => "missing X-Slack-Request-Timestamp or X-Slack-Signature",
            Rejected::Stale => "the request timestamp is more than five minutes away",
            Rejected::BadSignature => "the signature does not match",
        };
        return Err(refuse(StatusCode::UNAUTHORIZED, message));
    }
    Ok((tenant, stored, token))
}

/// `POST /integrations/slack/{id}/events`: the Events API request URL.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, stored, token) = match verified(&app, &id, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    match payload["type"].as_str() {
        Some("url_verification") => return Json(json!({"challenge": payload["challenge"]})).into_response(),
        Some("event_callback") => {}
        _ => return StatusCode::OK.into_response(),
    }
    let event = &payload["event"];
    let Some(event_id) = payload["event_id"].as_str() else {
        return (StatusCode::BAD_REQUEST, "no event_id").into_response();
    };
    match app.platform.first_delivery(&id, event_id).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(integration_id = %id, event_id, "Slack event seen before: ignored");
            return StatusCode::OK.into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a Slack delivery");
            // Slack retries a 5xx: nothing was processed
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    if !addressed_to_agent(event) {
        return StatusCode::OK.into_response();
    }
    let message = Message {
        channel: event["channel"].as_str().unwrap_or_default().to_owned(),
        thread_ts: event["thread_ts"].as_str().or(event["ts"].as_str()).unwrap_or_default().to_owned(),
        user: event["user"].as_str().unwrap_or("someone").to_owned(),
        text: event["text"].as_str().unwrap_or_default().to_owned(),
    };
    metrics::counter!("openma_integration_events_total", "provider" => "slack").increment(1);
    // Slack wants an answer within three seconds: the session is started behind it
    tokio::spawn(async move {
        let integration = stored.integration;
        if let Err(e) = start_or_resume(&app, &tenant, &integration, &message).await {
            tracing::warn!(integration_id = %integration.id, error = %e, "cannot pass a Slack message to its session");
            let text = format!("Sorry, the agent could not take this message: {e}");
            let _ = post_message(&integration, &token, &message.channel, &message.thread_ts, &text, None).await;
        }
    });
    StatusCode::OK.into_response()
}

/// A mention of the app, or a direct message to it; never a bot's message (its own answers
/// included), an edit or another subtype.
fn addressed_to_agent(event: &Value) -> bool {
    if event.get("bot_id").is_some_and(|b| !b.is_null()) || event.get("subtype").is_some_and(|s| !s.is_null()) {
        return false;
    }
    match event["type"].as_str() {
        Some("app_mention") => true,
        Some("message") => event["channel_type"].as_str() == Some("im"),
        _ => false,
    }
}

struct Message {
    channel: String,
    thread_ts: String,
    user: String,
    text: String,
}

/// Gives the message to the session of its thread, creating (and binding) one for a new
/// thread; of two racing creations the first binding wins and the other session goes.
async fn start_or_resume(app: &AppState, tenant: &TenantId, integration: &Integration, m: &Message) -> Result<(), DomainError> {
    let thread = slack_thread_key(&m.channel, &m.thread_ts);
    let store = &app.platform.store;
    let session_id = match store.integration_thread_session(&integration.id, &thread).await? {
        Some(sid) => sid,
        None => {
            let metadata = [("slack_channel", m.channel.as_str()), ("slack_thread_ts", m.thread_ts.as_str()), ("integration_id", integration.id.as_str())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let req = CreateSessionRequest {
                agent_id: Some(integration.agent_id.clone()),
                environment_id: integration.environment_id.clone(),
                title: Some(format!("Slack thread {}", m.thread_ts)),
                metadata: Some(metadata),
                ..Default::default()
            };
            let session = crate::http::sessions::create(app, tenant, req).await?;
            let bound = store.bind_integration_thread(tenant, &integration.id, &thread, &session.id, app.platform.clock.now()).await?;
            if bound != session.id {
                let _ = app.platform.delete_session(tenant, &session.id).await;
                let _ = app.sandboxes.destroy(&session.id).await;
            }
            bound
        }
    };
    let text = format!("<@{}> wrote in Slack:\n\n{}", m.user, m.text);
    app.runtime.submit(tenant, &session_id, vec![Input::Message { content: vec![json!({"type": "text", "text": text})] }]).await?;
    Ok(())
}

/// `POST /integrations/slack/{id}/interactivity`: a click on an Allow/Deny button.
async fn interactivity(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, _stored, _token) = match verified(&app, &id, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let payload = url::form_urlencoded::parse(&body).find(|(k, _)| k == "payload").and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok());
    let Some(payload) = payload else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    let user = payload["user"]["id"].as_str().unwrap_or("someone").to_owned();
    for action in payload["actions"].as_array().into_iter().flatten() {
        let allow = match action["action_id"].as_str() {
            Some(ALLOW) => true,
            Some(DENY) => false,
            _ => continue,
        };
        let Some((session_id, tool_use_id)) = action["value"].as_str().and_then(|v| v.split_once('|')) else { continue };
        // a button only acts on a session of this integration
        match app.platform.store.session_integration_thread(session_id).await {
            Ok(Some((integration, _))) if integration == id => {}
            _ => return refuse(StatusCode::FORBIDDEN, "the session does not belong to this integration"),
        }
        let input = Input::Confirmation {
            tool_use_id: tool_use_id.to_owned(),
            allow,
            deny_message: (!allow).then(|| format!("Denied in Slack by <@{user}>.")),
        };
        if let Err(e) = app.runtime.submit(&tenant, session_id, vec![input]).await {
            tracing::info!(session_id, error = %e, "a Slack confirmation was not applied");
        }
    }
    StatusCode::OK.into_response()
}

/// Posts answers to Slack threads when their session's turn ends.
pub struct SlackReplies {
    platform: Platform,
}

impl SlackReplies {
    pub fn new(platform: Platform) -> Arc<Self> {
        Arc::new(SlackReplies { platform })
    }

    async fn reply(&self, tenant: &TenantId, session_id: &str) -> Result<(), String> {
        let store = &self.platform.store;
        let Some((integration_id, thread)) = store.session_integration_thread(session_id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let Some(stored) = store.get_integration(tenant, &integration_id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let secrets = self.platform.secrets.as_deref().ok_or("no root secret")?;
        let (_, token) = open_secrets(secrets, tenant, &stored).map_err(|e| e.to_string())?;
        let (channel, thread_ts) = thread.split_once('/').ok_or("malformed thread")?;
        let query = EventQuery { descending: true, limit: 500, ..Default::default() };
        let events = store.list_events(tenant, session_id, &query).await.map_err(|e| e.to_string())?;
        let events: Vec<Value> = events.into_iter().rev().filter_map(|e| serde_json::to_value(&e.event).ok()).collect();
        let turn = TurnSummary::of(&events);
        let integration = stored.integration;
        if !turn.text.trim().is_empty() {
            post_message(&integration, &token, channel, thread_ts, &turn.text, None).await?;
        }
        for ask in turn.asks {
            let text = format!("The agent wants to use `{}`:\n```{}```", ask.name, truncate(&ask.input, 1500));
            let blocks = json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "actions", "elements": [
                    {"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Allow"}, "action_id": ALLOW, "value": format!("{session_id}|{}", ask.id)},
                    {"type": "button", "style": "danger", "text": {"type": "plain_text", "text": "Deny"}, "action_id": DENY, "value": format!("{session_id}|{}", ask.id)}
                ]}
            ]);
            post_message(&integration, &token, channel, thread_ts, &text, Some(blocks)).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::runtime::TurnObserver for SlackReplies {
    async fn turn_ending(&self, tenant: &TenantId, session_id: &str) {
        let (this, tenant, session_id) = (SlackReplies { platform: self.platform.clone() }, tenant.clone(), session_id.to_owned());
        // posting must not hold up the session's idle report
        tokio::spawn(async move {
            if let Err(e) = this.reply(&tenant, &session_id).await {
                tracing::warn!(%session_id, error = %e, "cannot post the answer to Slack");
            }
        });
    }
}

/// What a turn says to its thread: the agent's messages since the last user event, and
/// the tool calls waiting for a confirmation.
#[derive(Debug, Default, PartialEq)]
struct TurnSummary {
    text: String,
    asks: Vec<Ask>,
}

#[derive(Debug, PartialEq)]
struct Ask {
    id: String,
    name: String,
    input: String,
}

impl TurnSummary {
    fn of(events: &[Value]) -> TurnSummary {
        let start = events.iter().rposition(|e| e["type"].as_str().is_some_and(|t| t.starts_with("user."))).map(|i| i + 1).unwrap_or(0);
        let turn = &events[start..];
        let mut out = TurnSummary::default();
        let mut texts = Vec::new();
        for e in turn {
            match e["type"].as_str() {
                Some("agent.message") => {
                    let t: Vec<&str> = e["content"].as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect();
                    texts.push(t.join(""));
                }
                Some("agent.tool_use" | "agent.mcp_tool_use" | "agent.custom_tool_use") if e["evaluated_permission"] == "ask" => {
                    let id = e["id"].as_str().unwrap_or_default();
                    let answered = turn.iter().any(|r| r["tool_use_id"] == id || r["mcp_tool_use_id"] == id);
                    if !answered {
                        out.asks.push(Ask { id: id.to_owned(), name: e["name"].as_str().unwrap_or("a tool").to_owned(), input: e["input"].to_string() });
                    }
                }
                _ => {}
            }
        }
        out.text = texts.join("\n\n");
        out
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

/// `chat.postMessage` into a thread with the bot token.
async fn post_message(
    integration: &Integration,
    token: &str,
    channel: &str,
    thread_ts: &str,
    text: &str,
    blocks: Option<Value>,
) -> Result<(), String> {
    let mut body = json!({"channel": channel, "thread_ts": thread_ts, "text": text});
    if let Some(b) = blocks {
        body["blocks"] = b;
    }
    let url = format!("{}/chat.postMessage", integration.api_base_url);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().map_err(|e| e.to_string())?;
    let resp = http.post(&url).bearer_auth(token).json(&body).send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() || answer["ok"] != true {
        return Err(format!("chat.postMessage answered {status}: {}", answer["error"].as_str().unwrap_or("no `ok`")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, ts: i64, body: &str) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.to_string().parse().unwrap());
        h.insert("x-slack-signature", format!("v0={sig}").parse().unwrap());
        h
    }

    #[test]
    fn signatures_are_checked_with_the_secret_and_the_time() {
        let body = r#"{"type":"event_callback"}"#;
        let now = 1_700_000_000;
        let h = signed("s3cret", now, body);
        assert_eq!(verify("s3cret", &h, body.as_bytes(), now + 10), Ok(()));
        assert_eq!(verify("other", &h, body.as_bytes(), now), Err(Rejected::BadSignature));
        assert_eq!(verify("s3cret", &h, b"{\"type\":\"tampered\"}", now), Err(Rejected::BadSignature));
        assert_eq!(verify("s3cret", &h, body.as_bytes(), now + 301), Err(Rejected::Stale));
        assert_eq!(verify("s3cret", &HeaderMap::new(), body.as_bytes(), now), Err(Rejected::MissingHeaders));
    }

    #[test]
    fn a_turn_says_its_messages_and_its_open_confirmations() {
        let events = vec![
            json!({"type": "agent.message", "content": [{"type": "text", "text": "old"}]}),
            json!({"type": "user.message", "content": []}),
            json!({"type": "agent.message", "content": [{"type": "text", "text": "Let me look."}]}),
            json!({"type": "agent.tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}, "evaluated_permission": "allow"}),
            json!({"type": "agent.tool_result", "tool_use_id": "t1"}),
            json!({"type": "agent.tool_use", "id": "t2", "name": "bash", "input": {"command": "rm x"}, "evaluated_permission": "ask"}),
        ];
        let s = TurnSummary::of(&events);
        assert_eq!(s.text, "Let me look.");
        assert_eq!(s.asks, vec![Ask { id: "t2".into(), name: "bash".into(), input: r#"{"command":"rm x"}"#.into() }]);
        assert_eq!(TurnSummary::of(&[json!({"type": "user.tool_confirmation", "tool_use_id": "t2"})]), TurnSummary::default());
    }
}
