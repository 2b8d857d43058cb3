//! Integrations: Slack, GitHub and Linear as front doors to an agent. Each provider's
//! receiver verifies its deliveries with the integration's signing secret, records each
//! delivery id before acting on it (retries and replays are acknowledged and ignored), and
//! hands the message to the session of its thread (created on the first message). When a
//! session's turn ends, [`Replies`] posts what the agent said, and the tool calls waiting
//! for a confirmation, back to the thread it belongs to.

pub mod github;
pub mod linear;
pub mod slack;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openma_core::harness::input::Input;
use openma_core::integrations::turns::{TurnSummary, truncate};
use openma_core::integrations::{Delivered, ProviderApi, github as core_github, linear as core_linear, open_secrets};
use openma_core::ports::EventQuery;
use openma_core::{DomainError, Platform, TenantId};
use openma_types::integrations::{Integration, IntegrationProvider};
use openma_types::sessions::CreateSessionRequest;
use serde_json::{Value, json};

use crate::app::AppState;

pub fn routes() -> axum::Router<AppState> {
    slack::routes().merge(github::routes()).merge(linear::routes())
}

/// The HTTP client the adapters call the providers' APIs with.
pub(crate) fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("openma/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("an HTTP client")
    })
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": "authentication_error", "message": message}}))).into_response()
}

/// An integration a delivery names, of the receiver's provider, with its opened secrets.
/// The caller verifies the signature.
pub(crate) async fn find(app: &AppState, id: &str, provider: IntegrationProvider) -> Result<Delivered, Response> {
    match app.platform.integrations().for_delivery(id, provider).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(refuse(StatusCode::NOT_FOUND, "no such integration")),
        Err(DomainError::Unavailable(_)) => Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read integrations");
            Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// A signature check failed: logged, counted and answered 401.
pub(crate) fn rejected(provider: &'static str, id: &str, why: &str) -> Response {
    tracing::warn!(integration_id = %id, provider, reason = why, "refused an integration delivery");
    metrics::counter!("openma_integration_rejected_total", "provider" => provider).increment(1);
    refuse(StatusCode::UNAUTHORIZED, why)
}

/// Records a delivery id: `Ok(true)` to process it, `Ok(false)` when it was seen before,
/// `Err` (a 500, which the provider retries) when it cannot be recorded.
pub(crate) async fn first_time(app: &AppState, integration_id: &str, delivery_id: &str) -> Result<bool, Response> {
    app.platform.integrations().first_delivery(integration_id, delivery_id).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record an integration delivery");
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    })
}

/// The session of a provider thread, created from `request()` and bound on the first
/// message (see [`openma_core::integrations::Integrations::thread_session`]). `Ok((session id, created))`.
pub(crate) async fn thread_session(
    app: &AppState,
    tenant: &TenantId,
    integration: &Integration,
    thread: &str,
    request: impl FnOnce() -> CreateSessionRequest,
) -> Result<(String, bool), DomainError> {
    let create = |req| async move { crate::http::sessions::create(app, tenant, req).await.map(|s| s.id) };
    let discard = |sid: String| async move {
        let _ = app.platform.delete_session(tenant, &sid).await;
        let _ = app.destroy_sandbox(&sid).await;
        Ok(())
    };
    app.platform.integrations().thread_session(tenant, integration, thread, request, create, discard).await
}

/// Gives the session a user message.
pub(crate) async fn say(app: &AppState, tenant: &TenantId, session_id: &str, text: String) -> Result<(), DomainError> {
    app.runtime.submit(tenant, session_id, vec![Input::Message { content: vec![json!({"type": "text", "text": text})] }]).await?;
    Ok(())
}

/// Allows or denies every tool call the session waits on; how many were answered.
pub(crate) async fn confirm_pending(app: &AppState, tenant: &TenantId, session_id: &str, allow: bool, who: &str) -> Result<usize, String> {
    let inputs = turn_of(&app.platform, tenant, session_id).await?.confirmations(allow, who);
    let n = inputs.len();
    if !inputs.is_empty() {
        app.runtime.submit(tenant, session_id, inputs).await.map_err(|e| e.to_string())?;
    }
    Ok(n)
}

/// The current turn of a session, from its event log.
pub(crate) async fn turn_of(platform: &Platform, tenant: &TenantId, session_id: &str) -> Result<TurnSummary, String> {
    let query = EventQuery { descending: true, limit: 500, ..Default::default() };
    let events = platform.list_events(tenant, session_id, &query).await.map_err(|e| e.to_string())?;
    let events: Vec<Value> = events.into_iter().rev().filter_map(|e| serde_json::to_value(&e.event).ok()).collect();
    Ok(TurnSummary::of(&events))
}

/// Posts the end of every turn of an integration's session back to its thread.
pub struct Replies {
    platform: Platform,
}

impl Replies {
    pub fn new(platform: Platform) -> Arc<Self> {
        Arc::new(Replies { platform })
    }

    async fn reply(&self, tenant: &TenantId, session_id: &str) -> Result<(), String> {
        let store = &self.platform.store;
        let Some((integration_id, thread)) = store.session_integration_thread(session_id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let Some(stored) = store.get_integration(tenant, &integration_id).await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let secrets = self.platform.secrets.as_deref().ok_or("no root secret")?;
        let (_, credential) = open_secrets(secrets, tenant, &stored).map_err(|e| e.to_string())?;
        let turn = turn_of(&self.platform, tenant, session_id).await?;
        let integration = &stored.integration;
        match integration.provider {
            IntegrationProvider::Slack => slack::reply(integration, &credential, &thread, session_id, &turn).await,
            IntegrationProvider::Github => core_github::reply(&Api, integration, &credential, &thread, &turn, github::now()).await,
            IntegrationProvider::Linear => core_linear::reply(&Api, integration, &credential, &thread, &turn).await,
        }
    }
}

#[async_trait::async_trait]
impl crate::runtime::TurnObserver for Replies {
    async fn turn_ending(&self, tenant: &TenantId, session_id: &str) {
        let this = Replies { platform: self.platform.clone() };
        let (tenant, session_id) = (tenant.clone(), session_id.to_owned());
        // posting must not hold up the session's idle report
        tokio::spawn(async move {
            if let Err(e) = this.reply(&tenant, &session_id).await {
                tracing::warn!(%session_id, error = %e, "cannot post a turn's answer to its integration");
            }
        });
    }
}

/// Checks that an integration's credential works against its provider (Slack `auth.test`,
/// GitHub `GET /app` with the App's JWT, Linear's `viewer`): what it answers as, or why not.
pub async fn check(app: &AppState, tenant: &TenantId, id: &str) -> Result<String, String> {
    let stored = app.platform.store.get_integration(tenant, id).await.map_err(|e| e.to_string())?.ok_or("no such integration")?;
    let secrets = app.platform.secrets.as_deref().ok_or("no root secret")?;
    openma_core::integrations::check(&Api, secrets, tenant, &stored, github::now()).await
}

/// The providers' APIs over this process's HTTP client.
pub(crate) struct Api;

#[async_trait::async_trait]
impl ProviderApi for Api {
    async fn post_json(&self, url: &str, authorization: &str, body: &Value) -> Result<Value, String> {
        post_json(url, authorization, body).await
    }

    async fn get_json(&self, url: &str, authorization: &str) -> Result<Value, String> {
        get_json(url, authorization).await
    }

    async fn sign_rs256(&self, pkcs8_der: &[u8], input: &[u8]) -> Result<Vec<u8>, String> {
        github::sign_rs256(pkcs8_der, input)
    }
}

/// GETs JSON with an `Authorization` header; the answer's JSON (a non-2xx is an error).
pub(crate) async fn get_json(url: &str, authorization: &str) -> Result<Value, String> {
    send_json(url, http().get(url).header("authorization", authorization)).await
}

/// POSTs JSON with an `Authorization` header; the answer's JSON (a non-2xx is an error).
pub(crate) async fn post_json(url: &str, authorization: &str, body: &Value) -> Result<Value, String> {
    send_json(url, http().post(url).header("authorization", authorization).json(body)).await
}

async fn send_json(url: &str, req: reqwest::RequestBuilder) -> Result<Value, String> {
    let resp = req.header("accept", "application/json").send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {}", truncate(&answer.to_string(), 300)));
    }
    Ok(answer)
}
