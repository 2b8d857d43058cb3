//! Agents: versioned configuration of model, prompt, tools, MCP servers and skills.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;

literal!(AgentTag = "agent");
literal!(UrlTag = "url");

/// `Agent` response object: a full snapshot of one version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
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
    pub metadata: Metadata,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

/// The parts of an agent that make up a version: two agents with equal `AgentConfig`
/// are the same version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub name: String,
    pub description: Option<String>,
    pub system: Option<String>,
    pub model: ModelConfig,
    pub tools: Vec<AgentTool>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Skill>,
    pub execution_identity: ExecutionIdentity,
    pub metadata: Metadata,
}

impl Agent {
    pub fn config(&self) -> AgentConfig {
        AgentConfig {
            name: self.name.clone(),
            description: self.description.clone(),
            system: self.system.clone(),
            model: self.model.clone(),
            tools: self.tools.clone(),
            mcp_servers: self.mcp_servers.clone(),
            skills: self.skills.clone(),
            execution_identity: self.execution_identity.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// `ModelConfig`: always the object form in responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelConfig {
    pub id: String,
    pub effort: Option<Effort>,
    pub inference_geo: Option<String>,
    pub speed: Option<Speed>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Effort {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EffortLevel {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

impl From<EffortLevel> for Effort {
    fn from(l: EffortLevel) -> Self {
        match l {
            EffortLevel::Low => Effort::Low,
            EffortLevel::Medium => Effort::Medium,
            EffortLevel::High => Effort::High,
            EffortLevel::Xhigh => Effort::Xhigh,
            EffortLevel::Max => Effort::Max,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Speed {
    Standard,
    Fast,
}

/// `model` in requests: a model id or a `ModelConfigParams` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ModelParam {
    Id(String),
    Config(ModelConfigParams),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelConfigParams {
    pub id: String,
    #[serde(default)]
    pub effort: Option<EffortParam>,
    #[serde(default)]
    pub inference_geo: Option<String>,
    #[serde(default)]
    pub speed: Option<Speed>,
}

/// `effort` in requests: a bare level or `{"type": level}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum EffortParam {
    Level(EffortLevel),
    Object(Effort),
}

impl From<EffortParam> for Effort {
    fn from(p: EffortParam) -> Self {
        match p {
            EffortParam::Level(l) => l.into(),
            EffortParam::Object(e) => e,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutionIdentity {
    ServiceAccount,
    AwsRole { role_arn: String },
}

/// Permission policy of a tool. `auto` needs a server-side judge and is refused until one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PermissionPolicy {
    AlwaysAllow,
    AlwaysAsk,
    Auto,
}

/// The eight tools of `agent_toolset_20260401`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuiltinTool {
    Bash,
    Edit,
    Read,
    Write,
    Glob,
    Grep,
    WebFetch,
    WebSearch,
}

impl BuiltinTool {
    pub const ALL: [BuiltinTool; 8] = [
        BuiltinTool::Bash,
        BuiltinTool::Edit,
        BuiltinTool::Read,
        BuiltinTool::Write,
        BuiltinTool::Glob,
        BuiltinTool::Grep,
        BuiltinTool::WebFetch,
        BuiltinTool::WebSearch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinTool::Bash => "bash",
            BuiltinTool::Edit => "edit",
            BuiltinTool::Read => "read",
            BuiltinTool::Write => "write",
            BuiltinTool::Glob => "glob",
            BuiltinTool::Grep => "grep",
            BuiltinTool::WebFetch => "web_fetch",
            BuiltinTool::WebSearch => "web_search",
        }
    }
}

/// A tool entry of a stored agent (response shape, fully resolved).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum AgentTool {
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset(AgentToolset),
    #[serde(rename = "mcp_toolset")]
    McpToolset(McpToolset),
    #[serde(rename = "custom")]
    Custom(CustomTool),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentToolset {
    pub configs: Vec<BuiltinToolConfig>,
    pub default_config: ToolDefaults,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolDefaults {
    pub enabled: bool,
    pub permission_policy: PermissionPolicy,
}

/// A resolved per-tool configuration. The web tools' extra keys appear only on those tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltinToolConfig {
    pub name: BuiltinTool,
    #[serde(rename = "type")]
    pub kind: BuiltinTool,
    pub enabled: bool,
    pub permission_policy: PermissionPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_content_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub url_sources: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_location: Option<UserLocation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserLocation {
    #[serde(rename = "type")]
    pub kind: ApproximateTag,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
}

literal!(ApproximateTag = "approximate");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpToolset {
    pub mcp_server_name: String,
    pub configs: Vec<McpToolConfig>,
    pub default_config: ToolDefaults,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpToolConfig {
    pub name: String,
    pub enabled: bool,
    pub permission_policy: PermissionPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomTool {
    pub name: String,
    pub description: String,
    /// A JSON Schema object with `"type": "object"`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServer {
    pub name: String,
    #[serde(rename = "type")]
    pub tag: UrlTag,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SkillKind {
    Anthropic,
    Custom,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Skill {
    #[serde(rename = "type")]
    pub kind: SkillKind,
    pub skill_id: String,
    pub version: String,
}

// ---- requests ------------------------------------------------------------------------

/// A tool entry in a request. Besides the three API forms, the seed's shorthand
/// (`{"type": "bash"}` for any built-in tool) is accepted and merged into one toolset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum ToolParam {
    #[serde(rename = "agent_toolset_20260401")]
    AgentToolset(AgentToolsetParams),
    #[serde(rename = "mcp_toolset")]
    McpToolset(McpToolsetParams),
    #[serde(rename = "custom")]
    Custom(CustomToolParams),
    #[serde(rename = "bash")]
    Bash(ShorthandToolParams),
    #[serde(rename = "edit")]
    Edit(ShorthandToolParams),
    #[serde(rename = "read")]
    Read(ShorthandToolParams),
    #[serde(rename = "write")]
    Write(ShorthandToolParams),
    #[serde(rename = "glob")]
    Glob(ShorthandToolParams),
    #[serde(rename = "grep")]
    Grep(ShorthandToolParams),
    #[serde(rename = "web_fetch")]
    WebFetch(ShorthandToolParams),
    #[serde(rename = "web_search")]
    WebSearch(ShorthandToolParams),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShorthandToolParams {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentToolsetParams {
    #[serde(default)]
    pub configs: Option<Vec<BuiltinToolConfigParams>>,
    #[serde(default)]
    pub default_config: Option<ToolDefaultsParams>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ToolDefaultsParams {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltinToolConfigParams {
    pub name: BuiltinTool,
    #[serde(default, rename = "type")]
    pub kind: Option<BuiltinTool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
    #[serde(default)]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default)]
    pub blocked_domains: Option<Vec<String>>,
    #[serde(default)]
    pub max_content_tokens: Option<u32>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub url_sources: Option<Value>,
    #[serde(default)]
    pub user_location: Option<UserLocation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpToolsetParams {
    pub mcp_server_name: String,
    #[serde(default)]
    pub configs: Option<Vec<McpToolConfigParams>>,
    #[serde(default)]
    pub default_config: Option<ToolDefaultsParams>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpToolConfigParams {
    pub name: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub permission_policy: Option<PermissionPolicy>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomToolParams {
    pub name: String,
    pub description: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServerParams {
    pub name: String,
    #[serde(rename = "type")]
    pub tag: UrlTag,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillParams {
    #[serde(rename = "type")]
    pub kind: SkillKind,
    pub skill_id: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST /v1/agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateAgentRequest {
    pub name: String,
    pub model: ModelParam,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub execution_identity: Option<ExecutionIdentity>,
    #[serde(default)]
    pub mcp_servers: Option<Vec<McpServerParams>>,
    #[serde(default)]
    pub metadata: Option<crate::Metadata>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub multiagent: Option<Value>,
    #[serde(default)]
    pub skills: Option<Vec<SkillParams>>,
    #[serde(default)]
    pub tools: Option<Vec<ToolParam>>,
}

/// `POST /v1/agents/{id}`: every field omitted is preserved; `null` clears where allowed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateAgentRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ModelParam>))]
    pub model: Option<Option<ModelParam>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub system: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ExecutionIdentity>))]
    pub execution_identity: Option<Option<ExecutionIdentity>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<McpServerParams>>))]
    pub mcp_servers: Option<Option<Vec<McpServerParams>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub multiagent: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<SkillParams>>))]
    pub skills: Option<Option<Vec<SkillParams>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<ToolParam>>))]
    pub tools: Option<Option<Vec<ToolParam>>>,
    #[serde(default)]
    pub version: Option<i64>,
}
