//! Agents: the list, one agent with its versions and their differences, and the forms that make and change them.

use maud::html;
use openma_core::accounts::ConsoleSession;
use openma_core::platform::ListParams;
use serde::Deserialize;

use crate::layout::*;
use crate::{Backend, Response, csrf_ok};

#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    tools: Option<String>,
}

pub async fn list(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let Ok(list) = b.list_agents(&m.tenant, &ListParams { limit: Some(100), ..Default::default() }).await else {
        return failed(m, 500, "The agents could not be read.");
    };
    Response::html(
        200,
        page(
            "Agents",
            Some(m),
            html! {
                h1 { "Agents" }
                @if list.data.is_empty() { p.empty { "No agents yet: create the first one below." } }
                @else {
                    table {
                        thead { tr { th { "Agent" } th { "Name" } th { "Model" } th { "Version" } } }
                        tbody { @for a in &list.data {
                            tr { td { a href={ "/console/agents/" (a.id) } { code { (a.id) } } } td { (a.name) } td { (a.model.id) } td { (a.version) } }
                        } }
                    }
                }
                h2 { "New agent" }
                form method="post" action="/console/agents" {
                    input type="hidden" name="csrf" value=(m.csrf_token);
                    label { "Name " input name="name" required maxlength="256"; }
                    label { "Model " input name="model" value="claude-sonnet-4-6" required; }
                    label { "System prompt " textarea name="system" rows="4" {} }
                    label { input type="checkbox" name="tools" value="on" checked; " Built-in tools (bash, files, web)" }
                    button type="submit" { "Create" }
                }
            },
        ),
    )
}

pub async fn create(b: &dyn Backend, m: &ConsoleSession, f: AgentForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let mut body = serde_json::json!({"name": f.name.trim(), "model": f.model.trim()});
    if !f.system.trim().is_empty() {
        body["system"] = serde_json::json!(f.system);
    }
    if f.tools.is_some() {
        body["tools"] = serde_json::json!([{"type": "agent_toolset_20260401"}]);
    }
    let req = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(m, 400, &format!("The agent is not valid: {e}")),
    };
    match b.create_agent(&m.tenant, &req).await {
        Ok(a) => Response::redirect(&format!("/console/agents/{}", a.id)),
        Err(e) => domain_error(m, e),
    }
}

#[derive(Deserialize)]
pub struct VersionsQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// An agent: its configuration, its versions and the difference between two of them, and
/// a form that makes a new version.
pub async fn one(b: &dyn Backend, m: &ConsoleSession, id: &str, q: VersionsQuery) -> Response {
    let agent = match b.get_agent(&m.tenant, id).await {
        Ok(a) => a,
        Err(e) => return domain_error(m, e),
    };
    let versions = match b.list_agent_versions(&m.tenant, id, 100).await {
        Ok(v) => v,
        Err(e) => return domain_error(m, e),
    };
    let to = q.to.unwrap_or(agent.version);
    let from = q.from.unwrap_or((to - 1).max(1));
    let config_of = |v: i64| versions.iter().find(|a| a.version == v).map(|a| serde_json::to_string_pretty(&a.config()).unwrap_or_default());
    let diff = match (config_of(from), config_of(to)) {
        (Some(a), Some(b)) if from != to => Some(similar::TextDiff::from_lines(&a, &b).unified_diff().context_radius(3).header(&format!("version {from}"), &format!("version {to}")).to_string()),
        _ => None,
    };
    Response::html(
        200,
        page(
            &agent.name,
            Some(m),
            html! {
                h1 { (agent.name) " " small { "v" (agent.version) } }
                p { code { (agent.id) } " · " (agent.model.id) }
                h2 { "Configuration" }
                pre { (serde_json::to_string_pretty(&agent.config()).unwrap_or_default()) }
                h2 { "Versions" }
                ol { @for v in &versions {
                    li { "v" (v.version) " · " (v.updated_at.to_string())
                        @if v.version > 1 { " · " a href={ "?from=" (v.version - 1) "&to=" (v.version) } { "changes" } } }
                } }
                @if let Some(d) = diff {
                    h3 { "Changes from v" (from) " to v" (to) }
                    pre.diff { (if d.is_empty() { "(no change)".to_owned() } else { d }) }
                }
                h2 { "Talk to it" }
                form method="post" action="/console/sessions" {
                    input type="hidden" name="csrf" value=(m.csrf_token);
                    input type="hidden" name="agent_id" value=(agent.id);
                    label { "Title " input name="title"; }
                    button type="submit" #start-session { "Start a session" }
                }
                h2 { "New version" }
                form method="post" action={ "/console/agents/" (agent.id) } {
                    input type="hidden" name="csrf" value=(m.csrf_token);
                    label { "Model " input name="model" value=(agent.model.id) required; }
                    label { "System prompt " textarea name="system" rows="6" { (agent.system.clone().unwrap_or_default()) } }
                    button type="submit" { "Save as v" (agent.version + 1) }
                }
            },
        ),
    )
}

pub async fn update(b: &dyn Backend, m: &ConsoleSession, id: &str, f: AgentForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let system = if f.system.trim().is_empty() { serde_json::Value::Null } else { serde_json::json!(f.system) };
    let req = match serde_json::from_value(serde_json::json!({"model": f.model.trim(), "system": system})) {
        Ok(r) => r,
        Err(e) => return failed(m, 400, &format!("The change is not valid: {e}")),
    };
    match b.update_agent(&m.tenant, id, &req).await {
        Ok(a) => Response::redirect(&format!("/console/agents/{}", a.id)),
        Err(e) => domain_error(m, e),
    }
}

