//! One model call turned into session events, whatever runtime drives it: the native
//! session actor and the Workers' SessionDO both feed the model's stream through an
//! [`Accumulator`] and append what it yields, so a turn reads the same on either.

use std::collections::BTreeMap;


use openma_types::agents::PermissionPolicy;
use openma_types::events::{EvaluatedPermission, EventPayload, ModelUsage, StopReason};
use serde_json::{Value, json};

use crate::error::{DomainError, DomainResult};
use crate::harness::input::Input;
use crate::harness::tools::{ToolPlan, ToolRoute};
use crate::model::{self, ContentBlock, ModelError, ModelEvent, PermanentKind, TransientKind};
use crate::ports::StoredEvent;

/// An event about to be appended: an id chosen in advance (for previews), its payload,
/// and harness-only data.
#[derive(Debug)]
pub struct Pending {
    pub id: Option<String>,
    pub payload: EventPayload,
    pub internal: Option<Value>,
}

impl From<EventPayload> for Pending {
    fn from(payload: EventPayload) -> Self {
        Pending { id: None, payload, internal: None }
    }
}

/// The event a preview (`event_start` / `event_delta`) announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewOf {
    Message,
    Thinking,
}

impl PreviewOf {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewOf::Message => "agent.message",
            PreviewOf::Thinking => "agent.thinking",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "agent.message" => Some(PreviewOf::Message),
            "agent.thinking" => Some(PreviewOf::Thinking),
            _ => None,
        }
    }
}

/// One preview frame for stream subscribers: never stored, only relayed.
#[derive(Debug)]
pub struct Preview {
    pub of: PreviewOf,
    /// `event_start` or `event_delta`.
    pub kind: &'static str,
    pub json: String,
}

/// The result of one model call.
#[derive(Debug)]
pub enum Step {
    /// The model ended its turn (or stopped for good, e.g. a refusal).
    EndsTurn(Option<StopReason>),
    /// The model called tools or paused; the loop goes on.
    Continues,
}

impl Step {
    /// What a finished call means for the loop, given the events it produced.
    pub fn after(stop: model::StopReason, events: &[Pending]) -> Step {
        let called_tools = events
            .iter()
            .any(|e| matches!(e.payload, EventPayload::AgentToolUse { .. } | EventPayload::AgentMcpToolUse { .. } | EventPayload::AgentCustomToolUse { .. }));
        match stop {
            _ if called_tools => Step::Continues,
            model::StopReason::PauseTurn => Step::Continues,
            model::StopReason::Refusal => Step::EndsTurn(Some(StopReason::Refusal)),
            _ => Step::EndsTurn(None),
        }
    }
}

/// Tool and MCP calls allowed to run (by policy, or confirmed by the user) that have no
/// result yet, in the order they were made.
pub fn unrun_allowed_calls(log: &[StoredEvent]) -> Vec<String> {
    let mut calls: Vec<String> = Vec::new();
    for e in log {
        match &e.event.payload {
            EventPayload::AgentToolUse { evaluated_permission: EvaluatedPermission::Allow, .. }
            | EventPayload::AgentMcpToolUse { evaluated_permission: EvaluatedPermission::Allow, .. } => calls.push(e.event.id.clone()),
            EventPayload::UserToolConfirmation { tool_use_id, result, .. } if *result == openma_types::events::ConfirmationResult::Allow => {
                calls.push(tool_use_id.clone());
            }
            EventPayload::AgentToolResult { tool_use_id, .. } | EventPayload::AgentMcpToolResult { mcp_tool_use_id: tool_use_id, .. } => {
                calls.retain(|c| c != tool_use_id)
            }
            _ => {}
        }
    }
    calls
}

/// Tool uses the session waits on, oldest first: unconfirmed `always_ask` calls and custom
/// calls without a result.
pub fn blocking_ids(log: &[StoredEvent]) -> Vec<String> {
    let mut waiting: BTreeMap<&str, i64> = BTreeMap::new();
    for e in log {
        match &e.event.payload {
            EventPayload::AgentToolUse { evaluated_permission: EvaluatedPermission::Ask, .. }
            | EventPayload::AgentMcpToolUse { evaluated_permission: EvaluatedPermission::Ask, .. }
            | EventPayload::AgentCustomToolUse { .. } => {
                waiting.insert(&e.event.id, e.seq);
            }
            EventPayload::UserToolConfirmation { tool_use_id, .. }
            | EventPayload::AgentToolResult { tool_use_id, .. }
            | EventPayload::AgentMcpToolResult { mcp_tool_use_id: tool_use_id, .. }
            | EventPayload::UserCustomToolResult { custom_tool_use_id: tool_use_id, .. } => {
                waiting.remove(tool_use_id.as_str());
            }
            _ => {}
        }
    }
    let mut ids: Vec<(i64, &str)> = waiting.into_iter().map(|(id, seq)| (seq, id)).collect();
    ids.sort();
    ids.into_iter().map(|(_, id)| id.to_owned()).collect()
}

fn is_custom(log: &[StoredEvent], id: &str) -> bool {
    log.iter().any(|e| e.event.id == id && matches!(e.event.payload, EventPayload::AgentCustomToolUse { .. }))
}

/// What client input does to an idle session.
#[derive(Debug)]
pub struct IdleInputs {
    /// To append, in order: each input under its own id, with the results it implies.
    pub events: Vec<Pending>,
    /// The ids of the inputs' own events (what the send call echoes).
    pub echo_ids: Vec<String>,
    /// A message or system message: the session has work to do.
    pub starts_work: bool,
    /// The events end with `session.status_running` and the loop must run.
    pub starts_running: bool,
}

/// Applies client input to an idle session's log, all or nothing: every confirmation and
/// custom result must answer a call the session waits on, checked before anything is
/// decided. A new message answers every call still waiting, honestly, with an error.
pub fn idle_inputs(log: &[StoredEvent], inputs: Vec<Input>, new_id: impl Fn() -> String) -> DomainResult<IdleInputs> {
    let waiting = blocking_ids(log);
    let mut blocking = waiting.clone();
    for input in &inputs {
        match input {
            Input::Confirmation { tool_use_id, .. } => {
                if !blocking.contains(tool_use_id) || is_custom(log, tool_use_id) {
                    return Err(DomainError::invalid(format!("`{tool_use_id}` is not a tool use awaiting confirmation")));
                }
                blocking.retain(|b| b != tool_use_id);
            }
            Input::CustomResult { tool_use_id, .. } => {
                if !blocking.contains(tool_use_id) || !is_custom(log, tool_use_id) {
                    return Err(DomainError::invalid(format!("`{tool_use_id}` is not a custom tool use awaiting a result")));
                }
                blocking.retain(|b| b != tool_use_id);
            }
            _ => {}
        }
    }
    let starts_work = inputs.iter().any(|i| matches!(i, Input::Message { .. } | Input::System { .. }));
    let mut events: Vec<Pending> = Vec::new();
    let mut echo_ids = Vec::new();
    for input in inputs {
        let id = new_id();
        echo_ids.push(id.clone());
        if matches!(input, Input::Message { .. }) {
            for waiting in std::mem::take(&mut blocking) {
                events.push(result_for(log, &waiting, "The user sent a new message instead of answering this tool call."));
            }
        }
        let denial = match &input {
            Input::Confirmation { tool_use_id, allow: false, deny_message } => {
                Some((tool_use_id.clone(), deny_message.clone().unwrap_or_else(|| "The user denied this tool call.".into())))
            }
            _ => None,
        };
        events.push(Pending { id: Some(id), payload: client_payload(input), internal: None });
        if let Some((tool_use_id, message)) = denial {
            let mut denied = result_for(log, &tool_use_id, &message);
            if let EventPayload::AgentToolResult { is_error, .. } | EventPayload::AgentMcpToolResult { is_error, .. } = &mut denied.payload {
                *is_error = true;
            }
            events.push(denied);
        }
    }
    let starts_running = starts_work || (blocking.is_empty() && !waiting.is_empty());
    if starts_running {
        events.push(EventPayload::StatusRunning {}.into());
    } else if !blocking.is_empty() && events.iter().any(|e| !matches!(e.payload, EventPayload::UserInterrupt {})) {
        events.push(EventPayload::StatusIdle { stop_reason: StopReason::RequiresAction { event_ids: blocking } }.into());
    }
    Ok(IdleInputs { events, echo_ids, starts_work, starts_running })
}

/// Adds one model call's tokens to a session's usage.
pub fn add_usage(u: &mut openma_types::sessions::SessionUsage, usage: model::Usage) {
    u.input_tokens += usage.input_tokens;
    u.output_tokens += usage.output_tokens;
    u.cache_read_input_tokens += usage.cache_read_input_tokens;
    u.cache_creation.ephemeral_5m_input_tokens += usage.cache_creation_input_tokens;
}

/// The wire form of a model call's token usage.
pub fn model_usage(u: model::Usage) -> ModelUsage {
    ModelUsage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_input_tokens: u.cache_read_input_tokens,
        cache_creation_input_tokens: u.cache_creation_input_tokens,
    }
}

pub fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

/// An error result for a call that will not get a real one.
pub fn result_for(log: &[StoredEvent], tool_use_id: &str, message: &str) -> Pending {
    let content = vec![text_block(message)];
    let id = tool_use_id.to_owned();
    match log.iter().rev().find(|e| e.event.id == tool_use_id).map(|e| &e.event.payload) {
        Some(EventPayload::AgentCustomToolUse { .. }) => EventPayload::UserCustomToolResult { custom_tool_use_id: id, content, is_error: true }.into(),
        Some(EventPayload::AgentMcpToolUse { .. }) => EventPayload::AgentMcpToolResult { mcp_tool_use_id: id, content, is_error: true }.into(),
        _ => EventPayload::AgentToolResult { tool_use_id: id, content, is_error: true }.into(),
    }
}

/// The event a validated client input is recorded as.
pub fn client_payload(input: Input) -> EventPayload {
    match input {
        Input::Message { content } => EventPayload::UserMessage { content },
        Input::System { content } => EventPayload::SystemMessage { content },
        Input::Interrupt => EventPayload::UserInterrupt {},
        Input::Confirmation { tool_use_id, allow, deny_message } => EventPayload::UserToolConfirmation {
            tool_use_id,
            result: if allow { openma_types::events::ConfirmationResult::Allow } else { openma_types::events::ConfirmationResult::Deny },
            deny_message,
        },
        Input::CustomResult { tool_use_id, content, is_error } => EventPayload::UserCustomToolResult { custom_tool_use_id: tool_use_id, content, is_error },
    }
}

/// The `session.error` type a failed model call is reported as.
pub fn error_kind(e: &ModelError) -> &'static str {
    match e {
        ModelError::Transient { kind: TransientKind::RateLimited, .. } => "model_rate_limited_error",
        ModelError::Transient { kind: TransientKind::Overloaded, .. } => "model_overloaded_error",
        ModelError::Transient { .. } => "model_request_failed_error",
        ModelError::Permanent { kind: PermanentKind::NotConfigured, .. } => "model_request_failed_error",
        ModelError::Permanent { .. } => "model_request_failed_error",
    }
}

/// Collects one streamed answer: the completed blocks in order, the ids their previews
/// announced, and the text seen so far (for an interrupt).
#[derive(Default)]
pub struct Accumulator {
    blocks: BTreeMap<u32, ContentBlock>,
    preview_ids: BTreeMap<u32, String>,
    partial: BTreeMap<u32, String>,
}

impl Accumulator {
    /// Takes one model event; `publish` receives the previews it implies, `new_id` names
    /// the event a preview announces (the id it is later stored under).
    pub fn on_event(&mut self, ev: ModelEvent, publish: &mut dyn FnMut(Preview), new_id: impl Fn() -> String) {
        match ev {
            ModelEvent::TextDelta { index, text } => {
                let id = self.preview_ids.entry(index).or_insert_with(|| {
                    let id = new_id();
                    publish(Preview {
                        of: PreviewOf::Message,
                        kind: "event_start",
                        json: json!({"type": "event_start", "event": {"type": "agent.message", "id": id}}).to_string(),
                    });
                    id
                });
                publish(Preview {
                    of: PreviewOf::Message,
                    kind: "event_delta",
                    json: json!({"type": "event_delta", "event_id": id, "delta": {"type": "content_delta", "index": 0, "content": {"type": "text", "text": text}}})
                        .to_string(),
                });
                self.partial.entry(index).or_default().push_str(&text);
            }
            ModelEvent::ThinkingDelta { index, .. } => {
                self.preview_ids.entry(index).or_insert_with(|| {
                    let id = new_id();
                    publish(Preview {
                        of: PreviewOf::Thinking,
                        kind: "event_start",
                        json: json!({"type": "event_start", "event": {"type": "agent.thinking", "id": id}}).to_string(),
                    });
                    id
                });
            }
            ModelEvent::BlockComplete { index, block } => {
                self.blocks.insert(index, block);
            }
            ModelEvent::Finished { .. } => {}
        }
    }

    /// The text received before an interrupt, kept as the agent's (partial) message.
    pub fn partial_text(self) -> Vec<Pending> {
        self.partial
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(index, text)| Pending {
                id: self.preview_ids.get(&index).cloned(),
                payload: EventPayload::AgentMessage { content: vec![text_block(&text)] },
                internal: Some(json!({"partial": true})),
            })
            .collect()
    }

    /// The completed answer as events, each tool call routed by the session's plan.
    pub fn into_events(self, plan: &ToolPlan) -> Vec<Pending> {
        let mut out = Vec::new();
        for (index, block) in self.blocks {
            let id = self.preview_ids.get(&index).cloned();
            match block {
                ContentBlock::Text { text } => {
                    out.push(Pending { id, payload: EventPayload::AgentMessage { content: vec![text_block(&text)] }, internal: None });
                }
                ContentBlock::Thinking { thinking, signature } => out.push(Pending {
                    id,
                    payload: EventPayload::AgentThinking {},
                    internal: Some(json!({"thinking": thinking, "signature": signature})),
                }),
                ContentBlock::RedactedThinking { data } => {
                    out.push(Pending { id, payload: EventPayload::AgentThinking {}, internal: Some(json!({"redacted": data})) });
                }
                ContentBlock::ToolUse { name, input, .. } => {
                    let payload = match plan.route(&name) {
                        ToolRoute::Custom => EventPayload::AgentCustomToolUse { name, input },
                        ToolRoute::Builtin { permission, policy } => {
                            EventPayload::AgentToolUse { name, input, evaluated_permission: permission, evaluation: policy }
                        }
                        ToolRoute::Mcp { server, tool, permission, policy } => EventPayload::AgentMcpToolUse {
                            name: tool,
                            mcp_server_name: server,
                            input,
                            evaluated_permission: permission,
                            evaluation: policy,
                        },
                        ToolRoute::Unknown => EventPayload::AgentToolUse {
                            name,
                            input,
                            evaluated_permission: EvaluatedPermission::Allow,
                            evaluation: PermissionPolicy::AlwaysAllow,
                        },
                    };
                    out.push(Pending { id, payload, internal: None });
                }
                _ => {}
            }
        }
        out
    }
}

