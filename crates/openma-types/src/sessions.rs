//! Sessions: a running agent in an environment, with its own event log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agents::{
    AgentTag, AgentTool, ExecutionIdentity, McpServer, McpServerParams, ModelConfig, ModelParam,
    Skill, SkillParams, ToolParam,
};
use crate::files::FileResource;
use crate::memory::MemoryStoreResource;
use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;

literal!(SessionTag = "session");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Rescheduling,
    Running,
    Idle,
    Terminated,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Rescheduling => "rescheduling",
            SessionStatus::Running => "running",
            SessionStatus::Idle => "idle",
            SessionStatus::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "rescheduling" => SessionStatus::Rescheduling,
            "running" => SessionStatus::Running,
            "idle" => SessionStatus::Idle,
            "terminated" => SessionStatus::Terminated,
            _ => return None,
        })
    }
}

/// `Session` response object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SessionTag,
    pub agent: SessionAgent,
    pub environment_id: String,
    pub title: Option<String>,
    pub metadata: Metadata,
    pub status: SessionStatus,
    pub stats: SessionStats,
    pub usage: SessionUsage,
    pub resources: Vec<SessionResource>,
    pub vault_ids: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub outcome_evaluations: Vec<Value>,
    pub budget: Option<Budget>,
    pub deployment_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

/// A resource mounted into a session's sandbox (`SessionResource` union, by `type`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SessionResource {
    File(FileResource),
    MemoryStore(MemoryStoreResource),
    GitHubRepository(GitHubRepositoryResource),
}

impl SessionResource {
    /// What the resources endpoints take as `resource_id`: a memory store resource has no
    /// id of its own and is named by its store's id.
    pub fn id(&self) -> &str {
        match self {
            SessionResource::File(f) => &f.id,
            SessionResource::MemoryStore(m) => &m.memory_store_id,
            SessionResource::GitHubRepository(g) => &g.id,
        }
    }
}

literal!(GitHubRepositoryTag = "github_repository");

/// Which revision of a repository to check out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Checkout {
    Branch { name: String },
    Commit { sha: String },
}

/// `GitHubRepositoryResource`: a repository cloned into the session's workspace before the
/// agent starts. The token it was cloned with is never part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitHubRepositoryResource {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: GitHubRepositoryTag,
    pub url: String,
    pub mount_path: String,
    pub checkout: Option<Checkout>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// `GitHubRepositoryResourceParams` of a session create body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GitHubRepositoryResourceParams {
    #[serde(rename = "type")]
    pub tag: GitHubRepositoryTag,
    pub url: String,
    #[serde(default)]
    pub authorization_token: Option<crate::vaults::WriteOnly>,
    #[serde(default)]
    pub checkout: Option<Checkout>,
    #[serde(default)]
    pub mount_path: Option<String>,
}

/// The immutable snapshot of the agent version a session was created with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionAgent {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: AgentTag,
    pub name: String,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: ModelConfig,
    pub tools: Vec<AgentTool>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Skill>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub multiagent: Option<Value>,
    pub execution_identity: ExecutionIdentity,
    pub version: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStats {
    pub active_seconds: f64,
    pub duration_seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreationUsage,
    pub active_seconds: f64,
    /// Cumulative list cost; absent for models without a public list price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_cost: Option<MonetaryAmount>,
}

literal!(LimitTag = "limit");

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Currency {
    #[default]
    #[serde(rename = "USD")]
    Usd,
}

/// An amount in minor units (cents) as a decimal string, as the API sends money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonetaryAmount {
    pub amount: String,
    pub currency: Currency,
}

/// `BudgetLimit`: a hard spend ceiling at list prices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Budget {
    #[serde(rename = "type")]
    pub tag: LimitTag,
    pub max_list_cost: MonetaryAmount,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheCreationUsage {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

// ---- requests ------------------------------------------------------------------------

/// `agent` on session create: an id (latest version) or a reference object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum AgentRefParam {
    Id(String),
    Object(AgentRefObject),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentRefObject {
    Agent {
        id: String,
        #[serde(default)]
        version: Option<i64>,
    },
    AgentWithOverrides(AgentOverrides),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentOverrides {
    pub id: String,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ModelParam>))]
    pub model: Option<Option<ModelParam>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub system: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<ToolParam>>))]
    pub tools: Option<Option<Vec<ToolParam>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<McpServerParams>>))]
    pub mcp_servers: Option<Option<Vec<McpServerParams>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<SkillParams>>))]
    pub skills: Option<Option<Vec<SkillParams>>>,
}

/// `POST /v1/sessions`. `agent_id` is the seed's alias for `agent`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSessionRequest {
    #[serde(default)]
    pub agent: Option<AgentRefParam>,
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub environment_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub vault_ids: Option<Vec<String>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub resources: Option<Vec<Value>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub initial_events: Option<Vec<Value>>,
    #[serde(default)]
    pub budget: Option<Budget>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionAgentUpdate {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<ToolParam>>))]
    pub tools: Option<Option<Vec<ToolParam>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<McpServerParams>>))]
    pub mcp_servers: Option<Option<Vec<McpServerParams>>>,
}

/// `POST /v1/sessions/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateSessionRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
    #[serde(default)]
    pub agent: Option<SessionAgentUpdate>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Budget>))]
    pub budget: Option<Option<Budget>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub vault_ids: Option<Option<Vec<String>>>,
}

literal!(SessionThreadTag = "session_thread");

/// `SessionThread`. Single-agent sessions have one, the primary thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionThread {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: SessionThreadTag,
    pub session_id: String,
    pub agent: SessionAgent,
    pub status: SessionStatus,
    pub parent_thread_id: Option<String>,
    pub stats: SessionStats,
    pub usage: SessionUsage,
    pub workflow_run_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}
