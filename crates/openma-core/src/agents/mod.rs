//! Agents: turning create/update requests into resolved, versioned configurations.
//!
//! Everything a response shows is resolved here once (model object form, toolset
//! defaults, the seed's tool shorthand), so stored versions compare by value and a no-op
//! update is detected exactly.

use std::collections::BTreeSet;

use openma_types::agents::{
    Agent, AgentConfig, AgentTag, AgentTool, AgentToolset, AgentToolsetParams, BuiltinTool, BuiltinToolConfig,
    BuiltinToolConfigParams, CreateAgentRequest, CustomTool, CustomToolParams, Effort, ExecutionIdentity, McpServer,
    McpServerParams, McpToolConfig, McpToolConfigParams, McpToolset, McpToolsetParams, ModelConfig, ModelParam, PermissionPolicy,
    ShorthandToolParams, Skill, SkillKind, SkillParams, Speed, ToolDefaults, ToolDefaultsParams, ToolParam, UpdateAgentRequest,
    UrlTag,
};
use openma_types::{Metadata, Timestamp};
use serde_json::{Value, json};

use crate::error::{DomainError, DomainResult};
use crate::validate;

mod service;
pub use service::{Agents, SkillCheck};

pub const NAME_MAX: usize = 256;
pub const SYSTEM_MAX: usize = 100_000;
pub const DESCRIPTION_MAX: usize = 2_048;
pub const TOOLS_MAX: usize = 128;
pub const MCP_SERVERS_MAX: usize = 20;
pub const DOMAIN_LIST_MAX: usize = 64;

/// The effort a model runs at when the caller names none.
pub const DEFAULT_EFFORT: Effort = Effort::High;

/// Resolves `model` into its object form. With a `previous` config of the same model id,
/// an omitted effort keeps the stored one; a new id resets it to the default.
pub fn resolve_model(param: &ModelParam, previous: Option<&ModelConfig>) -> DomainResult<ModelConfig> {
    let (id, effort, geo, speed) = match param {
        ModelParam::Id(id) => (id.clone(), None, None, None),
        ModelParam::Config(c) => (c.id.clone(), c.effort.map(Effort::from), c.inference_geo.clone(), c.speed),
    };
    validate::length("model", &id, 1, 256)?;
    if id.chars().any(char::is_whitespace) {
        return Err(DomainError::invalid(format!("`model` `{id}` must not contain whitespace")));
    }
    if geo.is_some() {
        return Err(DomainError::unsupported("`model.inference_geo` pinning"));
    }
    if speed == Some(Speed::Fast) {
        return Err(DomainError::unsupported("`model.speed` `fast`"));
    }
    let effort = effort
        .or_else(|| previous.filter(|p| p.id == id).and_then(|p| p.effort))
        .unwrap_or(DEFAULT_EFFORT);
    Ok(ModelConfig { id, effort: Some(effort), inference_geo: None, speed: Some(Speed::Standard) })
}

fn check_policy(policy: Option<PermissionPolicy>) -> DomainResult<Option<PermissionPolicy>> {
    if policy == Some(PermissionPolicy::Auto) {
        return Err(DomainError::unsupported("permission policy `auto`"));
    }
    Ok(policy)
}

fn resolve_defaults(p: Option<&ToolDefaultsParams>, default_policy: PermissionPolicy) -> DomainResult<ToolDefaults> {
    let p = p.copied().unwrap_or_default();
    Ok(ToolDefaults {
        enabled: p.enabled.unwrap_or(true),
        permission_policy: check_policy(p.permission_policy)?.unwrap_or(default_policy),
    })
}

fn domain_list(field: &str, list: &Option<Vec<String>>) -> DomainResult<()> {
    if let Some(list) = list {
        if list.is_empty() {
            return Err(DomainError::invalid(format!("`{field}` must not be empty; omit it instead")));
        }
        if list.len() > DOMAIN_LIST_MAX {
            return Err(DomainError::invalid(format!("`{field}` may hold at most {DOMAIN_LIST_MAX} entries")));
        }
        for d in list {
            // web_search accepts an optional path suffix after the host
            let host = d.split('/').next().unwrap_or("");
            validate::hostname(field, host, false)?;
        }
    }
    Ok(())
}

/// Normalises `url_sources` to its object form, checking the tool names it lists.
fn resolve_url_sources(v: &Value, custom_tools: &BTreeSet<String>) -> DomainResult<Value> {
    let obj = v.as_object().ok_or_else(|| DomainError::invalid("`url_sources` must be an object"))?;
    let mut out = serde_json::Map::new();
    for (key, allow_lists) in [("client_tool_results", true), ("server_tool_results", true), ("user_input", false)] {
        let Some(src) = obj.get(key) else { continue };
        let field = format!("url_sources.{key}");
        let resolved = match src {
            Value::Null => continue,
            Value::String(s) if s == "all" || s == "none" => json!({ "type": s }),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some(t @ ("all" | "none")) => json!({ "type": t }),
                Some(t @ ("only" | "except")) if allow_lists => {
                    let tools = o.get("tools").and_then(Value::as_array).ok_or_else(|| {
                        DomainError::invalid(format!("`{field}.tools` must be a list of tool references"))
                    })?;
                    if tools.is_empty() || tools.len() > 128 {
                        return Err(DomainError::invalid(format!("`{field}.tools` must hold 1-128 entries")));
                    }
                    let mut names = BTreeSet::new();
                    for t in tools {
                        let name = t
                            .get("name")
                            .and_then(Value::as_str)
                            .filter(|_| t.get("type").and_then(Value::as_str) == Some("tool_reference"))
                            .ok_or_else(|| {
                                DomainError::invalid(format!(
                                    "`{field}.tools` entries must be {{\"type\":\"tool_reference\",\"name\":…}}"
                                ))
                            })?;
                        let known = if key == "client_tool_results" {
                            custom_tools.contains(name)
                        } else {
                            name == "web_search" || name == "web_fetch"
                        };
                        if !known {
                            return Err(DomainError::invalid(format!("`{field}.tools` names unknown tool `{name}`")));
                        }
                        if !names.insert(name.to_owned()) {
                            return Err(DomainError::invalid(format!("`{field}.tools` names `{name}` twice")));
                        }
                    }
                    let refs: Vec<Value> = names.iter().map(|n| json!({"type": "tool_reference", "name": n})).collect();
                    json!({ "type": t, "tools": refs })
                }
                _ => return Err(DomainError::invalid(format!("`{field}` has an unsupported value"))),
            },
            _ => return Err(DomainError::invalid(format!("`{field}` has an unsupported value"))),
        };
        out.insert(key.to_owned(), resolved);
    }
    Ok(Value::Object(out))
}

fn resolve_builtin_config(
    p: &BuiltinToolConfigParams,
    defaults: ToolDefaults,
    custom_tools: &BTreeSet<String>,
) -> DomainResult<BuiltinToolConfig> {
    let name = p.name;
    if let Some(kind) = p.kind
        && kind != name
    {
        return Err(DomainError::invalid(format!(
            "tool config `type` `{}` must equal its `name` `{}`",
            kind.as_str(),
            name.as_str()
        )));
    }
    let web_fetch = name == BuiltinTool::WebFetch;
    let web = web_fetch || name == BuiltinTool::WebSearch;
    let extra = |present: bool, field: &str, allowed: bool| {
        if present && !allowed {
            Err(DomainError::invalid(format!("`{field}` is not a setting of the `{}` tool", name.as_str())))
        } else {
            Ok(())
        }
    };
    extra(p.allowed_domains.is_some(), "allowed_domains", web)?;
    extra(p.blocked_domains.is_some(), "blocked_domains", web)?;
    extra(p.max_content_tokens.is_some(), "max_content_tokens", web_fetch)?;
    extra(p.url_sources.is_some(), "url_sources", web_fetch)?;
    extra(p.user_location.is_some(), "user_location", name == BuiltinTool::WebSearch)?;
    domain_list("allowed_domains", &p.allowed_domains)?;
    domain_list("blocked_domains", &p.blocked_domains)?;
    if p.max_content_tokens == Some(0) {
        return Err(DomainError::invalid("`max_content_tokens` must be at least 1"));
    }
    let url_sources = match &p.url_sources {
        Some(v) if !v.is_null() => Some(resolve_url_sources(v, custom_tools)?),
        _ => None,
    };
    Ok(BuiltinToolConfig {
        name,
        kind: name,
        enabled: p.enabled.unwrap_or(defaults.enabled),
        permission_policy: check_policy(p.permission_policy)?.unwrap_or(defaults.permission_policy),
        allowed_domains: p.allowed_domains.clone(),
        blocked_domains: p.blocked_domains.clone(),
        max_content_tokens: p.max_content_tokens,
        url_sources,
        user_location: p.user_location.clone(),
    })
}

fn resolve_agent_toolset(p: &AgentToolsetParams, custom_tools: &BTreeSet<String>) -> DomainResult<AgentToolset> {
    let defaults = resolve_defaults(p.default_config.as_ref(), PermissionPolicy::AlwaysAllow)?;
    let mut seen = BTreeSet::new();
    let mut configs = Vec::new();
    for c in p.configs.iter().flatten() {
        if !seen.insert(c.name) {
            return Err(DomainError::invalid(format!("tool `{}` is configured twice", c.name.as_str())));
        }
        configs.push(resolve_builtin_config(c, defaults, custom_tools)?);
    }
    Ok(AgentToolset { configs, default_config: defaults })
}

/// The seed's shorthand (`{"type": "bash"}`, …): these tools and no others.
fn shorthand_toolset(entries: &[(BuiltinTool, &ShorthandToolParams)]) -> DomainResult<AgentToolset> {
    let params = AgentToolsetParams {
        configs: Some(
            entries
                .iter()
                .map(|(tool, p)| BuiltinToolConfigParams {
                    name: *tool,
                    kind: Some(*tool),
                    enabled: Some(p.enabled.unwrap_or(true)),
                    permission_policy: p.permission_policy,
                    allowed_domains: None,
                    blocked_domains: None,
                    max_content_tokens: None,
                    url_sources: None,
                    user_location: None,
                })
                .collect(),
        ),
        default_config: Some(ToolDefaultsParams { enabled: Some(false), permission_policy: None }),
    };
    resolve_agent_toolset(&params, &BTreeSet::new())
}

fn resolve_mcp_toolset(p: &McpToolsetParams, servers: &[McpServer]) -> DomainResult<McpToolset> {
    validate::length("mcp_server_name", &p.mcp_server_name, 1, 255)?;
    if !servers.iter().any(|s| s.name == p.mcp_server_name) {
        return Err(DomainError::invalid(format!(
            "`mcp_toolset` names MCP server `{}`, which is not in `mcp_servers`",
            p.mcp_server_name
        )));
    }
    let (configs, defaults) = resolve_mcp_tool_configs(p.configs.as_deref(), p.default_config.as_ref())?;
    Ok(McpToolset { mcp_server_name: p.mcp_server_name.clone(), configs, default_config: defaults })
}

/// The per-tool configs and defaults of an MCP server's tools (an agent's `mcp_toolset`, an
/// environment's stdio server): the default permission is `always_ask`.
pub fn resolve_mcp_tool_configs(
    params: Option<&[McpToolConfigParams]>,
    defaults: Option<&ToolDefaultsParams>,
) -> DomainResult<(Vec<McpToolConfig>, ToolDefaults)> {
    let defaults = resolve_defaults(defaults, PermissionPolicy::AlwaysAsk)?;
    let mut seen = BTreeSet::new();
    let mut configs = Vec::new();
    for c in params.into_iter().flatten() {
        validate::length("mcp tool config `name`", &c.name, 1, 128)?;
        if !seen.insert(c.name.clone()) {
            return Err(DomainError::invalid(format!("MCP tool `{}` is configured twice", c.name)));
        }
        configs.push(McpToolConfig {
            name: c.name.clone(),
            enabled: c.enabled.unwrap_or(defaults.enabled),
            permission_policy: check_policy(c.permission_policy)?.unwrap_or(defaults.permission_policy),
        });
    }
    Ok((configs, defaults))
}

fn resolve_custom_tool(p: &CustomToolParams) -> DomainResult<CustomTool> {
    validate::length("custom tool `name`", &p.name, 1, 128)?;
    if !p.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(DomainError::invalid(format!(
            "custom tool name `{}` may contain only letters, digits, `_` and `-`",
            p.name
        )));
    }
    validate::length("custom tool `description`", &p.description, 1, 10_000)?;
    let schema = &p.input_schema;
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(DomainError::invalid(format!(
            "custom tool `{}`: `input_schema` must be a JSON Schema object with \"type\": \"object\"",
            p.name
        )));
    }
    if let Err(e) = jsonschema::meta::validate(schema) {
        return Err(DomainError::invalid(format!(
            "custom tool `{}`: `input_schema` is not a valid JSON Schema: {e}",
            p.name
        )));
    }
    Ok(CustomTool { name: p.name.clone(), description: p.description.clone(), input_schema: schema.clone() })
}

/// Resolves a request's tool list against the agent's MCP servers.
pub fn resolve_tools(params: &[ToolParam], servers: &[McpServer]) -> DomainResult<Vec<AgentTool>> {
    if params.len() > TOOLS_MAX {
        return Err(DomainError::invalid(format!("`tools` may hold at most {TOOLS_MAX} entries, got {}", params.len())));
    }
    let custom_names: BTreeSet<String> = params
        .iter()
        .filter_map(|t| if let ToolParam::Custom(c) = t { Some(c.name.clone()) } else { None })
        .collect();
    let mut tools = Vec::new();
    let mut shorthand: Vec<(BuiltinTool, &ShorthandToolParams)> = Vec::new();
    let mut has_toolset = false;
    let mut mcp_seen = BTreeSet::new();
    let mut custom_seen = BTreeSet::new();
    for p in params {
        let short = |t| Some(t);
        let builtin = match p {
            ToolParam::Bash(s) => short((BuiltinTool::Bash, s)),
            ToolParam::Edit(s) => short((BuiltinTool::Edit, s)),
            ToolParam::Read(s) => short((BuiltinTool::Read, s)),
            ToolParam::Write(s) => short((BuiltinTool::Write, s)),
            ToolParam::Glob(s) => short((BuiltinTool::Glob, s)),
            ToolParam::Grep(s) => short((BuiltinTool::Grep, s)),
            ToolParam::WebFetch(s) => short((BuiltinTool::WebFetch, s)),
            ToolParam::WebSearch(s) => short((BuiltinTool::WebSearch, s)),
            _ => None,
        };
        if let Some((tool, s)) = builtin {
            if shorthand.iter().any(|(t, _)| *t == tool) {
                return Err(DomainError::invalid(format!("tool `{}` is listed twice", tool.as_str())));
            }
            check_policy(s.permission_policy)?;
            shorthand.push((tool, s));
            continue;
        }
        match p {
            ToolParam::AgentToolset(t) => {
                if has_toolset {
                    return Err(DomainError::invalid("`agent_toolset_20260401` may appear only once in `tools`"));
                }
                has_toolset = true;
                tools.push(AgentTool::AgentToolset(resolve_agent_toolset(t, &custom_names)?));
            }
            ToolParam::McpToolset(t) => {
                if !mcp_seen.insert(t.mcp_server_name.clone()) {
                    return Err(DomainError::invalid(format!(
                        "MCP server `{}` has more than one `mcp_toolset`",
                        t.mcp_server_name
                    )));
                }
                tools.push(AgentTool::McpToolset(resolve_mcp_toolset(t, servers)?));
            }
            ToolParam::Custom(c) => {
                if !custom_seen.insert(c.name.clone()) {
                    return Err(DomainError::invalid(format!("custom tool `{}` is defined twice", c.name)));
                }
                tools.push(AgentTool::Custom(resolve_custom_tool(c)?));
            }
            _ => unreachable!("built-in shorthands handled above"),
        }
    }
    if !shorthand.is_empty() {
        if has_toolset {
            return Err(DomainError::invalid(
                "use either `agent_toolset_20260401` or the per-tool shorthand (`{\"type\":\"bash\"}`), not both",
            ));
        }
        tools.insert(0, AgentTool::AgentToolset(shorthand_toolset(&shorthand)?));
    }
    for server in servers {
        if !mcp_seen.contains(&server.name) {
            return Err(DomainError::invalid(format!(
                "MCP server `{}` is not referenced by any `mcp_toolset` in `tools`",
                server.name
            )));
        }
    }
    Ok(tools)
}

pub fn resolve_mcp_servers(params: &[McpServerParams]) -> DomainResult<Vec<McpServer>> {
    if params.len() > MCP_SERVERS_MAX {
        return Err(DomainError::invalid(format!(
            "`mcp_servers` may hold at most {MCP_SERVERS_MAX} servers, got {}",
            params.len()
        )));
    }
    let mut names = BTreeSet::new();
    params
        .iter()
        .map(|p| {
            validate::length("mcp_servers[].name", &p.name, 1, 255)?;
            validate::http_url("mcp_servers[].url", &p.url)?;
            if !names.insert(p.name.clone()) {
                return Err(DomainError::invalid(format!("MCP server name `{}` is used twice", p.name)));
            }
            Ok(McpServer { name: p.name.clone(), tag: UrlTag::Value, url: p.url.clone() })
        })
        .collect()
}

/// Skills one agent may reference.
pub const SKILLS_PER_AGENT: usize = 64;

/// Custom skills (the Skills API's) by id, `version` a version id or `latest` (the
/// default). Anthropic's pre-built skills are refused: their content is not available here.
pub fn resolve_skills(params: &[SkillParams]) -> DomainResult<Vec<Skill>> {
    if params.len() > SKILLS_PER_AGENT {
        return Err(DomainError::invalid(format!("an agent may reference at most {SKILLS_PER_AGENT} skills")));
    }
    let mut out: Vec<Skill> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        if p.kind == SkillKind::Anthropic {
            return Err(DomainError::unsupported(format!("skills[{i}]: Anthropic's pre-built skills (`{}`)", p.skill_id)));
        }
        if !validate::looks_like_id(&p.skill_id, "skill_") {
            return Err(DomainError::invalid(format!("skills[{i}].skill_id `{}` is not a skill id", p.skill_id)));
        }
        let version = p.version.clone().unwrap_or_else(|| "latest".into());
        if version != "latest" && !validate::looks_like_id(&version, "skillver_") {
            return Err(DomainError::invalid(format!("skills[{i}].version must be `latest` or a version id, got `{version}`")));
        }
        if out.iter().any(|s| s.skill_id == p.skill_id) {
            return Err(DomainError::invalid(format!("skills[{i}]: skill `{}` is listed twice", p.skill_id)));
        }
        out.push(Skill { kind: SkillKind::Custom, skill_id: p.skill_id.clone(), version });
    }
    Ok(out)
}

/// Skills are read by the model with the `read` tool: an agent with skills must offer it.
pub fn check_skill_tools(skills: &[Skill], tools: &[AgentTool]) -> DomainResult<()> {
    if skills.is_empty() {
        return Ok(());
    }
    let reads = tools.iter().any(|t| match t {
        AgentTool::AgentToolset(ts) => {
            let cfg = ts.configs.iter().find(|c| c.name == BuiltinTool::Read);
            cfg.map(|c| c.enabled).unwrap_or(ts.default_config.enabled)
        }
        _ => false,
    });
    if reads { Ok(()) } else { Err(DomainError::invalid("skills need the `read` tool: enable it in the agent toolset")) }
}

fn check_execution_identity(e: Option<&ExecutionIdentity>) -> DomainResult<ExecutionIdentity> {
    match e {
        None | Some(ExecutionIdentity::ServiceAccount) => Ok(ExecutionIdentity::ServiceAccount),
        Some(ExecutionIdentity::AwsRole { .. }) => Err(DomainError::unsupported("`execution_identity` `aws_role`")),
    }
}

fn check_multiagent(m: Option<&Value>) -> DomainResult<()> {
    match m {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(DomainError::unsupported("`multiagent` orchestration")),
    }
}

/// Checks the limits every stored configuration must satisfy.
pub fn check_config(c: &AgentConfig) -> DomainResult<()> {
    validate::length("name", &c.name, 1, NAME_MAX)?;
    validate::max_length("description", c.description.as_deref(), DESCRIPTION_MAX)?;
    validate::max_length("system", c.system.as_deref(), SYSTEM_MAX)?;
    validate::metadata(&c.metadata)
}

/// Treats `""` like `null` for the fields the API clears with either.
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// Builds version 1 of a new agent.
pub fn new_agent(req: &CreateAgentRequest, id: String, now: Timestamp) -> DomainResult<Agent> {
    check_multiagent(req.multiagent.as_ref())?;
    let mcp_servers = resolve_mcp_servers(req.mcp_servers.as_deref().unwrap_or_default())?;
    let config = AgentConfig {
        name: req.name.clone(),
        description: non_empty(req.description.clone()),
        system: non_empty(req.system.clone()),
        model: resolve_model(&req.model, None)?,
        tools: resolve_tools(req.tools.as_deref().unwrap_or_default(), &mcp_servers)?,
        mcp_servers,
        skills: resolve_skills(req.skills.as_deref().unwrap_or_default())?,
        execution_identity: check_execution_identity(req.execution_identity.as_ref())?,
        metadata: req.metadata.clone().unwrap_or_default(),
    };
    check_config(&config)?;
    Ok(with_config(config, id, 1, now, now))
}

pub fn with_config(c: AgentConfig, id: String, version: i64, created_at: Timestamp, updated_at: Timestamp) -> Agent {
    Agent {
        id,
        tag: AgentTag::Value,
        name: c.name,
        description: c.description,
        system: c.system,
        model: c.model,
        tools: c.tools,
        mcp_servers: c.mcp_servers,
        skills: c.skills,
        multiagent: None,
        execution_identity: c.execution_identity,
        metadata: c.metadata,
        version,
        created_at,
        updated_at,
        archived_at: None,
    }
}

/// Applies an update to the current configuration: omitted fields are kept, `null`
/// clears where the API allows it, arrays are replaced whole, metadata is patched.
pub fn apply_update(current: &Agent, req: &UpdateAgentRequest) -> DomainResult<AgentConfig> {
    let mut c = current.config();
    match &req.name {
        None => {}
        Some(None) => return Err(DomainError::invalid("`name` cannot be cleared")),
        Some(Some(n)) => c.name = n.clone(),
    }
    match &req.model {
        None => {}
        Some(None) => return Err(DomainError::invalid("`model` cannot be cleared")),
        Some(Some(m)) => c.model = resolve_model(m, Some(&current.model))?,
    }
    if let Some(d) = &req.description {
        c.description = non_empty(d.clone());
    }
    if let Some(s) = &req.system {
        c.system = non_empty(s.clone());
    }
    if let Some(e) = &req.execution_identity {
        c.execution_identity = check_execution_identity(e.as_ref())?;
    }
    if let Some(m) = &req.multiagent {
        check_multiagent(m.as_ref())?;
    }
    if let Some(s) = &req.skills {
        c.skills = resolve_skills(s.as_deref().unwrap_or_default())?;
    }
    if let Some(servers) = &req.mcp_servers {
        c.mcp_servers = resolve_mcp_servers(servers.as_deref().unwrap_or_default())?;
    }
    match &req.tools {
        Some(tools) => c.tools = resolve_tools(tools.as_deref().unwrap_or_default(), &c.mcp_servers)?,
        None if req.mcp_servers.is_some() => {
            // the stored toolsets must still match the replaced server list
            check_server_references(&c.tools, &c.mcp_servers)?;
        }
        None => {}
    }
    if let Some(patch) = &req.metadata {
        c.metadata = match patch {
            Some(p) => validate::patch_metadata(&c.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    check_config(&c)?;
    Ok(c)
}

/// Every MCP toolset names a server in the list and every server has a toolset.
pub fn check_server_references(tools: &[AgentTool], servers: &[McpServer]) -> DomainResult<()> {
    let toolsets: BTreeSet<&str> = tools
        .iter()
        .filter_map(|t| if let AgentTool::McpToolset(m) = t { Some(m.mcp_server_name.as_str()) } else { None })
        .collect();
    for name in &toolsets {
        if !servers.iter().any(|s| s.name == *name) {
            return Err(DomainError::invalid(format!(
                "`mcp_toolset` names MCP server `{name}`, which is not in `mcp_servers`"
            )));
        }
    }
    for s in servers {
        if !toolsets.contains(s.name.as_str()) {
            return Err(DomainError::invalid(format!(
                "MCP server `{}` is not referenced by any `mcp_toolset` in `tools`",
                s.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::agents::{ModelConfigParams, EffortParam, EffortLevel};

    fn req(json: Value) -> CreateAgentRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn model_string_resolves_to_object_with_default_effort() {
        let a = new_agent(&req(json!({"name": "a", "model": "claude-sonnet-4-6"})), "agent_1".into(), Timestamp::from_micros(0)).unwrap();
        assert_eq!(a.model.id, "claude-sonnet-4-6");
        assert_eq!(a.model.effort, Some(Effort::High));
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["model"]["effort"], json!({"type": "high"}));
        assert_eq!(v["execution_identity"], json!({"type": "service_account"}));
    }

    #[test]
    fn effort_is_kept_for_same_model_and_reset_for_a_new_one() {
        let prev = ModelConfig { id: "m1".into(), effort: Some(Effort::Low), inference_geo: None, speed: Some(Speed::Standard) };
        assert_eq!(resolve_model(&ModelParam::Id("m1".into()), Some(&prev)).unwrap().effort, Some(Effort::Low));
        assert_eq!(resolve_model(&ModelParam::Id("m2".into()), Some(&prev)).unwrap().effort, Some(DEFAULT_EFFORT));
        let explicit = ModelParam::Config(ModelConfigParams { id: "m1".into(), effort: Some(EffortParam::Level(EffortLevel::Max)), inference_geo: None, speed: None });
        assert_eq!(resolve_model(&explicit, Some(&prev)).unwrap().effort, Some(Effort::Max));
    }

    #[test]
    fn seed_shorthand_becomes_one_toolset_with_only_those_tools() {
        let a = new_agent(&req(json!({"name": "a", "model": "m", "tools": [{"type": "bash"}, {"type": "read"}]})), "agent_1".into(), Timestamp::from_micros(0)).unwrap();
        assert_eq!(a.tools.len(), 1);
        let AgentTool::AgentToolset(ts) = &a.tools[0] else { panic!() };
        assert!(!ts.default_config.enabled);
        assert_eq!(ts.configs.iter().map(|c| c.name).collect::<Vec<_>>(), vec![BuiltinTool::Bash, BuiltinTool::Read]);
        assert!(ts.configs.iter().all(|c| c.enabled));
    }

    #[test]
    fn mcp_servers_must_be_referenced_and_toolsets_must_name_servers() {
        let unreferenced = req(json!({"name": "a", "model": "m", "mcp_servers": [{"type": "url", "name": "gh", "url": "https://x.example/mcp"}]}));
        assert!(new_agent(&unreferenced, "agent_1".into(), Timestamp::from_micros(0)).is_err());
        let dangling = req(json!({"name": "a", "model": "m", "tools": [{"type": "mcp_toolset", "mcp_server_name": "gh"}]}));
        assert!(new_agent(&dangling, "agent_1".into(), Timestamp::from_micros(0)).is_err());
        let ok = req(json!({"name": "a", "model": "m", "mcp_servers": [{"type": "url", "name": "gh", "url": "https://x.example/mcp"}], "tools": [{"type": "mcp_toolset", "mcp_server_name": "gh"}]}));
        let a = new_agent(&ok, "agent_1".into(), Timestamp::from_micros(0)).unwrap();
        let AgentTool::McpToolset(m) = &a.tools[0] else { panic!() };
        assert_eq!(m.default_config.permission_policy, PermissionPolicy::AlwaysAsk);
    }

    #[test]
    fn custom_tool_schema_must_be_an_object_schema() {
        let bad = req(json!({"name": "a", "model": "m", "tools": [{"type": "custom", "name": "t", "description": "d", "input_schema": {"type": "string"}}]}));
        assert!(new_agent(&bad, "agent_1".into(), Timestamp::from_micros(0)).is_err());
        let invalid = req(json!({"name": "a", "model": "m", "tools": [{"type": "custom", "name": "t", "description": "d", "input_schema": {"type": "object", "properties": 5}}]}));
        assert!(new_agent(&invalid, "agent_1".into(), Timestamp::from_micros(0)).is_err());
        let good = req(json!({"name": "a", "model": "m", "tools": [{"type": "custom", "name": "t", "description": "d", "input_schema": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}]}));
        assert!(new_agent(&good, "agent_1".into(), Timestamp::from_micros(0)).is_ok());
    }

    #[test]
    fn unsupported_settings_are_refused_not_ignored() {
        for body in [
            json!({"name": "a", "model": "m", "multiagent": {"type": "coordinator", "agents": []}}),
            json!({"name": "a", "model": "m", "skills": [{"type": "anthropic", "skill_id": "xlsx"}]}),
            json!({"name": "a", "model": {"id": "m", "inference_geo": "us"}}),
            json!({"name": "a", "model": "m", "tools": [{"type": "agent_toolset_20260401", "default_config": {"permission_policy": {"type": "auto"}}}]}),
        ] {
            assert!(new_agent(&req(body.clone()), "agent_1".into(), Timestamp::from_micros(0)).is_err(), "{body}");
        }
    }

    #[test]
    fn update_preserves_omitted_fields_and_clears_nulls() {
        let a = new_agent(&req(json!({"name": "a", "model": "m", "system": "s", "description": "d", "metadata": {"k": "v", "j": "w"}})), "agent_1".into(), Timestamp::from_micros(0)).unwrap();
        let upd: UpdateAgentRequest = serde_json::from_value(json!({"system": null, "metadata": {"k": null}})).unwrap();
        let c = apply_update(&a, &upd).unwrap();
        assert_eq!(c.system, None);
        assert_eq!(c.description.as_deref(), Some("d"));
        assert_eq!(c.metadata, [("j".to_string(), "w".to_string())].into());
        let noop: UpdateAgentRequest = serde_json::from_value(json!({"name": "a", "model": "m"})).unwrap();
        assert_eq!(apply_update(&a, &noop).unwrap(), a.config());
        let clear_name: UpdateAgentRequest = serde_json::from_value(json!({"name": null})).unwrap();
        assert!(apply_update(&a, &clear_name).is_err());
    }
}
