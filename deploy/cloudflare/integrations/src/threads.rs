//! The sessions of provider threads: found or created (bound in D1, the first binding of
//! two racing creations wins), told what the thread says, and asked for the tool calls
//! they wait on.

use openma_core::integrations::turns::{TurnSummary, denied_by};
use openma_core::ports::IntegrationStore;
use openma_core::{Clock, DomainError, TenantId};
use openma_types::integrations::Integration;
use openma_types::sessions::{CreateSessionRequest, Session};
use openma_worker_common::adapters::WorkerClock;
use openma_worker_common::d1::D1;
use openma_worker_common::errors::ApiError;
use openma_worker_common::sessions::{SessionObject, WorkerSessions, check_new};
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

/// The session of `thread`, created with `create()` on the first message.
pub async fn thread_session(
    env: &Env,
    db: &D1,
    tenant: &TenantId,
    integration: &Integration,
    thread: &str,
    create: impl FnOnce() -> CreateSessionRequest,
) -> Result<Session, ApiError> {
    if let Some(session) = known_session(env, db, tenant, &integration.id, thread).await? {
        return Ok(session);
    }
    let ws = WorkerSessions::new(env)?;
    let sessions = ws.sessions(db);
    let mut req = create();
    req.agent_id = Some(integration.agent_id.clone());
    req.environment_id = integration.environment_id.clone();
    check_new(&sessions, db, tenant, &req).await?;
    let (session, _) = sessions.create(tenant, &req).await?;
    let bound = db.bind_integration_thread(tenant, &integration.id, thread, &session.id, WorkerClock.now()).await.map_err(store)?;
    if bound != session.id {
        sessions.delete(tenant, &session.id).await?;
        return Ok(sessions.load(tenant, &bound).await?);
    }
    Ok(session)
}

/// Sends client events (wire JSON) to the session's SessionDO; its refusal as an error.
pub async fn send(env: &Env, tenant: &TenantId, session: &Session, events: Value, request_id: &str) -> Result<(), ApiError> {
    let mut answer = SessionObject::new(env, tenant, &session.id, request_id)?.send(tenant, session, events).await?;
    if answer.status_code() != 200 {
        let text = answer.text().await.unwrap_or_default();
        return Err(ApiError::new(answer.status_code(), format!("the session refused the message: {text}")));
    }
    Ok(())
}

/// Gives the session a user message.
pub async fn say(env: &Env, tenant: &TenantId, session: &Session, text: &str, request_id: &str) -> Result<(), ApiError> {
    send(env, tenant, session, json!([{"type": "user.message", "content": [{"type": "text", "text": text}]}]), request_id).await
}

/// A tool confirmation as the client sends it.
pub fn confirmation(tool_use_id: &str, allow: bool, deny_message: Option<String>) -> Value {
    let mut event = json!({"type": "user.tool_confirmation", "tool_use_id": tool_use_id, "result": if allow { "allow" } else { "deny" }});
    if let Some(m) = deny_message {
        event["deny_message"] = m.into();
    }
    event
}

/// Allows or denies every tool call the session waits on; how many were answered.
pub async fn confirm_pending(env: &Env, tenant: &TenantId, session: &Session, allow: bool, who: &str, request_id: &str) -> Result<usize, ApiError> {
    let object = SessionObject::new(env, tenant, &session.id, request_id)?;
    let mut page = object.call(Method::Get, "/events?order=desc&limit=500", None).await?;
    let page: Value = page.json().await.map_err(|e| ApiError::new(500, format!("the session's events: {e}")))?;
    let mut events: Vec<Value> = page["data"].as_array().cloned().unwrap_or_default();
    events.reverse();
    let asks = TurnSummary::of(&events).asks;
    let deny = (!allow).then(|| denied_by(who));
    let answers: Vec<Value> = asks.iter().map(|a| confirmation(&a.id, allow, deny.clone())).collect();
    if !answers.is_empty() {
        send(env, tenant, session, Value::Array(answers), request_id).await?;
    }
    Ok(asks.len())
}
