//! OpenAI Chat Completions streaming chunks → [`ModelEvent`]s.
//!
//! Chat Completions has no block boundaries: text arrives as `delta.content`, tool calls
//! as `delta.tool_calls[i]` fragments. Each kind of content gets a block index when it
//! first appears, text deltas are previewed at once, and every block is completed when
//! `data: [DONE]` closes the stream (only then are the tool arguments whole).

use std::collections::BTreeMap;

use eventsource_stream::Event;
use openma_core::model::{ContentBlock, ModelError, ModelEvent, StopReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use crate::errors;
use crate::stream::Decoder;

const PROVIDER: &str = "openai";

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Some OpenAI-compatible servers report failures as a chunk inside a 200 stream.
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    /// Reasoning text of DeepSeek-style and vLLM reasoning models.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

impl From<WireUsage> for Usage {
    /// OpenAI's `prompt_tokens` include the cached ones; Anthropic's `input_tokens` do
    /// not. The core follows Anthropic, so cached tokens are moved out of `input_tokens`
    /// and billing sees the same split from both providers.
    fn from(u: WireUsage) -> Self {
        let cached = u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0);
        Usage {
            input_tokens: u.prompt_tokens.saturating_sub(cached),
            output_tokens: u.completion_tokens,
            cache_read_input_tokens: cached,
            cache_creation_input_tokens: 0,
        }
    }
}

struct ToolCall {
    index: u32,
    id: Option<String>,
    name: String,
    arguments: String,
}

/// State of one Chat Completions answer.
#[derive(Default)]
pub(crate) struct OpenAiDecoder {
    reasoning: Option<(u32, String)>,
    text: Option<(u32, String)>,
    /// By OpenAI's tool call index.
    calls: BTreeMap<usize, ToolCall>,
    next_index: u32,
    finish: Option<StopReason>,
    usage: Usage,
    complete: bool,
}

impl Decoder for OpenAiDecoder {
    fn event(&mut self, event: &Event, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return self.done(out);
        }
        let chunk: Chunk =
            serde_json::from_str(data).map_err(|e| errors::malformed(PROVIDER, format!("chunk: {e}")))?;
        if let Some(error) = chunk.error {
            let code = error.code.as_ref().and_then(Value::as_str).map(str::to_owned);
            let error_type = error.error_type.or(code).unwrap_or_else(|| "error".to_owned());
            return Err(errors::from_stream_error(PROVIDER, &error_type, error.message.as_deref().unwrap_or("")));
        }
        if let Some(usage) = chunk.usage {
            self.usage = usage.into();
        }
        // One completion was asked for (n = 1): other choices would be a server bug.
        for choice in chunk.choices.unwrap_or_default().into_iter().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                self.delta(delta, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.complete
    }
}

impl OpenAiDecoder {
    fn allocate(&mut self) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn delta(&mut self, delta: Delta, out: &mut Vec<ModelEvent>) {
        if let Some(more) = delta.reasoning_content.filter(|s| !s.is_empty()) {
            let index = match &self.reasoning {
                Some((index, _)) => *index,
                None => self.allocate(),
            };
            self.reasoning.get_or_insert_with(|| (index, String::new())).1.push_str(&more);
            out.push(ModelEvent::ThinkingDelta { index, text: more });
        }
        if let Some(more) = delta.content.filter(|s| !s.is_empty()) {
            let index = match &self.text {
                Some((index, _)) => *index,
                None => self.allocate(),
            };
            self.text.get_or_insert_with(|| (index, String::new())).1.push_str(&more);
            out.push(ModelEvent::TextDelta { index, text: more });
        }
        for fragment in delta.tool_calls.unwrap_or_default() {
            if !self.calls.contains_key(&fragment.index) {
                let index = self.allocate();
                self.calls.insert(
                    fragment.index,
                    ToolCall { index, id: None, name: String::new(), arguments: String::new() },
                );
            }
            let call = self.calls.get_mut(&fragment.index).expect("inserted above");
            if let Some(id) = fragment.id.filter(|s| !s.is_empty()) {
                call.id = Some(id);
            }
            if let Some(function) = fragment.function {
                if let Some(name) = function.name {
                    call.name.push_str(&name);
                }
                if let Some(arguments) = function.arguments {
                    call.arguments.push_str(&arguments);
                }
            }
        }
    }

    /// `[DONE]`: complete every block in index order, then finish.
    fn done(&mut self, out: &mut Vec<ModelEvent>) -> Result<(), ModelError> {
        let Some(mut stop_reason) = self.finish.take() else {
            return Err(errors::stream_cut(PROVIDER, "[DONE] before any finish_reason"));
        };
        let mut blocks: Vec<(u32, ContentBlock)> = Vec::new();
        if let Some((index, thinking)) = self.reasoning.take() {
            blocks.push((index, ContentBlock::Thinking { thinking, signature: None }));
        }
        if let Some((index, text)) = self.text.take() {
            blocks.push((index, ContentBlock::Text { text }));
        }
        let calls = std::mem::take(&mut self.calls);
        let has_calls = !calls.is_empty();
        for (position, call) in calls {
            if call.name.is_empty() {
                return Err(errors::malformed(PROVIDER, format!("tool call {position} has no name")));
            }
            let input = if call.arguments.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(&call.arguments).map_err(|e| {
                    errors::malformed(PROVIDER, format!("tool call {} arguments are not JSON: {e}", call.name))
                })?
            };
            let id = call.id.unwrap_or_else(|| format!("call_{position}"));
            blocks.push((call.index, ContentBlock::ToolUse { id, name: call.name, input }));
        }
        blocks.sort_by_key(|(index, _)| *index);
        out.extend(blocks.into_iter().map(|(index, block)| ModelEvent::BlockComplete { index, block }));
        // Some compatible servers say `stop` even when they called tools; the harness
        // must still run them.
        if has_calls && stop_reason == StopReason::EndTurn {
            stop_reason = StopReason::ToolUse;
        }
        out.push(ModelEvent::Finished { stop_reason, usage: self.usage });
        self.complete = true;
        Ok(())
    }
}

/// OpenAI's finish reasons, plus Anthropic's names, which gateways in front of Claude
/// pass through unchanged.
fn finish_reason(reason: &str) -> StopReason {
    match reason {
        "stop" | "end_turn" => StopReason::EndTurn,
        "length" | "max_tokens" => StopReason::MaxTokens,
        "tool_calls" | "function_call" | "tool_use" => StopReason::ToolUse,
        "content_filter" | "refusal" => StopReason::Refusal,
        "stop_sequence" => StopReason::StopSequence,
        "pause_turn" => StopReason::PauseTurn,
        other => StopReason::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use openma_core::model::{ModelError, TransientKind};
    use serde_json::json;

    use super::*;
    use crate::stream::testing;

    const FIXTURE: &str = concat!(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo \"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"wörld\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"loc\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ation\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,\"total_tokens\":42,\"prompt_tokens_details\":{\"cached_tokens\":20}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected() -> Vec<ModelEvent> {
        vec![
            ModelEvent::TextDelta { index: 0, text: "Héllo ".into() },
            ModelEvent::TextDelta { index: 0, text: "wörld".into() },
            ModelEvent::BlockComplete { index: 0, block: ContentBlock::Text { text: "Héllo wörld".into() } },
            ModelEvent::BlockComplete {
                index: 1,
                block: ContentBlock::ToolUse {
                    id: "call_a".into(),
                    name: "get_weather".into(),
                    input: json!({"location": "Paris"}),
                },
            },
            ModelEvent::BlockComplete {
                index: 2,
                block: ContentBlock::ToolUse { id: "call_b".into(), name: "now".into(), input: json!({}) },
            },
            ModelEvent::Finished {
                stop_reason: StopReason::ToolUse,
                usage: Usage { input_tokens: 10, output_tokens: 12, cache_read_input_tokens: 20, ..Usage::default() },
            },
        ]
    }

    async fn run(chunks: Vec<Vec<u8>>) -> Vec<Result<ModelEvent, ModelError>> {
        testing::run(PROVIDER, OpenAiDecoder::default(), chunks).await
    }

    async fn run_ok(chunks: Vec<Vec<u8>>) -> Vec<ModelEvent> {
        testing::run_ok(PROVIDER, OpenAiDecoder::default(), chunks).await
    }

    #[tokio::test]
    async fn chunking_never_changes_the_events() {
        testing::assert_chunking_never_matters::<OpenAiDecoder>(PROVIDER, FIXTURE, &expected()).await;
    }

    #[tokio::test]
    async fn missing_done_is_a_cut() {
        let end = FIXTURE.find("data: [DONE]").unwrap();
        let events = run(vec![FIXTURE.as_bytes()[..end].to_vec()]).await;
        assert_eq!(events.len(), 3, "the text deltas, then the error");
        assert!(matches!(events[2], Err(ModelError::Transient { kind: TransientKind::StreamCut, .. })));
    }

    #[tokio::test]
    async fn done_without_finish_is_a_cut() {
        let events = run(vec![
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n".to_vec(),
        ])
        .await;
        assert!(matches!(events.last().unwrap(), Err(ModelError::Transient { kind: TransientKind::StreamCut, .. })));
    }

    #[tokio::test]
    async fn reasoning_then_text_and_stop_with_calls_means_tool_use() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"n\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let events = run_ok(vec![body.as_bytes().to_vec()]).await;
        assert_eq!(events[0], ModelEvent::ThinkingDelta { index: 0, text: "hmm".into() });
        assert_eq!(events[1], ModelEvent::TextDelta { index: 1, text: "ok".into() });
        assert_eq!(
            events[2],
            ModelEvent::BlockComplete {
                index: 0,
                block: ContentBlock::Thinking { thinking: "hmm".into(), signature: None }
            }
        );
        assert!(matches!(events.last().unwrap(), ModelEvent::Finished { stop_reason: StopReason::ToolUse, .. }));
    }

    #[tokio::test]
    async fn error_chunk() {
        let body = "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n";
        let events = run(vec![body.as_bytes().to_vec()]).await;
        assert!(
            matches!(&events[0], Err(ModelError::Transient { kind: TransientKind::RateLimited, message, .. }) if message.contains("slow down"))
        );
    }

    #[test]
    fn finish_reasons() {
        for (wire, reason) in [
            ("stop", StopReason::EndTurn),
            ("length", StopReason::MaxTokens),
            ("tool_calls", StopReason::ToolUse),
            ("content_filter", StopReason::Refusal),
            ("pause_turn", StopReason::PauseTurn),
            ("stop_sequence", StopReason::StopSequence),
            ("eos", StopReason::Other("eos".into())),
        ] {
            assert_eq!(finish_reason(wire), reason);
        }
    }
}
