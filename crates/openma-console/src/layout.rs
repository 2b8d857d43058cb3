//! The frame every page shares, and the small pieces pages repeat.

use maud::{DOCTYPE, Markup, html};
use openma_core::accounts::ConsoleSession;
use openma_core::platform::ListParams;

use crate::Response;

pub const STALE_FORM: &str = "The form's security token is missing or stale; reload the page.";

pub fn page(title: &str, member: Option<&ConsoleSession>, body: Markup) -> Markup {
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

/// A page that is one table (or a clear empty state), with `extra` below it.
pub fn table_page(m: &ConsoleSession, title: &str, empty: &str, head: &[&str], rows: Vec<Vec<Markup>>, extra: Markup) -> Response {
    Response::html(
        200,
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
        ),
    )
}

pub fn forbidden(m: &ConsoleSession, why: &str) -> Response {
    Response::html(403, page("Forbidden", Some(m), html! { p.error role="alert" { (why) } }))
}

pub fn failed(m: &ConsoleSession, status: u16, why: &str) -> Response {
    Response::html(status, page("Error", Some(m), html! { p.error role="alert" { (why) } }))
}

/// A domain error as the page that shows it (the API's status and message for it).
pub fn domain_error(m: &ConsoleSession, e: openma_core::http_error::HttpError) -> Response {
    failed(m, e.status, &e.message)
}

/// The first hundred of a list, which is all a page shows.
pub fn all() -> ListParams {
    ListParams { limit: Some(100), ..Default::default() }
}

/// A wire enum's name (`"idle"`, `"static_bearer"`, …).
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Money for people: cents, or more digits for amounts below a cent.
pub fn dollars(micros: i64) -> String {
    if micros != 0 && micros.abs() < 10_000 {
        format!("${:.6}", micros as f64 / 1e6)
    } else {
        format!("${:.2}", micros as f64 / 1e6)
    }
}
