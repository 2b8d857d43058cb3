//! What the fake answers: scripted [`Reply`]s, as JSON for the control API and as typed
//! builders for Rust tests. A reply says *what* the model says; `anthropic` and `openai`
//! say how each wire format frames it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn default_split() -> usize {
    8
}

fn empty_object() -> Value {
    json!({})
}

/// One scripted answer, consumed by the next model request on either endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// A complete answer, streamed in several deltas per block.
    Message(MessageReply),
    /// An HTTP error with the provider's error body.
    Error(ErrorReply),
    /// Starts streaming the message, then drops the connection mid-message.
    Cut(CutReply),
    /// A 200 stream that reports an error inside it (Anthropic `event: error`).
    StreamError(StreamErrorReply),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageReply {
    pub blocks: Vec<Block>,
    /// Anthropic's names (`end_turn`, `tool_use`, `max_tokens`, `pause_turn`, `refusal`,
    /// `stop_sequence`, or anything else verbatim). Default: `tool_use` when a block is a
    /// tool call, else `end_turn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// Default: [`ScriptUsage::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ScriptUsage>,
    /// Pause between streamed frames (the first frame is sent at once).
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Characters per text, thinking or tool-input delta.
    #[serde(default = "default_split")]
    pub split: usize,
}

impl MessageReply {
    pub fn new(blocks: Vec<Block>) -> Self {
        Self { blocks, stop_reason: None, usage: None, chunk_delay_ms: 0, split: default_split() }
    }

    pub fn effective_stop_reason(&self) -> String {
        self.stop_reason.clone().unwrap_or_else(|| {
            let calls_tool = self.blocks.iter().any(|b| matches!(b, Block::ToolUse { .. }));
            if calls_tool { "tool_use" } else { "end_turn" }.to_owned()
        })
    }

    pub fn effective_usage(&self) -> ScriptUsage {
        self.usage.unwrap_or_default()
    }
}

/// One content block of a scripted answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        /// Default: [`DEFAULT_SIGNATURE`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    ToolUse {
        /// Default: `toolu_fake_<n>` (Anthropic) or `call_fake_<n>` (OpenAI).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        #[serde(default = "empty_object")]
        input: Value,
    },
}

/// The signature of a scripted thinking block that names none.
pub const DEFAULT_SIGNATURE: &str = "ZmFrZS1zaWduYXR1cmU=";

impl Block {
    pub fn text(text: impl Into<String>) -> Self {
        Block::Text { text: text.into() }
    }

    pub fn thinking(thinking: impl Into<String>) -> Self {
        Block::Thinking { thinking: thinking.into(), signature: None }
    }

    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Block::ToolUse { id: None, name: name.into(), input }
    }

    /// Set the signature (thinking) or id (tool use); other blocks are returned as is.
    pub fn with_id(self, id: impl Into<String>) -> Self {
        match self {
            Block::ToolUse { name, input, .. } => Block::ToolUse { id: Some(id.into()), name, input },
            Block::Thinking { thinking, .. } => Block::Thinking { thinking, signature: Some(id.into()) },
            other => other,
        }
    }
}

/// Token counts reported for a scripted answer, in Anthropic's terms (the OpenAI endpoint
/// reports `prompt_tokens` = input + cache read, `cached_tokens` = cache read).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScriptUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

impl Default for ScriptUsage {
    fn default() -> Self {
        Self { input_tokens: 10, output_tokens: 5, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub status: u16,
    /// The provider's error type. Default: Anthropic's type for the status
    /// (`rate_limit_error` for 429, …).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds, sent as a `retry-after` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ErrorReply {
    pub fn effective_type(&self) -> String {
        self.error_type.clone().unwrap_or_else(|| anthropic_error_type(self.status).to_owned())
    }

    pub fn effective_message(&self) -> String {
        self.message.clone().unwrap_or_else(|| format!("scripted error {}", self.status))
    }
}

/// Anthropic's error type for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CutReply {
    /// What the message would have been.
    pub blocks: Vec<Block>,
    /// Content characters (text, thinking, tool input) delivered before the cut; the
    /// cut also lands inside an SSE frame, so clients must cope with a partial event.
    #[serde(default)]
    pub after_chars: usize,
    #[serde(default)]
    pub chunk_delay_ms: u64,
    #[serde(default = "default_split")]
    pub split: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamErrorReply {
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Blocks streamed (complete) before the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<Block>,
}

impl Reply {
    /// The answer when the script is empty: the text `ok`, `end_turn`.
    pub fn default_reply() -> Self {
        Reply::text("ok")
    }

    pub fn text(text: impl Into<String>) -> Self {
        Reply::message(vec![Block::text(text)])
    }

    /// A tool call (stop reason `tool_use`).
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Reply::message(vec![Block::tool_use(name, input)])
    }

    /// Thinking (with the default signature), then text.
    pub fn thinking(thinking: impl Into<String>, text: impl Into<String>) -> Self {
        Reply::message(vec![Block::thinking(thinking), Block::text(text)])
    }

    pub fn message(blocks: Vec<Block>) -> Self {
        Reply::Message(MessageReply::new(blocks))
    }

    /// An HTTP error with the provider's error body for `status`.
    pub fn error(status: u16) -> Self {
        Reply::Error(ErrorReply { status, error_type: None, message: None, retry_after: None })
    }

    /// A text answer whose connection drops after `chars` characters of it.
    pub fn cut_after(chars: usize) -> Self {
        Reply::Cut(CutReply {
            blocks: vec![Block::text(
                "This answer is cut off long before it is finished, as a dropped connection would.",
            )],
            after_chars: chars,
            chunk_delay_ms: 0,
            split: default_split(),
        })
    }

    /// An `event: error` of `error_type` (`overloaded_error`, …) inside a 200 stream.
    pub fn stream_error(error_type: impl Into<String>) -> Self {
        Reply::StreamError(StreamErrorReply { error_type: error_type.into(), message: None, blocks: Vec::new() })
    }

    /// Replace the blocks (message, cut, stream error).
    pub fn blocks(mut self, new: Vec<Block>) -> Self {
        match &mut self {
            Reply::Message(m) => m.blocks = new,
            Reply::Cut(c) => c.blocks = new,
            Reply::StreamError(s) => s.blocks = new,
            Reply::Error(_) => panic!("an error reply has no blocks"),
        }
        self
    }

    pub fn stop_reason(mut self, reason: impl Into<String>) -> Self {
        match &mut self {
            Reply::Message(m) => m.stop_reason = Some(reason.into()),
            _ => panic!("only a message reply has a stop reason"),
        }
        self
    }

    pub fn usage(mut self, usage: ScriptUsage) -> Self {
        match &mut self {
            Reply::Message(m) => m.usage = Some(usage),
            _ => panic!("only a message reply has usage"),
        }
        self
    }

    /// Pause between streamed frames.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        match &mut self {
            Reply::Message(m) => m.chunk_delay_ms = ms,
            Reply::Cut(c) => c.chunk_delay_ms = ms,
            _ => panic!("only message and cut replies stream with a delay"),
        }
        self
    }

    /// Characters per delta.
    pub fn split(mut self, chars: usize) -> Self {
        match &mut self {
            Reply::Message(m) => m.split = chars,
            Reply::Cut(c) => c.split = chars,
            _ => panic!("only message and cut replies are split into deltas"),
        }
        self
    }

    /// Error type (error, stream error).
    pub fn error_type(mut self, error_type: impl Into<String>) -> Self {
        match &mut self {
            Reply::Error(e) => e.error_type = Some(error_type.into()),
            Reply::StreamError(s) => s.error_type = error_type.into(),
            _ => panic!("only error replies have an error type"),
        }
        self
    }

    /// Error message (error, stream error).
    pub fn error_message(mut self, message: impl Into<String>) -> Self {
        match &mut self {
            Reply::Error(e) => e.message = Some(message.into()),
            Reply::StreamError(s) => s.message = Some(message.into()),
            _ => panic!("only error replies have an error message"),
        }
        self
    }

    /// `retry-after` seconds of an error reply.
    pub fn retry_after(mut self, secs: u64) -> Self {
        match &mut self {
            Reply::Error(e) => e.retry_after = Some(secs),
            _ => panic!("only an error reply has retry-after"),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let replies: Vec<Reply> = serde_json::from_value(json!([
            {"kind": "message", "blocks": [{"type": "text", "text": "hi"}, {"type": "tool_use", "name": "n", "input": {"a": 1}}]},
            {"kind": "error", "status": 429, "type": "rate_limit_error", "message": "slow", "retry_after": 1},
            {"kind": "cut", "blocks": [{"type": "text", "text": "abc"}], "after_chars": 2},
            {"kind": "stream_error", "type": "overloaded_error"},
        ]))
        .unwrap();
        assert_eq!(
            replies,
            vec![
                Reply::message(vec![Block::text("hi"), Block::tool_use("n", json!({"a": 1}))]),
                Reply::error(429).error_type("rate_limit_error").error_message("slow").retry_after(1),
                Reply::cut_after(2).blocks(vec![Block::text("abc")]),
                Reply::stream_error("overloaded_error"),
            ]
        );
        let Reply::Message(m) = &replies[0] else { unreachable!() };
        assert_eq!(m.effective_stop_reason(), "tool_use");
        assert_eq!(m.split, 8);
        // Round trip.
        let again: Vec<Reply> = serde_json::from_value(serde_json::to_value(&replies).unwrap()).unwrap();
        assert_eq!(again, replies);
    }
}
