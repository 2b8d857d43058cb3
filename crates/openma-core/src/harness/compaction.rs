//! Context compaction: when the projected request would crowd the model's context
//! window, the older part of the conversation is replaced by a summary the model writes.
//!
//! The cut is always placed at a `user.message`, so no tool call is separated from its
//! result, and the most recent turns are kept verbatim.

use openma_types::events::EventPayload;
use openma_types::sessions::SessionAgent;

use super::projection;
use crate::model::{ContentBlock, Message, ModelRequest, Role};
use crate::ports::StoredEvent;

/// Compaction starts when the estimate passes this share of the window (in percent).
pub const TRIGGER_PERCENT: u64 = 75;
/// After compaction, the kept tail should fit in this share of the window.
pub const KEEP_PERCENT: u64 = 40;

/// The instruction of the summarisation request.
pub const SUMMARY_PROMPT: &str = "Summarize the conversation so far so that you can continue the task from the summary alone. \
Keep every fact, decision, file path, identifier, open question and the user's goals and constraints. Write only the summary.";

/// A cheap, deterministic token estimate (about four characters a token), good enough
/// to decide when to compact; the provider's count is authoritative.
pub fn estimate_tokens(request: &ModelRequest) -> u64 {
    let mut chars = request.system.as_ref().map_or(0, |s| s.len());
    for t in &request.tools {
        chars += t.name.len() + t.description.len() + t.input_schema.to_string().len();
    }
    for m in &request.messages {
        for b in &m.content {
            chars += serde_json::to_string(b).map_or(0, |s| s.len());
        }
    }
    (chars as u64).div_ceil(4)
}

/// The sequence number to cut before, when the request is too large for `window`.
pub fn plan(request: &ModelRequest, log: &[StoredEvent], window: u64) -> Option<i64> {
    if estimate_tokens(request) * 100 < window * TRIGGER_PERCENT {
        return None;
    }
    let start = visible_from(log);
    let boundaries: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.seq >= start && matches!(e.event.payload, EventPayload::UserMessage { .. }))
        .map(|(i, _)| i)
        .collect();
    // the latest cut whose kept tail fits; at least one turn must be summarised
    let budget = window * KEEP_PERCENT / 100;
    let mut chosen = None;
    for &i in boundaries.iter().skip(1).rev() {
        let tail = projection::messages(&log[i..]);
        let size = estimate_tokens(&ModelRequest { messages: tail, ..request.clone() });
        if size > budget && chosen.is_some() {
            break;
        }
        chosen = Some(log[i].seq);
    }
    chosen
}

/// The first sequence number the model still sees verbatim (after the last compaction).
pub fn visible_from(log: &[StoredEvent]) -> i64 {
    log.iter()
        .rev()
        .find_map(|e| match (&e.event.payload, &e.internal) {
            (EventPayload::AgentThreadContextCompacted {}, Some(i)) => i.get("before_seq").and_then(|v| v.as_i64()),
            _ => None,
        })
        .unwrap_or(0)
}

/// The request that asks the model for a summary of everything before `cut`.
pub fn summary_request(agent: &SessionAgent, log: &[StoredEvent], cut: i64, max_tokens: u32) -> ModelRequest {
    let prefix: Vec<StoredEvent> = log.iter().filter(|e| e.seq < cut).cloned().collect();
    let mut messages = projection::messages(&prefix);
    let ask = ContentBlock::Text { text: SUMMARY_PROMPT.to_owned() };
    match messages.last_mut() {
        Some(m) if m.role == Role::User => m.content.push(ask),
        _ => messages.push(Message { role: Role::User, content: vec![ask] }),
    }
    ModelRequest { model: agent.model.id.clone(), system: agent.system.clone(), messages, tools: Vec::new(), max_tokens, cache: false }
}
