//! Integrations: publishing an agent to Slack, GitHub or Linear, checking and deleting it.

use maud::html;
use openma_core::accounts::ConsoleSession;
use serde::Deserialize;

use crate::layout::*;
use crate::{Backend, Response, csrf_ok};

/// The tenant's integrations (with their webhook paths to enter at the provider), a form per
/// provider, and the outcome of a check when there is one.
pub async fn show(b: &dyn Backend, m: &ConsoleSession, outcome: Option<Result<String, String>>) -> Response {
    let list = match b.list_integrations(&m.tenant, &all()).await {
        Ok(l) => l.data,
        Err(e) => return domain_error(m, e),
    };
    let agents = b.list_agents(&m.tenant, &all()).await.map(|p| p.data).unwrap_or_default();
    let provider = |i: &openma_types::integrations::Integration| serde_json::to_value(i.provider).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    Response::html(
        200,
        page(
            "Integrations",
            Some(m),
            html! {
                h1 { "Integrations" }
                @match &outcome {
                    Some(Ok(says)) => p #check-result role="status" { "✓ " (says) },
                    Some(Err(why)) => p #check-result .error role="alert" { "✗ " (why) },
                    None => {},
                }
                @if list.is_empty() { p.empty { "No integrations: publish an agent to Slack, GitHub or Linear below." } }
                @else {
                    table {
                        thead { tr { th { "Provider" } th { "Name" } th { "Agent" } th { "Webhook path" } th { "" } } }
                        tbody { @for i in &list {
                            tr {
                                td { (provider(i)) }
                                td { (i.name.clone().unwrap_or_default()) }
                                td { code { (i.agent_id) } }
                                td { code { (i.events_path) } @if let Some(p) = &i.interactivity_path { br; code { (p) } } }
                                td {
                                    form method="post" action={ "/console/integrations/" (i.id) "/check" } {
                                        input type="hidden" name="csrf" value=(m.csrf_token);
                                        button type="submit" { "Check" }
                                    }
                                    form method="post" action={ "/console/integrations/" (i.id) "/delete" } {
                                        input type="hidden" name="csrf" value=(m.csrf_token);
                                        button type="submit" { "Delete" }
                                    }
                                }
                            }
                        } }
                    }
                }
                h2 { "Publish an agent" }
                form method="post" action="/console/integrations" {
                    input type="hidden" name="csrf" value=(m.csrf_token);
                    label { "Provider " select name="provider" { option value="slack" { "Slack" } option value="github" { "GitHub" } option value="linear" { "Linear" } } }
                    label { "Agent " select name="agent_id" required { @for a in &agents { option value=(a.id) { (a.name) } } } }
                    label { "Name " input name="name"; }
                    label { "Signing (webhook) secret " input type="password" name="signing_secret" autocomplete="off" required; }
                    label { "Slack bot token / Linear token " input type="password" name="bot_token" autocomplete="off"; }
                    fieldset {
                        legend { "GitHub App" }
                        label { "App id " input name="app_id" inputmode="numeric"; }
                        label { "App slug " input name="app_slug"; }
                        label { "Private key (PEM) " textarea name="private_key" rows="4" autocomplete="off" {} }
                        label { "Trigger label " input name="trigger_label"; }
                    }
                    label { "API base URL (GitHub Enterprise) " input type="url" name="api_base_url"; }
                    button type="submit" { "Publish" }
                }
            },
        ),
    )
}

#[derive(Deserialize)]
pub struct IntegrationForm {
    #[serde(default)]
    csrf: String,
    provider: String,
    agent_id: String,
    #[serde(default)]
    name: String,
    signing_secret: String,
    #[serde(default)]
    bot_token: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    app_slug: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    trigger_label: String,
    #[serde(default)]
    api_base_url: String,
}

pub async fn create(b: &dyn Backend, m: &ConsoleSession, f: IntegrationForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let mut body = serde_json::json!({"provider": f.provider, "agent_id": f.agent_id, "signing_secret": f.signing_secret});
    for (k, v) in [("name", &f.name), ("bot_token", &f.bot_token), ("app_id", &f.app_id), ("app_slug", &f.app_slug), ("private_key", &f.private_key), ("trigger_label", &f.trigger_label), ("api_base_url", &f.api_base_url)] {
        if !v.trim().is_empty() {
            body[k] = serde_json::json!(if k == "private_key" { v.as_str() } else { v.trim() });
        }
    }
    let req: openma_types::integrations::CreateIntegrationRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(m, 400, &format!("The integration is not valid: {e}")),
    };
    match b.create_integration(&m.tenant, &req).await {
        Ok(_) => Response::redirect("/console/integrations"),
        Err(e) => domain_error(m, e),
    }
}

/// The test button: calls the provider with the integration's credential and shows the answer.
pub async fn check(b: &dyn Backend, m: &ConsoleSession, id: &str, csrf: String) -> Response {
    if !csrf_ok(m, &csrf) {
        return forbidden(m, STALE_FORM);
    }
    let outcome = b.check_integration(&m.tenant, id).await;
    show(b, m, Some(outcome)).await
}

pub async fn delete(b: &dyn Backend, m: &ConsoleSession, id: &str, csrf: String) -> Response {
    if !csrf_ok(m, &csrf) {
        return forbidden(m, STALE_FORM);
    }
    match b.delete_integration(&m.tenant, id).await {
        Ok(()) => Response::redirect("/console/integrations"),
        Err(e) => domain_error(m, e),
    }
}

