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
use openma_core::harness::input::Input;
use openma_core::integrations::slack::{self, Delivery, Message};
use openma_core::integrations::turns::{TurnSummary, message_text};
use openma_core::{DomainError, TenantId};
use openma_types::integrations::{Integration, IntegrationProvider};

use super::{Api, find, first_time, refuse, rejected};
use crate::app::AppState;
use crate::extract::ApiPath;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/integrations/slack/{integration_id}/events", post(events))
        .route("/integrations/slack/{integration_id}/interactivity", post(interactivity))
}

/// The integration a delivery names, after its signature was checked with its secret;
/// with its bot token.
async fn verified(app: &AppState, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<(TenantId, Integration, String), Response> {
    let found = find(app, id, IntegrationProvider::Slack).await?;
    let now = app.platform.clock.now().as_micros() / 1_000_000;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = slack::verify(&found.signing_secret, header("x-slack-request-timestamp"), header("x-slack-signature"), body, now) {
        return Err(rejected("slack", id, why.message()));
    }
    Ok((found.tenant, found.integration, found.credential))
}

/// `POST /integrations/slack/{id}/events`: the Events API request URL.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, integration, token) = match verified(&app, &id, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let (event_id, message) = match Delivery::of(&payload) {
        Ok(Delivery::Challenge(answer)) => return Json(answer).into_response(),
        Ok(Delivery::Other) => return StatusCode::OK.into_response(),
        Ok(Delivery::Event { event_id, message }) => (event_id, message),
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match first_time(&app, &id, &event_id).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(integration_id = %id, event_id, "Slack event seen before: ignored");
            return StatusCode::OK.into_response();
        }
        Err(r) => return r,
    }
    let Some(message) = message else {
        return StatusCode::OK.into_response();
    };
    metrics::counter!("openma_integration_events_total", "provider" => "slack").increment(1);
    // Slack wants an answer within three seconds: the session is started behind it
    tokio::spawn(async move {
        if let Err(e) = start_or_resume(&app, &tenant, &integration, &token, &message).await {
            tracing::warn!(integration_id = %integration.id, error = %e, "cannot pass a Slack message to its session");
            let text = format!("Sorry, the agent could not take this message: {e}");
            let _ = slack::post_message(&Api, &integration, &token, &message.channel, &message.thread_ts, &text, None).await;
        }
    });
    StatusCode::OK.into_response()
}

/// Gives the message to the session of its thread (created for a new thread).
async fn start_or_resume(app: &AppState, tenant: &TenantId, integration: &Integration, token: &str, m: &Message) -> Result<(), DomainError> {
    let (session_id, _) = super::thread_session(app, tenant, integration, &m.thread(), || m.session_request(&integration.id)).await?;
    if let Err(e) = stream_turn(app, integration, token, &session_id, &m.channel, &m.thread_ts).await {
        tracing::info!(%session_id, error = %e, "cannot post a progress message to Slack");
    }
    super::say(app, tenant, &session_id, m.prompt()).await
}

/// `POST /integrations/slack/{id}/interactivity`: a click on an Allow/Deny button.
async fn interactivity(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, _integration, _token) = match verified(&app, &id, &headers, &body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some((user, clicks)) = slack::clicks(&body) else {
        return (StatusCode::BAD_REQUEST, "no payload").into_response();
    };
    for click in clicks {
        // a button only acts on a session of this integration
        match app.platform.store.session_integration_thread(&click.session_id).await {
            Ok(Some((integration, _))) if integration == id => {}
            _ => return refuse(StatusCode::FORBIDDEN, "the session does not belong to this integration"),
        }
        let input = Input::Confirmation { tool_use_id: click.tool_use_id, allow: click.allow, deny_message: (!click.allow).then(|| slack::denied_by(&user)) };
        if let Err(e) = app.runtime.submit(&tenant, &click.session_id, vec![input]).await {
            tracing::info!(session_id = %click.session_id, error = %e, "a Slack confirmation was not applied");
        }
    }
    StatusCode::OK.into_response()
}

/// Posts a turn's answer into the Slack thread of the session (see [`slack::reply`]); the
/// turn's progress message, if this process posted one, becomes the answer.
pub(crate) async fn reply(integration: &Integration, token: &str, thread: &str, session_id: &str, turn: &TurnSummary) -> Result<(), String> {
    let slot = progress().lock().unwrap_or_else(|e| e.into_inner()).remove(session_id);
    let mut held = match &slot {
        Some(s) => Some(s.lock().await),
        None => None,
    };
    let placeholder = held.as_mut().and_then(|h| h.take());
    slack::reply(&Api, integration, token, thread, session_id, turn, placeholder).await
}

/// A message that shows a turn in progress: `(channel, ts)`, `None` once the turn's answer
/// replaced it. Updates hold the lock, so the answer is always the last word.
type Progress = std::sync::Arc<tokio::sync::Mutex<Option<(String, String)>>>;

/// The progress messages of this process, by session.
fn progress() -> &'static std::sync::Mutex<std::collections::HashMap<String, Progress>> {
    static PROGRESS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Progress>>> = std::sync::OnceLock::new();
    PROGRESS.get_or_init(Default::default)
}


/// Posts a progress message into the thread and keeps it updated with the agent's messages
/// until the turn ends (then [`reply`] puts the answer in it).
async fn stream_turn(app: &AppState, integration: &Integration, token: &str, session_id: &str, channel: &str, thread_ts: &str) -> Result<(), String> {
    let mut frames = app.runtime.hub(session_id).subscribe();
    let ts = slack::post_message(&Api, integration, token, channel, thread_ts, slack::WORKING, None).await?;
    let slot: Progress = std::sync::Arc::new(tokio::sync::Mutex::new(Some((channel.to_owned(), ts))));
    let earlier = progress().lock().unwrap_or_else(|e| e.into_inner()).insert(session_id.to_owned(), slot.clone());
    // a message that arrived while a turn ran: that turn's progress message points here
    if let Some(earlier) = earlier
        && let Some((channel, ts)) = earlier.lock().await.take()
    {
        let _ = slack::update_message(&Api, integration, token, &channel, &ts, "_Continued below._").await;
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
                    let t = message_text(&serde_json::from_str(json).unwrap_or_default());
                    if !text.is_empty() {
                        text.push_str("\n\n");
                    }
                    text.push_str(&t);
                    if last.elapsed().as_millis() >= u128::from(slack::UPDATE_EVERY_MS) {
                        let held = slot.lock().await;
                        let Some((channel, ts)) = held.as_ref() else { break };
                        let _ = slack::update_message(&Api, &integration, &token, channel, ts, &slack::progress_text(&text)).await;
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
