//! GitHub as a front door: a GitHub App's webhook. A mention of the App (`@slug`) in an
//! issue, a pull request or a comment, or the integration's trigger label put on one,
//! starts or resumes the session of that issue; the agent's answer is posted as a comment.
//! A comment `@slug allow` or `@slug deny` answers the tool calls the session waits on.
//!
//! Deliveries are verified with `X-Hub-Signature-256` (HMAC-SHA256 of the body with the
//! webhook secret) and processed once per `X-GitHub-Delivery`. The App's private key signs
//! a short JWT (RS256, ten minutes) that mints an installation token (an hour; cached until
//! five minutes before it expires); the token clones the repository into a new session
//! through the `github_repository` resource (so it never reaches the model, the sandbox or
//! the log) and posts the comments. The API base URL is configurable (GitHub Enterprise).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openma_core::TenantId;
use openma_types::integrations::{Integration, IntegrationProvider};
use serde_json::{Value, json};

use openma_core::integrations::signatures::verify_hex;
use openma_core::integrations::thread_session_request;
use openma_core::integrations::turns::{TurnSummary, truncate};

use super::{find, first_time, post_json, rejected};
use crate::app::AppState;
use crate::extract::ApiPath;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/integrations/github/{integration_id}/events", post(events))
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` of `body`.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let sig = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()).and_then(|s| s.strip_prefix("sha256="));
    sig.is_some_and(|sig| verify_hex(secret.as_bytes(), &[body], sig))
}

/// Installation tokens by (integration, installation), until shortly before they expire.
#[derive(Default)]
pub struct Tokens {
    cache: Mutex<HashMap<(String, u64), (String, Instant)>>,
}

/// The tokens of this process.
fn tokens() -> &'static Tokens {
    static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(Tokens::default)
}

impl Tokens {
    /// An installation token: from the cache, else minted with the App's JWT.
    async fn get(&self, integration: &Integration, private_key: &str, installation: u64) -> Result<String, String> {
        let key = (integration.id.clone(), installation);
        if let Some((token, until)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let jwt = integration_jwt(integration, private_key)?;
        let url = format!("{}/app/installations/{installation}/access_tokens", integration.api_base_url);
        let answer = post_json(&url, &format!("Bearer {jwt}"), &json!({})).await?;
        let token = answer["token"].as_str().ok_or("the installation token answer has no `token`")?.to_owned();
        // GitHub's tokens live an hour; keep one for 50 minutes at most
        let until = Instant::now() + Duration::from_secs(50 * 60);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (token.clone(), until));
        Ok(token)
    }
}

/// `GET /app` with the App's JWT: the App id and private key belong together.
pub(crate) async fn check(integration: &Integration, private_key: &str) -> Result<String, String> {
    let jwt = integration_jwt(integration, private_key)?;
    let a = super::get_json(&format!("{}/app", integration.api_base_url), &format!("Bearer {jwt}")).await?;
    Ok(format!("GitHub: the App is {}", a["slug"].as_str().or(a["name"].as_str()).unwrap_or("?")))
}

/// The App's JWT for an integration, as of now.
fn integration_jwt(integration: &Integration, private_key: &str) -> Result<String, String> {
    let app_id = integration.app_id.as_deref().ok_or("the integration has no app_id")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs() as i64;
    app_jwt(app_id, private_key, now)
}

/// The App's JWT: RS256 over `{iat: now - 60, exp: now + 540, iss: app_id}`.
pub fn app_jwt(app_id: &str, private_key_pem: &str, now: i64) -> Result<String, String> {
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let (label, der) = pem_decode(private_key_pem).ok_or("the private key is not PEM")?;
    let key = match label.as_str() {
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        other => return Err(format!("the private key is a `{other}`, not an RSA key")),
    }
    .map_err(|e| format!("the private key cannot be read: {e}"))?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"iat": now - 60, "exp": now + 540, "iss": app_id}).to_string());
    let signing_input = format!("{header}.{claims}");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig).map_err(|_| "cannot sign the App's JWT")?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The label and bytes of the first PEM block.
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let b64: String = rest[body_start..end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

/// An issue or pull request the App was engaged on.
struct Engagement {
    installation: u64,
    repo: String,
    number: u64,
    title: String,
    body: String,
    author: String,
    /// The comment that engaged it, if a comment did.
    comment: Option<String>,
}

/// `POST /integrations/github/{id}/events`: the App's webhook URL.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let found = match find(&app, &id, IntegrationProvider::Github).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (tenant, integration, private_key) = (found.tenant, found.integration, found.credential);
    if !verify(&found.signing_secret, &headers, &body) {
        return rejected("github", &id, "missing or wrong X-Hub-Signature-256");
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (kind, delivery) = (header("x-github-event"), header("x-github-delivery"));
    if delivery.is_empty() {
        return (StatusCode::BAD_REQUEST, "no X-GitHub-Delivery").into_response();
    }
    match first_time(&app, &id, &delivery).await {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK.into_response(),
        Err(r) => return r,
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(engaged) = engagement(&integration, &kind, &payload) else {
        return StatusCode::OK.into_response();
    };
    metrics::counter!("openma_integration_events_total", "provider" => "github").increment(1);
    tokio::spawn(async move {
        if let Err(e) = handle(&app, &tenant, &integration, &private_key, engaged).await {
            tracing::warn!(integration_id = %integration.id, error = %e, "cannot pass a GitHub event to its session");
        }
    });
    StatusCode::OK.into_response()
}

/// Whether an event engages the App, and on what: a mention of `@slug` by a person (not a
/// bot, the App itself included), or the trigger label put on an issue or pull request.
fn engagement(integration: &Integration, kind: &str, p: &Value) -> Option<Engagement> {
    let slug = integration.app_slug.as_deref()?;
    let action = p["action"].as_str().unwrap_or_default();
    let (item, comment) = match (kind, action) {
        ("issue_comment", "created") => (&p["issue"], Some(&p["comment"])),
        ("issues", "opened" | "labeled") => (&p["issue"], None),
        ("pull_request", "opened" | "labeled") => (&p["pull_request"], None),
        _ => return None,
    };
    let by = comment.map(|c| &c["user"]).unwrap_or(&p["sender"]);
    if by["type"] == "Bot" || comment.is_some_and(|c| !c["performed_via_github_app"].is_null()) {
        return None;
    }
    let text = comment.map(|c| &c["body"]).unwrap_or(&item["body"]).as_str().unwrap_or_default();
    let labeled = action == "labeled" && integration.trigger_label.as_deref().is_some_and(|l| p["label"]["name"] == l);
    if !mentions(text, slug) && !labeled {
        return None;
    }
    Some(Engagement {
        installation: p["installation"]["id"].as_u64()?,
        repo: p["repository"]["full_name"].as_str()?.to_owned(),
        number: item["number"].as_u64()?,
        title: item["title"].as_str().unwrap_or_default().to_owned(),
        body: item["body"].as_str().unwrap_or_default().to_owned(),
        author: by["login"].as_str().unwrap_or("someone").to_owned(),
        comment: comment.map(|c| c["body"].as_str().unwrap_or_default().to_owned()),
    })
}

/// `@slug` as a whole word (not `@slug-other` or an e-mail address).
fn mentions(text: &str, slug: &str) -> bool {
    let needle = format!("@{}", slug.to_ascii_lowercase());
    let lower = text.to_ascii_lowercase();
    lower.match_indices(&needle).any(|(i, _)| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// `@slug allow` / `@slug deny` as the whole comment.
fn command(text: &str, slug: &str) -> Option<bool> {
    let rest = text.trim().strip_prefix('@')?.strip_prefix(slug)?.trim().to_ascii_lowercase();
    match rest.as_str() {
        "allow" | "approve" => Some(true),
        "deny" => Some(false),
        _ => None,
    }
}

fn thread_key(installation: u64, repo: &str, number: u64) -> String {
    format!("{installation}:{repo}#{number}")
}

async fn handle(app: &AppState, tenant: &TenantId, integration: &Integration, private_key: &str, e: Engagement) -> Result<(), String> {
    let thread = thread_key(e.installation, &e.repo, e.number);
    let slug = integration.app_slug.as_deref().unwrap_or_default();
    if let Some(allow) = e.comment.as_deref().and_then(|c| command(c, slug))
        && let Some(sid) = app.platform.store.integration_thread_session(&integration.id, &thread).await.map_err(|e| e.to_string())?
    {
        let n = super::confirm_pending(app, tenant, &sid, allow, &format!("@{} on GitHub", e.author)).await?;
        tracing::info!(session_id = %sid, answered = n, allow, "tool calls answered from a GitHub comment");
        return Ok(());
    }
    let clone = integration.clone_repository.unwrap_or(true);
    let known = app.platform.store.integration_thread_session(&integration.id, &thread).await.map_err(|e| e.to_string())?.is_some();
    // a new session gets the repository, cloned with an installation token
    let token = if clone && !known { Some(tokens().get(integration, private_key, e.installation).await?) } else { None };
    let name = e.repo.rsplit('/').next().unwrap_or(&e.repo).to_owned();
    let (session_id, created) = super::thread_session(app, tenant, integration, &thread, || {
        let number = e.number.to_string();
        let title = format!("{}#{}: {}", e.repo, e.number, truncate(&e.title, 200));
        let mut req = thread_session_request(title, &integration.id, [("github_repository", e.repo.as_str()), ("github_number", number.as_str())]);
        req.resources = token.map(|t| vec![json!({"type": "github_repository", "url": format!("https://github.com/{}", e.repo), "authorization_token": t})]);
        req
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut text = if created {
        let mut t = format!(
            "You were engaged on GitHub by @{} on {}#{} \"{}\". Your answer is posted there as a comment.",
            e.author, e.repo, e.number, e.title
        );
        if clone {
            t.push_str(&format!(" The repository is checked out at /workspace/{name}."));
        }
        t.push_str(&format!("\n\nDescription:\n{}", e.body));
        t
    } else {
        String::new()
    };
    if let Some(c) = &e.comment {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!("@{} commented:\n{c}", e.author));
    }
    super::say(app, tenant, &session_id, text).await.map_err(|e| e.to_string())
}

/// Posts a turn's answer (and what waits for a confirmation) as a comment on its issue.
pub(crate) async fn reply(integration: &Integration, private_key: &str, thread: &str, turn: &TurnSummary) -> Result<(), String> {
    let (installation, rest) = thread.split_once(':').ok_or("malformed thread")?;
    let (repo, number) = rest.rsplit_once('#').ok_or("malformed thread")?;
    let installation: u64 = installation.parse().map_err(|_| "malformed thread")?;
    let mut body = turn.text.trim().to_owned();
    if !turn.asks.is_empty() {
        let slug = integration.app_slug.as_deref().unwrap_or("app");
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&format!(
            "The agent waits for a confirmation to use:\n{}\n\nReply `@{slug} allow` or `@{slug} deny`.",
            turn.asks_text()
        ));
    }
    if body.is_empty() {
        return Ok(());
    }
    let token = tokens().get(integration, private_key, installation).await?;
    let url = format!("{}/repos/{repo}/issues/{number}/comments", integration.api_base_url);
    post_json(&url, &format!("Bearer {token}"), &json!({"body": body})).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_whole_words() {
        assert!(mentions("hey @Helper-Bot, look", "helper-bot"));
        assert!(mentions("@helper-bot", "helper-bot"));
        assert!(!mentions("hey @helper-bot-2", "helper-bot"));
        assert!(!mentions("mail me@helper-bot.com", "helper-bot"));
        assert_eq!(command(" @helper-bot  Allow ", "helper-bot"), Some(true));
        assert_eq!(command("@helper-bot deny", "helper-bot"), Some(false));
        assert_eq!(command("@helper-bot please allow it", "helper-bot"), None);
    }

    #[test]
    fn signatures_cover_the_body() {
        let body = br#"{"action":"created"}"#;
        let sig = openma_core::integrations::signatures::sign_hex(b"whsec", &[body]);
        let mut h = HeaderMap::new();
        h.insert("x-hub-signature-256", format!("sha256={sig}").parse().unwrap());
        assert!(verify("whsec", &h, body));
        assert!(!verify("other", &h, body));
        assert!(!verify("whsec", &h, b"{}"));
        assert!(!verify("whsec", &HeaderMap::new(), body));
    }
}
