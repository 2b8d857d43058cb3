//! Session events: what clients send, what the log keeps, what the stream carries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agents::PermissionPolicy;
use crate::common::Timestamp;
use crate::sessions::SessionUsage;

/// `POST /v1/sessions/{id}/events` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendEventsRequest {
    pub events: Vec<ClientEvent>,
}

/// An event a client may send. Content blocks stay JSON here and are checked by the core.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum ClientEvent {
    #[serde(rename = "user.message")]
    UserMessage {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
    },
    #[serde(rename = "user.interrupt")]
    UserInterrupt {
        #[serde(default)]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.tool_confirmation")]
    UserToolConfirmation {
        tool_use_id: String,
        result: ConfirmationResult,
        #[serde(default)]
        deny_message: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    UserCustomToolResult {
        custom_tool_use_id: String,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
        content: Option<Vec<Value>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    #[serde(rename = "user.tool_result")]
    UserToolResult {
        tool_use_id: String,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
        content: Option<Vec<Value>>,
        #[serde(default)]
        is_error: Option<bool>,
    },
    #[serde(rename = "user.define_outcome")]
    UserDefineOutcome {
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        rubric: Option<Value>,
        #[serde(default)]
        max_iterations: Option<i64>,
    },
    #[serde(rename = "system.message")]
    SystemMessage {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationResult {
    Allow,
    Deny,
}

/// A persisted event as the list endpoint and the stream show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionEvent {
    pub id: String,
    #[serde(flatten)]
    pub payload: EventPayload,
    pub processed_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EvaluatedPermission {
    Allow,
    Ask,
    Deny,
}

/// `session.status_idle.stop_reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    RequiresAction { event_ids: Vec<String> },
    RetriesExhausted,
    BudgetReached,
    Refusal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RetryStatus {
    Retrying,
    Exhausted,
    Terminal,
}

/// `session.error.error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionErrorObject {
    /// e.g. `model_rate_limited_error`, `model_overloaded_error`, `model_request_failed_error`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub retry_status: RetryStatus,
    /// The MCP server an `mcp_connection_failed_error` or `mcp_authentication_failed_error` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server_name: Option<String>,
    /// The credential (and its vault) a `credential_host_unreachable_error` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
}

impl SessionErrorObject {
    pub fn new(kind: impl Into<String>, message: impl Into<String>, retry_status: RetryStatus) -> Self {
        SessionErrorObject { kind: kind.into(), message: message.into(), retry_status, mcp_server_name: None, credential_id: None, vault_id: None }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

/// The payload of every event type this server writes or accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum EventPayload {
    #[serde(rename = "user.message")]
    UserMessage {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
    },
    #[serde(rename = "user.interrupt")]
    UserInterrupt {},
    #[serde(rename = "user.tool_confirmation")]
    UserToolConfirmation {
        tool_use_id: String,
        result: ConfirmationResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    UserCustomToolResult {
        custom_tool_use_id: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
        is_error: bool,
    },
    #[serde(rename = "system.message")]
    SystemMessage {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
    },
    #[serde(rename = "agent.message")]
    AgentMessage {
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
    },
    #[serde(rename = "agent.thinking")]
    AgentThinking {},
    #[serde(rename = "agent.tool_use")]
    AgentToolUse {
        name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
        evaluated_permission: EvaluatedPermission,
        evaluation: PermissionPolicy,
    },
    #[serde(rename = "agent.tool_result")]
    AgentToolResult {
        tool_use_id: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
        is_error: bool,
    },
    #[serde(rename = "agent.mcp_tool_use")]
    AgentMcpToolUse {
        /// The tool's name on its MCP server.
        name: String,
        mcp_server_name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
        evaluated_permission: EvaluatedPermission,
        evaluation: PermissionPolicy,
    },
    #[serde(rename = "agent.mcp_tool_result")]
    AgentMcpToolResult {
        mcp_tool_use_id: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
        content: Vec<Value>,
        is_error: bool,
    },
    #[serde(rename = "agent.custom_tool_use")]
    AgentCustomToolUse {
        name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        input: Value,
    },
    #[serde(rename = "agent.thread_context_compacted")]
    AgentThreadContextCompacted {},
    #[serde(rename = "session.status_running")]
    StatusRunning {},
    #[serde(rename = "session.status_idle")]
    StatusIdle { stop_reason: StopReason },
    #[serde(rename = "session.status_rescheduled")]
    StatusRescheduled {},
    #[serde(rename = "session.status_terminated")]
    StatusTerminated {},
    #[serde(rename = "session.error")]
    SessionError { error: SessionErrorObject },
    #[serde(rename = "session.usage")]
    SessionUsage {
        usage: SessionUsage,
        budget: Option<crate::sessions::Budget>,
    },
    #[serde(rename = "session.updated")]
    SessionUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<crate::Metadata>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<Box<crate::sessions::SessionAgent>>,
        /// Present when the update changed the budget (`null`: removed).
        #[serde(default, skip_serializing_if = "Option::is_none", with = "budget_change")]
        budget: Option<Option<crate::sessions::Budget>>,
    },
    #[serde(rename = "session.deleted")]
    SessionDeleted {},
    #[serde(rename = "span.model_request_start")]
    ModelRequestStart {},
    #[serde(rename = "span.model_request_end")]
    ModelRequestEnd { model_request_start_id: String, model_usage: ModelUsage, is_error: bool },
}

impl EventPayload {
    /// The wire `type` of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::UserMessage { .. } => "user.message",
            EventPayload::UserInterrupt {} => "user.interrupt",
            EventPayload::UserToolConfirmation { .. } => "user.tool_confirmation",
            EventPayload::UserCustomToolResult { .. } => "user.custom_tool_result",
            EventPayload::SystemMessage { .. } => "system.message",
            EventPayload::AgentMessage { .. } => "agent.message",
            EventPayload::AgentThinking {} => "agent.thinking",
            EventPayload::AgentToolUse { .. } => "agent.tool_use",
            EventPayload::AgentToolResult { .. } => "agent.tool_result",
            EventPayload::AgentCustomToolUse { .. } => "agent.custom_tool_use",
            EventPayload::AgentMcpToolUse { .. } => "agent.mcp_tool_use",
            EventPayload::AgentMcpToolResult { .. } => "agent.mcp_tool_result",
            EventPayload::AgentThreadContextCompacted {} => "agent.thread_context_compacted",
            EventPayload::StatusRunning {} => "session.status_running",
            EventPayload::StatusIdle { .. } => "session.status_idle",
            EventPayload::StatusRescheduled {} => "session.status_rescheduled",
            EventPayload::StatusTerminated {} => "session.status_terminated",
            EventPayload::SessionError { .. } => "session.error",
            EventPayload::SessionUsage { .. } => "session.usage",
            EventPayload::SessionUpdated { .. } => "session.updated",
            EventPayload::SessionDeleted {} => "session.deleted",
            EventPayload::ModelRequestStart {} => "span.model_request_start",
            EventPayload::ModelRequestEnd { .. } => "span.model_request_end",
        }
    }
}

/// `Option<Option<_>>` for `session.updated.budget`: absent when unchanged, `null`
/// when removed.
mod budget_change {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::sessions::Budget;

    pub fn serialize<S: Serializer>(v: &Option<Option<Budget>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => b.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Budget>>, D::Error> {
        Option::<Budget>::deserialize(d).map(Some)
    }
}

/// `SendSessionEvents`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SentEvents {
    pub data: Vec<SessionEvent>,
}

/// Every persisted event type of the spec, for validating `types[]` filters.
pub const ALL_EVENT_TYPES: &[&str] = &[
    "user.message", "user.interrupt", "user.tool_confirmation", "user.custom_tool_result", "agent.custom_tool_use",
    "agent.message", "agent.thinking", "agent.mcp_tool_use", "agent.mcp_tool_result", "agent.tool_use",
    "agent.tool_result", "agent.thread_message_received", "agent.thread_message_sent",
    "agent.thread_context_compacted", "session.error", "session.status_rescheduled", "session.status_running",
    "session.status_idle", "session.status_terminated", "session.thread_created", "span.outcome_evaluation_start",
    "span.outcome_evaluation_end", "span.model_request_start", "span.model_request_end",
    "span.outcome_evaluation_ongoing", "user.define_outcome", "session.deleted", "session.thread_status_running",
    "session.thread_status_idle", "session.thread_status_terminated", "user.tool_result",
    "session.thread_status_rescheduled", "session.updated", "system.message", "session.usage",
    "workflow_run.created", "workflow_run.status_ended", "workflow_run.phase_started", "workflow_run.phase_ended",
    "workflow_run.status_running", "workflow_run.status_idle", "workflow_run.error",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialise_flat_with_their_type() {
        let e = SessionEvent {
            id: "sevt_1".into(),
            payload: EventPayload::StatusIdle { stop_reason: StopReason::RequiresAction { event_ids: vec!["sevt_0".into()] } },
            processed_at: Some(Timestamp::from_micros(0)),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v, json!({"id": "sevt_1", "type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": ["sevt_0"]}, "processed_at": "1970-01-01T00:00:00.000000Z"}));
        let back: SessionEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.payload.kind(), "session.status_idle");
    }
}
