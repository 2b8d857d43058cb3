//! API keys: listed to every member, made and revoked by owners and admins; a new key is shown once.

use maud::html;
use openma_core::accounts::ConsoleSession;
use serde::Deserialize;

use crate::layout::*;
use crate::{Backend, Response, csrf_ok};

/// Owners and admins manage API keys; members only see them.
fn manages_keys(m: &ConsoleSession) -> bool {
    m.role >= openma_core::accounts::Role::Admin
}

pub async fn show(b: &dyn Backend, m: &ConsoleSession, new_key: Option<(String, String)>) -> Response {
    let Ok(keys) = b.list_api_keys(&m.tenant).await else {
        return failed(m, 500, "The API keys could not be read.");
    };
    Response::html(
        200,
        page(
            "API keys",
            Some(m),
            html! {
                h1 { "API keys" }
                @if let Some((name, secret)) = &new_key {
                    section role="alert" {
                        p { "The new key " strong { (name) } " — copy it now, it is not shown again:" }
                        pre #new-key { (secret) }
                    }
                }
                @if keys.is_empty() { p.empty { "No API keys." } }
                @else {
                    table {
                        thead { tr { th { "Name" } th { "Key" } th { "Created" } th { "Last used" } th { "" } } }
                        tbody { @for k in &keys {
                            tr {
                                td { (k.name) }
                                td { code { (k.prefix) "…" } }
                                td { (k.created_at.to_string()) }
                                td { (k.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into())) }
                                td {
                                    @if let Some(at) = k.revoked_at { "revoked " (at.to_string()) }
                                    @else if manages_keys(m) {
                                        form method="post" action={ "/console/api-keys/" (k.id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(m.csrf_token);
                                            button type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        } }
                    }
                }
                @if manages_keys(m) {
                    h2 { "New key" }
                    form method="post" action="/console/api-keys" {
                        input type="hidden" name="csrf" value=(m.csrf_token);
                        label { "Name " input name="name" required maxlength="128"; }
                        button type="submit" { "Create" }
                    }
                }
            },
        ),
    )
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create(b: &dyn Backend, m: &ConsoleSession, f: KeyForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    if !manages_keys(m) {
        return forbidden(m, "Only owners and admins manage API keys.");
    }
    match b.create_api_key(&m.tenant, f.name.trim()).await {
        Ok((key, secret)) => {
            tracing::info!(user_id = %m.user_id, key_id = %key.id, "API key created in the console");
            // the page shows a secret: no cache may keep it
            show(b, m, Some((key.name, secret))).await.with("cache-control", "no-store".into())
        }
        Err(e) => domain_error(m, e),
    }
}

pub async fn revoke(b: &dyn Backend, m: &ConsoleSession, id: &str, f: KeyForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    if !manages_keys(m) {
        return forbidden(m, "Only owners and admins manage API keys.");
    }
    match b.revoke_api_key(&m.tenant, id).await {
        Ok(()) => Response::redirect("/console/api-keys"),
        Err(e) => domain_error(m, e),
    }
}

