//! Client events, checked at the edge into the inputs the session actor applies.

use openma_types::events::{ClientEvent, ConfirmationResult};
use serde_json::Value;

use crate::error::{DomainError, DomainResult};

/// At most this many events in one `POST …/events`.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

/// A validated client event (serialisable so a cluster node can hand it to the session's owner).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    Message { content: Vec<Value> },
    System { content: Vec<Value> },
    Interrupt,
    Confirmation { tool_use_id: String, allow: bool, deny_message: Option<String> },
    CustomResult { tool_use_id: String, content: Vec<Value>, is_error: bool },
}

fn field<'a>(block: &'a Value, name: &str) -> Option<&'a str> {
    block.get(name).and_then(Value::as_str)
}

fn check_source(kind: &str, source: Option<&Value>, where_: &str) -> DomainResult<()> {
    let bad = |m: &str| DomainError::invalid(format!("{where_}: {m}"));
    let source = source.filter(|s| s.is_object()).ok_or_else(|| bad(&format!("a `{kind}` block needs a `source` object")))?;
    match field(source, "type") {
        Some("base64") => {
            let media = field(source, "media_type").ok_or_else(|| bad("a base64 source needs `media_type`"))?;
            let allowed: &[&str] = if kind == "image" {
                &["image/jpeg", "image/png", "image/gif", "image/webp"]
            } else {
                &["application/pdf"]
            };
            if !allowed.contains(&media) {
                return Err(bad(&format!("`media_type` `{media}` is not supported for a {kind} (use one of {allowed:?})")));
            }
            if field(source, "data").is_none_or(str::is_empty) {
                return Err(bad("a base64 source needs non-empty `data`"));
            }
        }
        Some("url") => {
            crate::validate::http_url(&format!("{where_}.source.url"), field(source, "url").unwrap_or(""))?;
        }
        Some("text") if kind == "document" => {
            if field(source, "data").is_none() {
                return Err(bad("a text document source needs `data`"));
            }
        }
        // whether the file exists and suits the block is checked against the store
        // (`Platform::check_file_blocks`)
        Some("file") => {
            if field(source, "file_id").is_none_or(|id| id.is_empty()) {
                return Err(bad("a file source needs a non-empty `file_id`"));
            }
        }
        other => return Err(bad(&format!("unsupported {kind} source type {other:?}"))),
    }
    Ok(())
}

/// Checks content blocks; `allowed` names the block types this event may carry.
fn check_blocks(blocks: &[Value], allowed: &[&str], where_: &str) -> DomainResult<()> {
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("{where_}.content[{i}]");
        let kind = field(b, "type").ok_or_else(|| DomainError::invalid(format!("{at}: a content block needs a `type`")))?;
        if !allowed.contains(&kind) {
            return Err(DomainError::invalid(format!("{at}: block type `{kind}` is not allowed here (allowed: {allowed:?})")));
        }
        match kind {
            "text"
                if field(b, "text").is_none() => {
                    return Err(DomainError::invalid(format!("{at}: a text block needs `text`")));
                }
            "image" | "document" => check_source(kind, b.get("source"), &at)?,
            _ => {}
        }
    }
    Ok(())
}

/// Validates a batch of client events. Nothing is applied unless every event is valid.
impl Input {
    /// The client event that [`parse_events`] reads as this input (how a front door that is
    /// not the session's owner, such as a Workers integration, hands it one).
    pub fn client_event(&self) -> ClientEvent {
        match self.clone() {
            Input::Message { content } => ClientEvent::UserMessage { content },
            Input::System { content } => ClientEvent::SystemMessage { content },
            Input::Interrupt => ClientEvent::UserInterrupt { session_thread_id: None },
            Input::Confirmation { tool_use_id, allow, deny_message } => {
                let result = if allow { ConfirmationResult::Allow } else { ConfirmationResult::Deny };
                ClientEvent::UserToolConfirmation { tool_use_id, result, deny_message }
            }
            Input::CustomResult { tool_use_id, content, is_error } => {
                ClientEvent::UserCustomToolResult { custom_tool_use_id: tool_use_id, content: Some(content), is_error: Some(is_error) }
            }
        }
    }
}

pub fn parse_events(events: Vec<ClientEvent>) -> DomainResult<Vec<Input>> {
    if events.is_empty() {
        return Err(DomainError::invalid("`events` must hold at least one event"));
    }
    if events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(DomainError::invalid(format!("at most {MAX_EVENTS_PER_REQUEST} events per request")));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = format!("events[{i}]");
            Ok(match e {
                ClientEvent::UserMessage { content } => {
                    if content.is_empty() {
                        return Err(DomainError::invalid(format!("{at}: `content` must not be empty")));
                    }
                    check_blocks(&content, &["text", "image", "document", "redacted"], &at)?;
                    Input::Message { content }
                }
                ClientEvent::SystemMessage { content } => {
                    if content.is_empty() {
                        return Err(DomainError::invalid(format!("{at}: `content` must not be empty")));
                    }
                    check_blocks(&content, &["text"], &at)?;
                    Input::System { content }
                }
                ClientEvent::UserInterrupt { session_thread_id } => {
                    if session_thread_id.is_some() {
                        return Err(DomainError::unsupported("`session_thread_id` (multi-agent threads)"));
                    }
                    Input::Interrupt
                }
                ClientEvent::UserToolConfirmation { tool_use_id, result, deny_message } => {
                    if deny_message.is_some() && result != ConfirmationResult::Deny {
                        return Err(DomainError::invalid(format!("{at}: `deny_message` is allowed only with `result: deny`")));
                    }
                    Input::Confirmation { tool_use_id, allow: result == ConfirmationResult::Allow, deny_message }
                }
                ClientEvent::UserCustomToolResult { custom_tool_use_id, content, is_error } => {
                    let content = content.unwrap_or_default();
                    check_blocks(&content, &["text", "image", "document", "search_result"], &at)?;
                    Input::CustomResult { tool_use_id: custom_tool_use_id, content, is_error: is_error.unwrap_or(false) }
                }
                ClientEvent::UserToolResult { .. } => {
                    return Err(DomainError::unsupported("`user.tool_result` (self-hosted environments)"));
                }
                ClientEvent::UserDefineOutcome { .. } => return Err(DomainError::unsupported("`user.define_outcome` (outcomes)")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> DomainResult<Vec<Input>> {
        parse_events(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn every_input_reads_back_from_its_client_event() {
        let inputs = vec![
            Input::Message { content: vec![json!({"type": "text", "text": "hi"})] },
            Input::System { content: vec![json!({"type": "text", "text": "be brief"})] },
            Input::Interrupt,
            Input::Confirmation { tool_use_id: "t1".into(), allow: true, deny_message: None },
            Input::Confirmation { tool_use_id: "t2".into(), allow: false, deny_message: Some("no".into()) },
            Input::CustomResult { tool_use_id: "c1".into(), content: vec![json!({"type": "text", "text": "42"})], is_error: true },
        ];
        let wire = serde_json::to_value(inputs.iter().map(Input::client_event).collect::<Vec<_>>()).unwrap();
        assert_eq!(wire[3]["type"], "user.tool_confirmation");
        assert_eq!(parse(wire).unwrap(), inputs);
    }

    #[test]
    fn deny_message_needs_deny() {
        assert!(parse(json!([{"type": "user.tool_confirmation", "tool_use_id": "x", "result": "allow", "deny_message": "no"}])).is_err());
        assert!(parse(json!([{"type": "user.tool_confirmation", "tool_use_id": "x", "result": "deny", "deny_message": "no"}])).is_ok());
    }

    #[test]
    fn content_blocks_are_checked() {
        assert!(parse(json!([{"type": "user.message", "content": []}])).is_err());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "video"}]}])).is_err());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])).is_ok());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "x"}}]}])).is_err());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "document", "source": {"type": "file", "file_id": "file_1"}, "title": "t"}]}])).is_ok());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "image", "source": {"type": "file", "file_id": ""}}]}])).is_err());
        assert!(parse(json!([{"type": "user.message", "content": [{"type": "image", "source": {"type": "file"}}]}])).is_err());
        assert!(parse(json!([{"type": "system.message", "content": [{"type": "image"}]}])).is_err());
        assert!(parse(json!([{"type": "user.define_outcome", "description": "d"}])).is_err());
    }
}
