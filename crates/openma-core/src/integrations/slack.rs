//! Slack's side of a Slack integration, as both deployments run it: the `v0` request
//! signature (HMAC-SHA256 over `v0:{timestamp}:{body}` with the app's signing secret,
//! timestamps more than five minutes away refused), which events address the agent, the
//! session a thread starts, the Allow/Deny buttons' payloads, and the Web API calls that
//! post a turn's answer into its thread.

use serde_json::{Value, json};

use openma_types::integrations::Integration;
use openma_types::sessions::CreateSessionRequest;

use super::signatures::verify_hex;
use super::turns::{TurnSummary, truncate};
use super::{ProviderApi, slack_thread_key, thread_session_request};

/// Oldest request timestamp accepted, in seconds (Slack's own recommendation).
const MAX_SKEW_S: i64 = 300;
pub const ALLOW: &str = "openma_allow";
/// What a thread's progress message says while a turn runs, after the agent's messages so far.
pub const WORKING: &str = "_Working on it…_";
/// Fewest milliseconds between two updates of a progress message (Slack's rate limits).
pub const UPDATE_EVERY_MS: u64 = 1_000;

/// A progress message's text: the agent's messages so far, then [`WORKING`].
pub fn progress_text(so_far: &str) -> String {
    if so_far.trim().is_empty() { WORKING.to_owned() } else { format!("{so_far}\n\n{WORKING}") }
}
pub const DENY: &str = "openma_deny";

/// Why a request was refused before anything was read from it.
#[derive(Debug, PartialEq)]
pub enum Rejected {
    MissingHeaders,
    Stale,
    BadSignature,
}

impl Rejected {
    pub fn message(&self) -> &'static str {
        match self {
            Rejected::MissingHeaders => "missing X-Slack-Request-Timestamp or X-Slack-Signature",
            Rejected::Stale => "the request timestamp is more than five minutes away",
            Rejected::BadSignature => "the signature does not match",
        }
    }
}

/// Checks Slack's `v0` signature of `body` (headers `X-Slack-Request-Timestamp` and
/// `X-Slack-Signature`); `now` in Unix seconds.
pub fn verify(signing_secret: &str, timestamp: Option<&str>, signature: Option<&str>, body: &[u8], now: i64) -> Result<(), Rejected> {
    let (Some(ts), Some(sig)) = (timestamp, signature) else {
        return Err(Rejected::MissingHeaders);
    };
    let at: i64 = ts.parse().map_err(|_| Rejected::MissingHeaders)?;
    if (now - at).abs() > MAX_SKEW_S {
        return Err(Rejected::Stale);
    }
    let sig = sig.strip_prefix("v0=").ok_or(Rejected::BadSignature)?;
    if verify_hex(signing_secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body], sig) { Ok(()) } else { Err(Rejected::BadSignature) }
}

/// What an Events API request asks of the receiver.
pub enum Delivery {
    /// `url_verification`: answer `{"challenge": …}`.
    Challenge(Value),
    /// An event, processed once per `event_id`: the message when it addresses the agent.
    Event { event_id: String, message: Option<Message> },
    /// Anything else: acknowledged.
    Other,
}

impl Delivery {
    pub fn of(payload: &Value) -> Result<Delivery, &'static str> {
        match payload["type"].as_str() {
            Some("url_verification") => Ok(Delivery::Challenge(json!({"challenge": payload["challenge"]}))),
            Some("event_callback") => {
                let event_id = payload["event_id"].as_str().ok_or("no event_id")?.to_owned();
                let event = &payload["event"];
                let message = addressed_to_agent(event).then(|| Message {
                    channel: event["channel"].as_str().unwrap_or_default().to_owned(),
                    thread_ts: event["thread_ts"].as_str().or(event["ts"].as_str()).unwrap_or_default().to_owned(),
                    user: event["user"].as_str().unwrap_or("someone").to_owned(),
                    text: event["text"].as_str().unwrap_or_default().to_owned(),
                });
                Ok(Delivery::Event { event_id, message })
            }
            _ => Ok(Delivery::Other),
        }
    }
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

/// A message for the agent, and the thread it belongs to.
#[derive(Clone, Debug)]
pub struct Message {
    pub channel: String,
    pub thread_ts: String,
    pub user: String,
    pub text: String,
}

impl Message {
    /// The key of the thread's session.
    pub fn thread(&self) -> String {
        slack_thread_key(&self.channel, &self.thread_ts)
    }

    /// The session a new thread starts.
    pub fn session_request(&self, integration_id: &str) -> CreateSessionRequest {
        let thread = [("slack_channel", self.channel.as_str()), ("slack_thread_ts", self.thread_ts.as_str())];
        thread_session_request(format!("Slack thread {}", self.thread_ts), integration_id, thread)
    }

    /// What the session is told.
    pub fn prompt(&self) -> String {
        format!("<@{}> wrote in Slack:\n\n{}", self.user, self.text)
    }
}

/// A click on an Allow/Deny button: the session and the tool call it answers.
#[derive(Debug, PartialEq)]
pub struct Click {
    pub session_id: String,
    pub tool_use_id: String,
    pub allow: bool,
}

/// The clicks of an interactivity request (a form with a JSON `payload`), and who clicked.
pub fn clicks(form_body: &[u8]) -> Option<(String, Vec<Click>)> {
    let form: Vec<(String, String)> = serde_html_form::from_bytes(form_body).ok()?;
    let payload: Value = form.into_iter().find(|(k, _)| k == "payload").and_then(|(_, v)| serde_json::from_str(&v).ok())?;
    let user = payload["user"]["id"].as_str().unwrap_or("someone").to_owned();
    let clicks = payload["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|action| {
            let allow = match action["action_id"].as_str() {
                Some(ALLOW) => true,
                Some(DENY) => false,
                _ => return None,
            };
            let (session_id, tool_use_id) = action["value"].as_str()?.split_once('|')?;
            Some(Click { session_id: session_id.to_owned(), tool_use_id: tool_use_id.to_owned(), allow })
        })
        .collect();
    Some((user, clicks))
}

/// What a denial from Slack tells the model.
pub fn denied_by(user: &str) -> String {
    format!("Denied in Slack by <@{user}>.")
}

/// Posts a turn's answer, and its tool calls waiting for a confirmation as buttons, into
/// the Slack thread of the session. A progress message (`placeholder`: channel and ts)
/// becomes the answer.
pub async fn reply(
    api: &dyn ProviderApi,
    integration: &Integration,
    token: &str,
    thread: &str,
    session_id: &str,
    turn: &TurnSummary,
    placeholder: Option<(String, String)>,
) -> Result<(), String> {
    let (channel, thread_ts) = thread.split_once('/').ok_or("malformed thread")?;
    match placeholder {
        Some((channel, ts)) => {
            let text = match (turn.text.trim().is_empty(), turn.asks.is_empty()) {
                (false, _) => turn.text.clone(),
                (true, false) => "_Waiting for a confirmation…_".to_owned(),
                (true, true) => "_Done._".to_owned(),
            };
            update_message(api, integration, token, &channel, &ts, &text).await?;
        }
        None if !turn.text.trim().is_empty() => {
            post_message(api, integration, token, channel, thread_ts, &turn.text, None).await?;
        }
        None => {}
    }
    for ask in &turn.asks {
        let text = format!("The agent wants to use `{}`:\n```{}```", ask.name, truncate(&ask.input, 1500));
        let value = format!("{session_id}|{}", ask.id);
        let blocks = json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "elements": [
                {"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "Allow"}, "action_id": ALLOW, "value": value},
                {"type": "button", "style": "danger", "text": {"type": "plain_text", "text": "Deny"}, "action_id": DENY, "value": value}
            ]}
        ]);
        post_message(api, integration, token, channel, thread_ts, &text, Some(blocks)).await?;
    }
    Ok(())
}

/// `chat.postMessage` into a thread with the bot token; the message's `ts`.
pub async fn post_message(
    api: &dyn ProviderApi,
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
    let answer = call(api, integration, token, "chat.postMessage", &body).await?;
    Ok(answer["ts"].as_str().unwrap_or_default().to_owned())
}

/// `chat.update` of a message the bot posted.
pub async fn update_message(api: &dyn ProviderApi, integration: &Integration, token: &str, channel: &str, ts: &str, text: &str) -> Result<(), String> {
    call(api, integration, token, "chat.update", &json!({"channel": channel, "ts": ts, "text": text})).await.map(|_| ())
}

/// `auth.test`: the bot token works; whom it answers as.
pub async fn check(api: &dyn ProviderApi, integration: &Integration, token: &str) -> Result<String, String> {
    let a = call(api, integration, token, "auth.test", &json!({})).await?;
    Ok(format!("Slack: signed in as {} in {}", a["user"].as_str().unwrap_or("?"), a["team"].as_str().unwrap_or("?")))
}

/// A Web API method with the bot token; Slack answers 200 with `ok: false` on failure.
async fn call(api: &dyn ProviderApi, integration: &Integration, token: &str, method: &str, body: &Value) -> Result<Value, String> {
    let url = format!("{}/{method}", integration.api_base_url);
    let answer = api.post_json(&url, &format!("Bearer {token}"), body).await?;
    if answer["ok"] != true {
        return Err(format!("{method} failed: {}", answer["error"].as_str().unwrap_or("no `ok`")));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::signatures::sign_hex;

    #[test]
    fn signatures_are_checked_with_the_secret_and_the_time() {
        let body = r#"{"type":"event_callback"}"#;
        let now = 1_700_000_000;
        let ts = now.to_string();
        let sig = format!("v0={}", sign_hex(b"s3cret", &[format!("v0:{now}:{body}").as_bytes()]));
        let check = |secret: &str, body: &[u8], at: i64| verify(secret, Some(&ts), Some(&sig), body, at);
        assert_eq!(check("s3cret", body.as_bytes(), now + 10), Ok(()));
        assert_eq!(check("other", body.as_bytes(), now), Err(Rejected::BadSignature));
        assert_eq!(check("s3cret", b"{\"type\":\"tampered\"}", now), Err(Rejected::BadSignature));
        assert_eq!(check("s3cret", body.as_bytes(), now + 301), Err(Rejected::Stale));
        assert_eq!(verify("s3cret", None, None, body.as_bytes(), now), Err(Rejected::MissingHeaders));
    }

    #[test]
    fn only_people_addressing_the_app_are_heard() {
        let event = |e: Value| Delivery::of(&json!({"type": "event_callback", "event_id": "Ev1", "event": e})).unwrap();
        let heard = |d: Delivery| matches!(d, Delivery::Event { message: Some(_), .. });
        assert!(heard(event(json!({"type": "app_mention", "channel": "C1", "ts": "1.2", "user": "U1", "text": "hi"}))));
        assert!(heard(event(json!({"type": "message", "channel_type": "im", "channel": "D1", "ts": "1.2", "text": "hi"}))));
        assert!(!heard(event(json!({"type": "message", "channel_type": "channel", "text": "hi"}))));
        assert!(!heard(event(json!({"type": "app_mention", "bot_id": "B1", "text": "hi"}))));
        assert!(!heard(event(json!({"type": "app_mention", "subtype": "message_changed", "text": "hi"}))));
        assert!(Delivery::of(&json!({"type": "event_callback"})).is_err());
    }

    #[test]
    fn button_clicks_name_their_session_and_call() {
        let payload = json!({"user": {"id": "U9"}, "actions": [
            {"action_id": ALLOW, "value": "sesn_1|toolu_1"}, {"action_id": "other", "value": "x|y"}, {"action_id": DENY, "value": "sesn_1|toolu_2"}
        ]});
        let form = serde_html_form::to_string([("payload", payload.to_string())]).unwrap();
        let (user, clicks) = clicks(form.as_bytes()).unwrap();
        assert_eq!(user, "U9");
        assert_eq!(clicks, vec![
            Click { session_id: "sesn_1".into(), tool_use_id: "toolu_1".into(), allow: true },
            Click { session_id: "sesn_1".into(), tool_use_id: "toolu_2".into(), allow: false },
        ]);
    }
}
