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

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::Mac;
use openma_core::harness::input::Input;
use openma_core::integrations::slack_thread_key;
use openma_core::{DomainError, TenantId};
use openma_types::integrations::{Integration, IntegrationProvider};
use openma_types::sessions::CreateSessionRequest;
use serde_json::{Value, json};

use super::{TurnSummary, find, first_time, hex_decode, hmac_sha256, post_json, refuse, rejected, truncate};
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
    hmac_sha256(signing_secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]).verify_slice(&expected).map_err(|_| Rejected::BadSignature)
}

/// The integration a delivery names, after its signature was checked with its secret;
/// with its bot token.
async fn verified(app: &AppState, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<(TenantId, Integration, String), Response> {
    let (tenant, stored, signing, token) = find(app, id, IntegrationProvider::Slack).await?;
    let now = app.platform.clock.now().as_micros() / 1_000_000;
    if let Err(why) = verify(&signing, headers, body, now) {
        let message = match why {
            Rejected::MissingHeaders => "missing X-Slack-Request-Timestamp or X-Slack-Signature",
            Rejected::Stale => "the request timestamp is more than five minutes away",
            Rejected::BadSignature => "the signature does not match",
        };
        return Err(rejected("slack", id, message));
    }
    Ok((tenant, stored.integration, token))
}

/// `POST /integrations/slack/{id}/events`: the Events API request URL.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, integration, token) = match verified(&app, &id, &headers, &body).await {
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
    match first_time(&app, &id, event_id).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(integration_id = %id, event_id, "Slack event seen before: ignored");
            return StatusCode::OK.into_response();
        }
        Err(r) => return r,
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
        if let Err(e) = start_or_resume(&app, &tenant, &integration, &token, &message).await {
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

/// Gives the message to the session of its thread (created for a new thread).
async fn start_or_resume(app: &AppState, tenant: &TenantId, integration: &Integration, token: &str, m: &Message) -> Result<(), DomainError> {
    let thread = slack_thread_key(&m.channel, &m.thread_ts);
    let (session_id, _) = super::thread_session(app, tenant, integration, &thread, || CreateSessionRequest {
        title: Some(format!("Slack thread {}", m.thread_ts)),
        metadata: Some(
            [("slack_channel", m.channel.as_str()), ("slack_thread_ts", m.thread_ts.as_str()), ("integration_id", integration.id.as_str())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
        ..Default::default()
    })
    .await?;
    let token = token.to_owned();
    if let Err(e) = stream_turn(app, integration, &token, &session_id, &m.channel, &m.thread_ts).await {
        tracing::info!(%session_id, error = %e, "cannot post a progress message to Slack");
    }
    super::say(app, tenant, &session_id, format!("<@{}> wrote in Slack:\n\n{}", m.user, m.text)).await
}

/// `POST /integrations/slack/{id}/interactivity`: a click on an Allow/Deny button.
async fn interactivity(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, _integration, _token) = match verified(&app, &id, &headers, &body).await {
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

/// Posts a turn's answer, and its tool calls waiting for a confirmation as buttons, into
/// the Slack thread of the session.
pub(crate) async fn reply(integration: &Integration, token: &str, thread: &str, session_id: &str, turn: &TurnSummary) -> Result<(), String> {
    let (channel, thread_ts) = thread.split_once('/').ok_or("malformed thread")?;
    let slot = progress().lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
    let mut held = match &slot {
        Some(s) => Some(s.lock().await),
        None => None,
    };
    let placeholder = held.as_mut().and_then(|h| h.take());
    match placeholder {
        // the progress message becomes the answer (or says the turn needs a confirmation)
        Some((channel, ts)) => {
            let text = match (turn.text.trim().is_empty(), turn.asks.is_empty()) {
                (false, _) => turn.text.clone(),
                (true, false) => "_Waiting for a confirmation…_".to_owned(),
                (true, true) => "_Done._".to_owned(),
            };
            update_message(integration, token, &channel, &ts, &text).await?;
        }
        None if !turn.text.trim().is_empty() => {
            post_message(integration, token, channel, thread_ts, &turn.text, None).await?;
        }
        None => {}
    }
    for ask in &turn.asks {
        let text = format!("The agent wants to use `{}`:\n```{}```", ask.name, truncate(&ask.input, 1500));
        let blocks = json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "elements": [
                {"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Allow"}, "action_id": ALLOW, "value": format!("{session_id}|{}", ask.id)},
                {"type": "button", "style": "danger", "text": {"type": "plain_text", "text": "Deny"}, "action_id": DENY, "value": format!("{session_id}|{}", ask.id)}
            ]}
        ]);
        post_message(integration, token, channel, thread_ts, &text, Some(blocks)).await?;
    }
    Ok(())
}

/// `chat.postMessage` into a thread with the bot token.
async fn post_message(
    integration: &Integration,
    token: &str,
    channel: &str,
    thread_ts: &str,
    text: &str,
    blocks: Option<Value>,
) -> Result<String, String> {
    let mut body = json!({"channel": channel, "thread_ts": thread_ts, "text": text});
    if let Some(b) = blocks {
        body["blocks"] = b;
    }
    let answer = call(integration, token, "chat.postMessage", &body).await?;
    Ok(answer["ts"].as_str().unwrap_or_default().to_owned())
}

/// `chat.update` of a message the bot posted.
async fn update_message(integration: &Integration, token: &str, channel: &str, ts: &str, text: &str) -> Result<(), String> {
    call(integration, token, "chat.update", &json!({"channel": channel, "ts": ts, "text": text})).await.map(|_| ())
}

/// `auth.test`: the bot token works; whom it answers as.
pub(crate) async fn check(integration: &Integration, token: &str) -> Result<String, String> {
    let a = call(integration, token, "auth.test", &json!({})).await?;
    Ok(format!("Slack: signed in as {} in {}", a["user"].as_str().unwrap_or("?"), a["team"].as_str().unwrap_or("?")))
}

/// A Web API method with the bot token; Slack answers 200 with `ok: false` on failure.
async fn call(integration: &Integration, token: &str, method: &str, body: &Value) -> Result<Value, String> {
    let url = format!("{}/{method}", integration.api_base_url);
    let answer = post_json(&url, &format!("Bearer {token}"), body).await?;
    if answer["ok"] != true {
        return Err(format!("{method} failed: {}", answer["error"].as_str().unwrap_or("no `ok`")));
    }
    Ok(answer)
}

/// A message that shows a turn in progress: `(channel, ts)`, `None` once the turn's answer
/// replaced it. Updates hold the lock, so the answer is always the last word.
type Progress = std::sync::Arc<tokio::sync::Mutex<Option<(String, String)>>>;

/// The progress messages of this process, by session.
fn progress() -> &'static std::sync::Mutex<std::collections::HashMap<String, Progress>> {
    static PROGRESS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Progress>>> = std::sync::OnceLock::new();
    PROGRESS.get_or_init(Default::default)
}

const WORKING: &str = "_Working on it…_";
/// Fewest milliseconds between two updates of a progress message (Slack's rate limits).
const UPDATE_EVERY_MS: u128 = 1_000;

/// Posts a progress message into the thread and keeps it updated with the agent's messages
/// until the turn ends (then [`reply`] puts the answer in it).
async fn stream_turn(app: &AppState, integration: &Integration, token: &str, session_id: &str, channel: &str, thread_ts: &str) -> Result<(), String> {
    let mut frames = app.runtime.hub(session_id).subscribe();
    let ts = post_message(integration, token, channel, thread_ts, WORKING, None).await?;
    let slot: Progress = std::sync::Arc::new(tokio::sync::Mutex::new(Some((channel.to_owned(), ts))));
    let earlier = progress().lock().unwrap_or_else(|e| e.into_inner()).insert(session_id.to_owned(), slot.clone());
    // a message that arrived while a turn ran: that turn's progress message points here
    if let Some(earlier) = earlier
        && let Some((channel, ts)) = earlier.lock().await.take()
    {
        let _ = update_message(integration, token, &channel, &ts, "_Continued below._").await;
    }
    let (integration, token) = (integration.clone(), token.to_owned());
    tokio::spawn(async move {
        let mut text = String::new();
        let mut last = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        loop {
            let frame = match tokio::time::timeout_at(deadline, frames.recv()).await {
                Ok(Ok(f)) => f,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                _ => break,
            };
            let crate::runtime::Frame::Event { kind, json, .. } = &*frame else { continue };
            match *kind {
                "agent.message" => {
                    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                    let t: String = v["content"].as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect();
                    if !text.is_empty() {
                        text.push_str("\n\n");
                    }
                    text.push_str(&t);
                    if last.elapsed().as_millis() >= UPDATE_EVERY_MS {
                        let held = slot.lock().await;
                        let Some((channel, ts)) = held.as_ref() else { break };
                        let _ = update_message(&integration, &token, channel, ts, &format!("{text}\n\n{WORKING}")).await;
                        last = std::time::Instant::now();
                    }
                }
                "session.status_idle" | "session.status_terminated" | "session.deleted" => break,
                _ => {}
            }
        }
    });
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &str, ts: i64, body: &str) -> HeaderMap {
        let mac = hmac_sha256(secret.as_bytes(), &[format!("v0:{ts}:{body}").as_bytes()]);
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
}
