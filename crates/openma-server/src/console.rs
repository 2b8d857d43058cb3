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

/// A signed-in member; a page that needs one sends everyone else to the sign-in page.
pub struct Member(pub ConsoleSession);

impl FromRequestParts<AppState> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(token) = cookie_token(&parts.headers) else { return Err(to_login()) };
        match app.platform.console_session(&token).await {
            Ok(Some(s)) => Ok(Member(s)),
            Ok(None) => Err(to_login()),
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
fn csrf_ok(member: &ConsoleSession, sent: &str) -> bool {
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

async fn dashboard(State(app): State<AppState>, Member(m): Member) -> Response {
    let recent = ListParams { limit: Some(10), ..Default::default() };
    let sessions = app.platform.list_sessions(&m.tenant, &recent, &SessionFilter::default()).await;
    let agents = app.platform.list_agents(&m.tenant, &recent).await;
    let (Ok(sessions), Ok(agents)) = (sessions, agents) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, page("Error", Some(&m), html! { p.error { "The dashboard could not be read; see the server log." } })).into_response();
    };
    page(
        "Dashboard",
        Some(&m),
        html! {
            h1 { "Dashboard" }
            h2 { "Recent sessions" }
            @if sessions.data.is_empty() {
                p.empty { "No sessions yet. Start one with " code { "openma chat --agent NAME" } " or the API." }
            } @else {
                table {
                    thead { tr { th { "Session" } th { "Status" } th { "Agent" } th { "Title" } th { "Cost" } } }
                    tbody {
                        @for s in &sessions.data {
                            tr {
                                td { code { (s.id) } }
                                td { (serde_json::to_value(s.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                                td { (s.agent.name) }
                                td { (s.title.clone().unwrap_or_default()) }
                                td { (s.usage.list_cost.as_ref().map(|c| format!("{} {}", c.amount, serde_json::to_value(&c.currency).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default())).unwrap_or_default()) }
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
