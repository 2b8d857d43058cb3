//! The core's session service as the Workers build it (rows on D1, files on R2), and the
//! way to a session's SessionDO in `openma-agent`. `openma-main` serves the Sessions API
//! with them; `openma-integrations` starts and feeds the sessions of provider threads.
//!
//! What a session's sandbox holds is given to its sandbox server by the SessionDO: the
//! environment's packages, limits and stdio MCP servers, `environment_variable` credentials,
//! `memory_store` resources; `github_repository` resources are cloned there before the
//! session is handed out (see [`create`]).

use async_trait::async_trait;
use openma_core::agents::Agents;
use openma_core::environments::Environments;
use openma_core::harness::input::Input;
use openma_core::harness::tools::Capabilities;
use openma_core::memory::Memories;
use openma_core::sessions::{SessionAttachments, Sessions};
use openma_core::vaults::Vaults;
use openma_core::{DomainError, TenantId};
use openma_types::environments::EnvironmentLimits;
use openma_types::events::EventPayload;
use openma_types::files::{FileResource, FileResourceParams};
use openma_types::sessions::{CreateSessionRequest, Session};
use serde::Serialize;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Stub};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::D1;
use crate::errors::ApiError;
use crate::files::WorkerFiles;

/// Files on the Workers: `file` content blocks are checked against the tenant's uploads (D1
/// rows, R2 bytes) as on the native server; mounting files into the sandbox (`file`
/// resources) is not done here yet and is refused.
struct WorkerAttachments {
    files: WorkerFiles,
}

#[async_trait]
impl SessionAttachments for WorkerAttachments {
    async fn check_file_blocks(&self, tenant: &TenantId, inputs: &[Input], where_: &str) -> Result<(), DomainError> {
        self.files.files().check_file_blocks(tenant, inputs, where_).await
    }

    async fn mount_copies(
        &self,
        tenant: &TenantId,
        session_id: &str,
        params: &[FileResourceParams],
    ) -> Result<Vec<(FileResource, openma_core::files::StoredFile)>, DomainError> {
        // rows only: the SessionDO lays the bytes into the sandbox before a tool runs
        self.files.files().mount_copies(tenant, session_id, params).await
    }

    async fn release(&self, tenant: &TenantId, session_id: &str) -> Result<(), DomainError> {
        // the session's scoped files (mounted copies, outputs); its log goes with its object
        self.files.files().delete_session_files(tenant, session_id).await
    }
}

/// What the session service needs that outlives one call: the file service and the
/// sandbox's limits.
pub struct WorkerSessions {
    attachments: WorkerAttachments,
    limits: EnvironmentLimits,
    capabilities: Capabilities,
}

impl WorkerSessions {
    pub fn new(env: &Env) -> Result<Self, ApiError> {
        Ok(WorkerSessions { attachments: WorkerAttachments { files: WorkerFiles::new(env)? }, limits: EnvironmentLimits::SANDBOX_DEFAULTS, capabilities: crate::capabilities(env) })
    }

    /// The core's service of session files (mounts, outputs) on `db` and R2.
    pub fn session_files<'a>(&'a self, db: &'a D1) -> openma_core::files::SessionFiles<'a> {
        openma_core::files::SessionFiles { sessions: db, files: self.attachments.files.files() }
    }

    /// The core's session service on `db`.
    pub fn sessions<'a>(&'a self, db: &'a D1) -> Sessions<'a> {
        let (clock, ids, announcer) = (&WorkerClock, &WorkerIds, db);
        Sessions {
            store: db,
            agents: Agents { store: db, clock, ids, capabilities: self.capabilities, skills: &self.attachments.files, announcer },
            environments: Environments { store: db, clock, ids, sandbox_limits: Some(&self.limits), announcer },
            vaults: Vaults { store: db, clock, ids, secrets: None, announcer },
            memories: Memories { store: db, clock, ids, announcer },
            skills: &self.attachments.files,
            attachments: &self.attachments,
            capabilities: self.capabilities,
            clock,
            ids,
            announcer,
        }
    }
}

/// Creates a session with what its sandbox must hold before anyone uses it: its
/// repositories, cloned by its SessionDO through the sandbox server from
/// `OPENMA_GITHUB_URL` (default `https://github.com`). A clone that fails is the caller's
/// error and takes the session away again, as natively. The session and its initial inputs.
pub async fn create(env: &Env, sessions: &Sessions<'_>, tenant: &TenantId, req: &CreateSessionRequest, request_id: &str) -> Result<(Session, Vec<Input>), ApiError> {
    crate::quota::check(env, tenant, req.initial_events.as_ref().is_some_and(|e| !e.is_empty())).await?;
    let (session, initial) = sessions.create(tenant, req).await?;
    let repositories = openma_core::files::resource_params(req.resources.as_deref().unwrap_or_default())?.repositories;
    if repositories.is_empty() {
        return Ok((session, initial));
    }
    let object = SessionObject::new(env, tenant, &session.id, request_id)?;
    let cloned = async {
        let github_url = crate::text(env, "OPENMA_GITHUB_URL").unwrap_or_else(|| "https://github.com".into());
        let clones = openma_core::repositories::clones(&github_url, &session, &repositories)?;
        let forward = Forward { tenant, session: &session, events: serde_json::Value::Array(Vec::new()), note: None, clones };
        let r = object.call(Method::Post, "/repositories", Some(&forward)).await?;
        answer(r).await
    }
    .await;
    if let Err(e) = cloned {
        let _ = sessions.delete(tenant, &session.id).await;
        let _ = object.call(Method::Delete, "/", None).await;
        return Err(e);
    }
    Ok((session, initial))
}

/// The object's refusal as this worker's error: its status, type and message.
async fn answer(mut r: Response) -> Result<(), ApiError> {
    let status = r.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or("the session object refused").to_owned();
    if status != 400 {
        return Err(ApiError::new(status, message));
    }
    // a deployment without a sandbox cannot clone: its code goes to the caller too
    let code = (body["error"]["details"]["error_code"] == "unsupported_feature").then_some("unsupported_feature");
    Err(DomainError::Invalid { message, code }.into())
}

/// What a SessionDO is sent: the caller's tenant, the session row, and the client events
/// or the API change (`note`) to record, or the repositories to clone (each resource's URL
/// and its clone, token included: only ever in this request, never kept).
#[derive(Serialize)]
pub struct Forward<'a> {
    pub tenant: &'a TenantId,
    pub session: &'a Session,
    pub events: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<EventPayload>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clones: Vec<(String, openma_types::sandbox::RepositoryClone)>,
}

/// One session's Durable Object, named by tenant and session id.
pub struct SessionObject {
    stub: Stub,
    session_id: String,
    request_id: String,
    pub last_event_id: Option<String>,
}

/// The binding to `openma-agent`'s SessionDO class.
const SESSIONS: &str = "SESSIONS";

pub fn internal(e: worker::Error) -> ApiError {
    ApiError::new(500, format!("session object: {e}"))
}

impl SessionObject {
    pub fn new(env: &Env, tenant: &TenantId, session_id: &str, request_id: &str) -> Result<Self, ApiError> {
        let ns = env.durable_object(SESSIONS).map_err(|e| ApiError::new(500, format!("binding `{SESSIONS}`: {e}")))?;
        let stub = ns.id_from_name(&format!("{}/{session_id}", tenant.as_str())).and_then(|id| id.get_stub()).map_err(internal)?;
        Ok(SessionObject { stub, session_id: session_id.to_owned(), request_id: request_id.to_owned(), last_event_id: None })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Forward<'_>>) -> Result<Response, ApiError> {
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

    /// Sends client events (wire JSON) to the session, as `POST /v1/sessions/{id}/events`
    /// would; the object's answer.
    pub async fn send(&self, tenant: &TenantId, session: &Session, events: serde_json::Value) -> Result<Response, ApiError> {
        self.call(Method::Post, "/events", Some(&Forward { tenant, session, events, note: None, clones: Vec::new() })).await
    }

    /// Hands the object the session row after a change that is not in its log (a file
    /// mounted or unmounted), for the next tool it runs.
    pub async fn remember(&self, tenant: &TenantId, session: &Session) -> Result<(), ApiError> {
        let forward = Forward { tenant, session, events: serde_json::Value::Array(Vec::new()), note: None, clones: Vec::new() };
        let mut r = self.call(Method::Post, "/session", Some(&forward)).await?;
        if r.status_code() != 200 {
            return Err(ApiError::new(500, format!("the session object refused the change: {}", r.text().await.unwrap_or_default())));
        }
        Ok(())
    }

    /// Records an API change in the session's log. The row already holds the change, so a
    /// failure here is logged (with the request id), not turned into a failed request.
    pub async fn note(&self, tenant: &TenantId, session: &Session, note: EventPayload) {
        let forward = Forward { tenant, session, events: serde_json::Value::Array(Vec::new()), note: Some(note), clones: Vec::new() };
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
pub fn relay(mut from: Response) -> Result<Response, ApiError> {
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
