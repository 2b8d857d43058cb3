//! Anthropic Messages streaming events → [`ModelEvent`]s.
//!
//! Blocks are accumulated per `index` from `content_block_start` through the deltas to
//! `content_block_stop`, which emits the authoritative block. Usage comes from
//! `message_start` and is overridden field by field by `message_delta`, whose counts are
//! cumulative.

use std::collections::BTreeMap;

use eventsource_stream::Event;
use openma_core::model::{ContentBlock, ModelError, ModelEvent, StopReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use crate::errors;
use crate::stream::Decoder;

const PROVIDER: &str = "anthropic";

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: WireBlockStart,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: WireError,
    },
    /// `ping`, and event types newer than this adapter: Anthropic asks clients to
    /// ignore events they do not know.
    #[serde(other)]
    Ignored,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Default, Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Later counts are cumulative: a field present here replaces the earlier one.
    fn apply_to(&self, usage: &mut Usage) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut usage.input_tokens, self.input_tokens);
        set(&mut usage.output_tokens, self.output_tokens);
        set(&mut usage.cache_read_input_tokens, self.cache_read_input_tokens);
        set(&mut usage.cache_creation_input_tokens, self.cache_creation_input_tokens);
    }
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type")]
    error_type: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlockStart {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
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
        #[serde(default)]
        input: Option<Value>,
    },
    /// Server-tool blocks and anything newer: the core has no block for them, so their
    /// deltas are skipped rather than failing the whole answer.
    #[serde(other)]
    Unsupported,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// `citations_delta` and newer kinds.
    #[serde(other)]
    Ignored,
}

/// A block between its start and its stop.
enum Partial {
    Text(String),
    Thinking { thinking: String, signature: Option<String> },
    Redacted(String),
    ToolUse { id: String, name: String, json: String, start_input: Option<Value> },
    Unsupported,
}

impl Partial {
    fn start(block: WireBlockStart) -> Self {
        match block {
            WireBlockStart::Text { text } => Partial::Text(text),
            WireBlockStart::Thinking { thinking, signature } => {
                Partial::Thinking { thinking, signature: signature.filter(|s| !s.is_empty()) }
            }
            WireBlockStart::RedactedThinking { data } => Partial::Redacted(data),
            WireBlockStart::ToolUse { id, name, input } => {
                Partial::ToolUse { id, name, json: String::new(), start_input: input }
            }
            WireBlockStart::Unsupported => Partial::Unsupported,
        }
    }

    /// The finished block; `None` for blocks the core does not model.
    fn complete(self) -> Result<Option<ContentBlock>, ModelError> {
        Ok(Some(match self {
            Partial::Text(text) => ContentBlock::Text { text },
            Partial::Thinking { thinking, signature } => ContentBlock::Thinking { thinking, signature },
            Partial::Redacted(data) => ContentBlock::RedactedThinking { data },
            Partial::ToolUse { id, name, json, start_input } => {
                let input = if json.trim().is_empty() {
                    start_input.filter(Value::is_object).unwrap_or_else(|| Value::Object(Default::default()))
                } else {
                    serde_json::from_str(&json).map_err(|e| {
                        errors::malformed(PROVIDER, format!("tool_use {name} ({id}) input is not JSON: {e}"))
                    })?
                };
                ContentBlock::ToolUse { id, name, input }
            }
            Partial::Unsupported => return Ok(None),
        }))
    }
}

/// State of one Anthropic answer.
#[derive(Default)]
pub(crate) struct AnthropicDecoder {
    blocks: BTreeMap<u32, Partial>,
    usage: Usage,
    stop_reason: Option<StopReason>,
    complete: bool,
}

impl Decoder for AnthropicDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        let wire: WireEvent = serde_json::from_str(&event.data)
            .map_err(|e| errors::malformed(PROVIDER, format!("event {:?}: {e}", event.event)))?;
        match wire {
            WireEvent::MessageStart { message } => message.usage.apply_to(&mut self.usage),
            WireEvent::ContentBlockStart { index, content_block } => {
                let partial = Partial::start(content_block);
                // A start may carry initial text; show it like any other delta.
                match &partial {
                    Partial::Text(text) if !text.is_empty() => {
                        out.push(ModelEvent::TextDelta { index, text: text.clone() })
                    }
                    Partial::Thinking { thinking, .. } if !thinking.is_empty() => {
                        out.push(ModelEvent::ThinkingDelta { index, text: thinking.clone() })
                    }
                    _ => {}
                }
                self.blocks.insert(index, partial);
            }
            WireEvent::ContentBlockDelta { index, delta } => self.delta(index, delta, out)?,
            WireEvent::ContentBlockStop { index } => {
                let partial = self
                    .blocks
                    .remove(&index)
                    .ok_or_else(|| errors::malformed(PROVIDER, format!("stop of unknown block {index}")))?;
                if let Some(block) = partial.complete()? {
                    out.push(ModelEvent::BlockComplete { index, block });
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.stop_reason = Some(stop_reason(&reason));
                }
                usage.apply_to(&mut self.usage);
            }
            WireEvent::MessageStop => {
                // Blocks never stopped are still delivered: the message says it is whole.
                for (index, partial) in std::mem::take(&mut self.blocks) {
                    if let Some(block) = partial.complete()? {
                        out.push(ModelEvent::BlockComplete { index, block });
                    }
                }
                // Anthropic always sends a stop reason; a gateway that omits it ended normally.
                let stop_reason = self.stop_reason.take().unwrap_or(StopReason::EndTurn);
                out.push(ModelEvent::Finished { stop_reason, usage: self.usage });
                self.complete = true;
            }
            WireEvent::Error { error } => {
                return Err(errors::from_stream_error(PROVIDER, &error.error_type, &error.message));
            }
            WireEvent::Ignored => {}
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

impl AnthropicDecoder {
    fn delta(&mut self, index: u32, delta: WireDelta, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        let partial = self
            .blocks
            .get_mut(&index)
            .ok_or_else(|| errors::malformed(PROVIDER, format!("delta for unknown block {index}")))?;
        match (partial, delta) {
            (Partial::Unsupported, _) | (_, WireDelta::Ignored) => {}
            (Partial::Text(text), WireDelta::TextDelta { text: more }) => {
                text.push_str(&more);
                out.push(ModelEvent::TextDelta { index, text: more });
            }
            (Partial::Thinking { thinking, .. }, WireDelta::ThinkingDelta { thinking: more }) => {
                thinking.push_str(&more);
                out.push(ModelEvent::ThinkingDelta { index, text: more });
            }
            (Partial::Thinking { signature, .. }, WireDelta::SignatureDelta { signature: more }) => {
                signature.get_or_insert_with(String::new).push_str(&more);
            }
            (Partial::ToolUse { json, .. }, WireDelta::InputJsonDelta { partial_json }) => {
                json.push_str(&partial_json);
            }
            _ => return Err(errors::malformed(PROVIDER, format!("delta does not fit block {index}"))),
        }
        Ok(())
    }
}

fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "pause_turn" => StopReason::PauseTurn,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use openma_core::model::{ModelError, PermanentKind, TransientKind};
    use serde_json::json;

    use super::*;
    use crate::stream::testing;

    /// A real-shaped stream: text, thinking with signature, and a tool call whose input
    /// arrives in fragments.
    const FIXTURE: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":7,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"think.\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2ln\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"wörld\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"loc\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ation\\\": \\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn expected() -> Vec<ModelEvent> {
        vec![
            ModelEvent::ThinkingDelta { index: 0, text: "Let me ".into() },
            ModelEvent::ThinkingDelta { index: 0, text: "think.".into() },
            ModelEvent::BlockComplete {
                index: 0,
                block: ContentBlock::Thinking { thinking: "Let me think.".into(), signature: Some("c2ln".into()) },
            },
            ModelEvent::TextDelta { index: 1, text: "Héllo ".into() },
            ModelEvent::TextDelta { index: 1, text: "wörld".into() },
            ModelEvent::BlockComplete { index: 1, block: ContentBlock::Text { text: "Héllo wörld".into() } },
            ModelEvent::BlockComplete {
                index: 2,
                block: ContentBlock::ToolUse {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    input: json!({"location": "Paris"}),
                },
            },
            ModelEvent::Finished {
                stop_reason: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 25,
                    output_tokens: 42,
                    cache_read_input_tokens: 7,
                    cache_creation_input_tokens: 3,
                },
            },
        ]
    }

    async fn run(chunks: Vec<Vec<u8>>) -> Vec<Result<ModelEvent, ModelError>> {
        testing::run(PROVIDER, AnthropicDecoder::default(), chunks).await
    }

    async fn run_ok(chunks: Vec<Vec<u8>>) -> Vec<ModelEvent> {
        testing::run_ok(PROVIDER, AnthropicDecoder::default(), chunks).await
    }

    #[tokio::test]
    async fn chunking_never_changes_the_events() {
        testing::assert_chunking_never_matters::<AnthropicDecoder>(PROVIDER, FIXTURE, &expected()).await;
    }

    #[tokio::test]
    async fn crlf_line_endings() {
        let crlf = FIXTURE.replace('\n', "\r\n");
        assert_eq!(run_ok(vec![crlf.into_bytes()]).await, expected());
    }

    #[tokio::test]
    async fn missing_message_stop_is_a_cut() {
        let end = FIXTURE.find("event: message_stop").unwrap();
        let events = run(vec![FIXTURE.as_bytes()[..end].to_vec()]).await;
        let last = events.last().unwrap().as_ref().unwrap_err();
        assert!(matches!(last, ModelError::Transient { kind: TransientKind::StreamCut, .. }), "{last:?}");
        // Everything before the cut was still delivered.
        assert_eq!(events.len(), expected().len());
    }

    #[tokio::test]
    async fn stream_error_event() {
        let body = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let events = run(vec![body.as_bytes().to_vec()]).await;
        assert_eq!(events.len(), 1);
        let err = events[0].as_ref().unwrap_err();
        assert!(matches!(err, ModelError::Transient { kind: TransientKind::Overloaded, .. }));
        assert!(err.to_string().contains("Overloaded"));

        let body =
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"billing_error\",\"message\":\"no\"}}\n\n";
        let events = run(vec![body.as_bytes().to_vec()]).await;
        assert!(matches!(events[0], Err(ModelError::Permanent { kind: PermanentKind::Other, .. })));
    }

    #[tokio::test]
    async fn empty_tool_input_is_an_empty_object_and_unknown_blocks_are_skipped() {
        let body = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"now\",\"input\":{}}}\n\n",
            "event: content_block_stop\n",
            "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: some_future_event\n",
            "data: {\"type\":\"some_future_event\"}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"model_context_window_exceeded\"},\"usage\":{\"output_tokens\":5,\"input_tokens\":9}}\n\n",
            "event: message_stop\n",
            "data: {\"type\":\"message_stop\"}\n\n",
        );
        let events = run_ok(vec![body.as_bytes().to_vec()]).await;
        assert_eq!(
            events,
            vec![
                ModelEvent::BlockComplete {
                    index: 1,
                    block: ContentBlock::ToolUse { id: "toolu_2".into(), name: "now".into(), input: json!({}) },
                },
                ModelEvent::Finished {
                    stop_reason: StopReason::Other("model_context_window_exceeded".into()),
                    usage: Usage { input_tokens: 9, output_tokens: 5, ..Usage::default() },
                },
            ]
        );
    }

    #[test]
    fn stop_reasons() {
        for (wire, reason) in [
            ("end_turn", StopReason::EndTurn),
            ("max_tokens", StopReason::MaxTokens),
            ("stop_sequence", StopReason::StopSequence),
            ("tool_use", StopReason::ToolUse),
            ("pause_turn", StopReason::PauseTurn),
            ("refusal", StopReason::Refusal),
            ("new_reason", StopReason::Other("new_reason".into())),
        ] {
            assert_eq!(stop_reason(wire), reason);
        }
    }
}
