//! Projection: the event log, read in order, becomes the model request. Deterministic:
//! the same log always gives the same request, so a resumed session continues exactly.
//!
//! Tool-use ids sent to the model are the ids of the `agent.*tool_use` events, so results
//! pair with their calls without any extra mapping.

use openma_types::events::EventPayload;
use openma_types::sessions::SessionAgent;
use serde_json::Value;

use super::tools::ToolPlan;
use crate::model::{ContentBlock, Message, ModelRequest, Role};
use crate::ports::StoredEvent;

/// Converts client content blocks to model blocks (redacted placeholders are dropped).
pub fn content_blocks(blocks: &[Value]) -> Vec<ContentBlock> {
    blocks
        .iter()
        .filter_map(|b| match b.get("type").and_then(Value::as_str) {
            Some("text") => Some(ContentBlock::Text { text: b.get("text").and_then(Value::as_str).unwrap_or_default().to_owned() }),
            Some("image") => Some(ContentBlock::Image { source: b.get("source").cloned().unwrap_or(Value::Null) }),
            Some("document") => Some(ContentBlock::Document {
                source: b.get("source").cloned().unwrap_or(Value::Null),
                title: b.get("title").and_then(Value::as_str).map(str::to_owned),
                context: b.get("context").and_then(Value::as_str).map(str::to_owned),
            }),
            Some("search_result") => Some(ContentBlock::Text { text: b.to_string() }),
            _ => None,
        })
        .collect()
}

fn push(messages: &mut Vec<Message>, role: Role, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    match messages.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => messages.push(Message { role, content: blocks }),
    }
}

/// Builds the conversation from the log.
pub fn messages(log: &[StoredEvent]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut open_calls: Vec<String> = Vec::new();
    for stored in log {
        let id = &stored.event.id;
        match &stored.event.payload {
            EventPayload::UserMessage { content } => {
                close_dangling(&mut out, &mut open_calls);
                push(&mut out, Role::User, content_blocks(content));
            }
            EventPayload::SystemMessage { content } => {
                close_dangling(&mut out, &mut open_calls);
                let text: Vec<&str> = content.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
                push(&mut out, Role::User, vec![ContentBlock::Text { text: format!("<system>\n{}\n</system>", text.join("\n")) }]);
            }
            EventPayload::AgentThinking {} => {
                let internal = stored.internal.as_ref();
                let block = match internal.and_then(|i| i.get("redacted")).and_then(Value::as_str) {
                    Some(data) => Some(ContentBlock::RedactedThinking { data: data.to_owned() }),
                    None => internal.and_then(|i| i.get("thinking")).and_then(Value::as_str).map(|t| ContentBlock::Thinking {
                        thinking: t.to_owned(),
                        signature: internal.and_then(|i| i.get("signature")).and_then(Value::as_str).map(str::to_owned),
                    }),
                };
                if let Some(b) = block {
                    push(&mut out, Role::Assistant, vec![b]);
                }
            }
            EventPayload::AgentMessage { content } => push(&mut out, Role::Assistant, content_blocks(content)),
            EventPayload::AgentToolUse { name, input, .. } | EventPayload::AgentCustomToolUse { name, input } => {
                open_calls.push(id.clone());
                push(&mut out, Role::Assistant, vec![ContentBlock::ToolUse { id: id.clone(), name: name.clone(), input: input.clone() }]);
            }
            EventPayload::AgentMcpToolUse { name, mcp_server_name, input, .. } => {
                open_calls.push(id.clone());
                let name = super::tools::mcp_model_name(mcp_server_name, name);
                push(&mut out, Role::Assistant, vec![ContentBlock::ToolUse { id: id.clone(), name, input: input.clone() }]);
            }
            EventPayload::AgentToolResult { tool_use_id, content, is_error }
            | EventPayload::AgentMcpToolResult { mcp_tool_use_id: tool_use_id, content, is_error }
            | EventPayload::UserCustomToolResult { custom_tool_use_id: tool_use_id, content, is_error } => {
                open_calls.retain(|c| c != tool_use_id);
                push(
                    &mut out,
                    Role::User,
                    vec![ContentBlock::ToolResult { tool_use_id: tool_use_id.clone(), content: content_blocks(content), is_error: *is_error }],
                );
            }
            _ => {}
        }
    }
    out
}

/// A call without a recorded result (the log was cut) still needs one for the API.
fn close_dangling(out: &mut Vec<Message>, open: &mut Vec<String>) {
    for id in open.drain(..) {
        push(out, Role::User, vec![ContentBlock::ToolResult {
            tool_use_id: id,
            content: vec![ContentBlock::Text { text: "No result was recorded for this tool call.".into() }],
            is_error: true,
        }]);
    }
}

/// The conversation the model sees: the latest compaction summary, then every event
/// from its cut on.
pub fn visible_messages(log: &[StoredEvent]) -> Vec<Message> {
    let from = super::compaction::visible_from(log);
    if from == 0 {
        return messages(log);
    }
    let summary = log
        .iter()
        .rev()
        .find_map(|e| match (&e.event.payload, &e.internal) {
            (EventPayload::AgentThreadContextCompacted {}, Some(i)) => i.get("summary").and_then(Value::as_str),
            _ => None,
        })
        .unwrap_or_default();
    let tail: Vec<StoredEvent> = log
        .iter()
        .filter(|e| e.seq >= from && !matches!(e.event.payload, EventPayload::AgentThreadContextCompacted {}))
        .cloned()
        .collect();
    let mut out = vec![Message {
        role: Role::User,
        content: vec![ContentBlock::Text {
            text: format!("<summary of the earlier conversation>\n{summary}\n</summary of the earlier conversation>"),
        }],
    }];
    for m in messages(&tail) {
        push(&mut out, m.role, m.content);
    }
    out
}

/// The full model request for the next step of a session.
pub fn request(agent: &SessionAgent, plan: &ToolPlan, log: &[StoredEvent], max_tokens: u32) -> ModelRequest {
    ModelRequest {
        model: agent.model.id.clone(),
        system: agent.system.clone(),
        messages: visible_messages(log),
        tools: plan.specs.clone(),
        max_tokens,
        cache: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::events::{EvaluatedPermission, SessionEvent};
    use openma_types::agents::PermissionPolicy;
    use serde_json::json;

    fn ev(seq: i64, payload: EventPayload) -> StoredEvent {
        StoredEvent { seq, event: SessionEvent { id: format!("sevt_{seq}"), payload, processed_at: None }, internal: None }
    }

    #[test]
    fn tool_calls_pair_with_results_and_roles_alternate() {
        let log = vec![
            ev(1, EventPayload::UserMessage { content: vec![json!({"type": "text", "text": "hi"})] }),
            ev(2, EventPayload::AgentMessage { content: vec![json!({"type": "text", "text": "let me look"})] }),
            ev(3, EventPayload::AgentToolUse { name: "bash".into(), input: json!({"command": "ls"}), evaluated_permission: EvaluatedPermission::Allow, evaluation: PermissionPolicy::AlwaysAllow }),
            ev(4, EventPayload::AgentCustomToolUse { name: "lookup".into(), input: json!({}) }),
            ev(5, EventPayload::AgentToolResult { tool_use_id: "sevt_3".into(), content: vec![json!({"type": "text", "text": "a b"})], is_error: false }),
            ev(6, EventPayload::UserCustomToolResult { custom_tool_use_id: "sevt_4".into(), content: vec![], is_error: false }),
            ev(7, EventPayload::UserMessage { content: vec![json!({"type": "text", "text": "and?"})] }),
        ];
        let m = messages(&log);
        assert_eq!(m.iter().map(|m| m.role).collect::<Vec<_>>(), vec![Role::User, Role::Assistant, Role::User]);
        assert_eq!(m[1].content.len(), 3);
        assert!(matches!(&m[2].content[0], ContentBlock::ToolResult { tool_use_id, .. } if tool_use_id == "sevt_3"));
        assert!(matches!(&m[2].content[2], ContentBlock::Text { text } if text == "and?"));
    }

    #[test]
    fn a_call_without_result_gets_an_error_result() {
        let log = vec![
            ev(1, EventPayload::UserMessage { content: vec![json!({"type": "text", "text": "hi"})] }),
            ev(2, EventPayload::AgentCustomToolUse { name: "lookup".into(), input: json!({}) }),
            ev(3, EventPayload::UserMessage { content: vec![json!({"type": "text", "text": "never mind"})] }),
        ];
        let m = messages(&log);
        assert!(matches!(&m[2].content[0], ContentBlock::ToolResult { is_error: true, .. }));
    }
}
