//! [`ModelRequest`] → Anthropic Messages request body. The core's content blocks are
//! already in Anthropic's shape; what is added here is streaming and the prompt-cache
//! breakpoints.

use openma_core::model::{ContentBlock, Message, ModelRequest, ToolSpec};
use serde_json::{Map, Value, json};

fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The streaming request body. With `cache`, breakpoints go on the system prompt, the
/// last tool and the last cacheable block of the last message: Anthropic caches the whole
/// prefix up to each breakpoint, so a growing session re-reads its history from cache.
pub(crate) fn body(request: &ModelRequest, model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(request.max_tokens));
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        let system = if request.cache {
            json!([{"type": "text", "text": system, "cache_control": ephemeral()}])
        } else {
            json!(system)
        };
        body.insert("system".into(), system);
    }
    let mut messages: Vec<Value> = request.messages.iter().map(message).collect();
    if request.cache {
        mark_last_block(&mut messages);
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let mut tools: Vec<Value> = request.tools.iter().map(tool).collect();
        if request.cache
            && let Some(Value::Object(last)) = tools.last_mut()
        {
            last.insert("cache_control".into(), ephemeral());
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("stream".into(), json!(true));
    Value::Object(body)
}

fn tool(spec: &ToolSpec) -> Value {
    json!({"name": spec.name, "description": spec.description, "input_schema": spec.input_schema})
}

fn message(message: &Message) -> Value {
    json!({"role": message.role, "content": message.content.iter().map(block).collect::<Vec<_>>()})
}

/// The block as Anthropic reads it. A thinking block without a signature omits the field
/// (Anthropic rejects `null`).
fn block(block: &ContentBlock) -> Value {
    match block {
        ContentBlock::Thinking { thinking, signature: None } => json!({"type": "thinking", "thinking": thinking}),
        ContentBlock::ToolResult { tool_use_id, content, is_error } => {
            let content: Vec<Value> = content.iter().map(self::block).collect();
            let mut result = json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error {
                result["is_error"] = json!(true);
            }
            result
        }
        other => serde_json::to_value(other).expect("content blocks serialize"),
    }
}

/// Thinking blocks cannot carry `cache_control`, so the breakpoint goes on the last block
/// that can.
fn mark_last_block(messages: &mut [Value]) {
    let Some(content) = messages.last_mut().and_then(|m| m.get_mut("content")).and_then(Value::as_array_mut) else {
        return;
    };
    let cacheable = content
        .iter_mut()
        .rev()
        .find(|b| !matches!(b.get("type").and_then(Value::as_str), Some("thinking" | "redacted_thinking")));
    if let Some(Value::Object(block)) = cacheable {
        block.insert("cache_control".into(), ephemeral());
    }
}

#[cfg(test)]
mod tests {
    use openma_core::model::Role;

    use super::*;

    fn request(cache: bool) -> ModelRequest {
        ModelRequest {
            model: "claude-x".into(),
            system: Some("be brief".into()),
            messages: vec![
                Message { role: Role::User, content: vec![ContentBlock::Text { text: "hi".into() }] },
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Thinking { thinking: "hm".into(), signature: None },
                        ContentBlock::ToolUse { id: "t1".into(), name: "now".into(), input: json!({}) },
                    ],
                },
                Message {
                    role: Role::User,
                    content: vec![ContentBlock::ToolResult {
                        tool_use_id: "t1".into(),
                        content: vec![ContentBlock::Text { text: "noon".into() }],
                        is_error: false,
                    }],
                },
            ],
            tools: vec![
                ToolSpec { name: "a".into(), description: "A".into(), input_schema: json!({"type": "object"}) },
                ToolSpec { name: "now".into(), description: "time".into(), input_schema: json!({"type": "object"}) },
            ],
            max_tokens: 100,
            cache,
        }
    }

    #[test]
    fn plain_body() {
        let body = body(&request(false), "claude-x");
        assert_eq!(body["system"], json!("be brief"));
        assert_eq!(body["stream"], json!(true));
        assert_eq!(body["max_tokens"], json!(100));
        assert_eq!(body["messages"][1]["content"][0], json!({"type": "thinking", "thinking": "hm"}));
        assert_eq!(
            body["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "noon"}]})
        );
        assert!(!body.to_string().contains("cache_control"));
    }

    #[test]
    fn cache_breakpoints() {
        let body = body(&request(true), "claude-x");
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}])
        );
        assert!(body["tools"][0].get("cache_control").is_none());
        assert_eq!(body["tools"][1]["cache_control"], json!({"type": "ephemeral"}));
        assert_eq!(body["messages"][2]["content"][0]["cache_control"], json!({"type": "ephemeral"}));
        assert_eq!(body.to_string().matches("cache_control").count(), 3);
    }

    #[test]
    fn documents_keep_their_title_and_context() {
        let mut req = request(false);
        req.messages.truncate(1);
        req.messages[0].content = vec![
            ContentBlock::Document {
                source: json!({"type": "text", "media_type": "text/plain", "data": "a,b"}),
                title: Some("data.csv".into()),
                context: Some("sales".into()),
            },
            ContentBlock::Document { source: json!({"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="}), title: None, context: None },
        ];
        let body = body(&req, "claude-x");
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a,b"}, "title": "data.csv", "context": "sales"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="}},
            ])
        );
    }

    #[test]
    fn breakpoint_skips_trailing_thinking() {
        let mut req = request(true);
        req.messages.truncate(2);
        let body = body(&req, "claude-x");
        assert!(body["messages"][1]["content"][0].get("cache_control").is_none());
        assert_eq!(body["messages"][1]["content"][1]["cache_control"], json!({"type": "ephemeral"}));
    }
}
