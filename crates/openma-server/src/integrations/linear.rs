//! Linear as a front door: agent-session webhooks. A mention of the agent or a delegation
//! of an issue to it (`AgentSessionEvent` `created`) starts a session for that Linear agent
//! session, a follow-up (`prompted`) continues it, and the agent's progress and answers are
//! posted back as agent activities through Linear's GraphQL API (`thought` on arrival,
//! `response` at the end of a turn, `elicitation` when a tool call waits for a
//! confirmation, which a follow-up `allow` or `deny` answers).
//!
//! Deliveries are verified with `Linear-Signature` and `webhookTimestamp` and processed once
//! per `Linear-Delivery`; the rules are the core's (`openma_core::integrations::linear`),
//! which the Workers' integrations worker runs too.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use openma_core::TenantId;
use openma_core::integrations::linear::{self, Engagement};
use openma_types::integrations::{Integration, IntegrationProvider};

use super::{Api, find, first_time, rejected};
use crate::app::AppState;
use crate::extract::ApiPath;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/integrations/linear/{integration_id}/events", post(events))
}

/// `POST /integrations/linear/{id}/events`: the webhook URL of the agent's Linear app.
async fn events(State(app): State<AppState>, ApiPath(id): ApiPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let found = match find(&app, &id, IntegrationProvider::Linear).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let now_ms = app.platform.clock.now().as_micros() / 1_000;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let payload = match linear::verify(&found.signing_secret, header("linear-signature"), &body, now_ms) {
        Ok(p) => p,
        Err(why) => return rejected("linear", &id, why),
    };
    let delivery = header("linear-delivery").unwrap_or_default().to_owned();
    if delivery.is_empty() {
        return (StatusCode::BAD_REQUEST, "no Linear-Delivery").into_response();
    }
    match first_time(&app, &id, &delivery).await {
        Ok(true) => {}
        Ok(false) => return StatusCode::OK.into_response(),
        Err(r) => return r,
    }
    let engagement = match Engagement::of(&payload) {
        Ok(Some(e)) => e,
        Ok(None) => return StatusCode::OK.into_response(),
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    metrics::counter!("openma_integration_events_total", "provider" => "linear").increment(1);
    tokio::spawn(async move {
        if let Err(e) = handle(&app, &found.tenant, &found.integration, &found.credential, engagement).await {
            tracing::warn!(integration_id = %found.integration.id, error = %e, "cannot pass a Linear event to its session");
        }
    });
    StatusCode::OK.into_response()
}

async fn handle(app: &AppState, tenant: &TenantId, integration: &Integration, token: &str, e: Engagement) -> Result<(), String> {
    if e.created {
        linear::acknowledge(&Api, integration, token, &e.agent_session).await?;
    }
    let known = app.platform.store.integration_thread_session(&integration.id, &e.agent_session).await.map_err(|e| e.to_string())?;
    if let (Some(sid), Some(allow)) = (&known, e.answer()) {
        super::confirm_pending(app, tenant, sid, allow, linear::WHO).await?;
        return Ok(());
    }
    let (session_id, _) = super::thread_session(app, tenant, integration, &e.agent_session, || e.session_request(&integration.id)).await.map_err(|e| e.to_string())?;
    super::say(app, tenant, &session_id, e.text).await.map_err(|e| e.to_string())
}
