//! Signing in and out: argon2id passwords, the session cookie, CSRF tokens, the tenant a
//! signed-in member works in.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use maud::{Markup, html};
use openma_core::accounts::ConsoleSession;
use serde::Deserialize;

use crate::layout::{STALE_FORM, domain_error, forbidden, page};
use crate::{Backend, Request, Response};

/// The session cookie's name.
pub const COOKIE: &str = "openma_console";
/// How long a console session lasts (12 hours).
const SESSION_TTL_S: i64 = 12 * 3600;

/// An argon2id hash of `password` with `salt` (for `openma users …`; the caller brings the
/// random salt).
pub fn hash_password(password: &str, salt: [u8; 16]) -> Result<String, String> {
    if password.chars().count() < 12 {
        return Err("a password has at least 12 characters".into());
    }
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string())
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A random token for cookies and CSRF (256 bits, hex).
fn token(b: &dyn Backend) -> String {
    b.random_bytes().iter().chain(b.random_bytes().iter()).map(|x| format!("{x:02x}")).collect()
}

/// A hash nobody's password matches, verified for unknown e-mails so that they take as long.
fn decoy_hash(b: &dyn Backend) -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password(&token(b), b.random_bytes()).unwrap_or_default())
}

/// The console session token of a request's `Cookie` header(s).
pub fn cookie_token(cookie: Option<&str>) -> Option<String> {
    cookie?.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v.to_owned())
}

/// Checks a form's CSRF token against the session's (in constant time).
pub fn csrf_ok(member: &ConsoleSession, sent: &str) -> bool {
    use subtle::ConstantTimeEq;
    let want = member.csrf_token.as_bytes();
    want.len() == sent.len() && bool::from(want.ct_eq(sent.as_bytes()))
}

/// Refuses a cross-site form post (the sign-in form has no session to carry a CSRF token):
/// a browser's `Origin`, when sent, must name this host.
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.origin.as_deref() else { return true };
    origin.split_once("://").is_some_and(|(_, rest)| Some(rest) == req.host.as_deref())
}

pub fn form(error: Option<&str>) -> Markup {
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

#[derive(Deserialize)]
struct SignInForm {
    email: String,
    password: String,
}

pub async fn sign_in(b: &dyn Backend, req: &Request) -> Response {
    if !same_origin(req) {
        return Response::html(403, form(Some("This form must be sent from this site.")));
    }
    let f: SignInForm = match serde_html_form::from_str(&req.body) {
        Ok(f) => f,
        Err(_) => return Response::html(400, form(Some("Give an e-mail and a password."))),
    };
    let key = f.email.trim().to_ascii_lowercase();
    if let Err(wait) = b.sign_in_allowed(&key).await {
        let wait = wait.max(1);
        return Response::html(429, form(Some(&format!("Too many attempts; try again in {wait} s.")))).with("retry-after", wait.to_string());
    }
    let user = b.find_user(&f.email).await.ok().flatten();
    let hash = user.as_ref().map(|u| u.password_hash.clone()).unwrap_or_else(|| decoy_hash(b).to_owned());
    let ok = b.verify_password(hash, f.password).await;
    let Some(user) = user.filter(|_| ok) else {
        tracing::info!(email = %key, "console sign-in refused");
        return Response::html(401, form(Some("Wrong e-mail or password.")));
    };
    let tenant = match b.memberships(&user.id).await {
        Ok(m) if !m.is_empty() => m[0].0.clone(),
        _ => return Response::html(403, form(Some("This account belongs to no tenant."))),
    };
    let (session_token, csrf) = (token(b), token(b));
    if let Err(e) = b.start_console_session(&session_token, &user.id, &tenant, &csrf, SESSION_TTL_S).await {
        tracing::error!(error = %e.message, "cannot start a console session");
        return Response::html(500, form(Some("The sign-in could not be recorded; see the server log.")));
    }
    tracing::info!(user_id = %user.id, tenant = %tenant, "console sign-in");
    let mut cookie = format!("{COOKIE}={session_token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_TTL_S}");
    if req.https {
        cookie.push_str("; Secure");
    }
    Response::redirect("/console").with("set-cookie", cookie)
}

pub async fn sign_out(b: &dyn Backend, req: &Request, m: &ConsoleSession, csrf: String) -> Response {
    if !csrf_ok(m, &csrf) {
        return forbidden(m, STALE_FORM);
    }
    if let Some(t) = cookie_token(req.cookie.as_deref()) {
        let _ = b.end_console_session(&t).await;
    }
    Response::redirect("/console/login").with("set-cookie", format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"))
}

#[derive(Deserialize)]
pub struct TenantForm {
    #[serde(default)]
    csrf: String,
    tenant: String,
}

/// Moves the signed-in session to another tenant the member belongs to.
pub async fn switch_tenant(b: &dyn Backend, req: &Request, m: &ConsoleSession, f: TenantForm) -> Response {
    if !csrf_ok(m, &f.csrf) {
        return forbidden(m, STALE_FORM);
    }
    let Some(token) = cookie_token(req.cookie.as_deref()) else { return Response::redirect("/console/login") };
    match b.switch_console_tenant(&token, &m.user_id, &openma_core::TenantId::from_trusted(f.tenant)).await {
        Ok(()) => Response::redirect("/console"),
        Err(e) => domain_error(m, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_argon2id_and_verify() {
        let h = hash_password("correct horse battery", [7; 16]).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse battery!"));
        assert!(hash_password("short", [7; 16]).is_err());
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let mut r = Request { host: Some("127.0.0.1:8080".into()), ..Default::default() };
        assert!(same_origin(&r));
        r.origin = Some("http://127.0.0.1:8080".into());
        assert!(same_origin(&r));
        r.origin = Some("https://evil.example".into());
        assert!(!same_origin(&r));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(cookie_token(Some("a=1; openma_console=abc; b=2")).as_deref(), Some("abc"));
        assert_eq!(cookie_token(Some("openma_consoles=x")), None);
        assert_eq!(cookie_token(None), None);
    }
}
