//! The sessions of provider threads: found or created (bound in D1, the first binding of
//! two racing creations wins), told what the thread says, and asked for the tool calls
//! they wait on.

use openma_core::harness::input::Input;
use openma_core::integrations::Integrations;
use openma_core::integrations::turns::TurnSummary;
use openma_core::ports::IntegrationStore;
use openma_core::{DomainError, TenantId};
use openma_types::integrations::Integration;
use openma_types::sessions::{CreateSessionRequest, Session};
use openma_worker_common::adapters::{WorkerClock, WorkerIds};
use openma_worker_common::d1::D1;
use openma_worker_common::errors::ApiError;
use openma_worker_common::sessions::{SessionObject, WorkerSessions};
use serde_json::{Value, json};
use worker::{Env, Method};

fn store(e: openma_core::StoreError) -> ApiError {
    DomainError::from(e).into()
}

/// The session bound to `thread`, if any.
pub async fn known_session(env: &Env, db: &D1, tenant: &TenantId, integration_id: &str, thread: &str) -> Result<Option<Session>, ApiError> {
    match db.integration_thread_session(integration_id, thread).await.map_err(store)? {
        Some(sid) => Ok(Some(WorkerSessions::new(env)?.sessions(db).load(tenant, &sid).await?)),
        None => Ok(None),
    }
}

/// The session of `thread`, created from `request()` on the first message (see
/// [`Integrations::thread_session`]), and whether this call created it.
pub async fn thread_session(
    env: &Env,
    db: &D1,
    tenant: &TenantId,
    integration: &Integration,
    thread: &str,
    request: impl FnOnce() -> CreateSessionRequest,
    request_id: &str,
) -> Result<(Session, bool), ApiError> {
    let ws = WorkerSessions::new(env)?;
    let sessions = ws.sessions(db);
    let create = |req: CreateSessionRequest| {
        let sessions = &sessions;
        async move {
            Ok::<_, ApiError>(openma_worker_common::sessions::create(env, sessions, tenant, &req, request_id).await?.0.id)
        }
    };
    let discard = |sid: String| {
        let sessions = &sessions;
        async move { Ok(sessions.delete(tenant, &sid).await?) }
    };
    let integrations = Integrations { store: db, agents: db, environments: db, secrets: None, clock: &WorkerClock, ids: &WorkerIds };
    let (sid, created) = integrations.thread_session(tenant, integration, thread, request, create, discard).await?;
    // `session.created` for the tenant's webhook subscribers
    openma_worker_common::webhooks::send_queued(env);
    Ok((sessions.load(tenant, &sid).await?, created))
}

/// Sends inputs to the session's SessionDO as client events; its refusal as an error.
pub async fn send(env: &Env, tenant: &TenantId, session: &Session, inputs: &[Input], request_id: &str) -> Result<(), ApiError> {
    let events = serde_json::to_value(inputs.iter().map(Input::client_event).collect::<Vec<_>>()).map_err(|e| ApiError::new(500, e.to_string()))?;
    // the tenant's limits apply to a thread's turns as to the API's
    openma_worker_common::quota::check_events(env, tenant, session, &events).await?;
    let mut answer = SessionObject::new(env, tenant, &session.id, request_id)?.send(tenant, session, events).await?;
    if answer.status_code() != 200 {
        let text = answer.text().await.unwrap_or_default();
        return Err(ApiError::new(answer.status_code(), format!("the session refused the message: {text}")));
    }
    Ok(())
}

/// Gives the session a user message.
pub async fn say(env: &Env, tenant: &TenantId, session: &Session, text: &str, request_id: &str) -> Result<(), ApiError> {
    send(env, tenant, session, &[Input::Message { content: vec![json!({"type": "text", "text": text})] }], request_id).await
}

/// Allows or denies every tool call the session waits on; how many were answered.
pub async fn confirm_pending(env: &Env, tenant: &TenantId, session: &Session, allow: bool, who: &str, request_id: &str) -> Result<usize, ApiError> {
    let object = SessionObject::new(env, tenant, &session.id, request_id)?;
    let mut page = object.call(Method::Get, "/events?order=desc&limit=500", None).await?;
    let page: Value = page.json().await.map_err(|e| ApiError::new(500, format!("the session's events: {e}")))?;
    let mut events: Vec<Value> = page["data"].as_array().cloned().unwrap_or_default();
    events.reverse();
    let answers = TurnSummary::of(&events).confirmations(allow, who);
    if !answers.is_empty() {
        send(env, tenant, session, &answers, request_id).await?;
    }
    Ok(answers.len())
}
