//! `/v1/sessions…` on Workers: session CRUD through the core's session service over D1,
//! the same verbs, rules and wire shapes as the native server's `http/sessions.rs`.
//!
//! A session's event log and its turns belong to its SessionDO in `openma-agent`: this
//! worker authenticates the request, loads the session row and forwards the events (with
//! the row, so the object runs the latest agent snapshot) through the Durable Object
//! binding `SESSIONS`. What the Workers cannot do yet is refused with 400
//! `unsupported_feature`, never accepted and ignored: `file` and `github_repository`
//! resources (mounted or cloned into the sandbox natively).

use async_trait::async_trait;
use openma_core::files::Files;
use openma_core::harness::input::Input;
use openma_core::harness::tools::Capabilities;
use openma_core::platform::ListParams;
use openma_core::ports::SessionFilter;
use openma_core::sessions::{SessionAttachments, Sessions, threads};
use openma_core::{DomainError, TenantId, agents::Agents, environments::Environments, memory::Memories, vaults::Vaults};
use openma_types::environments::EnvironmentConfig;
use openma_types::files::{FileResource, FileResourceParams};
use openma_types::query::{ArchivedParam, CreatedFilter, PageParams, SessionListParams};
use openma_types::sessions::{CreateSessionRequest, UpdateSessionRequest};
use openma_types::{BidiPage, Deleted, ListPage};
use openma_types::events::{EventPayload, SendEventsRequest};
use openma_types::sessions::Session;
use serde::Serialize;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Stub};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::agents::NoSkills;
use crate::api::{ApiRequest, NoSubscribers, json};
use crate::d1::D1;
use crate::errors::ApiError;
use openma_worker_common::files::WorkerFiles;

/// Files on the Workers: `file` content blocks are checked against the tenant's uploads (D1
/// rows, R2 bytes) as on the native server; mounting files into the sandbox (`file`
/// resources) is not done here yet and is refused.
struct WorkerAttachments<'a> {
    files: Files<'a>,
}

#[async_trait]
impl SessionAttachments for WorkerAttachments<'_> {
    async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[Input], where_: &str) -> Result<(), DomainError> {
        self.files.check_file_blocks(tenant, inputs, where_).await
    }

    async fn mount_copies(
        &self,
        _tenant: &TenantId,
        _session_id: &str,
        params: &[FileResourceParams],
    ) -> Result<Vec<(FileResource, openma_core::files::StoredFile)>, DomainError> {
        if params.is_empty() { Ok(Vec::new()) } else { Err(DomainError::unsupported("`file` resources on the Cloudflare Workers deployment")) }
    }

    async fn release(&self, tenant: &TenantId, session_id: &str) -> Result<(), DomainError> {
        // the session's scoped files (none are made here yet); its log goes with its object
        self.files.delete_session_files(tenant, session_id).await
    }
}

/// What a new session may ask for here: no resources only a sandbox holds.
fn check_servable(req: &CreateSessionRequest) -> Result<(), ApiError> {
    let resources = openma_core::files::resource_params(req.resources.as_deref().unwrap_or_default())?;
    if !resources.repositories.is_empty() {
        return Err(DomainError::unsupported("`github_repository` resources on the Cloudflare Workers deployment").into());
    }
    Ok(())
}

/// What only the native server's sandbox gives — environment packages, MCP servers run in
/// the sandbox, `environment_variable` credentials substituted at its egress proxy — is
/// refused rather than silently missing from the session's container.
async fn check_sandbox(sessions: &Sessions<'_>, db: &D1, tenant: &TenantId, environment_id: Option<&str>, vault_ids: &[String]) -> Result<(), ApiError> {
    let unsupported = |what: &str| -> Result<(), ApiError> { Err(DomainError::unsupported(format!("{what} on the Cloudflare Workers deployment")).into()) };
    if let Some(id) = environment_id {
        let EnvironmentConfig::Cloud(c) = sessions.environments.get(tenant, id).await?.config;
        if !c.packages.is_empty() {
            return unsupported("an environment with `packages` (its sandbox image has bash, Python and Node.js)");
        }
        if !c.mcp_servers.is_empty() {
            return unsupported("an environment with `mcp_servers` (run inside the sandbox)");
        }
    }
    if !openma_core::vaults::env_credentials(db, tenant, vault_ids).await?.is_empty() {
        return unsupported("`environment_variable` credentials (substituted at the sandbox's egress)");
    }
    Ok(())
}

/// Serves `rest` (the path after `/v1/sessions`), or `None` when no route matches.
pub async fn route(req: &mut ApiRequest, env: &Env, db: &D1, tenant: &TenantId, rest: &[&str]) -> Option<Result<Response, ApiError>> {
    let (clock, ids, announcer) = (&WorkerClock, &WorkerIds, &NoSubscribers);
    let limits = openma_types::environments::EnvironmentLimits::SANDBOX_DEFAULTS;
    let worker_files = match WorkerFiles::new(env) {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let sessions = Sessions {
        store: db,
        agents: Agents { store: db, clock, ids, capabilities: Capabilities::default(), skills: &NoSkills, announcer },
        environments: Environments { store: db, clock, ids, sandbox_limits: Some(&limits), announcer },
        vaults: Vaults { store: db, clock, ids, secrets: None, announcer },
        memories: Memories { store: db, clock, ids, announcer },
        skills: &NoSkills,
        attachments: &WorkerAttachments { files: worker_files.files() },
        capabilities: Capabilities::default(),
        clock,
        ids,
        announcer,
    };
    let result = match (req.method(), rest) {
        (Method::Post, []) => async {
            let body: CreateSessionRequest = req.body().await?;
            check_servable(&body)?;
            check_sandbox(&sessions, db, tenant, body.environment_id.as_deref(), body.vault_ids.as_deref().unwrap_or_default()).await?;
            let (session, initial) = sessions.create(tenant, &body).await?;
            if initial.is_empty() {
                return json(session);
            }
            // accepted, in order, before the response: exactly as if POSTed right after create
            let object = SessionObject::new(env, tenant, &session.id, &req.request_id)?;
            let events = body.initial_events.unwrap_or_default();
            let mut sent = object.call(Method::Post, "/events", Some(&Forward { tenant, session: &session, events: serde_json::Value::from(events), note: None })).await?;
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
            if let Some(Some(vault_ids)) = &update.vault_ids {
                check_sandbox(&sessions, db, tenant, None, vault_ids).await?;
            }
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
            let object = SessionObject::new(env, tenant, id, &req.request_id)?;
            relay(object.call(Method::Post, "/events", Some(&Forward { tenant, session: &session, events: serde_json::to_value(&body.events).map_err(|e| ApiError::new(500, e.to_string()))?, note: None })).await?)
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

/// What a SessionDO is sent: the caller's tenant, the session row, and the client events
/// or the API change (`note`) to record.
#[derive(Serialize)]
struct Forward<'a> {
    tenant: &'a TenantId,
    session: &'a Session,
    events: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<EventPayload>,
}

/// One session's Durable Object, named by tenant and session id.
struct SessionObject {
    stub: Stub,
    session_id: String,
    request_id: String,
    last_event_id: Option<String>,
}

/// The binding to `openma-agent`'s SessionDO class.
const SESSIONS: &str = "SESSIONS";

fn internal(e: worker::Error) -> ApiError {
    ApiError::new(500, format!("session object: {e}"))
}

impl SessionObject {
    fn new(env: &Env, tenant: &TenantId, session_id: &str, request_id: &str) -> Result<Self, ApiError> {
        let ns = env.durable_object(SESSIONS).map_err(|e| ApiError::new(500, format!("binding `{SESSIONS}`: {e}")))?;
        let stub = ns.id_from_name(&format!("{}/{session_id}", tenant.as_str())).and_then(|id| id.get_stub()).map_err(internal)?;
        Ok(SessionObject { stub, session_id: session_id.to_owned(), request_id: request_id.to_owned(), last_event_id: None })
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Forward<'_>>) -> Result<Response, ApiError> {
        let headers = Headers::new();
        headers.set("request-id", &self.request_id).map_err(internal)?;
        headers.set("openma-session-id", &self.session_id).map_err(internal)?;
        if let Some(last) = &self.last_event_id {
            headers.set("last-event-id", last).map_err(internal)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if let Some(body) = body {
            let json = serde_json::to_string(body).map_err(|e| ApiError::new(500, e.to_string()))?;
            init.with_body(Some(json.into()));
        }
        let req = Request::new_with_init(&format!("https://session{path}"), &init).map_err(internal)?;
        self.stub.fetch_with_request(req).await.map_err(internal)
    }

    /// Records an API change in the session's log. The row already holds the change, so a
    /// failure here is logged (with the request id), not turned into a failed request.
    async fn note(&self, tenant: &TenantId, session: &Session, note: EventPayload) {
        let forward = Forward { tenant, session, events: serde_json::Value::Array(Vec::new()), note: Some(note) };
        let failed = match self.call(Method::Post, "/note", Some(&forward)).await {
            Ok(r) if r.status_code() == 200 => None,
            Ok(mut r) => Some(format!("{} {}", r.status_code(), r.text().await.unwrap_or_default())),
            Err(_) => Some("the session object did not answer".to_owned()),
        };
        if let Some(why) = failed {
            worker::console_error!("{}: session {}: cannot record the change in its log: {why}", self.request_id, self.session_id);
        }
    }
}

/// The object's answer as this worker's own (a subrequest's headers are immutable, and the
/// request id is set on the way out), its body streamed through.
fn relay(mut from: Response) -> Result<Response, ApiError> {
    let status = from.status_code();
    let content_type = from.headers().get("content-type").ok().flatten().unwrap_or_else(|| "application/json".into());
    let body = from.stream().map_err(internal)?;
    let mut out = Response::from_stream(body).map_err(internal)?.with_status(status);
    let headers = out.headers_mut();
    headers.set("content-type", &content_type).map_err(internal)?;
    if content_type.starts_with("text/event-stream") {
        headers.set("cache-control", "no-cache").map_err(internal)?;
    }
    for name in ["x-should-retry", "retry-after"] {
        if let Some(v) = from.headers().get(name).ok().flatten() {
            headers.set(name, &v).map_err(internal)?;
        }
    }
    Ok(out)
}
