//! Environments, vaults, files, memory stores, skills and model cards.

use maud::html;
use openma_core::accounts::ConsoleSession;
use serde::Deserialize;

use crate::layout::*;
use crate::{Backend, Response, csrf_ok};

pub async fn environments(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let list = match b.list_environments(&m.tenant, &all()).await {
        Ok(l) => l.data,
        Err(e) => return domain_error(m, e),
    };
    let rows = list
        .iter()
        .map(|e| {
            let openma_types::environments::EnvironmentConfig::Cloud(c) = &e.config;
            let net = match &c.networking {
                openma_types::environments::Networking::Unrestricted => "unrestricted".to_owned(),
                openma_types::environments::Networking::Limited(l) => format!("limited: {}", l.allowed_hosts.join(", ")),
            };
            vec![html! { a href={ "/console/environments/" (e.id) } { code { (e.id) } } }, html! { (e.name) }, html! { (net) }]
        })
        .collect();
    table_page(m, "Environments", "No environments: sessions use the default one.", &["Environment", "Name", "Networking"], rows, html! {})
}

/// An environment's configuration and the state and log of its package build.
pub async fn environment(b: &dyn Backend, m: &ConsoleSession, id: &str) -> Response {
    let env = match b.get_environment(&m.tenant, id).await {
        Ok(e) => e,
        Err(e) => return domain_error(m, e),
    };
    let build = match b.environment_build(&m.tenant, id).await {
        Ok(b) => b,
        Err(e) => return domain_error(m, e),
    };
    Response::html(
        200,
        page(
            &env.name,
            Some(m),
            html! {
                h1 { (env.name) }
                p { code { (env.id) } }
                h2 { "Configuration" }
                pre { (serde_json::to_string_pretty(&env.config).unwrap_or_default()) }
                h2 { "Packages" }
                @if let Some(build) = &build {
                    p { "Build: " strong #build-state { (wire_name(&build.state)) }
                        @if let Some(e) = &build.error { " · " span.error { (e) } } }
                    @if !build.log.is_empty() { pre { (build.log) } }
                } @else {
                    p #build-state { "Installed by each session's sandbox when it starts." }
                }
            },
        ),
    )
}

pub async fn vaults(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let vaults = match b.list_vaults(&m.tenant, &all()).await {
        Ok(v) => v.data,
        Err(e) => return domain_error(m, e),
    };
    let mut rows = Vec::new();
    for v in &vaults {
        let creds = b.list_credentials(&m.tenant, &v.id, &all()).await.map(|p| p.data).unwrap_or_default();
        let names: Vec<String> = creds
            .iter()
            .map(|c| {
                let kind = serde_json::to_value(&c.auth).ok().and_then(|a| a["type"].as_str().map(str::to_owned)).unwrap_or_default();
                format!("{} ({kind})", c.display_name.clone().unwrap_or_else(|| c.id.clone()))
            })
            .collect();
        let add = html! {
            details {
                summary { "Add an MCP bearer token" }
                form method="post" action={ "/console/vaults/" (v.id) "/credentials" } {
                    input type="hidden" name="csrf" value=(m.csrf_token);
                    label { "Name " input name="display_name"; }
                    label { "MCP server URL " input type="url" name="mcp_server_url" required; }
                    label { "Token " input type="password" name="token" autocomplete="off" required; }
                    button type="submit" { "Add" }
                }
            }
        };
        rows.push(vec![html! { code { (v.id) } }, html! { (v.display_name) }, html! { (if names.is_empty() { "none".to_owned() } else { names.join(", ") }) (add) }]);
    }
    let note = html! { p { "Secrets are write-only: once saved they are never shown again, here or in the API." } };
    table_page(m, "Vaults", "No vaults.", &["Vault", "Name", "Credentials"], rows, note)
}

pub async fn files(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let params = openma_core::files::FileListParams { page: all(), scope_id: None, ids: Vec::new() };
    let files = match b.list_files(&m.tenant, &params).await {
        Ok(f) => f.data,
        Err(e) => return domain_error(m, e),
    };
    let rows = files
        .iter()
        .map(|f| {
            vec![
                html! { code { (f.id) } },
                html! { @if f.downloadable { a href={ "/v1/files/" (f.id) "/content" } download=(f.filename) { (f.filename) } } @else { (f.filename) } },
                html! { (f.size_bytes) },
                html! { (f.mime_type) },
            ]
        })
        .collect();
    let upload = html! {
        h2 { "Upload" }
        form #upload {
            label { "File " input type="file" name="file" required; }
            button type="submit" { "Upload" }
            " " progress #progress max="100" value="0" {}
            span #upload-status role="status" {}
        }
        script { (maud::PreEscaped(format!("const CSRF={};{UPLOAD_JS}", serde_json::json!(m.csrf_token)))) }
    };
    table_page(m, "Files", "No files yet.", &["File", "Name", "Bytes", "Type"], rows, upload)
}

/// Uploads through the API with the page's CSRF token, showing progress.
const UPLOAD_JS: &str = r#"
document.getElementById('upload').onsubmit=ev=>{ev.preventDefault();const f=ev.target.file.files[0];if(!f)return;const data=new FormData();data.append('file',f);
const x=new XMLHttpRequest();x.open('POST','/v1/files');x.setRequestHeader('x-csrf-token',CSRF);const bar=document.getElementById('progress');const st=document.getElementById('upload-status');
x.upload.onprogress=p=>{if(p.lengthComputable)bar.value=Math.round(100*p.loaded/p.total)};
x.onload=()=>{if(x.status<300){st.textContent='uploaded';location.reload()}else{try{st.textContent=JSON.parse(x.responseText).error.message}catch(_){st.textContent='upload failed'}}};
x.onerror=()=>{st.textContent='upload failed'};x.send(data)};
"#;
pub async fn memory_stores(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let stores = match b.list_memory_stores(&m.tenant, &all()).await {
        Ok(s) => s.data,
        Err(e) => return domain_error(m, e),
    };
    let rows = stores.iter().map(|s| vec![html! { a href={ "/console/memory/" (s.id) } { code { (s.id) } } }, html! { (s.name) }, html! { (s.description) }]).collect();
    table_page(m, "Memory stores", "No memory stores.", &["Store", "Name", "Description"], rows, html! {})
}

#[derive(Deserialize)]
pub struct CredentialForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    display_name: String,
    mcp_server_url: String,
    token: String,
}

pub async fn add_credential(b: &dyn Backend, m: &ConsoleSession, vault_id: &str, f: CredentialForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let mut body = serde_json::json!({"auth": {"type": "static_bearer", "mcp_server_url": f.mcp_server_url.trim(), "token": f.token}});
    if !f.display_name.trim().is_empty() {
        body["display_name"] = serde_json::json!(f.display_name.trim());
    }
    let req = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(m, 400, &format!("The credential is not valid: {e}")),
    };
    match b.create_credential(&m.tenant, vault_id, &req).await {
        Ok(_) => Response::redirect("/console/vaults"),
        Err(e) => domain_error(m, e),
    }
}

/// A memory store: its memories by path (content shown), their versions, and redaction.
pub async fn memory_store(b: &dyn Backend, m: &ConsoleSession, id: &str) -> Response {
    let store = match b.get_memory_store(&m.tenant, id).await {
        Ok(s) => s,
        Err(e) => return domain_error(m, e),
    };
    let params = openma_core::platform::MemoryListParams { limit: Some(100), full: true, ..Default::default() };
    let memories = match b.list_memories(&m.tenant, id, &params).await {
        Ok(p) => p.data,
        Err(e) => return domain_error(m, e),
    };
    let versions = match b.list_memory_versions(&m.tenant, id, &openma_core::ports::VersionFilter::default(), &all()).await {
        Ok(p) => p.data,
        Err(e) => return domain_error(m, e),
    };
    Response::html(
        200,
        page(
            &store.name,
            Some(m),
            html! {
                h1 { (store.name) }
                p { code { (store.id) } " · " (store.description) }
                h2 { "Memories" }
                @if memories.is_empty() { p.empty { "This store holds no memories yet." } }
                @for item in &memories {
                    @if let openma_types::memory::MemoryListItem::Memory(mem) = item {
                        details { summary { code { (mem.path) } " · " (mem.content_size_bytes) " bytes" } pre { (mem.content.clone().unwrap_or_default()) } }
                    }
                }
                h2 { "Versions" }
                table {
                    thead { tr { th { "Version" } th { "Operation" } th { "Path" } th { "By" } th { "" } } }
                    tbody { @for v in &versions {
                        tr {
                            td { code { (v.id) } }
                            td { (serde_json::to_value(v.operation).ok().and_then(|o| o.as_str().map(str::to_owned)).unwrap_or_default()) }
                            td { (v.path.clone().unwrap_or_else(|| "(redacted)".into())) }
                            td { (v.created_by.as_ref().map(|a| serde_json::to_value(a).ok().and_then(|j| j["type"].as_str().map(str::to_owned)).unwrap_or_default()).unwrap_or_default()) }
                            td { @if v.path.is_some() {
                                form method="post" action={ "/console/memory/" (store.id) "/versions/" (v.id) "/redact" } {
                                    input type="hidden" name="csrf" value=(m.csrf_token);
                                    button type="submit" { "Redact" }
                                }
                            } }
                        }
                    } }
                }
            },
        ),
    )
}

pub async fn redact_version(b: &dyn Backend, m: &ConsoleSession, store_id: &str, version_id: &str, csrf: String) -> Response {
    if !csrf_ok(m, &csrf) {
        return forbidden(m, STALE_FORM);
    }
    let by = openma_types::memory::Actor::UserActor { user_id: m.user_id.clone() };
    match b.redact_memory_version(&m.tenant, store_id, version_id, &by).await {
        Ok(_) => Response::redirect(&format!("/console/memory/{store_id}")),
        Err(e) => domain_error(m, e),
    }
}

pub async fn skills(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let skills = match b.list_skills(&m.tenant, &all()).await {
        Ok(s) => s.data,
        Err(e) => return domain_error(m, e),
    };
    let rows = skills
        .iter()
        .map(|k| {
            vec![
                html! { code { (k.id) } },
                html! { (k.display_name) },
                html! { a href={ "/v1/skills/" (k.id) "/versions/" (k.latest_version_id) "/content" } { "latest (zip)" } },
            ]
        })
        .collect();
    table_page(m, "Skills", "No skills yet: upload one with the API (`POST /v1/skills`).", &["Skill", "Name", "Download"], rows, html! {})
}

#[derive(Deserialize)]
pub struct CardForm {
    #[serde(default)]
    csrf: String,
    name: String,
    provider: String,
    #[serde(default)]
    models: String,
    #[serde(default)]
    base_url: String,
    api_key: String,
}

pub async fn model_cards(b: &dyn Backend, m: &ConsoleSession) -> Response {
    let cards = match b.list_model_cards(&m.tenant, &all()).await {
        Ok(c) => c.data,
        Err(e) => return domain_error(m, e),
    };
    let rows = cards
        .iter()
        .map(|c| {
            vec![
                html! { (c.name) },
                html! { (serde_json::to_value(c.provider).ok().and_then(|p| p.as_str().map(str::to_owned)).unwrap_or_default()) },
                html! { (c.models.join(", ")) },
                html! { "…" (c.api_key_hint.clone().unwrap_or_default()) },
            ]
        })
        .collect();
    let form = html! {
        h2 { "New model card" }
        form method="post" action="/console/model-cards" {
            input type="hidden" name="csrf" value=(m.csrf_token);
            label { "Name " input name="name" required; }
            label { "Provider "
                select name="provider" { @for p in ["anthropic", "anthropic_compatible", "openai", "openai_compatible"] { option value=(p) { (p) } } }
            }
            label { "Models (comma-separated) " input name="models"; }
            label { "Base URL " input type="url" name="base_url"; }
            label { "API key " input type="password" name="api_key" autocomplete="off" required; }
            button type="submit" { "Create" }
        }
    };
    table_page(m, "Model cards", "No model cards: sessions use the server's provider keys.", &["Name", "Provider", "Models", "Key"], rows, form)
}

pub async fn create_model_card(b: &dyn Backend, m: &ConsoleSession, f: CardForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let models: Vec<&str> = f.models.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut body = serde_json::json!({"name": f.name.trim(), "provider": f.provider, "api_key": f.api_key, "models": models});
    if !f.base_url.trim().is_empty() {
        body["base_url"] = serde_json::json!(f.base_url.trim());
    }
    let req = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(m, 400, &format!("The model card is not valid: {e}")),
    };
    match b.create_model_card(&m.tenant, &req).await {
        Ok(_) => Response::redirect("/console/model-cards"),
        Err(e) => domain_error(m, e),
    }
}

