//! `/v1/sessions…` on Workers: session CRUD through the core's session service over D1,
//! the same verbs, rules and wire shapes as the native server's `http/sessions.rs`.
//!
//! A session's event log and its turns belong to its SessionDO in `openma-agent`: this
//! worker authenticates the request, loads the session row and forwards the events (with
//! the row, so the object runs the latest agent snapshot) through the Durable Object
//! binding `SESSIONS` (`openma_worker_common::sessions`, shared with `openma-integrations`,
//! which also says what the Workers refuse). `/resources` mounts and unmounts files through
//! the core's session file service; the object lays them into the sandbox.

use openma_core::platform::ListParams;
use openma_core::ports::SessionFilter;
use openma_core::sessions::{Sessions, threads};
use openma_core::TenantId;
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams, SessionListParams};
use openma_types::files::{DeletedSessionResource, FileResourceParams, UpdateSessionResourceRequest};
use openma_types::sessions::{CreateSessionRequest, UpdateSessionRequest};
use openma_types::{BidiPage, Deleted, ListPage};
use openma_types::events::SendEventsRequest;
use worker::{Env, Method, Response};

use crate::api::{ApiRequest, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::sessions::{SessionObject, WorkerSessions, internal, relay};

/// Serves `rest` (the path after `/v1/sessions`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let worker_sessions = match WorkerSessions::new(env) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let sessions = worker_sessions.sessions(db);
    let result = match (req.method(), rest) {
        (Method::Post, []) => async {
            let body: CreateSessionRequest = req.body().await?;
            let (session, initial) = openma_worker_common::sessions::create(env, &sessions, tenant, &body, &req.request_id).await?;
            if initial.is_empty() {
                return json(session);
            }
            // accepted, in order, before the response: exactly as if POSTed right after create
            let object = SessionObject::new(env, tenant, &session.id, &req.request_id)?;
            let events = body.initial_events.unwrap_or_default();
            let mut sent = object.send(tenant, &session, serde_json::Value::from(events)).await?;
            if sent.status_code() != 200 {
                // refused (as a send would be): the session is not left half created
                sessions.delete(tenant, &session.id).await?;
                object.call(Method::Delete, "/", None).await?;
                return relay(sent);
            }
            sent.text().await.map_err(internal)?;
            json(sessions.get(tenant, &session.id).await?)
        }
        .await,
        (Method::Get, []) => list(req, &sessions, tenant).await,
        (Method::Get, [id]) => async { json(sessions.get(tenant, id).await?) }.await,
        (Method::Post, [id]) => async {
            let before = sessions.get(tenant, id).await?;
            let update: UpdateSessionRequest = req.body().await?;
            let after = sessions.update(tenant, id, &update).await?;
            if let Some(note) = openma_core::sessions::updated_event(&before, &after) {
                SessionObject::new(env, tenant, id, &req.request_id)?.note(tenant, &after, note).await;
            }
            json(after)
        }
        .await,
        (Method::Delete, [id]) => async {
            sessions.delete(tenant, id).await?;
            // the log goes with the row
            SessionObject::new(env, tenant, id, &req.request_id)?.call(Method::Delete, "/", None).await?;
            json(Deleted { id: (*id).to_owned(), kind: "session_deleted".into() })
        }
        .await,
        (Method::Post, [id, "archive"]) => async {
            let before = sessions.load(tenant, id).await?;
            let archived = sessions.archive(tenant, id).await?;
            if before.archived_at.is_none() {
                let note = openma_types::events::EventPayload::StatusTerminated {};
                SessionObject::new(env, tenant, id, &req.request_id)?.note(tenant, &archived, note).await;
            }
            json(archived)
        }
        .await,
        (Method::Post, [id, "events"]) => async {
            let session = sessions.load(tenant, id).await?;
            let body: SendEventsRequest = req.body().await?;
            let events = serde_json::to_value(&body.events).map_err(|e| ApiError::new(500, e.to_string()))?;
            openma_worker_common::quota::check_events(env, tenant, &session, &events).await?;
            let object = SessionObject::new(env, tenant, id, &req.request_id)?;
            relay(object.send(tenant, &session, events).await?)
        }
        .await,
        (Method::Get, [id, "events"]) => async {
            sessions.load(tenant, id).await?;
            list_events(req, env, tenant, id).await
        }
        .await,
        (Method::Get, [id, "events", "stream"] | [id, "stream"]) => async {
            sessions.load(tenant, id).await?;
            stream_events(req, env, tenant, id).await
        }
        .await,
        (Method::Post, [id, "resources"]) => async {
            let params: FileResourceParams = req.body().await?;
            let (resource, _) = worker_sessions.session_files(db).add_file_resource(tenant, id, &params).await?;
            changed_files(env, req, &sessions, tenant, id).await;
            json(resource)
        }
        .await,
        (Method::Get, [id, "resources"]) => async {
            let page: PageParams = req.query()?;
            let p = worker_sessions.session_files(db).list_session_resources(tenant, id, page.limit, page.page.as_deref()).await?;
            json(ListPage { data: p.data, next_page: p.next_page })
        }
        .await,
        (Method::Get, [id, "resources", resource]) => async { json(worker_sessions.session_files(db).get_session_resource(tenant, id, resource).await?) }.await,
        (Method::Post, [id, "resources", resource]) => async {
            let body: UpdateSessionResourceRequest = req.body().await?;
            json(worker_sessions.session_files(db).update_session_resource(tenant, id, resource, &body.authorization_token).await?)
        }
        .await,
        (Method::Delete, [id, "resources", resource]) => async {
            worker_sessions.session_files(db).delete_session_resource(tenant, id, resource).await?;
            changed_files(env, req, &sessions, tenant, id).await;
            json(DeletedSessionResource { id: (*resource).to_owned(), tag: Default::default() })
        }
        .await,
        // a single-agent session's one thread, the primary, mirrors the session
        (Method::Get, [id, "threads"]) => async {
            let session = sessions.get(tenant, id).await?;
            json(ListPage { data: threads::list(session, &req.query()?, &req.query()?)?, next_page: None })
        }
        .await,
        (Method::Get, [id, "threads", thread]) => async {
            let session = sessions.get(tenant, id).await?;
            threads::check(&session, thread)?;
            json(threads::primary(session))
        }
        .await,
        (Method::Post, [id, "threads", thread, "archive"]) => async {
            threads::check(&sessions.get(tenant, id).await?, thread)?;
            Err(threads::archive_refused().into())
        }
        .await,
        (Method::Get, [id, "threads", thread, "events"]) => async {
            threads::check(&sessions.load(tenant, id).await?, thread)?;
            list_events(req, env, tenant, id).await
        }
        .await,
        (Method::Get, [id, "threads", thread, "stream"]) => async {
            threads::check(&sessions.load(tenant, id).await?, thread)?;
            stream_events(req, env, tenant, id).await
        }
        .await,
        _ => return None,
    };
    Some(result)
}

/// Tells the session's object its mounted files changed (it lays them into the sandbox
/// before its next tool runs). The row holds the change: should the object not hear of it
/// now, the next events sent to it carry the row.
async fn changed_files(env: &Env, req: &ApiRequest, sessions: &Sessions<'_>, tenant: &TenantId, id: &str) {
    let told = async { SessionObject::new(env, tenant, id, &req.request_id)?.remember(tenant, &sessions.load(tenant, id).await?).await }.await;
    if let Err(e) = told {
        worker::console_error!("{}: session {id}: its object did not hear of the changed files: {}", req.request_id, e.message());
    }
}

/// The session's event list, from its SessionDO.
async fn list_events(req: &ApiRequest, env: &Env, tenant: &TenantId, id: &str) -> Result<Response, ApiError> {
    let object = SessionObject::new(env, tenant, id, &req.request_id)?;
    relay(object.call(Method::Get, &format!("/events?{}", req.raw_query()?), None).await?)
}

/// The session's event stream, from its SessionDO (`Last-Event-ID` passed on).
async fn stream_events(req: &ApiRequest, env: &Env, tenant: &TenantId, id: &str) -> Result<Response, ApiError> {
    let mut object = SessionObject::new(env, tenant, id, &req.request_id)?;
    object.last_event_id = req.header("last-event-id");
    relay(object.call(Method::Get, &format!("/stream?{}", req.raw_query()?), None).await?)
}

async fn list(req: &ApiRequest, sessions: &Sessions<'_>, tenant: &TenantId) -> Result<Response, ApiError> {
    let page: PageParams = req.query()?;
    let archived: ArchivedParam = req.query()?;
    let created: CreatedFilter = req.query()?;
    let q: SessionListParams = req.query()?;
    let params = ListParams::from_query(page, &archived, &created, q.order);
    // no deployment or memory-store filter can match yet (as natively): checked, then empty
    if q.deployment_id.is_some() || q.memory_store_id.is_some() {
        sessions.list(tenant, &params, &SessionFilter::default()).await?;
        return json(BidiPage::<openma_types::sessions::Session> { data: Vec::new(), next_page: None, prev_page: None });
    }
    let filter = SessionFilter { agent_id: q.agent_id, agent_version: q.agent_version, statuses: q.statuses };
    let p = sessions.list(tenant, &params, &filter).await?;
    json(BidiPage { data: p.data, next_page: p.next_page, prev_page: p.prev_page })
}
