//! GitHub as a front door (see [`openma_core::integrations::github`]): the App's webhook
//! on this server. The delivery is verified and recorded before it is acknowledged; what
//! it asks of the session runs after the response.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openma_core::TenantId;
use openma_core::integrations::github::{self as core_github, Engagement};
use openma_types::integrations::{Integration, IntegrationProvider};
use serde_json::Value;

use super::{Api, find, first_time, rejected};
use crate::app::AppState;
use crate::extract::ApiPath;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/integrations/github/{integration_id}/events", post(events))
}

/// Epoch seconds, for the App's JWT and the token cache.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// The App's RS256 signature, by ring.
pub(crate) fn sign_rs256(pkcs8_der: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
    let key = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|e| format!("the private key cannot be read: {e}"))?;
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input, &mut sig).map_err(|_| "cannot sign the App's JWT")?;
    Ok(sig)
}

/// `POST /integrations/github/{id}/events`: the App's webhook URL.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let found = match find(&app, &id, IntegrationProvider::Github).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (tenant, integration, private_key) = (found.tenant, found.integration, found.credential);
    if !core_github::verify(&found.signing_secret, headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()), &body) {
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
    let Some(engaged) = Engagement::of(&integration, &kind, &payload) else {
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

async fn handle(app: &AppState, tenant: &TenantId, integration: &Integration, private_key: &str, e: Engagement) -> Result<(), String> {
    let thread = e.thread();
    if let Some(allow) = e.answer(integration)
        && let Some(sid) = app.platform.store.integration_thread_session(&integration.id, &thread).await.map_err(|e| e.to_string())?
    {
        let n = super::confirm_pending(app, tenant, &sid, allow, &e.who()).await?;
        tracing::info!(session_id = %sid, answered = n, allow, "tool calls answered from a GitHub comment");
        return Ok(());
    }
    let clone = Engagement::clones(integration);
    let known = app.platform.store.integration_thread_session(&integration.id, &thread).await.map_err(|e| e.to_string())?.is_some();
    // a new session gets the repository, cloned with an installation token
    let token = if clone && !known { Some(core_github::installation_token(&Api, integration, private_key, e.installation, now()).await?) } else { None };
    let (session_id, created) = super::thread_session(app, tenant, integration, &thread, || e.session_request(&integration.id, token)).await.map_err(|e| e.to_string())?;
    super::say(app, tenant, &session_id, e.prompt(created, clone)).await.map_err(|e| e.to_string())
}
