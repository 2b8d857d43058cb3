//! Tools: the `Tool` trait the sandbox implements, the built-in tool definitions offered
//! to the model, and permission evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use openma_types::agents::{AgentTool, BuiltinTool, McpToolset, PermissionPolicy};
use openma_types::events::EvaluatedPermission;
use openma_types::sessions::SessionAgent;
use serde_json::{Value, json};

use crate::model::ToolSpec;
use crate::tenancy::TenantId;

/// What a tool run knows about where it runs.
#[derive(Clone, Debug)]
pub struct ToolContext {
    pub tenant: TenantId,
    pub session_id: String,
    pub environment_id: String,
    /// The agent's configuration of this tool (domain lists, limits), when it has one.
    pub config: Option<openma_types::agents::BuiltinToolConfig>,
}

/// Optional server capabilities that decide which built-in tools can be offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// A search backend is configured.
    pub web_search: bool,
}

/// Refuses an agent configuration that explicitly enables a tool this server cannot
/// provide, instead of accepting it and never offering it.
pub fn check_capabilities(tools: &[AgentTool], caps: Capabilities) -> Result<(), crate::DomainError> {
    for t in tools {
        if let AgentTool::AgentToolset(ts) = t
            && !caps.web_search
            && ts.configs.iter().any(|c| c.name == BuiltinTool::WebSearch && c.enabled)
        {
            return Err(crate::DomainError::invalid_code(
                "tool_unavailable",
                "`web_search` needs a search backend, and this server has none configured (set OPENMA_SEARCH_URL to a SearXNG-compatible JSON endpoint)",
            ));
        }
    }
    Ok(())
}

/// The result of a tool run: content blocks (`text`, `image`) for the model, and what
/// the run used of the sandbox (for the ledger), when it ran one.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutput {
    pub content: Vec<Value>,
    pub is_error: bool,
    pub usage: Option<SandboxUsage>,
}

/// Sandbox time one tool run took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxUsage {
    pub wall_ms: u64,
    /// CPU time (user and system) of the sandbox's processes during the run.
    pub cpu_ms: u64,
}

impl ToolOutput {
    pub fn text(text: impl Into<String>) -> Self {
        ToolOutput { content: vec![json!({"type": "text", "text": text.into()})], is_error: false, usage: None }
    }

    pub fn error(text: impl Into<String>) -> Self {
        ToolOutput { content: vec![json!({"type": "text", "text": text.into()})], is_error: true, usage: None }
    }
}

/// A server-executed tool (the sandbox's bash, read, write, …).
#[async_trait]
pub trait Tool: Send + Sync {
    /// Safe to run again after a crash interrupted it (read, glob, grep).
    fn read_only(&self) -> bool;
    async fn run(&self, ctx: &ToolContext, input: Value) -> ToolOutput;
}

/// The server-executed tools available to sessions, by name.
#[derive(Clone, Default)]
pub struct Toolbox {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl Toolbox {
    pub fn register(&mut self, name: impl Into<String>, tool: Arc<dyn Tool>) {
        self.tools.insert(name.into(), tool);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }
}

/// How a tool call the model made is handled.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolRoute {
    /// A built-in tool, run by the server after permission.
    Builtin { permission: EvaluatedPermission, policy: PermissionPolicy },
    /// A custom tool: the client runs it (`agent.custom_tool_use`).
    Custom,
    /// A tool of one of the agent's MCP servers (`agent.mcp_tool_use`), run by the server's
    /// MCP client after permission.
    Mcp { server: String, tool: String, permission: EvaluatedPermission, policy: PermissionPolicy },
    /// Not a tool this agent offers.
    Unknown,
}

/// The tools an agent snapshot offers, with their routing.
#[derive(Clone, Debug, Default)]
pub struct ToolPlan {
    pub specs: Vec<ToolSpec>,
    routes: BTreeMap<String, ToolRoute>,
}

impl ToolPlan {
    pub fn for_agent(agent: &SessionAgent, caps: Capabilities) -> Self {
        let mut plan = ToolPlan::default();
        for tool in &agent.tools {
            match tool {
                AgentTool::AgentToolset(ts) => {
                    for builtin in BuiltinTool::ALL {
                        let cfg = ts.configs.iter().find(|c| c.name == builtin);
                        let enabled = cfg.map(|c| c.enabled).unwrap_or(ts.default_config.enabled);
                        if !enabled || (builtin == BuiltinTool::WebSearch && !caps.web_search) {
                            continue;
                        }
                        let policy = cfg.map(|c| c.permission_policy).unwrap_or(ts.default_config.permission_policy);
                        let permission = match policy {
                            PermissionPolicy::AlwaysAllow => EvaluatedPermission::Allow,
                            PermissionPolicy::AlwaysAsk | PermissionPolicy::Auto => EvaluatedPermission::Ask,
                        };
                        let (description, schema) = builtin_spec(builtin);
                        plan.specs.push(ToolSpec { name: builtin.as_str().into(), description: description.into(), input_schema: schema });
                        plan.routes.insert(builtin.as_str().into(), ToolRoute::Builtin { permission, policy });
                    }
                }
                AgentTool::Custom(c) => {
                    plan.specs.push(ToolSpec { name: c.name.clone(), description: c.description.clone(), input_schema: c.input_schema.clone() });
                    plan.routes.insert(c.name.clone(), ToolRoute::Custom);
                }
                // the tools of MCP servers are known once connected: see `with_mcp_tools`
                AgentTool::McpToolset(_) => {}
            }
        }
        plan
    }

    /// Adds the tools the session's MCP servers listed, as the agent's `mcp_toolset`s (and
    /// `environment`'s, for the servers of the environment) configure them: enabled flag and
    /// permission policy per tool, else the toolset's default. Servers without a toolset and
    /// tools already named are left out.
    pub fn with_mcp_tools(mut self, agent: &SessionAgent, environment: &[McpToolset], tools: &[McpToolDef]) -> Self {
        let agents = agent.tools.iter().filter_map(|t| match t {
            AgentTool::McpToolset(ts) => Some(ts),
            _ => None,
        });
        for ts in agents.chain(environment) {
            for def in tools.iter().filter(|d| d.server == ts.mcp_server_name) {
                let cfg = ts.configs.iter().find(|c| c.name == def.name);
                if !cfg.map(|c| c.enabled).unwrap_or(ts.default_config.enabled) {
                    continue;
                }
                let name = mcp_model_name(&def.server, &def.name);
                if self.routes.contains_key(&name) {
                    continue;
                }
                let policy = cfg.map(|c| c.permission_policy).unwrap_or(ts.default_config.permission_policy);
                let permission = match policy {
                    PermissionPolicy::AlwaysAllow => EvaluatedPermission::Allow,
                    PermissionPolicy::AlwaysAsk | PermissionPolicy::Auto => EvaluatedPermission::Ask,
                };
                let description = if def.description.is_empty() {
                    format!("`{}` of the MCP server `{}`.", def.name, def.server)
                } else {
                    def.description.clone()
                };
                self.specs.push(ToolSpec { name: name.clone(), description, input_schema: def.input_schema.clone() });
                self.routes.insert(name, ToolRoute::Mcp { server: def.server.clone(), tool: def.name.clone(), permission, policy });
            }
        }
        self
    }

    /// The agent's configuration of a built-in tool, if it has one.
    pub fn builtin_config(agent: &SessionAgent, name: &str) -> Option<openma_types::agents::BuiltinToolConfig> {
        agent.tools.iter().find_map(|t| match t {
            AgentTool::AgentToolset(ts) => ts.configs.iter().find(|c| c.name.as_str() == name).cloned(),
            _ => None,
        })
    }

    pub fn route(&self, name: &str) -> ToolRoute {
        self.routes.get(name).cloned().unwrap_or(ToolRoute::Unknown)
    }
}

/// A tool an MCP server listed (`tools/list`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct McpToolDef {
    /// The agent's name for the server (`mcp_servers[].name`).
    pub server: String,
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// The name the model knows an MCP tool by: `mcp__<server>__<tool>`, reduced to the
/// characters model APIs accept (`[A-Za-z0-9_-]`, at most 64; a longer name keeps its
/// start and gets a hash of the whole, so two long names stay distinct).
pub fn mcp_model_name(server: &str, tool: &str) -> String {
    let clean = |s: &str| -> String { s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect() };
    let full = format!("mcp__{}__{}", clean(server), clean(tool));
    if full.len() <= 64 {
        return full;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{server}\u{0}{tool}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}_{:016x}", &full[..47], h)
}

/// Description and input schema of each built-in tool, as offered to the model.
pub fn builtin_spec(tool: BuiltinTool) -> (&'static str, Value) {
    match tool {
        BuiltinTool::Bash => (
            "Run a bash command in the session's persistent shell (working directory /workspace). The shell keeps its working directory and environment between calls.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "restart": {"type": "boolean", "description": "Restart the shell instead of running a command."},
                "timeout_ms": {"type": "integer", "description": "Timeout for this command in milliseconds."}}}),
        ),
        BuiltinTool::Read => (
            "Read a file. Returns its lines numbered; view_range [start, end] limits them (1-based, inclusive; end <= 0 means to the end).",
            json!({"type": "object", "required": ["file_path"], "properties": {
                "file_path": {"type": "string"},
                "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}}}),
        ),
        BuiltinTool::Write => (
            "Write a file, replacing its contents.",
            json!({"type": "object", "required": ["file_path", "content"], "properties": {
                "file_path": {"type": "string"}, "content": {"type": "string"}}}),
        ),
        BuiltinTool::Edit => (
            "Replace old_string with new_string in a file; old_string must occur exactly once unless replace_all is true.",
            json!({"type": "object", "required": ["file_path", "old_string", "new_string"], "properties": {
                "file_path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"}}}),
        ),
        BuiltinTool::Glob => (
            "List files matching a glob pattern such as **/*.rs, newest first.",
            json!({"type": "object", "required": ["pattern"], "properties": {
                "pattern": {"type": "string"}, "path": {"type": "string"}}}),
        ),
        BuiltinTool::Grep => (
            "Search file contents for a regular expression; returns matching lines with file and line number.",
            json!({"type": "object", "required": ["pattern"], "properties": {
                "pattern": {"type": "string"}, "path": {"type": "string"}}}),
        ),
        BuiltinTool::WebFetch => (
            "Fetch a URL and return its content as text.",
            json!({"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}}),
        ),
        BuiltinTool::WebSearch => (
            "Search the web; returns result titles, URLs and snippets.",
            json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::agents::{McpToolConfig, McpToolset, ToolDefaults};

    fn def(server: &str, name: &str) -> McpToolDef {
        McpToolDef { server: server.into(), name: name.into(), description: String::new(), input_schema: json!({"type": "object"}) }
    }

    #[test]
    fn mcp_names_are_valid_and_distinct() {
        assert_eq!(mcp_model_name("docs", "search"), "mcp__docs__search");
        assert_eq!(mcp_model_name("my docs", "a.b/c"), "mcp__my_docs__a_b_c");
        let long_a = mcp_model_name("server", &"x".repeat(80));
        let long_b = mcp_model_name("server", &format!("{}y", "x".repeat(79)));
        assert!(long_a.len() <= 64 && long_b.len() <= 64);
        assert_ne!(long_a, long_b);
        assert!(long_a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    }

    #[test]
    fn mcp_toolset_configs_decide_what_is_offered() {
        let toolset = McpToolset {
            mcp_server_name: "docs".into(),
            configs: vec![
                McpToolConfig { name: "delete".into(), enabled: false, permission_policy: PermissionPolicy::AlwaysAsk },
                McpToolConfig { name: "search".into(), enabled: true, permission_policy: PermissionPolicy::AlwaysAllow },
            ],
            default_config: ToolDefaults { enabled: true, permission_policy: PermissionPolicy::AlwaysAsk },
        };
        let agent = SessionAgent {
            id: "agent_1".into(),
            tag: Default::default(),
            name: "a".into(),
            description: None,
            system: None,
            model: openma_types::agents::ModelConfig { id: "claude-sonnet-4-6".into(), effort: None, inference_geo: None, speed: None },
            tools: vec![AgentTool::McpToolset(toolset)],
            mcp_servers: Vec::new(),
            skills: Vec::new(),
            multiagent: None,
            execution_identity: openma_types::agents::ExecutionIdentity::ServiceAccount,
            version: 1,
        };
        let tools = [def("docs", "search"), def("docs", "delete"), def("docs", "fetch"), def("other", "x")];
        let plan = ToolPlan::default().with_mcp_tools(&agent, &[], &tools);
        let names: Vec<&str> = plan.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mcp__docs__search", "mcp__docs__fetch"]);
        assert!(matches!(plan.route("mcp__docs__search"), ToolRoute::Mcp { permission: EvaluatedPermission::Allow, .. }));
        assert!(matches!(plan.route("mcp__docs__fetch"), ToolRoute::Mcp { permission: EvaluatedPermission::Ask, policy: PermissionPolicy::AlwaysAsk, .. }));
        assert_eq!(plan.route("mcp__docs__delete"), ToolRoute::Unknown);
    }
}
