//! Linear as a front door: agent-session webhooks. A mention of the agent or a delegation
//! of an issue to it (`AgentSessionEvent` `created`) starts a session for that Linear agent
//! session, a follow-up (`prompted`) continues it, and the agent's progress and answers are
//! posted back as agent activities through Linear's GraphQL API (`thought` on arrival,
//! `response` at the end of a turn, `elicitation` when a tool call waits for a
//! confirmation, which a follow-up `allow` or `deny` answers).
//!
//! Deliveries are verified with `Linear-Signature` (HMAC-SHA256 of the body, hex), refused
//! when their `webhookTimestamp` is more than a minute away, and processed once per
//! `Linear-Delivery`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::Mac;
use openma_core::TenantId;
use openma_types::integrations::{Integration, IntegrationProvider};
use openma_types::sessions::CreateSessionRequest;
use serde_json::{Value, json};

use super::{TurnSummary, find, first_time, hex_decode, hmac_sha256, post_json, rejected};
use crate::app::AppState;
use crate::extract::ApiPath;

/// Largest distance between `webhookTimestamp` and now, in milliseconds (Linear's advice).
const MAX_SKEW_MS: i64 = 60_000;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/integrations/linear/{integration_id}/events", post(events))
}

/// Checks `Linear-Signature` (hex HMAC-SHA256 of the body) and the payload's
/// `webhookTimestamp` against `now_ms`.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<Value, &'static str> {
    let sig = headers.get("linear-signature").and_then(|v| v.to_str().ok()).and_then(hex_decode).ok_or("missing Linear-Signature")?;
    hmac_sha256(secret.as_bytes(), &[body]).verify_slice(&sig).map_err(|_| "the signature does not match")?;
    let payload: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let at = payload["webhookTimestamp"].as_i64().ok_or("no webhookTimestamp")?;
    if (now_ms - at).abs() > MAX_SKEW_MS {
        return Err("the webhookTimestamp is more than a minute away");
    }
    Ok(payload)
}

/// `POST /integrations/linear/{id}/events`: the webhook URL of the agent's Linear app.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let (tenant, stored, secret, token) = match find(&app, &id, IntegrationProvider::Linear).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now_ms = app.platform.clock.now().as_micros() / 1_000;
    let payload = match verify(&secret, &headers, &body, now_ms) {
        Ok(p) => p,
        Err(why) => return rejected("linear", &id, why),
    };
    let delivery = headers.get("linear-delivery").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if delivery.is_empty() {
        return (StatusCode::BAD_REQUEST, "no Linear-Delivery").into_response();
    }
    match first_time(&app, &id, &delivery).await {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK.into_response(),
        Err(r) => return r,
    }
    if payload["type"] != "AgentSessionEvent" {
        return StatusCode::OK.into_response();
    }
    metrics::counter!("openma_integration_events_total", "provider" => "linear").increment(1);
    let integration = stored.integration;
    tokio::spawn(async move {
        if let Err(e) = handle(&app, &tenant, &integration, &token, &payload).await {
            tracing::warn!(integration_id = %integration.id, error = %e, "cannot pass a Linear event to its session");
        }
    });
    StatusCode::OK.into_response()
}

async fn handle(app: &AppState, tenant: &TenantId, integration: &Integration, token: &str, p: &Value) -> Result<(), String> {
    let agent_session = p["agentSession"]["id"].as_str().ok_or("no agentSession.id")?.to_owned();
    let issue = &p["agentSession"]["issue"];
    let identifier = issue["identifier"].as_str().unwrap_or("an issue").to_owned();
    let text = match p["action"].as_str() {
        Some("created") => {
            // Linear expects an activity within seconds: say the work started
            activity(integration, token, &agent_session, "thought", "Looking into it…").await?;
            match p["promptContext"].as_str() {
                Some(context) if !context.trim().is_empty() => format!("You were engaged on Linear issue {identifier}. Your answers are posted there.\n\n{context}"),
                _ => format!(
                    "You were engaged on Linear issue {identifier} \"{}\". Your answers are posted there.\n\n{}\n\n{}",
                    issue["title"].as_str().unwrap_or_default(),
                    issue["description"].as_str().unwrap_or_default(),
                    p["agentSession"]["comment"]["body"].as_str().unwrap_or_default()
                ),
            }
        }
        Some("prompted") => p["agentActivity"]["content"]["body"].as_str().or(p["agentActivity"]["body"].as_str()).unwrap_or_default().to_owned(),
        _ => return Ok(()),
    };
    let known = app.platform.store.integration_thread_session(&integration.id, &agent_session).await.map_err(|e| e.to_string())?;
    if let Some(sid) = &known {
        let answer = text.trim().to_ascii_lowercase();
        if answer == "allow" || answer == "deny" {
            super::confirm_pending(app, tenant, sid, answer == "allow", "the user on Linear").await?;
            return Ok(());
        }
    }
    let (session_id, _) = super::thread_session(app, tenant, integration, &agent_session, || CreateSessionRequest {
        title: Some(format!("Linear {identifier}")),
        metadata: Some(
            [("linear_issue", identifier.clone()), ("linear_agent_session", agent_session.clone()), ("integration_id", integration.id.clone())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    super::say(app, tenant, &session_id, text).await.map_err(|e| e.to_string())
}

/// Posts a turn's answer as a `response` activity, and what waits for a confirmation as an
/// `elicitation`.
pub(crate) async fn reply(integration: &Integration, token: &str, agent_session: &str, turn: &TurnSummary) -> Result<(), String> {
    if !turn.text.trim().is_empty() {
        activity(integration, token, agent_session, "response", turn.text.trim()).await?;
    }
    if !turn.asks.is_empty() {
        let body = format!("The agent waits for a confirmation to use:\n{}\n\nReply `allow` or `deny`.", turn.asks_text());
        activity(integration, token, agent_session, "elicitation", &body).await?;
    }
    Ok(())
}

/// The `Authorization` header of a token: personal API keys go bare, OAuth tokens as bearer tokens.
fn authorization(token: &str) -> String {
    if token.starts_with("lin_api_") { token.to_owned() } else { format!("Bearer {token}") }
}

/// Linear's `viewer`: the token works; whom it acts as.
pub(crate) async fn check(integration: &Integration, token: &str) -> Result<String, String> {
    let a = post_json(&format!("{}/graphql", integration.api_base_url), &authorization(token), &json!({"query": "{ viewer { id name } }"})).await?;
    match a["data"]["viewer"]["name"].as_str() {
        Some(name) => Ok(format!("Linear: acting as {name}")),
        None => Err(format!("Linear refused the token: {}", a.get("errors").cloned().unwrap_or_default())),
    }
}

/// `agentActivityCreate` through the GraphQL API.
async fn activity(integration: &Integration, token: &str, agent_session: &str, kind: &str, body: &str) -> Result<(), String> {
    let query = "mutation AgentActivityCreate($input: AgentActivityCreateInput!) { agentActivityCreate(input: $input) { success } }";
    let variables = json!({"input": {"agentSessionId": agent_session, "content": {"type": kind, "body": body}}});
    let answer = post_json(&format!("{}/graphql", integration.api_base_url), &authorization(token), &json!({"query": query, "variables": variables})).await?;
    if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
        return Err(format!("agentActivityCreate failed: {errors}"));
    }
    if answer["data"]["agentActivityCreate"]["success"] != true {
        return Err("agentActivityCreate did not succeed".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_timestamps_are_checked() {
        let now = 1_700_000_000_000i64;
        let body = json!({"type": "AgentSessionEvent", "webhookTimestamp": now}).to_string();
        let sign = |secret: &str, body: &str| -> HeaderMap {
            let sig: String = hmac_sha256(secret.as_bytes(), &[body.as_bytes()]).finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
            let mut h = HeaderMap::new();
            h.insert("linear-signature", sig.parse().unwrap());
            h
        };
        assert!(verify("lin_wh", &sign("lin_wh", &body), body.as_bytes(), now + 5_000).is_ok());
        assert_eq!(verify("other", &sign("lin_wh", &body), body.as_bytes(), now), Err("the signature does not match"));
        assert_eq!(verify("lin_wh", &sign("lin_wh", &body), body.as_bytes(), now + 61_000), Err("the webhookTimestamp is more than a minute away"));
        assert_eq!(verify("lin_wh", &HeaderMap::new(), body.as_bytes(), now), Err("missing Linear-Signature"));
    }
}
