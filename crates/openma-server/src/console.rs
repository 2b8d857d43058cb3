//! The web console, served by `openma serve` itself: server-rendered pages (maud), no
//! asset from the internet. People sign in with an e-mail and a password (argon2id);
//! a signed-in session is an `HttpOnly`, `SameSite=Lax` cookie (`Secure` behind HTTPS)
//! whose token is stored only as its SHA-256; every form carries the session's CSRF token;
//! sign-in attempts are rate-limited per e-mail. Pages use the same domain operations and
//! the same tenant scoping as API keys.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use openma_core::accounts::ConsoleSession;
use openma_core::platform::ListParams;
use openma_core::ports::SessionFilter;
use serde::Deserialize;

use crate::app::AppState;

const COOKIE: &str = "openma_console";
/// How long a console session lasts (12 hours).
const SESSION_TTL_S: i64 = 12 * 3600;
/// Sign-in attempts per e-mail per minute.
const LOGINS_PER_MINUTE: u32 = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(dashboard))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/tenant", post(switch_tenant))
        .route("/console/agents", get(agents_page).post(create_agent))
        .route("/console/agents/{agent_id}", get(agent_page).post(update_agent))
        .route("/console/api-keys", get(api_keys_page).post(create_api_key))
        .route("/console/api-keys/{key_id}/revoke", post(revoke_api_key))
        .route("/console/environments", get(environments_page))
        .route("/console/environments/{environment_id}", get(environment_page))
        .route("/console/vaults", get(vaults_page))
        .route("/console/files", get(files_page))
        .route("/console/memory", get(memory_page))
        .route("/console/memory/{store_id}", get(memory_store_page))
        .route("/console/memory/{store_id}/versions/{version_id}/redact", post(redact_version))
        .route("/console/vaults/{vault_id}/credentials", post(add_credential))
        .route("/console/skills", get(skills_page))
        .route("/console/model-cards", get(model_cards_page).post(create_model_card))
        .route("/console/usage", get(usage_page))
        .route("/console/integrations", get(integrations_page).post(create_integration))
        .route("/console/integrations/{integration_id}/check", post(check_integration))
        .route("/console/integrations/{integration_id}/delete", post(delete_integration))
        .route("/console/sessions", get(sessions_page).post(start_session))
        .route("/console/sessions/{session_id}", get(session_page))
        // pages are text: gzip them for browsers that ask (never the API's event streams)
        .layer(tower_http::compression::CompressionLayer::new())
}

/// An argon2id hash of `password` (for `openma users …`).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    if password.chars().count() < 12 {
        anyhow::bail!("a password has at least 12 characters");
    }
    let salt = SaltString::encode_b64(&rand_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("{e}"))?.to_string())
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b
}

/// A random token for cookies and CSRF (128 bits, hex).
fn token() -> String {
    rand_bytes().iter().chain(rand_bytes().iter()).map(|b| format!("{b:02x}")).collect()
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash nobody's password matches, verified for unknown e-mails so that they take as long.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&token()).unwrap_or_default())
}

fn logins() -> &'static governor::DefaultKeyedRateLimiter<String> {
    static LIMITER: OnceLock<governor::DefaultKeyedRateLimiter<String>> = OnceLock::new();
    LIMITER.get_or_init(|| governor::RateLimiter::keyed(governor::Quota::per_minute(NonZeroU32::new(LOGINS_PER_MINUTE).expect("non-zero"))))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// Whether the browser reached us over HTTPS (directly or through a proxy that says so).
fn secure(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https")
}

/// The console session of a request's cookie, if it has a live one.
pub async fn session_of(app: &AppState, headers: &HeaderMap) -> Result<Option<ConsoleSession>, openma_core::DomainError> {
    match cookie_token(headers) {
        Some(token) => app.platform.console_session(&token).await,
        None => Ok(None),
    }
}

/// A signed-in member; a page that needs one sends everyone else to the sign-in page.
pub struct Member(pub ConsoleSession);

impl FromRequestParts<AppState> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        match session_of(app, &parts.headers).await {
            Ok(Some(s)) => Ok(Member(s)),
            Ok(None) => Err(Redirect::to("/console/login").into_response()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read console sessions");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}

fn page(title: &str, member: Option<&ConsoleSession>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · openma" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/console" { strong { "openma" } }
                    @if member.is_some() {
                        nav {
                            a href="/console" { "Dashboard" } " "
                            a href="/console/agents" { "Agents" } " "
                            a href="/console/sessions" { "Sessions" } " "
                            a href="/console/environments" { "Environments" } " "
                            a href="/console/vaults" { "Vaults" } " "
                            a href="/console/files" { "Files" } " "
                            a href="/console/memory" { "Memory" } " "
                            a href="/console/skills" { "Skills" } " "
                            a href="/console/model-cards" { "Model cards" } " "
                            a href="/console/usage" { "Usage" } " "
                            a href="/console/integrations" { "Integrations" } " "
                            a href="/console/api-keys" { "API keys" }
                        }
                    }
                    @if let Some(m) = member {
                        span.who { (m.email) " · " (m.tenant.as_str()) " · " (format!("{:?}", m.role).to_lowercase()) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(m.csrf_token);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f}header{display:flex;gap:1em;align-items:center;padding:.6em 1em;border-bottom:1px solid #ddd;flex-wrap:wrap}header a{color:inherit;text-decoration:none}.who{margin-left:auto;color:#555}main{padding:1em;max-width:60em}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .5em;border-bottom:1px solid #eee}.error{color:#b00020}.empty{color:#666}label{display:block;margin:.5em 0}input{font:inherit;padding:.3em}button{font:inherit}:focus{outline:2px solid #0a66c2}";

fn login_form(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/console/login" {
                label { "E-mail " input type="email" name="email" autocomplete="username" required autofocus; }
                label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login_page() -> Markup {
    login_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

/// Refuses a cross-site form post (the login form has no session to carry a CSRF token):
/// a browser's `Origin`, when sent, must name this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

async fn login(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, login_form(Some("This form must be sent from this site."))).into_response();
    }
    let key = f.email.trim().to_ascii_lowercase();
    if let Err(not_until) = logins().check_key(&key) {
        use governor::clock::Clock;
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now()).as_secs().max(1);
        let mut r = (StatusCode::TOO_MANY_REQUESTS, login_form(Some(&format!("Too many attempts; try again in {wait} s.")))).into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return r;
    }
    let user = app.platform.find_user(&f.email).await.ok().flatten();
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| decoy_hash().to_owned());
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password)).await.unwrap_or(false);
    let refused = || (StatusCode::UNAUTHORIZED, login_form(Some("Wrong e-mail or password."))).into_response();
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(email = %key, "console sign-in refused");
        return refused();
    };
    let tenant = match app.platform.memberships(&user.id).await {
        Ok(m) if !m.is_empty() => m[0].0.clone(),
        _ => return (StatusCode::FORBIDDEN, login_form(Some("This account belongs to no tenant."))).into_response(),
    };
    let (session_token, csrf) = (token(), token());
    if let Err(e) = app.platform.start_console_session(&session_token, &user.id, &tenant, &csrf, SESSION_TTL_S).await {
        tracing::error!(error = %e, "cannot start a console session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    tracing::info!(user_id = %user.id, tenant = %tenant, "console sign-in");
    let mut cookie = format!("{COOKIE}={session_token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_S}");
    if secure(&headers) {
        cookie.push_str("; Secure");
    }
    let mut r = Redirect::to("/console").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("a cookie is ASCII"));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Checks a form's CSRF token against the session's (in constant time).
pub fn csrf_ok(member: &ConsoleSession, sent: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = member.csrf_token.as_bytes();
    want.len() == sent.len() && bool::from(want.ct_eq(sent.as_bytes()))
}

async fn logout(State(app): State<AppState>, Member(m): Member, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return (StatusCode::FORBIDDEN, page("Forbidden", Some(&m), html! { p.error { "The form's security token is missing or stale; reload the page." } })).into_response();
    }
    if let Some(t) = cookie_token(&headers) {
        let _ = app.platform.end_console_session(&t).await;
    }
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static("openma_console=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"));
    r
}

#[derive(Deserialize)]
struct TenantForm {
    #[serde(default)]
    csrf: String,
    tenant: String,
}

/// Moves the signed-in session to another tenant the member belongs to.
async fn switch_tenant(State(app): State<AppState>, Member(m): Member, headers: HeaderMap, Form(f): Form<TenantForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let Some(token) = cookie_token(&headers) else { return Redirect::to("/console/login").into_response() };
    match app.platform.switch_console_tenant(&token, &m.user_id, &openma_core::TenantId::from_trusted(f.tenant)).await {
        Ok(()) => Redirect::to("/console").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

async fn dashboard(State(app): State<AppState>, Member(m): Member) -> Response {
    let recent = ListParams { limit: Some(10), ..Default::default() };
    let sessions = app.platform.list_sessions(&m.tenant, &recent, &SessionFilter::default()).await;
    let agents = app.platform.list_agents(&m.tenant, &recent).await;
    let month = openma_core::ports::UsageQuery { group_by: Vec::new(), from: Some(app.platform.clock.now().as_micros() - 30 * 86_400_000_000), to: None };
    let spent: i64 = app.platform.store.usage_report(&m.tenant, &month).await.map(|rows| rows.iter().map(|r| r.amount_micros).sum()).unwrap_or(0);
    let memberships = app.platform.memberships(&m.user_id).await.unwrap_or_default();
    let (Ok(sessions), Ok(agents)) = (sessions, agents) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, page("Error", Some(&m), html! { p.error { "The dashboard could not be read; see the server log." } })).into_response();
    };
    page(
        "Dashboard",
        Some(&m),
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
    )
    .into_response()
}

fn forbidden(m: &ConsoleSession, why: &str) -> Response {
    (StatusCode::FORBIDDEN, page("Forbidden", Some(m), html! { p.error role="alert" { (why) } })).into_response()
}

fn failed(m: &ConsoleSession, status: StatusCode, why: &str) -> Response {
    (status, page("Error", Some(m), html! { p.error role="alert" { (why) } })).into_response()
}

const STALE_FORM: &str = "The form's security token is missing or stale; reload the page.";

/// A domain error as the page that shows it (its status, its message).
fn domain_error(m: &ConsoleSession, e: openma_core::DomainError) -> Response {
    let api = crate::error::ApiError::from(e);
    failed(m, api.status, &api.message)
}

#[derive(Deserialize)]
struct AgentForm {
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

async fn agents_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let Ok(list) = app.platform.list_agents(&m.tenant, &ListParams { limit: Some(100), ..Default::default() }).await else {
        return failed(&m, StatusCode::INTERNAL_SERVER_ERROR, "The agents could not be read.");
    };
    page(
        "Agents",
        Some(&m),
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
    )
    .into_response()
}

async fn create_agent(State(app): State<AppState>, Member(m): Member, Form(f): Form<AgentForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
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
        Err(e) => return failed(&m, StatusCode::BAD_REQUEST, &format!("The agent is not valid: {e}")),
    };
    match app.platform.create_agent(&m.tenant, &req).await {
        Ok(a) => Redirect::to(&format!("/console/agents/{}", a.id)).into_response(),
        Err(e) => domain_error(&m, e),
    }
}

#[derive(Deserialize)]
struct VersionsQuery {
    from: Option<i64>,
    to: Option<i64>,
}

/// An agent: its configuration, its versions and the difference between two of them, and
/// a form that makes a new version.
async fn agent_page(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>, axum::extract::Query(q): axum::extract::Query<VersionsQuery>) -> Response {
    let agent = match app.platform.get_agent(&m.tenant, &id, None).await {
        Ok(a) => a,
        Err(e) => return domain_error(&m, e),
    };
    let versions = match app.platform.list_agent_versions(&m.tenant, &id, Some(100), None).await {
        Ok(v) => v.data,
        Err(e) => return domain_error(&m, e),
    };
    let to = q.to.unwrap_or(agent.version);
    let from = q.from.unwrap_or((to - 1).max(1));
    let config_of = |v: i64| versions.iter().find(|a| a.version == v).map(|a| serde_json::to_string_pretty(&a.config()).unwrap_or_default());
    let diff = match (config_of(from), config_of(to)) {
        (Some(a), Some(b)) if from != to => Some(similar::TextDiff::from_lines(&a, &b).unified_diff().context_radius(3).header(&format!("version {from}"), &format!("version {to}")).to_string()),
        _ => None,
    };
    page(
        &agent.name,
        Some(&m),
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
    )
    .into_response()
}

async fn update_agent(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>, Form(f): Form<AgentForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let system = if f.system.trim().is_empty() { serde_json::Value::Null } else { serde_json::json!(f.system) };
    let req = match serde_json::from_value(serde_json::json!({"model": f.model.trim(), "system": system})) {
        Ok(r) => r,
        Err(e) => return failed(&m, StatusCode::BAD_REQUEST, &format!("The change is not valid: {e}")),
    };
    match app.platform.update_agent(&m.tenant, &id, &req).await {
        Ok(a) => Redirect::to(&format!("/console/agents/{}", a.id)).into_response(),
        Err(e) => domain_error(&m, e),
    }
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    agent_id: String,
    #[serde(default)]
    title: String,
}

/// Starts a session with an agent and opens its page.
async fn start_session(State(app): State<AppState>, Member(m): Member, Form(f): Form<StartForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let title = f.title.trim();
    let req = openma_types::sessions::CreateSessionRequest {
        agent_id: Some(f.agent_id),
        title: (!title.is_empty()).then(|| title.to_owned()),
        ..Default::default()
    };
    match crate::http::sessions::create(&app, &m.tenant, req).await {
        Ok(s) => Redirect::to(&format!("/console/sessions/{}", s.id)).into_response(),
        Err(e) => domain_error(&m, e),
    }
}

/// Owners and admins manage API keys; members only see them.
fn manages_keys(m: &ConsoleSession) -> bool {
    m.role >= openma_core::accounts::Role::Admin
}

async fn api_keys_page(State(app): State<AppState>, Member(m): Member) -> Response {
    keys_page(&app, &m, None).await
}

async fn keys_page(app: &AppState, m: &ConsoleSession, new_key: Option<(String, String)>) -> Response {
    let Ok(keys) = app.platform.list_api_keys(&m.tenant).await else {
        return failed(m, StatusCode::INTERNAL_SERVER_ERROR, "The API keys could not be read.");
    };
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
    )
    .into_response()
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn create_api_key(State(app): State<AppState>, Member(m): Member, Form(f): Form<KeyForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    if !manages_keys(&m) {
        return forbidden(&m, "Only owners and admins manage API keys.");
    }
    match app.platform.create_api_key(&m.tenant, f.name.trim()).await {
        Ok((key, secret)) => {
            tracing::info!(user_id = %m.user_id, key_id = %key.id, "API key created in the console");
            let mut r = keys_page(&app, &m, Some((key.name, secret))).await;
            // the page shows a secret: no cache may keep it
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => domain_error(&m, e),
    }
}

async fn revoke_api_key(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>, Form(f): Form<KeyForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    if !manages_keys(&m) {
        return forbidden(&m, "Only owners and admins manage API keys.");
    }
    match app.platform.revoke_api_key(&m.tenant, &id).await {
        Ok(()) => Redirect::to("/console/api-keys").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

/// A page that is one table (or a clear empty state), with `extra` below it.
fn table_page(m: &ConsoleSession, title: &str, empty: &str, head: &[&str], rows: Vec<Vec<Markup>>, extra: Markup) -> Response {
    page(
        title,
        Some(m),
        html! {
            h1 { (title) }
            @if rows.is_empty() { p.empty { (empty) } }
            @else {
                table {
                    thead { tr { @for h in head { th { (h) } } } }
                    tbody { @for r in &rows { tr { @for c in r { td { (c) } } } } }
                }
            }
            (extra)
        },
    )
    .into_response()
}

fn all() -> ListParams {
    ListParams { limit: Some(100), ..Default::default() }
}

async fn environments_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let list = match app.platform.list_environments(&m.tenant, &all()).await {
        Ok(l) => l.data,
        Err(e) => return domain_error(&m, e),
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
    table_page(&m, "Environments", "No environments: sessions use the default one.", &["Environment", "Name", "Networking"], rows, html! {})
}

/// An environment's configuration and the state and log of its package build.
async fn environment_page(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>) -> Response {
    let env = match app.platform.get_environment(&m.tenant, &id).await {
        Ok(e) => e,
        Err(e) => return domain_error(&m, e),
    };
    let build = match crate::environment_packages::build_of(&app, &m.tenant, &id).await {
        Ok(b) => b,
        Err(e) => return domain_error(&m, e),
    };
    page(
        &env.name,
        Some(&m),
        html! {
            h1 { (env.name) }
            p { code { (env.id) } }
            h2 { "Configuration" }
            pre { (serde_json::to_string_pretty(&env.config).unwrap_or_default()) }
            h2 { "Packages" }
            p { "Build: " strong #build-state { (serde_json::to_value(build.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                @if let Some(e) = &build.error { " · " span.error { (e) } } }
            @if !build.log.is_empty() { pre { (build.log) } }
        },
    )
    .into_response()
}

async fn vaults_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let vaults = match app.platform.list_vaults(&m.tenant, &all()).await {
        Ok(v) => v.data,
        Err(e) => return domain_error(&m, e),
    };
    let mut rows = Vec::new();
    for v in &vaults {
        let creds = app.platform.list_credentials(&m.tenant, &v.id, &all()).await.map(|p| p.data).unwrap_or_default();
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
    table_page(&m, "Vaults", "No vaults.", &["Vault", "Name", "Credentials"], rows, note)
}

async fn files_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let params = openma_core::files::FileListParams { page: all(), scope_id: None, ids: Vec::new() };
    let files = match app.platform.list_files(&m.tenant, &params).await {
        Ok(f) => f.data,
        Err(e) => return domain_error(&m, e),
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
    table_page(&m, "Files", "No files yet.", &["File", "Name", "Bytes", "Type"], rows, upload)
}

/// Uploads through the API with the page's CSRF token, showing progress.
const UPLOAD_JS: &str = r#"
document.getElementById('upload').onsubmit=ev=>{ev.preventDefault();const f=ev.target.file.files[0];if(!f)return;const data=new FormData();data.append('file',f);
const x=new XMLHttpRequest();x.open('POST','/v1/files');x.setRequestHeader('x-csrf-token',CSRF);const bar=document.getElementById('progress');const st=document.getElementById('upload-status');
x.upload.onprogress=p=>{if(p.lengthComputable)bar.value=Math.round(100*p.loaded/p.total)};
x.onload=()=>{if(x.status<300){st.textContent='uploaded';location.reload()}else{try{st.textContent=JSON.parse(x.responseText).error.message}catch(_){st.textContent='upload failed'}}};
x.onerror=()=>{st.textContent='upload failed'};x.send(data)};
"#;

async fn memory_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let stores = match app.platform.list_memory_stores(&m.tenant, &all()).await {
        Ok(s) => s.data,
        Err(e) => return domain_error(&m, e),
    };
    let rows = stores.iter().map(|s| vec![html! { a href={ "/console/memory/" (s.id) } { code { (s.id) } } }, html! { (s.name) }, html! { (s.description) }]).collect();
    table_page(&m, "Memory stores", "No memory stores.", &["Store", "Name", "Description"], rows, html! {})
}

#[derive(Deserialize)]
struct CredentialForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    display_name: String,
    mcp_server_url: String,
    token: String,
}

async fn add_credential(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(vault_id): crate::extract::ApiPath<String>, Form(f): Form<CredentialForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let mut body = serde_json::json!({"auth": {"type": "static_bearer", "mcp_server_url": f.mcp_server_url.trim(), "token": f.token}});
    if !f.display_name.trim().is_empty() {
        body["display_name"] = serde_json::json!(f.display_name.trim());
    }
    let req = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(&m, StatusCode::BAD_REQUEST, &format!("The credential is not valid: {e}")),
    };
    match app.platform.create_credential(&m.tenant, &vault_id, &req).await {
        Ok(_) => Redirect::to("/console/vaults").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

/// A memory store: its memories by path (content shown), their versions, and redaction.
async fn memory_store_page(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>) -> Response {
    let store = match app.platform.get_memory_store(&m.tenant, &id).await {
        Ok(s) => s,
        Err(e) => return domain_error(&m, e),
    };
    let params = openma_core::platform::MemoryListParams { limit: Some(100), full: true, ..Default::default() };
    let memories = match app.platform.list_memories(&m.tenant, &id, &params).await {
        Ok(p) => p.data,
        Err(e) => return domain_error(&m, e),
    };
    let versions = match app.platform.list_memory_versions(&m.tenant, &id, &openma_core::ports::VersionFilter::default(), &all(), false).await {
        Ok(p) => p.data,
        Err(e) => return domain_error(&m, e),
    };
    page(
        &store.name,
        Some(&m),
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
    )
    .into_response()
}

async fn redact_version(
    State(app): State<AppState>,
    Member(m): Member,
    crate::extract::ApiPath((store_id, version_id)): crate::extract::ApiPath<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let by = openma_types::memory::Actor::UserActor { user_id: m.user_id.clone() };
    match app.platform.redact_memory_version(&m.tenant, &store_id, &version_id, &by).await {
        Ok(_) => Redirect::to(&format!("/console/memory/{store_id}")).into_response(),
        Err(e) => domain_error(&m, e),
    }
}

async fn skills_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let skills = match app.platform.list_skills(&m.tenant, &all(), None).await {
        Ok(s) => s.data,
        Err(e) => return domain_error(&m, e),
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
    table_page(&m, "Skills", "No skills yet: upload one with the API (`POST /v1/skills`).", &["Skill", "Name", "Download"], rows, html! {})
}

#[derive(Deserialize)]
struct CardForm {
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

async fn model_cards_page(State(app): State<AppState>, Member(m): Member) -> Response {
    let cards = match app.platform.list_model_cards(&m.tenant, &all()).await {
        Ok(c) => c.data,
        Err(e) => return domain_error(&m, e),
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
    table_page(&m, "Model cards", "No model cards: sessions use the server's provider keys.", &["Name", "Provider", "Models", "Key"], rows, form)
}

async fn create_model_card(State(app): State<AppState>, Member(m): Member, Form(f): Form<CardForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let models: Vec<&str> = f.models.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut body = serde_json::json!({"name": f.name.trim(), "provider": f.provider, "api_key": f.api_key, "models": models});
    if !f.base_url.trim().is_empty() {
        body["base_url"] = serde_json::json!(f.base_url.trim());
    }
    let req = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(&m, StatusCode::BAD_REQUEST, &format!("The model card is not valid: {e}")),
    };
    match app.platform.create_model_card(&m.tenant, &req).await {
        Ok(_) => Redirect::to("/console/model-cards").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

async fn integrations_page(State(app): State<AppState>, Member(m): Member) -> Response {
    integrations_view(&app, &m, None).await
}

/// The tenant's integrations (with their webhook paths to enter at the provider), a form per
/// provider, and the outcome of a check when there is one.
async fn integrations_view(app: &AppState, m: &ConsoleSession, outcome: Option<Result<String, String>>) -> Response {
    let list = match app.platform.list_integrations(&m.tenant, &all()).await {
        Ok(l) => l.data,
        Err(e) => return domain_error(m, e),
    };
    let agents = app.platform.list_agents(&m.tenant, &all()).await.map(|p| p.data).unwrap_or_default();
    let provider = |i: &openma_types::integrations::Integration| serde_json::to_value(i.provider).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
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
    )
    .into_response()
}

#[derive(Deserialize)]
struct IntegrationForm {
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

async fn create_integration(State(app): State<AppState>, Member(m): Member, Form(f): Form<IntegrationForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let mut body = serde_json::json!({"provider": f.provider, "agent_id": f.agent_id, "signing_secret": f.signing_secret});
    for (k, v) in [("name", &f.name), ("bot_token", &f.bot_token), ("app_id", &f.app_id), ("app_slug", &f.app_slug), ("private_key", &f.private_key), ("trigger_label", &f.trigger_label), ("api_base_url", &f.api_base_url)] {
        if !v.trim().is_empty() {
            body[k] = serde_json::json!(if k == "private_key" { v.as_str() } else { v.trim() });
        }
    }
    let req: openma_types::integrations::CreateIntegrationRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return failed(&m, StatusCode::BAD_REQUEST, &format!("The integration is not valid: {e}")),
    };
    if let Some(url) = &req.api_base_url
        && let Err(why) = crate::webhooks::check_destination(url, app.info.allow_private_fetch)
    {
        return failed(&m, StatusCode::BAD_REQUEST, &format!("`api_base_url`: {why}"));
    }
    match app.platform.create_integration(&m.tenant, &req).await {
        Ok(_) => Redirect::to("/console/integrations").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

/// The test button: calls the provider with the integration's credential and shows the answer.
async fn check_integration(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    let outcome = crate::integrations::check(&app, &m.tenant, &id).await;
    integrations_view(&app, &m, Some(outcome)).await
}

async fn delete_integration(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>, Form(f): Form<CsrfForm>) -> Response {
    if !csrf_ok(&m, &f.csrf) {
        return forbidden(&m, STALE_FORM);
    }
    match app.platform.delete_integration(&m.tenant, &id).await {
        Ok(()) => Redirect::to("/console/integrations").into_response(),
        Err(e) => domain_error(&m, e),
    }
}

/// Money for people: cents, or more digits for amounts below a cent.
fn dollars(micros: i64) -> String {
    if micros != 0 && micros.abs() < 10_000 {
        format!("${:.6}", micros as f64 / 1e6)
    } else {
        format!("${:.2}", micros as f64 / 1e6)
    }
}

/// The last 30 days of the tenant's usage: list cost per day as a bar chart, and a table
/// per agent and model.
async fn usage_page(State(app): State<AppState>, Member(m): Member) -> Response {
    use openma_core::ports::{UsageGroup, UsageQuery};
    let now = app.platform.clock.now().as_micros();
    let from = now - 30 * 86_400_000_000;
    let query = |group_by: Vec<UsageGroup>| UsageQuery { group_by, from: Some(from), to: None };
    let by_day = app.platform.store.usage_report(&m.tenant, &query(vec![UsageGroup::Day])).await;
    let by_agent = app.platform.store.usage_report(&m.tenant, &query(vec![UsageGroup::Agent, UsageGroup::Model, UsageGroup::Kind])).await;
    let (Ok(by_day), Ok(by_agent)) = (by_day, by_agent) else {
        return failed(&m, StatusCode::INTERNAL_SERVER_ERROR, "The usage could not be read.");
    };
    let today = now / 86_400_000_000;
    let days: Vec<(i64, i64)> = (today - 29..=today).map(|d| (d, by_day.iter().filter(|r| r.day == Some(d)).map(|r| r.amount_micros).sum())).collect();
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let total: i64 = days.iter().map(|d| d.1).sum();
    let (w, h) = (600i64, 120i64);
    let bar = w / 30;
    let date = |d: i64| openma_types::Timestamp::from_micros(d * 86_400_000_000).to_string().chars().take(10).collect::<String>();
    page(
        "Usage",
        Some(&m),
        html! {
            h1 { "Usage" }
            p { "Last 30 days at list prices: " strong #usage-total { (dollars(total)) } }
            svg width=(w) height=(h + 20) viewBox={ "0 0 " (w) " " (h + 20) } role="img" aria-label="list cost per day" style="max-width:100%" {
                @for (i, (d, amount)) in days.iter().enumerate() {
                    @let bh = amount * h / max;
                    rect x=(i as i64 * bar + 1) y=(h - bh) width=(bar - 2) height=(bh.max(1)) fill="#0a66c2" {
                        title { (date(*d)) ": " (dollars(*amount)) }
                    }
                }
                text x="0" y=(h + 15) font-size="11" { (date(today - 29)) }
                text x=(w) y=(h + 15) font-size="11" text-anchor="end" { (date(today)) }
            }
            h2 { "By agent and model" }
            @if by_agent.is_empty() { p.empty { "No usage in the last 30 days." } }
            @else {
                table {
                    thead { tr { th { "Agent" } th { "Model" } th { "Kind" } th { "Quantity" } th { "List cost" } } }
                    tbody { @for r in &by_agent {
                        tr {
                            td { code { (r.agent_id.clone().unwrap_or_default()) } }
                            td { (r.model.clone().unwrap_or_default()) }
                            td { (r.kind.clone().unwrap_or_default()) }
                            td { (r.quantity) }
                            td { (dollars(r.amount_micros)) }
                        }
                    } }
                }
            }
        },
    )
    .into_response()
}

fn status_of(s: &openma_types::sessions::Session) -> String {
    serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[derive(Deserialize)]
struct SessionsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
}

/// Sessions of the tenant, newest first, filtered by status and searched by title or id.
async fn sessions_page(State(app): State<AppState>, Member(m): Member, axum::extract::Query(q): axum::extract::Query<SessionsQuery>) -> Response {
    let mut filter = SessionFilter::default();
    if !q.status.is_empty() {
        match serde_json::from_value(serde_json::Value::String(q.status.clone())) {
            Ok(s) => filter.statuses = vec![s],
            Err(_) => return (StatusCode::BAD_REQUEST, page("Sessions", Some(&m), html! { p.error { "Unknown status." } })).into_response(),
        }
    }
    let params = ListParams { limit: Some(100), ..Default::default() };
    let Ok(list) = app.platform.list_sessions(&m.tenant, &params, &filter).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, page("Error", Some(&m), html! { p.error { "The sessions could not be read." } })).into_response();
    };
    let needle = q.q.trim().to_lowercase();
    let shown: Vec<_> = list
        .data
        .iter()
        .filter(|s| needle.is_empty() || s.id.to_lowercase().contains(&needle) || s.title.as_deref().unwrap_or_default().to_lowercase().contains(&needle))
        .collect();
    page(
        "Sessions",
        Some(&m),
        html! {
            h1 { "Sessions" }
            form method="get" action="/console/sessions" {
                label { "Search " input type="search" name="q" value=(q.q); }
                label { "Status "
                    select name="status" {
                        @for st in ["", "idle", "running", "rescheduling", "terminated"] {
                            option value=(st) selected[st == q.status] { (if st.is_empty() { "any" } else { st }) }
                        }
                    }
                }
                button type="submit" { "Filter" }
            }
            @if shown.is_empty() {
                p.empty { "No session matches." }
            } @else {
                table {
                    thead { tr { th { "Session" } th { "Status" } th { "Agent" } th { "Title" } th { "Created" } } }
                    tbody {
                        @for s in &shown {
                            tr {
                                td { a href={ "/console/sessions/" (s.id) } { code { (s.id) } } }
                                td { (status_of(s)) }
                                td { (s.agent.name) }
                                td { (s.title.clone().unwrap_or_default()) }
                                td { (s.created_at.to_string()) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// One session: its timeline (tool calls paired with their results, thinking, messages,
/// errors, usage) kept live over the event stream, and the forms to talk to it.
async fn session_page(State(app): State<AppState>, Member(m): Member, crate::extract::ApiPath(id): crate::extract::ApiPath<String>) -> Response {
    let session = match app.platform.get_session(&m.tenant, &id).await {
        Ok(s) => s,
        Err(openma_core::DomainError::NotFound { .. }) => {
            return (StatusCode::NOT_FOUND, page("Not found", Some(&m), html! { p.error { "No such session in this tenant." } })).into_response();
        }
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, page("Error", Some(&m), html! { p.error { "The session could not be read." } })).into_response(),
    };
    let query = openma_core::ports::EventQuery { limit: 1000, ..Default::default() };
    let events: Vec<serde_json::Value> = match app.platform.list_events(&m.tenant, &id, &query).await {
        Ok(rows) => rows.into_iter().filter_map(|e| serde_json::to_value(&e.event).ok()).collect(),
        Err(_) => Vec::new(),
    };
    // `</` cannot end the script element the JSON sits in
    let initial = serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()).replace("</", "<\\/");
    page(
        session.title.as_deref().unwrap_or("Session"),
        Some(&m),
        html! {
            h1 { (session.title.clone().unwrap_or_else(|| session.id.clone())) }
            p { code { (session.id) } " · " (session.agent.name) " · " span #status { (status_of(&session)) } }
            ol #timeline aria-live="polite" {}
            form #send {
                label { "Message " textarea name="text" rows="3" required {} }
                button type="submit" { "Send" }
                " "
                button type="button" #interrupt { "Interrupt" }
                " "
                button type="button" #archive { "Archive" }
            }
            p #problem .error role="alert" {}
            script type="application/json" #initial { (maud::PreEscaped(initial)) }
            script { (maud::PreEscaped(format!("const SESSION={};const CSRF={};{}", serde_json::json!(session.id), serde_json::json!(m.csrf_token), TIMELINE_JS))) }
        },
    )
    .into_response()
}

/// The session page's script: renders events (from the page, then from the stream), pairs
/// tool results with their calls, and sends messages, confirmations and interrupts through
/// the API with the page's CSRF token.
const TIMELINE_JS: &str = r#"
const list=document.getElementById('timeline');const seen=new Set();
const text=c=>(c||[]).filter(b=>b.type==='text').map(b=>b.text).join('');
function post(events){return fetch('/v1/sessions/'+SESSION+'/events',{method:'POST',headers:{'content-type':'application/json','x-csrf-token':CSRF},body:JSON.stringify({events})}).then(r=>{if(!r.ok)return r.json().then(j=>{document.getElementById('problem').textContent=j.error?j.error.message:'request failed'})})}
function item(cls,label,body){const li=document.createElement('li');li.className=cls;const b=document.createElement('b');b.textContent=label+' ';li.append(b);const span=document.createElement('span');span.textContent=body;li.append(span);list.append(li);return li}
function render(e){if(!e.id||seen.has(e.id))return;seen.add(e.id);switch(e.type){
case 'user.message':item('user','You:',text(e.content));break;
case 'agent.message':item('agent','Agent:',text(e.content));break;
case 'agent.thinking':item('thinking','Thinking:',e.thinking||'');break;
case 'agent.tool_use':case 'agent.mcp_tool_use':case 'agent.custom_tool_use':{const li=item('tool','→ '+e.name,JSON.stringify(e.input));li.id='call-'+e.id;
 if(e.evaluated_permission==='ask'||e.type==='agent.custom_tool_use'){const p=document.createElement('p');p.className='ask';
  if(e.type==='agent.custom_tool_use'){const i=document.createElement('input');i.setAttribute('aria-label','result of '+e.name);const s=document.createElement('button');s.textContent='Send result';s.onclick=()=>post([{type:'user.custom_tool_result',custom_tool_use_id:e.id,content:[{type:'text',text:i.value}]}]);p.append(i,s)}
  else{for(const [label,result] of [['Allow','allow'],['Deny','deny']]){const b=document.createElement('button');b.textContent=label;b.onclick=()=>post([{type:'user.tool_confirmation',tool_use_id:e.id,result}]);p.append(b,' ')}}
  li.append(p)}break}
case 'agent.tool_result':case 'agent.mcp_tool_result':case 'user.custom_tool_result':case 'user.tool_confirmation':{const call=document.getElementById('call-'+(e.tool_use_id||e.mcp_tool_use_id||e.custom_tool_use_id));const target=call||item('tool','result','');
 const ask=target.querySelector('.ask');if(ask)ask.remove();if(e.type!=='user.tool_confirmation'){const pre=document.createElement('pre');pre.textContent=(e.is_error?'error: ':'')+text(e.content);target.append(pre)}else if(e.result==='deny'){const d=document.createElement('p');d.textContent='denied';target.append(d)}break}
case 'session.error':item('error','Error:',(e.error&&e.error.message)||'');break;
case 'session.usage':{const u=e.usage||{};item('usage','Usage:',(u.input_tokens||0)+' in / '+(u.output_tokens||0)+' out'+(u.list_cost?' · '+u.list_cost.amount+' '+u.list_cost.currency:''));break}
case 'session.status_idle':document.getElementById('status').textContent='idle';break;
case 'session.status_running':document.getElementById('status').textContent='running';break;
case 'session.status_terminated':document.getElementById('status').textContent='terminated';break;}}
JSON.parse(document.getElementById('initial').textContent).forEach(render);
const stream=new EventSource('/v1/sessions/'+SESSION+'/events/stream');const onEvent=m=>{try{render(JSON.parse(m.data))}catch(_){}};stream.onmessage=onEvent;
for(const t of ['user.message','agent.message','agent.thinking','agent.tool_use','agent.mcp_tool_use','agent.custom_tool_use','agent.tool_result','agent.mcp_tool_result','user.custom_tool_result','user.tool_confirmation','user.interrupt','session.error','session.usage','session.status_idle','session.status_running','session.status_terminated'])stream.addEventListener(t,onEvent);
document.getElementById('send').onsubmit=ev=>{ev.preventDefault();const t=ev.target.text;const v=t.value.trim();if(!v)return;post([{type:'user.message',content:[{type:'text',text:v}]}]).then(()=>{t.value=''})};
document.getElementById('interrupt').onclick=()=>post([{type:'user.interrupt'}]);
document.getElementById('archive').onclick=()=>fetch('/v1/sessions/'+SESSION+'/archive',{method:'POST',headers:{'x-csrf-token':CSRF}}).then(r=>r.json()).then(j=>{if(j.error)document.getElementById('problem').textContent=j.error.message;else document.getElementById('status').textContent='archived'});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery!"));
        assert!(hash_password("short").is_err());
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&h));
    }
}
