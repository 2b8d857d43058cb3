//! Linear's side of a Linear integration, as both deployments run it: the `Linear-Signature`
//! check (hex HMAC-SHA256 of the body, `webhookTimestamp` at most a minute away), what an
//! `AgentSessionEvent` asks (`created` starts a session, `prompted` continues it), and the
//! agent activities (GraphQL `agentActivityCreate`) that post a turn back.

use serde_json::{Value, json};

use openma_types::integrations::Integration;
use openma_types::sessions::CreateSessionRequest;

use super::{ProviderApi, thread_session_request};
use super::signatures::verify_hex;
use super::turns::TurnSummary;

/// Largest distance between `webhookTimestamp` and now, in milliseconds (Linear's advice).
const MAX_SKEW_MS: i64 = 60_000;

/// Checks `Linear-Signature` of the body and the payload's `webhookTimestamp` against
/// `now_ms`; the payload.
pub fn verify(secret: &str, signature: Option<&str>, body: &[u8], now_ms: i64) -> Result<Value, &'static str> {
    let sig = signature.ok_or("missing Linear-Signature")?;
    if !verify_hex(secret.as_bytes(), &[body], sig) {
        return Err("the signature does not match");
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let at = payload["webhookTimestamp"].as_i64().ok_or("no webhookTimestamp")?;
    if (now_ms - at).abs() > MAX_SKEW_MS {
        return Err("the webhookTimestamp is more than a minute away");
    }
    Ok(payload)
}

/// An `AgentSessionEvent` for the agent: its Linear agent session (the thread), and what
/// the session is told.
pub struct Engagement {
    pub agent_session: String,
    pub issue: String,
    /// `created`: a new engagement (Linear wants an activity within seconds).
    pub created: bool,
    pub text: String,
}

impl Engagement {
    /// `None` for other payloads and actions.
    pub fn of(p: &Value) -> Result<Option<Engagement>, &'static str> {
        if p["type"] != "AgentSessionEvent" {
            return Ok(None);
        }
        let agent_session = p["agentSession"]["id"].as_str().ok_or("no agentSession.id")?.to_owned();
        let issue = &p["agentSession"]["issue"];
        let identifier = issue["identifier"].as_str().unwrap_or("an issue").to_owned();
        let (created, text) = match p["action"].as_str() {
            Some("created") => (true, match p["promptContext"].as_str() {
                Some(context) if !context.trim().is_empty() => format!("You were engaged on Linear issue {identifier}. Your answers are posted there.\n\n{context}"),
                _ => format!(
                    "You were engaged on Linear issue {identifier} \"{}\". Your answers are posted there.\n\n{}\n\n{}",
                    issue["title"].as_str().unwrap_or_default(),
                    issue["description"].as_str().unwrap_or_default(),
                    p["agentSession"]["comment"]["body"].as_str().unwrap_or_default()
                ),
            }),
            Some("prompted") => (false, p["agentActivity"]["content"]["body"].as_str().or(p["agentActivity"]["body"].as_str()).unwrap_or_default().to_owned()),
            _ => return Ok(None),
        };
        Ok(Some(Engagement { agent_session, issue: identifier, created, text }))
    }

    /// `allow` / `deny` as the whole follow-up: an answer to the calls the session waits on.
    pub fn answer(&self) -> Option<bool> {
        match self.text.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(true),
            "deny" => Some(false),
            _ => None,
        }
    }

    /// The session a new Linear agent session starts.
    pub fn session_request(&self, integration_id: &str) -> CreateSessionRequest {
        let thread = [("linear_issue", self.issue.as_str()), ("linear_agent_session", self.agent_session.as_str())];
        thread_session_request(format!("Linear {}", self.issue), integration_id, thread)
    }
}

/// Who answers confirmations from Linear, as the model is told.
pub const WHO: &str = "the user on Linear";

/// Posts a turn's answer as a `response` activity, and what waits for a confirmation as an
/// `elicitation`.
pub async fn reply(api: &dyn ProviderApi, integration: &Integration, token: &str, agent_session: &str, turn: &TurnSummary) -> Result<(), String> {
    if !turn.text.trim().is_empty() {
        activity(api, integration, token, agent_session, "response", turn.text.trim()).await?;
    }
    if !turn.asks.is_empty() {
        let body = format!("The agent waits for a confirmation to use:\n{}\n\nReply `allow` or `deny`.", turn.asks_text());
        activity(api, integration, token, agent_session, "elicitation", &body).await?;
    }
    Ok(())
}

/// The `Authorization` header of a token: personal API keys go bare, OAuth tokens as bearer tokens.
fn authorization(token: &str) -> String {
    if token.starts_with("lin_api_") { token.to_owned() } else { format!("Bearer {token}") }
}

/// Linear's `viewer`: the token works; whom it acts as.
pub async fn check(api: &dyn ProviderApi, integration: &Integration, token: &str) -> Result<String, String> {
    let a = api.post_json(&format!("{}/graphql", integration.api_base_url), &authorization(token), &json!({"query": "{ viewer { id name } }"})).await?;
    match a["data"]["viewer"]["name"].as_str() {
        Some(name) => Ok(format!("Linear: acting as {name}")),
        None => Err(format!("Linear refused the token: {}", a.get("errors").cloned().unwrap_or_default())),
    }
}

/// Says the work started (Linear expects an activity within seconds of `created`).
pub async fn acknowledge(api: &dyn ProviderApi, integration: &Integration, token: &str, agent_session: &str) -> Result<(), String> {
    activity(api, integration, token, agent_session, "thought", "Looking into it…").await
}

/// `agentActivityCreate` through the GraphQL API.
async fn activity(api: &dyn ProviderApi, integration: &Integration, token: &str, agent_session: &str, kind: &str, body: &str) -> Result<(), String> {
    let query = "mutation AgentActivityCreate($input: AgentActivityCreateInput!) { agentActivityCreate(input: $input) { success } }";
    let variables = json!({"input": {"agentSessionId": agent_session, "content": {"type": kind, "body": body}}});
    let answer = api.post_json(&format!("{}/graphql", integration.api_base_url), &authorization(token), &json!({"query": query, "variables": variables})).await?;
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
    use crate::integrations::signatures::sign_hex;

    #[test]
    fn signatures_and_timestamps_are_checked() {
        let now = 1_700_000_000_000i64;
        let body = json!({"type": "AgentSessionEvent", "webhookTimestamp": now}).to_string();
        let sig = sign_hex(b"lin_wh", &[body.as_bytes()]);
        assert!(verify("lin_wh", Some(&sig), body.as_bytes(), now + 5_000).is_ok());
        assert_eq!(verify("other", Some(&sig), body.as_bytes(), now), Err("the signature does not match"));
        assert_eq!(verify("lin_wh", Some(&sig), body.as_bytes(), now + 61_000), Err("the webhookTimestamp is more than a minute away"));
        assert_eq!(verify("lin_wh", None, body.as_bytes(), now), Err("missing Linear-Signature"));
    }

    #[test]
    fn created_and_prompted_events_engage_the_agent() {
        let created = json!({"type": "AgentSessionEvent", "action": "created", "agentSession": {"id": "as1", "issue": {"identifier": "ENG-1", "title": "T"}}});
        let e = Engagement::of(&created).unwrap().unwrap();
        assert!(e.created && e.text.contains("ENG-1") && e.agent_session == "as1");
        let prompted = json!({"type": "AgentSessionEvent", "action": "prompted", "agentSession": {"id": "as1"}, "agentActivity": {"content": {"body": " Allow "}}});
        assert_eq!(Engagement::of(&prompted).unwrap().unwrap().answer(), Some(true));
        assert!(Engagement::of(&json!({"type": "Issue"})).unwrap().is_none());
    }
}
