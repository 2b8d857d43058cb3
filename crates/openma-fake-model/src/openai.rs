//! OpenAI Chat Completions framing of a scripted reply: `chat.completion.chunk`s with
//! `delta.content` / `delta.reasoning_content` / `delta.tool_calls` fragments, a finish
//! chunk, the usage chunk when `stream_options.include_usage` asked for it, and
//! `data: [DONE]`; the non-streaming `chat.completion`; OpenAI's error body.

use serde_json::{Value, json};

use crate::frames::{Frame, split};
use crate::script::{Block, ErrorReply, MessageReply, ScriptUsage, StreamErrorReply};
use crate::server::Ids;

/// Anthropic stop reason (the script's vocabulary) → OpenAI finish reason. Reasons
/// OpenAI has no word for (`pause_turn`) pass through verbatim, as gateways do.
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .to_owned()
}

fn usage_json(usage: &ScriptUsage) -> Value {
    let prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_input_tokens},
    })
}

fn call_id(id: &Option<String>, ids: &Ids) -> String {
    id.clone().unwrap_or_else(|| format!("call_fake_{}", ids.next()))
}

struct Chunks {
    id: String,
    model: String,
    created: u64,
}

impl Chunks {
    fn chunk(&self, delta: Value, finish_reason: Option<String>, chars: usize) -> Frame {
        Frame::data(
            json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
            }),
            chars,
        )
    }

    fn content(&self, blocks: &[Block], split_at: usize, ids: &Ids, out: &mut Vec<Frame>) {
        out.push(self.chunk(json!({"role": "assistant", "content": ""}), None, 0));
        let mut tool_index = 0;
        for block in blocks {
            match block {
                Block::Text { text } => {
                    for piece in split(text, split_at) {
                        let n = piece.chars().count();
                        out.push(self.chunk(json!({"content": piece}), None, n));
                    }
                }
                Block::Thinking { thinking, .. } => {
                    for piece in split(thinking, split_at) {
                        let n = piece.chars().count();
                        out.push(self.chunk(json!({"reasoning_content": piece}), None, n));
                    }
                }
                Block::ToolUse { id, name, input } => {
                    let first = json!({"tool_calls": [{
                        "index": tool_index,
                        "id": call_id(id, ids),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]});
                    out.push(self.chunk(first, None, 0));
                    for piece in split(&input.to_string(), split_at) {
                        let n = piece.chars().count();
                        let more = json!({"tool_calls": [{"index": tool_index, "function": {"arguments": piece}}]});
                        out.push(self.chunk(more, None, n));
                    }
                    tool_index += 1;
                }
            }
        }
    }
}

fn chunks(model: &str, ids: &Ids) -> Chunks {
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Chunks { id: format!("chatcmpl-fake-{}", ids.next()), model: model.to_owned(), created }
}

/// Every SSE frame of a message.
pub(crate) fn message_frames(model: &str, reply: &MessageReply, include_usage: bool, ids: &Ids) -> Vec<Frame> {
    let c = chunks(model, ids);
    let mut frames = Vec::new();
    c.content(&reply.blocks, reply.split, ids, &mut frames);
    frames.push(c.chunk(json!({}), Some(finish_reason(&reply.effective_stop_reason())), 0).terminal());
    if include_usage {
        let usage = json!({
            "id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
            "choices": [], "usage": usage_json(&reply.effective_usage()),
        });
        frames.push(Frame::data(usage, 0).terminal());
    }
    frames.push(Frame::data("[DONE]", 0).terminal());
    frames
}

/// The blocks, then an error chunk, and no `[DONE]`.
pub(crate) fn stream_error_frames(model: &str, reply: &StreamErrorReply, ids: &Ids) -> Vec<Frame> {
    let c = chunks(model, ids);
    let mut frames = Vec::new();
    c.content(&reply.blocks, 8, ids, &mut frames);
    let message = reply.message.clone().unwrap_or_else(|| "Overloaded".to_owned());
    frames.push(Frame::data(
        json!({"error": {"message": message, "type": reply.error_type, "param": null, "code": null}}),
        0,
    ));
    frames
}

/// The non-streaming answer.
pub(crate) fn completion_json(model: &str, reply: &MessageReply, ids: &Ids) -> Value {
    let text: String = reply
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = reply
        .blocks
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some(json!({
                "id": call_id(id, ids),
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let c = chunks(model, ids);
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(&reply.effective_stop_reason())}],
        "usage": usage_json(&reply.effective_usage()),
    })
}

/// OpenAI's error body. OpenAI names error types differently from Anthropic; the
/// scripted type is used when given, else OpenAI's usual one for the status.
pub(crate) fn error_json(reply: &ErrorReply) -> Value {
    let (default_type, code) = match reply.status {
        401 => ("invalid_request_error", Some("invalid_api_key")),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", None),
        _ => ("server_error", None),
    };
    let error_type = reply.error_type.clone().unwrap_or_else(|| default_type.to_owned());
    json!({"error": {"message": reply.effective_message(), "type": error_type, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Reply;

    #[test]
    fn chunks_read_like_openai() {
        let ids = Ids::default();
        let Reply::Message(reply) = Reply::message(vec![
            Block::text("Hello"),
            Block::tool_use("a", json!({"x": 1})),
            Block::tool_use("b", json!({})),
        ])
        .split(3) else {
            unreachable!()
        };
        let frames = message_frames("gpt-x", &reply, true, &ids);
        assert_eq!(frames.last().unwrap().text, "data: [DONE]\n\n");
        let chunks: Vec<Value> = frames[..frames.len() - 1]
            .iter()
            .map(|f| serde_json::from_str(f.text.strip_prefix("data: ").unwrap().trim_end()).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], json!("a"));
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], json!("tool_calls"));
        let usage = &chunks[chunks.len() - 1];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], json!(10));
        // Without include_usage, no usage chunk.
        assert_eq!(message_frames("gpt-x", &reply, false, &ids).len(), frames.len() - 1);
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason("end_turn"), "stop");
        assert_eq!(finish_reason("max_tokens"), "length");
        assert_eq!(finish_reason("tool_use"), "tool_calls");
        assert_eq!(finish_reason("refusal"), "content_filter");
        assert_eq!(finish_reason("pause_turn"), "pause_turn");
    }
}
