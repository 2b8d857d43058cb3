//! Environments: the sandbox template a session runs in (networking and packages).

use serde::{Deserialize, Serialize};

use crate::agents::{McpToolConfig, McpToolConfigParams, McpToolset, ToolDefaults, ToolDefaultsParams};
use crate::common::{Metadata, MetadataPatch, Timestamp, double_option};
use crate::literal;

literal!(EnvironmentTag = "environment");
literal!(PackagesTag = "packages");
literal!(StdioTag = "stdio");

/// `BetaEnvironment` response object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Environment {
    pub id: String,
    #[serde(rename = "type")]
    pub tag: EnvironmentTag,
    pub name: String,
    pub description: Option<String>,
    pub config: EnvironmentConfig,
    pub metadata: Metadata,
    pub scope: Option<Scope>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Organization,
    Account,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EnvironmentConfig {
    Cloud(CloudConfig),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloudConfig {
    pub networking: Networking,
    pub packages: Packages,
    /// openma extension: this environment's sandbox limits (absent when none are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<EnvironmentLimits>,
    /// openma extension: MCP servers that run inside each session's sandbox (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<StdioMcpServer>,
}

/// openma extension (`config.mcp_servers[]`): an MCP server the sandbox runs as a process
/// and the platform speaks to over its stdin and stdout. Its tools are offered to every
/// session of the environment as `mcp__<name>__<tool>`, configured like an agent's
/// `mcp_toolset` (`default_config`, `configs`; the default permission is `always_ask`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StdioMcpServer {
    #[serde(rename = "type")]
    pub tag: StdioTag,
    pub name: String,
    /// The program and its arguments; the program is looked up on the sandbox's `PATH`.
    pub command: Vec<String>,
    /// Variables added to the sandbox's environment for this process. Not secret: they are
    /// shown with the environment (secrets belong in a vault's `environment_variable`
    /// credentials, whose placeholders this process sees like the shell does).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
    pub configs: Vec<McpToolConfig>,
    pub default_config: ToolDefaults,
}

impl StdioMcpServer {
    /// How the server's tools are configured, as an agent's `mcp_toolset` would.
    pub fn toolset(&self) -> McpToolset {
        McpToolset { mcp_server_name: self.name.clone(), configs: self.configs.clone(), default_config: self.default_config }
    }
}

/// openma extension (`config.limits`): per-environment sandbox limits, each at most the
/// server's own. Unset keys use the server's limits; absent keys are not serialized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvironmentLimits {
    /// Address space (RLIMIT_AS/RLIMIT_DATA) of each process, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Processes and threads of the session (RLIMIT_NPROC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
    /// Open files per process (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Largest file a process may write (RLIMIT_FSIZE), in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size_mb: Option<u64>,
    /// Upper bound on a bash call's timeout, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bash_timeout_max_s: Option<u64>,
}

impl EnvironmentLimits {
    /// The limits of a sandbox at its defaults (`openma-sandbox`'s `Limits::default()`, which
    /// is built from these; `openma-sandbox-server` in the Containers image runs with them):
    /// what an environment's `config.limits` may lower, never raise, where the deployment
    /// sets no others.
    pub const SANDBOX_DEFAULTS: EnvironmentLimits = EnvironmentLimits {
        memory_mb: Some(8 << 10),
        processes: Some(1024),
        open_files: Some(4096),
        file_size_mb: Some(4 << 10),
        bash_timeout_max_s: Some(600),
    };

    pub fn is_empty(&self) -> bool {
        *self == EnvironmentLimits::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Networking {
    Unrestricted,
    Limited(LimitedNetworking),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitedNetworking {
    pub allowed_hosts: Vec<String>,
    pub allow_mcp_servers: bool,
    pub allow_package_managers: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Packages {
    #[serde(rename = "type")]
    pub tag: PackagesTag,
    pub apt: Vec<String>,
    pub cargo: Vec<String>,
    pub gem: Vec<String>,
    pub go: Vec<String>,
    pub npm: Vec<String>,
    pub pip: Vec<String>,
}

impl Packages {
    pub fn is_empty(&self) -> bool {
        [&self.apt, &self.cargo, &self.gem, &self.go, &self.npm, &self.pip]
            .iter()
            .all(|l| l.is_empty())
    }
}

/// State of an environment's package layer build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Not built on this server yet (it starts with the next session, or was interrupted).
    Pending,
    Building,
    Ready,
    Failed,
}

literal!(EnvironmentBuildTag = "environment_build");

/// openma extension, `GET /v1/environments/{id}/build`: the build of the read-only layer
/// holding the environment's packages, on the server that answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentBuild {
    #[serde(rename = "type")]
    pub tag: EnvironmentBuildTag,
    pub environment_id: String,
    pub state: BuildState,
    /// Key of the layer (hash of the normalised package lists and the builder version);
    /// environments listing the same packages share it. Null when there are no packages.
    pub packages_hash: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Why the build failed.
    pub error: Option<String>,
    /// The package managers' output (the last part of it when long).
    pub log: String,
}

// ---- requests ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
// parsed once per request, never stored in bulk: the size of `cloud` does not matter
#[allow(clippy::large_enum_variant)]
pub enum EnvironmentConfigParams {
    Cloud(CloudConfigParams),
    SelfHosted {},
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloudConfigParams {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<NetworkingParams>))]
    pub networking: Option<Option<NetworkingParams>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<PackagesParams>))]
    pub packages: Option<Option<PackagesParams>>,
    /// openma extension: replaces the environment's limits as a whole; `null` removes them.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<EnvironmentLimits>))]
    pub limits: Option<Option<EnvironmentLimits>>,
    /// openma extension: replaces the environment's stdio MCP servers; `null` or `[]` removes them.
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<StdioMcpServerParams>>))]
    pub mcp_servers: Option<Option<Vec<StdioMcpServerParams>>>,
}

/// An entry of `config.mcp_servers` in a request. Unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StdioMcpServerParams {
    #[serde(rename = "type")]
    pub tag: StdioTag,
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub configs: Option<Vec<McpToolConfigParams>>,
    #[serde(default)]
    pub default_config: Option<ToolDefaultsParams>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetworkingParams {
    Unrestricted,
    Limited(LimitedNetworkingParams),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitedNetworkingParams {
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub allow_mcp_servers: Option<bool>,
    #[serde(default)]
    pub allow_package_managers: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackagesParams {
    #[serde(default, rename = "type")]
    pub tag: Option<PackagesTag>,
    #[serde(default)]
    pub apt: Option<Vec<String>>,
    #[serde(default)]
    pub cargo: Option<Vec<String>>,
    #[serde(default)]
    pub gem: Option<Vec<String>>,
    #[serde(default)]
    pub go: Option<Vec<String>>,
    #[serde(default)]
    pub npm: Option<Vec<String>>,
    #[serde(default)]
    pub pip: Option<Vec<String>>,
}

/// `POST /v1/environments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateEnvironmentRequest {
    pub name: String,
    #[serde(default)]
    pub config: Option<EnvironmentConfigParams>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub scope: Option<Scope>,
}

/// `POST /v1/environments/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateEnvironmentRequest {
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<EnvironmentConfigParams>))]
    pub config: Option<Option<EnvironmentConfigParams>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>))]
    pub metadata: Option<Option<MetadataPatch>>,
    #[serde(default, deserialize_with = "double_option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Scope>))]
    pub scope: Option<Option<Scope>>,
}
