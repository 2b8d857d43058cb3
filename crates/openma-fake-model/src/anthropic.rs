//! Anthropic Messages framing of a scripted reply: the SSE events exactly as Anthropic
//! sends them (`message_start`, `ping`, block start/delta/stop, `message_delta`,
//! `message_stop`), the non-streaming message JSON, and Anthropic's error body.

use serde_json::{Value, json};

use crate::frames::{Frame, split};
use crate::script::{Block, DEFAULT_SIGNATURE, ErrorReply, MessageReply, ScriptUsage, StreamErrorReply};
use crate::server::Ids;

fn tool_id(id: &Option<String>, ids: &Ids) -> String {
    id.clone().unwrap_or_else(|| format!("toolu_fake_{}", ids.next()))
}

fn message_start(model: &str, usage: &ScriptUsage, ids: &Ids) -> Frame {
    Frame::event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": format!("msg_fake_{}", ids.next()),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": usage.input_tokens,
                    "cache_creation_input_tokens": usage.cache_creation_input_tokens,
                    "cache_read_input_tokens": usage.cache_read_input_tokens,
                    "output_tokens": 1,
                },
            },
        }),
        0,
    )
}

fn ping() -> Frame {
    Frame::event("ping", &json!({"type": "ping"}), 0)
}

fn delta(index: usize, delta: Value, chars: usize) -> Frame {
    Frame::event("content_block_delta", &json!({"type": "content_block_delta", "index": index, "delta": delta}), chars)
}

/// The start, deltas and stop of one block.
fn block_frames(index: usize, block: &Block, split_at: usize, ids: &Ids, out: &mut Vec<Frame>) {
    let start = |content_block: Value| {
        Frame::event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": content_block}),
            0,
        )
    };
    match block {
        Block::Text { text } => {
            out.push(start(json!({"type": "text", "text": ""})));
            for piece in split(text, split_at) {
                let n = piece.chars().count();
                out.push(delta(index, json!({"type": "text_delta", "text": piece}), n));
            }
        }
        Block::Thinking { thinking, signature } => {
            out.push(start(json!({"type": "thinking", "thinking": "", "signature": ""})));
            for piece in split(thinking, split_at) {
                let n = piece.chars().count();
                out.push(delta(index, json!({"type": "thinking_delta", "thinking": piece}), n));
            }
            let signature = signature.as_deref().unwrap_or(DEFAULT_SIGNATURE);
            out.push(delta(index, json!({"type": "signature_delta", "signature": signature}), 0));
        }
        Block::ToolUse { id, name, input } => {
            out.push(start(json!({"type": "tool_use", "id": tool_id(id, ids), "name": name, "input": {}})));
            // Anthropic opens with an empty fragment; the rest is split like text.
            out.push(delta(index, json!({"type": "input_json_delta", "partial_json": ""}), 0));
            let json = input.to_string();
            for piece in split(&json, split_at) {
                let n = piece.chars().count();
                out.push(delta(index, json!({"type": "input_json_delta", "partial_json": piece}), n));
            }
        }
    }
    out.push(Frame::event("content_block_stop", &json!({"type": "content_block_stop", "index": index}), 0));
}

/// Every SSE frame of a message.
pub(crate) fn message_frames(model: &str, reply: &MessageReply, ids: &Ids) -> Vec<Frame> {
    let usage = reply.effective_usage();
    let mut frames = vec![message_start(model, &usage, ids), ping()];
    for (index, block) in reply.blocks.iter().enumerate() {
        block_frames(index, block, reply.split, ids, &mut frames);
    }
    frames.push(
        Frame::event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reply.effective_stop_reason(), "stop_sequence": null},
                "usage": {"output_tokens": usage.output_tokens},
            }),
            0,
        )
        .terminal(),
    );
    frames.push(Frame::event("message_stop", &json!({"type": "message_stop"}), 0).terminal());
    frames
}

/// A stream that starts a message, delivers `reply.blocks`, then reports an error.
pub(crate) fn stream_error_frames(model: &str, reply: &StreamErrorReply, ids: &Ids) -> Vec<Frame> {
    let mut frames = vec![message_start(model, &ScriptUsage::default(), ids), ping()];
    for (index, block) in reply.blocks.iter().enumerate() {
        block_frames(index, block, 8, ids, &mut frames);
    }
    let message = reply.message.clone().unwrap_or_else(|| "Overloaded".to_owned());
    frames.push(Frame::event(
        "error",
        &json!({"type": "error", "error": {"type": reply.error_type, "message": message}}),
        0,
    ));
    frames
}

/// The non-streaming answer (`"stream": false` or absent).
pub(crate) fn message_json(model: &str, reply: &MessageReply, ids: &Ids) -> Value {
    let usage = reply.effective_usage();
    let content: Vec<Value> = reply
        .blocks
        .iter()
        .map(|block| match block {
            Block::Text { text } => json!({"type": "text", "text": text}),
            Block::Thinking { thinking, signature } => json!({
                "type": "thinking",
                "thinking": thinking,
                "signature": signature.as_deref().unwrap_or(DEFAULT_SIGNATURE),
            }),
            Block::ToolUse { id, name, input } => {
                json!({"type": "tool_use", "id": tool_id(id, ids), "name": name, "input": input})
            }
        })
        .collect();
    json!({
        "id": format!("msg_fake_{}", ids.next()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reply.effective_stop_reason(),
        "stop_sequence": null,
        "usage": usage,
    })
}

pub(crate) fn error_json(reply: &ErrorReply, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": reply.effective_type(), "message": reply.effective_message()},
        "request_id": request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Reply;

    #[test]
    fn frames_read_like_anthropic() {
        let ids = Ids::default();
        let Reply::Message(reply) = Reply::message(vec![
            Block::thinking("hmm"),
            Block::text("Hello world"),
            Block::tool_use("now", json!({"tz": "UTC"})).with_id("toolu_1"),
        ])
        .split(5) else {
            unreachable!()
        };
        let frames = message_frames("claude-x", &reply, &ids);
        let text: String = frames.iter().map(|f| f.text.as_str()).collect();
        assert!(text.starts_with("event: message_start\ndata: {"));
        assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        let events: Vec<(String, Value)> = frames
            .iter()
            .map(|f| {
                let (event, data) = f.text.trim_end().split_once('\n').unwrap();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                (event.strip_prefix("event: ").unwrap().to_owned(), data)
            })
            .collect();
        for (name, data) in &events {
            assert_eq!(data["type"], json!(name), "the event name repeats the data's type");
        }
        let deltas: Vec<&Value> =
            events.iter().filter(|(n, _)| n == "content_block_delta").map(|(_, d)| &d["delta"]).collect();
        assert_eq!(deltas[0], &json!({"type": "thinking_delta", "thinking": "hmm"}));
        assert_eq!(deltas[1], &json!({"type": "signature_delta", "signature": DEFAULT_SIGNATURE}));
        assert_eq!(deltas[2], &json!({"type": "text_delta", "text": "Hello"}));
        assert_eq!(deltas[3], &json!({"type": "text_delta", "text": " worl"}));
        let json_text: String = deltas.iter().filter_map(|d| d["partial_json"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&json_text).unwrap(), json!({"tz": "UTC"}));
        let stop = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(stop.1["delta"]["stop_reason"], json!("tool_use"));
        let content_chars: usize = frames.iter().map(|f| f.chars).sum();
        assert_eq!(content_chars, "hmm".len() + "Hello world".len() + r#"{"tz":"UTC"}"#.len());
    }
}
