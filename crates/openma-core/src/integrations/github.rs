//! GitHub as a front door: a GitHub App's webhook. A mention of the App (`@slug`) in an
//! issue, a pull request or a comment, or the integration's trigger label put on one,
//! starts or resumes the session of that issue; the agent's answer is posted as a comment.
//! A comment `@slug allow` or `@slug deny` answers the tool calls the session waits on.
//!
//! Deliveries are verified with `X-Hub-Signature-256` (HMAC-SHA256 of the body with the
//! webhook secret) and processed once per `X-GitHub-Delivery`. The App's private key signs
//! a short JWT (RS256, ten minutes) that mints an installation token (an hour; kept for 50
//! minutes); the token clones the repository into a new session through the
//! `github_repository` resource (so it never reaches the model, the sandbox's shell or the
//! log) and posts the comments. The API base URL is configurable (GitHub Enterprise). The
//! native server and the Workers both serve it; only the RS256 signature is theirs.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openma_types::integrations::Integration;
use openma_types::sessions::CreateSessionRequest;
use serde_json::{Value, json};

use super::signatures::verify_hex;
use super::turns::{TurnSummary, truncate};
use super::{ProviderApi, thread_session_request};

/// Checks `X-Hub-Signature-256: sha256=<hex>` of `body`.
pub fn verify(secret: &str, signature: Option<&str>, body: &[u8]) -> bool {
    signature.and_then(|s| s.strip_prefix("sha256=")).is_some_and(|sig| verify_hex(secret.as_bytes(), &[body], sig))
}

/// An issue or pull request the App was engaged on.
#[derive(Clone, Debug, PartialEq)]
pub struct Engagement {
    pub installation: u64,
    /// `owner/name`.
    pub repo: String,
    pub number: u64,
    pub title: String,
    pub body: String,
    pub author: String,
    /// The comment that engaged it, if a comment did.
    pub comment: Option<String>,
}

impl Engagement {
    /// Whether an event (`X-GitHub-Event` `kind`) engages the App, and on what: a mention of
    /// `@slug` by a person (not a bot, the App itself included), or the trigger label put on
    /// an issue or pull request.
    pub fn of(integration: &Integration, kind: &str, p: &Value) -> Option<Engagement> {
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

    /// The thread key of the issue: `<installation>:<owner/name>#<number>`.
    pub fn thread(&self) -> String {
        format!("{}:{}#{}", self.installation, self.repo, self.number)
    }

    /// `Some(allow)` when the comment is `@slug allow` or `@slug deny`.
    pub fn answer(&self, integration: &Integration) -> Option<bool> {
        command(self.comment.as_deref()?, integration.app_slug.as_deref()?)
    }

    /// Who answers confirmations from a comment, as the model is told.
    pub fn who(&self) -> String {
        format!("@{} on GitHub", self.author)
    }

    /// Whether a new session of this issue gets the repository cloned.
    pub fn clones(integration: &Integration) -> bool {
        integration.clone_repository.unwrap_or(true)
    }

    /// The new session of the issue; with `token`, the repository as a resource.
    pub fn session_request(&self, integration_id: &str, token: Option<String>) -> CreateSessionRequest {
        let number = self.number.to_string();
        let title = format!("{}#{}: {}", self.repo, self.number, truncate(&self.title, 200));
        let mut req = thread_session_request(title, integration_id, [("github_repository", self.repo.as_str()), ("github_number", number.as_str())]);
        req.resources = token.map(|t| vec![json!({"type": "github_repository", "url": format!("https://github.com/{}", self.repo), "authorization_token": t})]);
        req
    }

    /// What the session is told: the issue itself when `created`, then the comment.
    pub fn prompt(&self, created: bool, cloned: bool) -> String {
        let mut text = String::new();
        if created {
            text = format!(
                "You were engaged on GitHub by @{} on {}#{} \"{}\". Your answer is posted there as a comment.",
                self.author, self.repo, self.number, self.title
            );
            if cloned {
                let name = self.repo.rsplit('/').next().unwrap_or(&self.repo);
                text.push_str(&format!(" The repository is checked out at /workspace/{name}."));
            }
            text.push_str(&format!("\n\nDescription:\n{}", self.body));
        }
        if let Some(c) = &self.comment {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&format!("@{} commented:\n{c}", self.author));
        }
        text
    }
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

/// Installation tokens by (integration, installation) with when they stop being used
/// (epoch seconds): one per process or Worker isolate.
type Tokens = Mutex<HashMap<(String, u64), (String, i64)>>;

fn tokens() -> &'static Tokens {
    static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(Tokens::default)
}

/// An installation token: cached, else minted with the App's JWT. `now`: epoch seconds.
pub async fn installation_token(api: &dyn ProviderApi, integration: &Integration, private_key: &str, installation: u64, now: i64) -> Result<String, String> {
    let key = (integration.id.clone(), installation);
    if let Some((token, until)) = tokens().lock().unwrap_or_else(|e| e.into_inner()).get(&key)
        && now < *until
    {
        return Ok(token.clone());
    }
    let jwt = app_jwt(api, integration, private_key, now).await?;
    let url = format!("{}/app/installations/{installation}/access_tokens", integration.api_base_url);
    let answer = api.post_json(&url, &format!("Bearer {jwt}"), &json!({})).await?;
    let token = answer["token"].as_str().ok_or("the installation token answer has no `token`")?.to_owned();
    // GitHub's tokens live an hour; keep one for 50 minutes at most
    tokens().lock().unwrap_or_else(|e| e.into_inner()).insert(key, (token.clone(), now + 50 * 60));
    Ok(token)
}

/// `GET /app` with the App's JWT: the App id and private key belong together.
pub async fn check(api: &dyn ProviderApi, integration: &Integration, private_key: &str, now: i64) -> Result<String, String> {
    let jwt = app_jwt(api, integration, private_key, now).await?;
    let a = api.get_json(&format!("{}/app", integration.api_base_url), &format!("Bearer {jwt}")).await?;
    Ok(format!("GitHub: the App is {}", a["slug"].as_str().or(a["name"].as_str()).unwrap_or("?")))
}

/// The App's JWT: RS256 over `{iat: now - 60, exp: now + 540, iss: app_id}`.
async fn app_jwt(api: &dyn ProviderApi, integration: &Integration, private_key: &str, now: i64) -> Result<String, String> {
    let app_id = integration.app_id.as_deref().ok_or("the integration has no app_id")?;
    let key = private_key_pkcs8(private_key)?;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(json!({"iat": now - 60, "exp": now + 540, "iss": app_id}).to_string());
    let signing_input = format!("{header}.{claims}");
    let sig = api.sign_rs256(&key, signing_input.as_bytes()).await?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// The App's private key as PKCS#8 DER, from the PEM GitHub hands out (PKCS#1, `RSA PRIVATE
/// KEY`) or a PKCS#8 one (`PRIVATE KEY`): the one form both ring and WebCrypto import.
pub fn private_key_pkcs8(pem: &str) -> Result<Vec<u8>, String> {
    let (label, der) = pem_decode(pem).ok_or("the private key is not PEM")?;
    match label.as_str() {
        "PRIVATE KEY" => Ok(der),
        "RSA PRIVATE KEY" => {
            // PrivateKeyInfo { version 0, rsaEncryption with NULL parameters, OCTET STRING key }
            const HEAD: [u8; 18] = [0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
            let mut body = HEAD.to_vec();
            body.extend(der_header(0x04, der.len()));
            body.extend(der);
            let mut out = der_header(0x30, body.len());
            out.extend(body);
            Ok(out)
        }
        other => Err(format!("the private key is a `{other}`, not an RSA key")),
    }
}

/// A DER tag and definite length.
fn der_header(tag: u8, len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![tag, len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    let mut out = vec![tag, 0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// The label and bytes of the first PEM block.
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let begin = pem.find("-----BEGIN ")?;
    let rest = &pem[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let b64: String = rest.get(body_start..end)?.chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, STANDARD.decode(b64).ok()?))
}

/// Posts a turn's answer (and what waits for a confirmation) as a comment on its issue.
pub async fn reply(api: &dyn ProviderApi, integration: &Integration, private_key: &str, thread: &str, turn: &TurnSummary, now: i64) -> Result<(), String> {
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
    let token = installation_token(api, integration, private_key, installation, now).await?;
    let url = format!("{}/repos/{repo}/issues/{number}/comments", integration.api_base_url);
    api.post_json(&url, &format!("Bearer {token}"), &json!({"body": body})).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::signatures::sign_hex;

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
        let sig = format!("sha256={}", sign_hex(b"whsec", &[body]));
        assert!(verify("whsec", Some(&sig), body));
        assert!(!verify("other", Some(&sig), body));
        assert!(!verify("whsec", Some(&sig), b"{}"));
        assert!(!verify("whsec", None, body));
        assert!(!verify("whsec", Some(sig.trim_start_matches("sha256=")), body));
    }

    #[test]
    fn pkcs1_keys_are_wrapped_as_pkcs8() {
        let pem = |label: &str, der: &[u8]| format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", STANDARD.encode(der));
        // a short body keeps one-byte lengths; a long one needs the long form
        let short = private_key_pkcs8(&pem("RSA PRIVATE KEY", &[0x30, 0x00])).unwrap();
        assert_eq!(short[..2], [0x30, 22]);
        assert_eq!(short[20..], [0x04, 0x02, 0x30, 0x00]);
        let long = private_key_pkcs8(&pem("RSA PRIVATE KEY", &vec![7; 1200])).unwrap();
        assert_eq!(long[..4], [0x30, 0x82, 0x04, 0xc6]);
        assert_eq!(long[22..26], [0x04, 0x82, 0x04, 0xb0]);
        assert_eq!(long.len(), 4 + 18 + 4 + 1200);
        assert_eq!(private_key_pkcs8(&pem("PRIVATE KEY", &[1, 2, 3])).unwrap(), vec![1, 2, 3]);
        assert!(private_key_pkcs8(&pem("EC PRIVATE KEY", &[1])).unwrap_err().contains("not an RSA key"));
        assert!(private_key_pkcs8("not pem").is_err());
    }
}
