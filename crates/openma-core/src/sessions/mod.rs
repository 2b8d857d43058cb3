//! Sessions: resolving the agent snapshot a session runs with, and session updates.

mod service;
pub mod threads;
pub use service::{SessionAttachments, Sessions};

use openma_types::agents::{Agent, AgentConfig, ModelParam, ToolParam, McpServerParams, SkillParams};
use openma_types::sessions::{
    AgentOverrides, Budget, CreateSessionRequest, Session, SessionAgent, SessionStatus, UpdateSessionRequest,
};
use openma_types::{Metadata, Timestamp};

use crate::{agents, pricing};
use crate::error::{DomainError, DomainResult};
use crate::validate;

pub const TITLE_MAX: usize = 1_024;

/// Which agent (and version) a create request names, with its overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentChoice {
    pub id: String,
    pub version: Option<i64>,
    pub overrides: Option<AgentOverrides>,
}

/// Reads `agent` (id or reference object) or the seed's `agent_id` alias.
pub fn agent_choice(req: &CreateSessionRequest) -> DomainResult<AgentChoice> {
    use openma_types::sessions::{AgentRefObject, AgentRefParam};
    let choice = match (&req.agent, &req.agent_id) {
        (None, None) => return Err(DomainError::invalid("`agent` is required")),
        (None, Some(id)) => AgentChoice { id: id.clone(), version: None, overrides: None },
        (Some(AgentRefParam::Id(id)), _) => AgentChoice { id: id.clone(), version: None, overrides: None },
        (Some(AgentRefParam::Object(AgentRefObject::Agent { id, version })), _) => {
            AgentChoice { id: id.clone(), version: *version, overrides: None }
        }
        (Some(AgentRefParam::Object(AgentRefObject::AgentWithOverrides(o))), _) => {
            AgentChoice { id: o.id.clone(), version: o.version, overrides: Some(o.clone()) }
        }
    };
    if let (Some(alias), Some(_)) = (&req.agent_id, &req.agent)
        && *alias != choice.id
    {
        return Err(DomainError::invalid("`agent_id` and `agent` name different agents"));
    }
    if let Some(v) = choice.version
        && v < 1
    {
        return Err(DomainError::invalid("agent `version` must be at least 1"));
    }
    Ok(choice)
}

/// Applies session-local overrides to an agent version. The agent itself is unchanged.
pub fn apply_overrides(agent: &Agent, o: &AgentOverrides) -> DomainResult<AgentConfig> {
    let mut c = agent.config();
    match &o.model {
        None => {}
        Some(None) => return Err(DomainError::invalid_code("agent_model_required", "`model` cannot be null")),
        Some(Some(m)) => {
            // effort in an overriding model is not applied: the session runs at the default
            let id = match m {
                ModelParam::Id(id) => id.clone(),
                ModelParam::Config(cfg) => cfg.id.clone(),
            };
            c.model = agents::resolve_model(&ModelParam::Id(id), None)?;
        }
    }
    if let Some(s) = &o.system {
        c.system = s.clone().filter(|s| !s.is_empty());
    }
    replace_lists(&mut c, o.tools.as_ref(), o.mcp_servers.as_ref(), o.skills.as_ref())?;
    agents::check_config(&c)?;
    Ok(c)
}

/// Full replacement of tools, MCP servers and skills, checked against each other.
fn replace_lists(
    c: &mut AgentConfig,
    tools: Option<&Option<Vec<ToolParam>>>,
    servers: Option<&Option<Vec<McpServerParams>>>,
    skills: Option<&Option<Vec<SkillParams>>>,
) -> DomainResult<()> {
    if let Some(s) = skills {
        c.skills = agents::resolve_skills(s.as_deref().unwrap_or_default())?;
    }
    if let Some(s) = servers {
        c.mcp_servers = agents::resolve_mcp_servers(s.as_deref().unwrap_or_default())?;
    }
    match tools {
        Some(t) => c.tools = agents::resolve_tools(t.as_deref().unwrap_or_default(), &c.mcp_servers)?,
        None => agents::check_server_references(&c.tools, &c.mcp_servers)?,
    }
    Ok(())
}

pub fn snapshot(agent_id: &str, version: i64, c: AgentConfig) -> SessionAgent {
    SessionAgent {
        id: agent_id.to_owned(),
        tag: Default::default(),
        name: c.name,
        description: c.description,
        system: c.system,
        model: c.model,
        tools: c.tools,
        mcp_servers: c.mcp_servers,
        skills: c.skills,
        multiagent: None,
        execution_identity: c.execution_identity,
        version,
    }
}

/// Refuses the create-time fields whose features are not built yet, instead of
/// dropping them.
pub fn check_create_fields(req: &CreateSessionRequest) -> DomainResult<()> {
    if let Some(t) = &req.title {
        validate::length("title", t, 0, TITLE_MAX)?;
    }
    if let Some(m) = &req.metadata {
        validate::metadata(m)?;
    }
    Ok(())
}

/// The cap of a budget in micro-dollars, after checking its form: whole cents as a
/// decimal string, positive, without leading zeros.
pub fn budget_cap_micros(b: &Budget) -> DomainResult<u64> {
    let a = &b.max_list_cost.amount;
    let ok = !a.is_empty() && a.len() <= 12 && a.bytes().all(|c| c.is_ascii_digit()) && !a.starts_with('0');
    if !ok {
        return Err(DomainError::invalid(format!(
            "`budget.max_list_cost.amount` must be a positive whole number of cents without leading zeros, such as \"2500\"; got {a:?}"
        )));
    }
    Ok(a.parse::<u64>().unwrap_or(u64::MAX / 10_000) * 10_000)
}

/// A budget can be enforced only for a model with a public list price.
pub fn check_budget(b: &Budget, model: &str) -> DomainResult<u64> {
    let cap = budget_cap_micros(b)?;
    if pricing::model_price(model).is_none() {
        return Err(DomainError::invalid_code(
            "model_not_budgetable",
            format!("model `{model}` has no public list price, so a budget cannot be enforced for it"),
        ));
    }
    Ok(cap)
}

/// `usage` with its cumulative list cost filled in (absent for a model without a list price).
pub fn priced_usage(model: &str, mut usage: openma_types::sessions::SessionUsage) -> openma_types::sessions::SessionUsage {
    usage.list_cost = pricing::list_cost_micros(model, &usage)
        .map(|m| openma_types::sessions::MonetaryAmount { amount: pricing::cents(m).to_string(), currency: Default::default() });
    usage
}

/// True when the session has a budget and `usage` (its usage so far, the running turn's time
/// included) has reached it; a model without a list price cannot be measured and counts as
/// reached.
pub fn budget_reached(s: &Session, usage: &openma_types::sessions::SessionUsage) -> bool {
    let Some(budget) = &s.budget else { return false };
    let cap = budget_cap_micros(budget).unwrap_or(0);
    pricing::list_cost_micros(&s.agent.model.id, usage).is_none_or(|used| used >= cap)
}

/// The refusal of work sent to a session at its budget.
pub fn budget_reached_error() -> DomainError {
    DomainError::invalid_code(
        "budget_reached",
        "the session's budget is reached: only user.tool_confirmation, user.tool_result, user.custom_tool_result and user.interrupt are accepted; raise or remove the budget to continue",
    )
}

/// The consumed list cost of a session, in micro-dollars (`None` without a list price).
pub fn consumed_micros(s: &Session) -> Option<u64> {
    pricing::list_cost_micros(&s.agent.model.id, &s.usage)
}

/// At most this many `initial_events` on create.
pub const INITIAL_EVENTS_MAX: usize = 50;

/// Validates `initial_events`: only `user.message` (and `user.define_outcome`, which is
/// not supported yet), at most 50, all valid before anything is created.
pub fn initial_inputs(req: &CreateSessionRequest) -> DomainResult<Vec<crate::harness::input::Input>> {
    use openma_types::events::ClientEvent;
    let raw = req.initial_events.as_deref().unwrap_or_default();
    if raw.len() > INITIAL_EVENTS_MAX {
        return Err(DomainError::invalid(format!("`initial_events` may hold at most {INITIAL_EVENTS_MAX} events, got {}", raw.len())));
    }
    let mut events = Vec::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let e: ClientEvent = serde_json::from_value(v.clone())
            .map_err(|e| DomainError::invalid(format!("invalid `initial_events[{i}]`: {e}")))?;
        match e {
            ClientEvent::UserMessage { .. } | ClientEvent::UserDefineOutcome { .. } => events.push(e),
            _ => {
                return Err(DomainError::invalid(format!(
                    "`initial_events[{i}]`: only `user.message` and `user.define_outcome` events may start a session"
                )));
            }
        }
    }
    if events.is_empty() {
        return Ok(Vec::new());
    }
    crate::harness::input::parse_events(events)
}

/// Applies a session update. The agent part may change only while the session is idle.
pub fn apply_update(current: &Session, req: &UpdateSessionRequest, now: Timestamp) -> DomainResult<Session> {
    if current.archived_at.is_some() || current.status == SessionStatus::Terminated {
        return Err(DomainError::invalid("archived or terminated sessions cannot be updated"));
    }
    if req.vault_ids.is_some() {
        return Err(DomainError::invalid("`vault_ids` cannot be changed after a session is created"));
    }
    let mut s = current.clone();
    match &req.budget {
        None => {}
        Some(None) => s.budget = None,
        Some(Some(b)) => {
            if current.budget.is_none() {
                return Err(DomainError::invalid(
                    "a budget can be set only when the session is created (a removed budget cannot be added back)",
                ));
            }
            let cap = check_budget(b, &current.agent.model.id)?;
            if consumed_micros(current).is_some_and(|used| cap <= used) {
                return Err(DomainError::invalid(
                    "budget.max_list_cost must be greater than the session's consumed list cost",
                ));
            }
            s.budget = Some(b.clone());
        }
    }
    if let Some(t) = &req.title {
        if let Some(t) = t {
            validate::length("title", t, 0, TITLE_MAX)?;
        }
        s.title = t.clone();
    }
    if let Some(patch) = &req.metadata {
        s.metadata = match patch {
            Some(p) => validate::patch_metadata(&s.metadata, p, false)?,
            None => Metadata::new(),
        };
    }
    if let Some(a) = &req.agent
        && (a.tools.is_some() || a.mcp_servers.is_some())
    {
        if current.status != SessionStatus::Idle {
            return Err(DomainError::conflict(
                "the agent configuration of a session can change only while it is idle; send `user.interrupt` and wait for idle",
            ));
        }
        let mut c = AgentConfig {
            name: s.agent.name.clone(),
            description: s.agent.description.clone(),
            system: s.agent.system.clone(),
            model: s.agent.model.clone(),
            tools: s.agent.tools.clone(),
            mcp_servers: s.agent.mcp_servers.clone(),
            skills: s.agent.skills.clone(),
            execution_identity: s.agent.execution_identity.clone(),
            metadata: Metadata::new(),
        };
        replace_lists(&mut c, a.tools.as_ref(), a.mcp_servers.as_ref(), None)?;
        s.agent.tools = c.tools;
        s.agent.mcp_servers = c.mcp_servers;
    }
    if s != *current {
        s.updated_at = now.strictly_after(current.updated_at);
    }
    Ok(s)
}

/// Fills the fields computed at read time.
pub fn present(mut s: Session, now: Timestamp) -> Session {
    let end = if s.status == SessionStatus::Terminated { s.updated_at } else { now };
    s.stats.duration_seconds = s.created_at.seconds_until(end);
    s
}

/// The `session.updated` event for a change: only the fields that changed.
pub fn updated_event(before: &Session, after: &Session) -> Option<openma_types::events::EventPayload> {
    let title = (before.title != after.title).then(|| after.title.clone()).flatten();
    let metadata = (before.metadata != after.metadata && !after.metadata.is_empty()).then(|| after.metadata.clone());
    let agent = (before.agent != after.agent).then(|| Box::new(after.agent.clone()));
    let budget = (before.budget != after.budget).then(|| after.budget.clone());
    let changed = before.title != after.title || before.metadata != after.metadata || agent.is_some() || budget.is_some();
    changed.then_some(openma_types::events::EventPayload::SessionUpdated { title, metadata, agent, budget })
}
