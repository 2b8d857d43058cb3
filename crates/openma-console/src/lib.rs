//! The web console: server-rendered pages (maud), no asset from the internet, written once
//! and served by both the native server and the Workers. People sign in with an e-mail and
//! a password (argon2id); a signed-in session is an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure` behind HTTPS) whose token is stored only as its SHA-256; every form carries the
//! session's CSRF token; sign-in attempts are throttled per e-mail. Pages use the same
//! domain operations and the same tenant scoping as API keys.
//!
//! The crate knows no HTTP framework: a runtime turns its request into a [`Request`], calls
//! [`serve`] with its [`Backend`], and writes the [`Response`] back.

mod agents;
mod backend;
mod dashboard;
mod integrations;
mod keys;
mod layout;
mod resources;
mod sessions;
pub mod sign_in;
mod usage;

pub use backend::{Backend, Result as BackendResult};
pub use sign_in::{COOKIE, cookie_token, csrf_ok, hash_password, verify_password};

use openma_core::accounts::ConsoleSession;
use serde::de::DeserializeOwned;

/// The largest form body the console takes (the integration form's PEM key is the biggest
/// field); a runtime answers 413 past it.
pub const FORM_LIMIT: usize = 256 * 1024;

/// The parts of an HTTP request the console reads.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: Method,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string (without `?`).
    pub query: String,
    /// The `Cookie` headers' values, joined with `; `.
    pub cookie: Option<String>,
    pub origin: Option<String>,
    pub host: Option<String>,
    /// Whether the browser reached us over HTTPS (directly or through a proxy that says so):
    /// the session cookie is then `Secure`.
    pub https: bool,
    /// The body of a form post (`application/x-www-form-urlencoded`).
    pub body: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    #[default]
    Get,
    Post,
    Other,
}

/// What to answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Headers to set, each name once (they replace what the runtime would default to).
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    fn html(status: u16, markup: maud::Markup) -> Self {
        Response { status, headers: vec![("content-type", "text/html; charset=utf-8".into())], body: markup.into_string() }
    }

    /// A `303 See Other` to `to` (what a form post answers).
    fn redirect(to: &str) -> Self {
        Response { status: 303, headers: vec![("location", to.to_owned())], body: String::new() }
    }

    fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Whether the console answers this path (`/` and everything under `/console`).
pub fn handles(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// Answers a console request, or None when the path is not the console's.
pub async fn serve(b: &dyn Backend, req: &Request) -> Option<Response> {
    if !handles(&req.path) {
        return None;
    }
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = &segments[segments.len().min(1)..];
    use Method::{Get, Post};
    // pages anyone may see
    match (req.method, segments.as_slice()) {
        (Get, []) => return Some(Response::redirect("/console")),
        (Get, ["console", "login"]) => return Some(Response::html(200, sign_in::form(None))),
        (Post, ["console", "login"]) => return Some(sign_in::sign_in(b, req).await),
        _ => {}
    }
    let known = route_exists(rest);
    if !known {
        return Some(Response::html(404, layout::page("Not found", None, maud::html! { p.error { "No such page." } })));
    }
    let m = match member(b, req).await {
        Ok(m) => m,
        Err(r) => return Some(r),
    };
    let m = &m;
    let answer = match (req.method, rest) {
        (Get, []) => dashboard::show(b, m).await,
        (Post, ["logout"]) => with_form(req, m, |f: CsrfForm| sign_in::sign_out(b, req, m, f.csrf)).await,
        (Post, ["tenant"]) => with_form(req, m, |f: sign_in::TenantForm| sign_in::switch_tenant(b, req, m, f)).await,
        (Get, ["agents"]) => agents::list(b, m).await,
        (Post, ["agents"]) => with_form(req, m, |f| agents::create(b, m, f)).await,
        (Get, ["agents", id]) => match query(req) {
            Ok(q) => agents::one(b, m, id, q).await,
            Err(r) => r,
        },
        (Post, ["agents", id]) => with_form(req, m, |f| agents::update(b, m, id, f)).await,
        (Get, ["api-keys"]) => keys::show(b, m, None).await,
        (Post, ["api-keys"]) => with_form(req, m, |f| keys::create(b, m, f)).await,
        (Post, ["api-keys", id, "revoke"]) => with_form(req, m, |f| keys::revoke(b, m, id, f)).await,
        (Get, ["environments"]) => resources::environments(b, m).await,
        (Get, ["environments", id]) => resources::environment(b, m, id).await,
        (Get, ["vaults"]) => resources::vaults(b, m).await,
        (Post, ["vaults", id, "credentials"]) => with_form(req, m, |f| resources::add_credential(b, m, id, f)).await,
        (Get, ["files"]) => resources::files(b, m).await,
        (Get, ["memory"]) => resources::memory_stores(b, m).await,
        (Get, ["memory", id]) => resources::memory_store(b, m, id).await,
        (Post, ["memory", store, "versions", version, "redact"]) => with_form(req, m, |f: CsrfForm| resources::redact_version(b, m, store, version, f.csrf)).await,
        (Get, ["skills"]) => resources::skills(b, m).await,
        (Get, ["model-cards"]) => resources::model_cards(b, m).await,
        (Post, ["model-cards"]) => with_form(req, m, |f| resources::create_model_card(b, m, f)).await,
        (Get, ["usage"]) => usage::show(b, m).await,
        (Get, ["integrations"]) => integrations::show(b, m, None).await,
        (Post, ["integrations"]) => with_form(req, m, |f| integrations::create(b, m, f)).await,
        (Post, ["integrations", id, "check"]) => with_form(req, m, |f: CsrfForm| integrations::check(b, m, id, f.csrf)).await,
        (Post, ["integrations", id, "delete"]) => with_form(req, m, |f: CsrfForm| integrations::delete(b, m, id, f.csrf)).await,
        (Get, ["sessions"]) => match query(req) {
            Ok(q) => sessions::list(b, m, q).await,
            Err(r) => r,
        },
        (Post, ["sessions"]) => with_form(req, m, |f| sessions::start(b, m, f)).await,
        (Get, ["sessions", id]) => sessions::one(b, m, id).await,
        _ => Response::html(405, layout::page("Not allowed", Some(m), maud::html! { p.error { "This page does not take that method." } })).with("allow", allowed(rest).into()),
    };
    Some(answer)
}

/// Whether `rest` (the path after `/console`) names a page, whatever the method.
fn route_exists(rest: &[&str]) -> bool {
    matches!(
        rest,
        [] | ["logout" | "tenant" | "agents" | "api-keys" | "environments" | "vaults" | "files" | "memory" | "skills" | "model-cards" | "usage" | "integrations" | "sessions"]
            | ["agents" | "environments" | "memory" | "sessions", _]
            | ["api-keys", _, "revoke"]
            | ["vaults", _, "credentials"]
            | ["memory", _, "versions", _, "redact"]
            | ["integrations", _, "check" | "delete"]
    )
}

/// The `allow` header of a page that refused a method.
fn allowed(rest: &[&str]) -> &'static str {
    match rest {
        ["logout" | "tenant"] | ["api-keys", _, "revoke"] | ["vaults", _, "credentials"] | ["memory", _, "versions", _, "redact"] | ["integrations", _, _] => "POST",
        ["agents" | "api-keys" | "model-cards" | "integrations" | "sessions"] | ["agents", _] => "GET, POST",
        _ => "GET",
    }
}

/// The signed-in member, or the answer for everyone else (the sign-in page).
async fn member(b: &dyn Backend, req: &Request) -> Result<ConsoleSession, Response> {
    let found = match sign_in::cookie_token(req.cookie.as_deref()) {
        Some(token) => b.console_session(&token).await,
        None => Ok(None),
    };
    match found {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Response::redirect("/console/login")),
        Err(e) => {
            tracing::error!(error = %e.message, "cannot read console sessions");
            Err(Response::html(500, layout::page("Error", None, maud::html! { p.error { "The console sessions could not be read; see the server log." } })))
        }
    }
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Runs `then` with the request's form, or answers 400 for a form that does not parse.
async fn with_form<F: DeserializeOwned, Fut: Future<Output = Response>>(req: &Request, m: &ConsoleSession, then: impl FnOnce(F) -> Fut) -> Response {
    match serde_html_form::from_str::<F>(&req.body) {
        Ok(f) => then(f).await,
        Err(e) => layout::failed(m, 400, &format!("The form is not complete: {e}")),
    }
}

fn query<Q: DeserializeOwned>(req: &Request) -> Result<Q, Response> {
    serde_html_form::from_str(&req.query).map_err(|e| Response::html(400, layout::page("Bad request", None, maud::html! { p.error { "The query is not valid: " (e.to_string()) } })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_routed_page_is_known() {
        for rest in [
            &[][..],
            &["agents"],
            &["agents", "agent_1"],
            &["api-keys", "k", "revoke"],
            &["memory", "s", "versions", "v", "redact"],
            &["integrations", "i", "check"],
            &["sessions", "sesn_1"],
        ] {
            assert!(route_exists(rest), "{rest:?}");
        }
        assert!(!route_exists(&["nope"]));
        assert!(!route_exists(&["agents", "a", "b"]));
        assert!(handles("/") && handles("/console") && handles("/console/agents") && !handles("/consoles") && !handles("/v1/agents"));
    }
}
