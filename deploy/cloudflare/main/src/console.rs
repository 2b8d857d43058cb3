//! The web console on the Workers: the pages of `openma-console` (the native server's, to
//! the byte) over D1, R2 and the SessionDOs. Accounts and console sessions are the same
//! D1 tables as natively (`openma users sql` prints the rows to add a person); sign-in
//! attempts are throttled per e-mail by the `SIGN_IN_RATE_LIMIT` binding.

use async_trait::async_trait;
use openma_console::{Backend, BackendResult};
use openma_core::accounts::{Accounts, ConsoleSession, Role, User};
use openma_core::agents::Agents;
use openma_core::environments::Environments;
use openma_core::files::FileListParams;
use openma_core::http_error::HttpError;
use openma_core::integrations::Integrations;
use openma_core::keys::Keys;
use openma_core::model_cards::ModelCards;
use openma_core::paging::Page;
use openma_core::platform::{ListParams, MemoryListParams};
use openma_core::ports::{IntegrationStore, LedgerStore, SessionFilter, UsageQuery, UsageRow, VersionFilter};
use openma_core::vaults::Vaults;
use openma_core::{ApiKey, Clock, DomainError, TenantId};
use openma_types::Timestamp;
use openma_types::agents::{Agent, CreateAgentRequest, UpdateAgentRequest};
use openma_types::environments::{Environment, EnvironmentBuild, EnvironmentLimits};
use openma_types::files::FileMetadata;
use openma_types::integrations::{CreateIntegrationRequest, Integration};
use openma_types::memory::{Actor, MemoryListItem, MemoryStore, MemoryVersion};
use openma_types::model_cards::{CreateModelCardRequest, ModelCard};
use openma_types::sessions::{CreateSessionRequest, Session};
use openma_types::skills::Skill;
use openma_types::vaults::{CreateCredentialRequest, Credential, Vault};
use openma_worker_common::files::WorkerFiles;
use openma_worker_common::provider_api::FetchApi;
use openma_worker_common::root_secret;
use openma_worker_common::sessions::{SessionObject, WorkerSessions};
use worker::send::{SendFuture, SendWrapper};
use worker::{Env, Method, Request, Response};

use crate::adapters::{WorkerClock, WorkerIds};
use crate::d1::D1;
use crate::errors::ApiError;

/// The Rate Limiting binding that throttles sign-in attempts per e-mail (wrangler.jsonc:
/// 5 a minute, as natively).
pub const SIGN_IN_RATE_LIMIT: &str = "SIGN_IN_RATE_LIMIT";
/// What a throttled sign-in is told to wait: the binding cannot tell its period.
const SIGN_IN_RETRY_AFTER_S: u64 = 60;

/// Serves a console request (`openma_console::handles` said the path is the console's).
pub async fn serve(mut req: Request, env: &Env, request_id: &str) -> Result<Response, ApiError> {
    let db = crate::auth::database(env)?;
    let body = match req.method() {
        Method::Post => req.bytes().await.map_err(|e| ApiError::new(400, format!("could not read the form: {e}")))?,
        _ => Vec::new(),
    };
    if body.len() > openma_console::FORM_LIMIT {
        return Err(ApiError::new(413, "the form is too large"));
    }
    let url = req.url().map_err(|e| ApiError::new(400, format!("invalid URL: {e}")))?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let https = url.scheme() == "https" || header("x-forwarded-proto").as_deref() == Some("https");
    let console_req = openma_console::Request {
        method: match req.method() {
            Method::Get | Method::Head => openma_console::Method::Get,
            Method::Post => openma_console::Method::Post,
            _ => openma_console::Method::Other,
        },
        path: url.path().to_owned(),
        query: url.query().unwrap_or_default().to_owned(),
        cookie: header("cookie"),
        origin: header("origin"),
        host: header("host"),
        https,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let backend = WorkerConsole { env: SendWrapper::new(env.clone()), db, request_id: request_id.to_owned() };
    let Some(answer) = openma_console::serve(&backend, &console_req).await else {
        return Err(ApiError::not_found(format!("no route for {}", url.path())));
    };
    let mut res = Response::ok(answer.body).map_err(|e| ApiError::new(500, e.to_string()))?.with_status(answer.status);
    for (name, value) in answer.headers {
        res.headers_mut().set(name, &value).map_err(|e| ApiError::new(500, e.to_string()))?;
    }
    Ok(res)
}

/// The signed-in console member of a request's cookie, if it has a live session (the API
/// takes it in place of a key, for the console's own scripts).
pub async fn member(req: &Request, db: &D1) -> Result<Option<ConsoleSession>, ApiError> {
    let cookie = req.headers().get("cookie").ok().flatten();
    match openma_console::cookie_token(cookie.as_deref()) {
        Some(token) => Ok(accounts(db).console_session(&token).await?),
        None => Ok(None),
    }
}

fn accounts(db: &D1) -> Accounts<'_> {
    Accounts { store: db, clock: &WorkerClock, ids: &WorkerIds }
}

struct WorkerConsole {
    env: SendWrapper<Env>,
    db: D1,
    request_id: String,
}

impl WorkerConsole {
    fn files(&self) -> Result<WorkerFiles, ApiError> {
        WorkerFiles::new(&self.env)
    }
}

/// Runs a future that holds workerd's (single-threaded) JavaScript values where the port
/// asks for `Send`: an isolate is one thread.
fn local<T>(f: impl Future<Output = Result<T, ApiError>>) -> impl Future<Output = BackendResult<T>> + Send {
    SendFuture::new(async move { f.await.map_err(HttpError::from) })
}

#[async_trait]
impl Backend for WorkerConsole {
    fn now(&self) -> Timestamp {
        WorkerClock.now()
    }

    fn random_bytes(&self) -> [u8; 16] {
        openma_worker_common::errors::random()
    }

    async fn sign_in_allowed(&self, email: &str) -> Result<(), u64> {
        SendFuture::new(async {
            let Ok(limiter) = self.env.rate_limiter(SIGN_IN_RATE_LIMIT) else {
                worker::console_error!("{SIGN_IN_RATE_LIMIT} is not bound: sign-in attempts are not throttled (see wrangler.jsonc)");
                return Ok(());
            };
            match limiter.limit(format!("sign-in:{email}")).await {
                Ok(outcome) if !outcome.success => Err(SIGN_IN_RETRY_AFTER_S),
                Ok(_) => Ok(()),
                Err(e) => {
                    worker::console_warn!("{SIGN_IN_RATE_LIMIT}: cannot count a sign-in attempt: {e}");
                    Ok(())
                }
            }
        })
        .await
    }

    async fn verify_password(&self, hash: String, password: String) -> bool {
        openma_console::verify_password(&hash, &password)
    }

    async fn find_user(&self, email: &str) -> BackendResult<Option<User>> {
        local(async { Ok(accounts(&self.db).find_user(email).await?) }).await
    }
    async fn memberships(&self, user_id: &str) -> BackendResult<Vec<(TenantId, Role)>> {
        local(async { Ok(accounts(&self.db).memberships(user_id).await?) }).await
    }
    async fn start_console_session(&self, token: &str, user_id: &str, tenant: &TenantId, csrf: &str, ttl_secs: i64) -> BackendResult<()> {
        local(async { Ok(accounts(&self.db).start_console_session(token, user_id, tenant, csrf, ttl_secs).await?) }).await
    }
    async fn console_session(&self, token: &str) -> BackendResult<Option<ConsoleSession>> {
        local(async { Ok(accounts(&self.db).console_session(token).await?) }).await
    }
    async fn switch_console_tenant(&self, token: &str, user_id: &str, tenant: &TenantId) -> BackendResult<()> {
        local(async { Ok(accounts(&self.db).switch_console_tenant(token, user_id, tenant).await?) }).await
    }
    async fn end_console_session(&self, token: &str) -> BackendResult<()> {
        local(async { Ok(accounts(&self.db).end_console_session(token).await?) }).await
    }

    async fn list_agents(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Agent>> {
        local(async { Ok(self.agents(&self.files()?).list(tenant, p).await?) }).await
    }
    async fn get_agent(&self, tenant: &TenantId, id: &str) -> BackendResult<Agent> {
        local(async { Ok(self.agents(&self.files()?).get(tenant, id, None).await?) }).await
    }
    async fn list_agent_versions(&self, tenant: &TenantId, id: &str, limit: u32) -> BackendResult<Vec<Agent>> {
        local(async { Ok(self.agents(&self.files()?).list_versions(tenant, id, Some(i64::from(limit)), None).await?.data) }).await
    }
    async fn create_agent(&self, tenant: &TenantId, req: &CreateAgentRequest) -> BackendResult<Agent> {
        local(async { Ok(self.agents(&self.files()?).create(tenant, req).await?) }).await
    }
    async fn update_agent(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> BackendResult<Agent> {
        local(async { Ok(self.agents(&self.files()?).update(tenant, id, req).await?) }).await
    }
    async fn create_session(&self, tenant: &TenantId, req: CreateSessionRequest) -> BackendResult<Session> {
        local(async {
            let worker_sessions = WorkerSessions::new(&self.env)?;
            let sessions = worker_sessions.sessions(&self.db);
            let (session, _) = openma_worker_common::sessions::create(&self.env, &sessions, tenant, &req, &self.request_id).await?;
            Ok(session)
        })
        .await
    }
    async fn list_sessions(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> BackendResult<Page<Session>> {
        local(async { Ok(WorkerSessions::new(&self.env)?.sessions(&self.db).list(tenant, p, filter).await?) }).await
    }
    async fn get_session(&self, tenant: &TenantId, id: &str) -> BackendResult<Session> {
        local(async { Ok(WorkerSessions::new(&self.env)?.sessions(&self.db).get(tenant, id).await?) }).await
    }
    async fn list_events(&self, tenant: &TenantId, id: &str, limit: u32) -> BackendResult<Vec<serde_json::Value>> {
        local(async {
            let object = SessionObject::new(&self.env, tenant, id, &self.request_id)?;
            let mut res = object.call(Method::Get, &format!("/events?limit={limit}"), None).await?;
            let page: serde_json::Value = res.json().await.map_err(openma_worker_common::sessions::internal)?;
            if res.status_code() != 200 {
                return Err(ApiError::new(res.status_code(), page["error"]["message"].as_str().unwrap_or("the session's events could not be read")));
            }
            Ok(page["data"].as_array().cloned().unwrap_or_default())
        })
        .await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> BackendResult<Vec<ApiKey>> {
        local(async { Ok(self.keys().list_api_keys(tenant).await?) }).await
    }
    async fn create_api_key(&self, tenant: &TenantId, name: &str) -> BackendResult<(ApiKey, String)> {
        local(async { Ok(self.keys().create_api_key(tenant, name).await?) }).await
    }
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> BackendResult<()> {
        local(async { Ok(self.keys().revoke_api_key(tenant, id).await?) }).await
    }

    async fn list_environments(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Environment>> {
        local(async { Ok(self.environments(&EnvironmentLimits::SANDBOX_DEFAULTS).list(tenant, p).await?) }).await
    }
    async fn get_environment(&self, tenant: &TenantId, id: &str) -> BackendResult<Environment> {
        local(async { Ok(self.environments(&EnvironmentLimits::SANDBOX_DEFAULTS).get(tenant, id).await?) }).await
    }
    /// Each session's container installs the packages itself: there is no shared build.
    async fn environment_build(&self, _tenant: &TenantId, _id: &str) -> BackendResult<Option<EnvironmentBuild>> {
        Ok(None)
    }
    async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Vault>> {
        local(async { Ok(self.vaults(None).list_vaults(tenant, p).await?) }).await
    }
    async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> BackendResult<Page<Credential>> {
        local(async { Ok(self.vaults(None).list_credentials(tenant, vault_id, p).await?) }).await
    }
    async fn create_credential(&self, tenant: &TenantId, vault_id: &str, req: &CreateCredentialRequest) -> BackendResult<Credential> {
        local(async {
            let secrets = root_secret::secret_box(&self.env).await?;
            Ok(self.vaults(Some(&secrets)).create_credential(tenant, vault_id, req).await?)
        })
        .await
    }
    async fn list_files(&self, tenant: &TenantId, p: &FileListParams) -> BackendResult<Page<FileMetadata>> {
        local(async { Ok(self.files()?.files().list(tenant, p).await?) }).await
    }
    async fn list_memory_stores(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<MemoryStore>> {
        local(async { Ok(self.db.memories().list_memory_stores(tenant, p).await?) }).await
    }
    async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> BackendResult<MemoryStore> {
        local(async { Ok(self.db.memories().get_memory_store(tenant, id).await?) }).await
    }
    async fn list_memories(&self, tenant: &TenantId, store_id: &str, p: &MemoryListParams) -> BackendResult<Page<MemoryListItem>> {
        local(async { Ok(self.db.memories().list_memories(tenant, store_id, p).await?) }).await
    }
    async fn list_memory_versions(&self, tenant: &TenantId, store_id: &str, filter: &VersionFilter, p: &ListParams) -> BackendResult<Page<MemoryVersion>> {
        local(async { Ok(self.db.memories().list_memory_versions(tenant, store_id, filter, p, false).await?) }).await
    }
    async fn redact_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, by: &Actor) -> BackendResult<MemoryVersion> {
        local(async { Ok(self.db.memories().redact_memory_version(tenant, store_id, id, by).await?) }).await
    }
    async fn list_skills(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Skill>> {
        local(async { Ok(self.files()?.skills().list(tenant, p, None).await?) }).await
    }
    async fn list_model_cards(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<ModelCard>> {
        local(async { Ok(ModelCards { store: &self.db, clock: &WorkerClock, ids: &WorkerIds, secrets: None }.list(tenant, p).await?) }).await
    }
    async fn create_model_card(&self, tenant: &TenantId, req: &CreateModelCardRequest) -> BackendResult<ModelCard> {
        local(async {
            let secrets = root_secret::secret_box(&self.env).await?;
            Ok(ModelCards { store: &self.db, clock: &WorkerClock, ids: &WorkerIds, secrets: Some(&secrets) }.create(tenant, req).await?)
        })
        .await
    }
    async fn usage_report(&self, tenant: &TenantId, q: &UsageQuery) -> BackendResult<Vec<UsageRow>> {
        local(async { Ok(self.db.usage_report(tenant, q).await.map_err(DomainError::from)?) }).await
    }

    async fn list_integrations(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Integration>> {
        local(async { Ok(self.integrations(None).list(tenant, p).await?) }).await
    }
    async fn create_integration(&self, tenant: &TenantId, req: &CreateIntegrationRequest) -> BackendResult<Integration> {
        local(async {
            if let Some(url) = &req.api_base_url {
                openma_core::web::check_destination(url, openma_worker_common::allow_private_addresses(&self.env))
                    .map_err(|m| DomainError::invalid(format!("`api_base_url`: {m}")))?;
            }
            let secrets = root_secret::secret_box(&self.env).await?;
            Ok(self.integrations(Some(&secrets)).create(tenant, req).await?)
        })
        .await
    }
    /// As natively: Slack's `auth.test`, GitHub's `GET /app` with the App's JWT, Linear's
    /// `viewer`, with the integration's sealed credential.
    async fn check_integration(&self, tenant: &TenantId, id: &str) -> Result<String, String> {
        SendFuture::new(async {
            let stored = self.db.get_integration(tenant, id).await.map_err(|e| e.to_string())?.ok_or("no such integration")?;
            let secrets = root_secret::secret_box(&self.env).await.map_err(|e| e.message().to_owned())?;
            openma_core::integrations::check(&FetchApi, &secrets, tenant, &stored, WorkerClock.now().as_micros() / 1_000_000).await
        })
        .await
    }
    async fn delete_integration(&self, tenant: &TenantId, id: &str) -> BackendResult<()> {
        local(async { Ok(self.integrations(None).delete(tenant, id).await?) }).await
    }
}

impl WorkerConsole {
    fn agents<'a>(&'a self, files: &'a WorkerFiles) -> Agents<'a> {
        Agents { store: &self.db, clock: &WorkerClock, ids: &WorkerIds, capabilities: openma_worker_common::capabilities(&self.env), skills: files, announcer: &self.db }
    }

    fn keys(&self) -> Keys<'_> {
        Keys { store: &self.db, clock: &WorkerClock, ids: &WorkerIds }
    }

    fn environments<'a>(&'a self, limits: &'a EnvironmentLimits) -> Environments<'a> {
        Environments { store: &self.db, clock: &WorkerClock, ids: &WorkerIds, sandbox_limits: Some(limits), announcer: &self.db }
    }

    fn vaults<'a>(&'a self, secrets: Option<&'a openma_core::secrets::SecretBox>) -> Vaults<'a> {
        Vaults { store: &self.db, clock: &WorkerClock, ids: &WorkerIds, secrets, announcer: &self.db }
    }

    fn integrations<'a>(&'a self, secrets: Option<&'a openma_core::secrets::SecretBox>) -> Integrations<'a> {
        Integrations { store: &self.db, agents: &self.db, environments: &self.db, secrets, clock: &WorkerClock, ids: &WorkerIds }
    }
}
