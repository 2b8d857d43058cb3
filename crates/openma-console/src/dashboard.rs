//! The dashboard: recent sessions and agents, the month's list cost, the tenant switch.

use maud::html;
use openma_core::accounts::ConsoleSession;
use openma_core::platform::ListParams;
use openma_core::ports::SessionFilter;

use crate::layout::*;
use crate::{Backend, Response};

pub async fn show(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let recent = ListParams { limit: Some(10), ..Default::default() };
    let sessions = b.list_sessions(&m.tenant, &recent, &SessionFilter::default()).await;
    let agents = b.list_agents(&m.tenant, &recent).await;
    let month = openma_core::ports::UsageQuery { group_by: Vec::new(), from: Some(b.now().as_micros() - 30 * 86_400_000_000), to: None };
    let spent: i64 = b.usage_report(&m.tenant, &month).await.map(|rows| rows.iter().map(|r| r.amount_micros).sum()).unwrap_or(0);
    let memberships = b.memberships(&m.user_id).await.unwrap_or_default();
    let (Ok(sessions), Ok(agents)) = (sessions, agents) else {
        return Response::html(500, page("Error", Some(m), html! { p.error { "The dashboard could not be read; see the server log." } }));
    };
    Response::html(
        200,
        page(
            "Dashboard",
            Some(m),
            html! {
                h1 { "Dashboard" }
                @if memberships.len() > 1 {
                    form method="post" action="/console/tenant" {
                        input type="hidden" name="csrf" value=(m.csrf_token);
                        label { "Tenant "
                            select name="tenant" {
                                @for (t, role) in &memberships {
                                    option value=(t.as_str()) selected[*t == m.tenant] { (t.as_str()) " (" (role.as_str()) ")" }
                                }
                            }
                        }
                        button type="submit" { "Switch" }
                    }
                }
                p { "List cost of the last 30 days: " strong { (dollars(spent)) } " · " a href="/console/usage" { "usage by day, agent and model" } }
                h2 { "Recent sessions" }
                @if sessions.data.is_empty() {
                    p.empty { "No sessions yet. Start one with " code { "openma chat --agent NAME" } " or the API." }
                } @else {
                    table {
                        thead { tr { th { "Session" } th { "Status" } th { "Agent" } th { "Title" } th { "Cost" } } }
                        tbody {
                            @for s in &sessions.data {
                                tr {
                                    td { a href={ "/console/sessions/" (s.id) } { code { (s.id) } } }
                                    td { (serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                                    td { (s.agent.name) }
                                    td { (s.title.clone().unwrap_or_default()) }
                                    td { (s.usage.list_cost.as_ref().map(|c| format!("{} {}", c.amount, serde_json::to_value(c.currency).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default())).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
                h2 { "Agents" }
                @if agents.data.is_empty() {
                    p.empty { "No agents yet." }
                } @else {
                    table {
                        thead { tr { th { "Agent" } th { "Name" } th { "Model" } th { "Version" } } }
                        tbody {
                            @for a in &agents.data {
                                tr { td { code { (a.id) } } td { (a.name) } td { (a.model.id) } td { (a.version) } }
                            }
                        }
                    }
                }
            },
        ),
    )
}

