//! The model port: a provider-neutral request, the streamed events of its answer, and
//! the errors a provider can end with. Adapters (Anthropic Messages, OpenAI-compatible
//! Chat Completions) live in `openma-models`; the harness sees only these types.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One model call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The model id as the agent names it (a provider prefix such as `openai/` is the
    /// router's business).
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    /// Place prompt-cache breakpoints (Anthropic) on the system prompt, the tools and the
    /// last message, so a long session re-reads its history from cache.
    pub cache: bool,
}

impl ModelRequest {
    /// Puts `note` (what the platform tells the model: memory mounts, skills) after the
    /// agent's own system prompt.
    pub fn append_system(&mut self, note: Option<&str>) {
        if let Some(note) = note {
            self.system = Some(match self.system.take() {
                Some(s) => format!("{s}\n\n{note}"),
                None => note.to_owned(),
            });
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

/// Content blocks in Anthropic's shape (the OpenAI adapter translates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// `source` is Anthropic's source object (`base64` with `media_type` and `data`, `url`,
    /// or — until [`crate::harness::file_blocks::resolve`] — `file`).
    Image {
        source: Value,
    },
    Document {
        source: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        /// Text and image blocks.
        content: Vec<ContentBlock>,
        #[serde(default)]
        is_error: bool,
    },
}

/// A tool offered to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    /// The provider paused a long turn; the harness continues it with another request.
    PauseTurn,
    Refusal,
    /// A stop reason this build does not know, kept verbatim.
    Other(String),
}

/// Token counts of one model call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

/// What a streaming model call yields, in order. Deltas are previews; the
/// `BlockComplete` events are authoritative.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelEvent {
    /// More text of the text block at `index`.
    TextDelta { index: u32, text: String },
    /// More reasoning of the thinking block at `index`.
    ThinkingDelta { index: u32, text: String },
    /// The block at `index` is complete (tool inputs fully parsed).
    BlockComplete { index: u32, block: ContentBlock },
    /// The answer is complete. Always the last event of a successful stream.
    Finished { stop_reason: StopReason, usage: Usage },
}

/// Retryable failures: the request may succeed if sent again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransientKind {
    /// HTTP 429.
    RateLimited,
    /// HTTP 529 or an `overloaded_error`.
    Overloaded,
    /// HTTP 5xx.
    ServerError,
    /// Connection refused or reset, timeout before or between chunks.
    Network,
    /// The stream ended before the message was complete.
    StreamCut,
}

/// Failures that will not go away by retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermanentKind {
    /// 401/403: the provider key is missing or wrong.
    Authentication,
    /// 404: unknown model.
    ModelNotFound,
    /// 400/413/422: the request itself is refused.
    InvalidRequest,
    /// No provider is configured for this model.
    NotConfigured,
    /// Anything else the provider said no to.
    Other,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("{message}")]
    Transient { kind: TransientKind, message: String, retry_after: Option<Duration> },
    #[error("{message}")]
    Permanent { kind: PermanentKind, message: String },
}

impl ModelError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ModelError::Transient { .. })
    }
}

pub type ModelStream = BoxStream<'static, Result<ModelEvent, ModelError>>;

/// A model provider. `stream` returns once the provider accepted the request (HTTP
/// status known); errors after that arrive inside the stream.
#[async_trait]
pub trait ModelClient: Send + Sync {
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;
}
