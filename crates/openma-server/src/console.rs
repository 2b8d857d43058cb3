//! The web console on the native server: the pages of `openma-console` behind axum, over
//! the server's `Platform`. Sign-in attempts are throttled in memory per e-mail and
//! passwords are checked on the blocking pool.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::Router;
use openma_console::{Backend, BackendResult};
use openma_core::accounts::{ConsoleSession, Role, User};
use openma_core::files::FileListParams;
use openma_core::platform::{ListParams, MemoryListParams};
use openma_core::ports::{SessionFilter, UsageQuery, UsageRow, VersionFilter};
use openma_core::paging::Page;
use openma_core::{ApiKey, TenantId};
use openma_types::Timestamp;
use openma_types::agents::{Agent, CreateAgentRequest, UpdateAgentRequest};
use openma_types::environments::{Environment, EnvironmentBuild};
use openma_types::files::FileMetadata;
use openma_types::integrations::{CreateIntegrationRequest, Integration};
use openma_types::memory::{Actor, MemoryListItem, MemoryStore, MemoryVersion};
use openma_types::model_cards::{CreateModelCardRequest, ModelCard};
use openma_types::sessions::{CreateSessionRequest, Session};
use openma_types::skills::Skill;
use openma_types::vaults::{CreateCredentialRequest, Credential, Vault};

pub use openma_console::csrf_ok;

use crate::app::AppState;

/// Sign-in attempts per e-mail per minute.
const SIGN_INS_PER_MINUTE: u32 = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", axum::routing::any(serve))
        .route("/console", axum::routing::any(serve))
        .route("/console/{*rest}", axum::routing::any(serve))
        // pages are text: gzip them for browsers that ask (never the API's event streams)
        .layer(tower_http::compression::CompressionLayer::new())
}

async fn serve(State(app): State<AppState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > openma_console::FORM_LIMIT {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let req = openma_console::Request {
        method: match method {
            Method::GET | Method::HEAD => openma_console::Method::Get,
            Method::POST => openma_console::Method::Post,
            _ => openma_console::Method::Other,
        },
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        cookie: cookies(&headers),
        origin: text(header::ORIGIN),
        host: text(header::HOST),
        https: headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https"),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let Some(answer) = openma_console::serve(&app, &req).await else { return StatusCode::NOT_FOUND.into_response() };
    let mut r = (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), answer.body).into_response();
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

/// The request's `Cookie` headers, joined as one.
fn cookies(headers: &HeaderMap) -> Option<String> {
    let all: Vec<&str> = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// An argon2id hash of `password` (for `openma users …`).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    openma_console::hash_password(password, rand_bytes()).map_err(|e| anyhow::anyhow!(e))
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source");
    b
}

/// The console session of a request's cookie, if it has a live one (the API takes it in
/// place of a key, for the console's own scripts).
pub async fn session_of(app: &AppState, headers: &HeaderMap) -> Result<Option<ConsoleSession>, openma_core::DomainError> {
    match openma_console::cookie_token(cookies(headers).as_deref()) {
        Some(token) => app.platform.console_session(&token).await,
        None => Ok(None),
    }
}

fn sign_ins() -> &'static governor::DefaultKeyedRateLimiter<String> {
    static LIMITER: OnceLock<governor::DefaultKeyedRateLimiter<String>> = OnceLock::new();
    LIMITER.get_or_init(|| governor::RateLimiter::keyed(governor::Quota::per_minute(NonZeroU32::new(SIGN_INS_PER_MINUTE).expect("non-zero"))))
}

/// What a page shows of a domain error; a storage failure's details go to the log only.
fn logged(e: openma_core::DomainError) -> openma_core::http_error::HttpError {
    if let openma_core::DomainError::Store(s) = &e {
        tracing::error!(error = %s, "storage failure in the console");
    }
    e.into()
}

#[async_trait]
impl Backend for AppState {
    fn now(&self) -> Timestamp {
        self.platform.clock.now()
    }

    fn random_bytes(&self) -> [u8; 16] {
        rand_bytes()
    }

    async fn sign_in_allowed(&self, email: &str) -> Result<(), u64> {
        use governor::clock::Clock;
        sign_ins().check_key(&email.to_owned()).map_err(|not_until| not_until.wait_time_from(governor::clock::DefaultClock::default().now()).as_secs())
    }

    async fn verify_password(&self, hash: String, password: String) -> bool {
        tokio::task::spawn_blocking(move || openma_console::verify_password(&hash, &password)).await.unwrap_or(false)
    }

    async fn find_user(&self, email: &str) -> BackendResult<Option<User>> {
        self.platform.find_user(email).await.map_err(logged)
    }
    async fn memberships(&self, user_id: &str) -> BackendResult<Vec<(TenantId, Role)>> {
        self.platform.memberships(user_id).await.map_err(logged)
    }
    async fn start_console_session(&self, token: &str, user_id: &str, tenant: &TenantId, csrf: &str, ttl_secs: i64) -> BackendResult<()> {
        self.platform.start_console_session(token, user_id, tenant, csrf, ttl_secs).await.map_err(logged)
    }
    async fn console_session(&self, token: &str) -> BackendResult<Option<ConsoleSession>> {
        self.platform.console_session(token).await.map_err(logged)
    }
    async fn switch_console_tenant(&self, token: &str, user_id: &str, tenant: &TenantId) -> BackendResult<()> {
        self.platform.switch_console_tenant(token, user_id, tenant).await.map_err(logged)
    }
    async fn end_console_session(&self, token: &str) -> BackendResult<()> {
        self.platform.end_console_session(token).await.map_err(logged)
    }

    async fn list_agents(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Agent>> {
        self.platform.list_agents(tenant, p).await.map_err(logged)
    }
    async fn get_agent(&self, tenant: &TenantId, id: &str) -> BackendResult<Agent> {
        self.platform.get_agent(tenant, id, None).await.map_err(logged)
    }
    async fn list_agent_versions(&self, tenant: &TenantId, id: &str, limit: u32) -> BackendResult<Vec<Agent>> {
        Ok(self.platform.list_agent_versions(tenant, id, Some(i64::from(limit)), None).await.map_err(logged)?.data)
    }
    async fn create_agent(&self, tenant: &TenantId, req: &CreateAgentRequest) -> BackendResult<Agent> {
        self.platform.create_agent(tenant, req).await.map_err(logged)
    }
    async fn update_agent(&self, tenant: &TenantId, id: &str, req: &UpdateAgentRequest) -> BackendResult<Agent> {
        self.platform.update_agent(tenant, id, req).await.map_err(logged)
    }
    async fn create_session(&self, tenant: &TenantId, req: CreateSessionRequest) -> BackendResult<Session> {
        crate::http::sessions::create(self, tenant, req).await.map_err(logged)
    }
    async fn list_sessions(&self, tenant: &TenantId, p: &ListParams, filter: &SessionFilter) -> BackendResult<Page<Session>> {
        self.platform.list_sessions(tenant, p, filter).await.map_err(logged)
    }
    async fn get_session(&self, tenant: &TenantId, id: &str) -> BackendResult<Session> {
        self.platform.get_session(tenant, id).await.map_err(logged)
    }
    async fn list_events(&self, tenant: &TenantId, id: &str, limit: u32) -> BackendResult<Vec<serde_json::Value>> {
        let query = openma_core::ports::EventQuery { limit, ..Default::default() };
        let rows = self.platform.list_events(tenant, id, &query).await.map_err(logged)?;
        Ok(rows.into_iter().filter_map(|e| serde_json::to_value(&e.event).ok()).collect())
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> BackendResult<Vec<ApiKey>> {
        self.platform.list_api_keys(tenant).await.map_err(logged)
    }
    async fn create_api_key(&self, tenant: &TenantId, name: &str) -> BackendResult<(ApiKey, String)> {
        self.platform.create_api_key(tenant, name).await.map_err(logged)
    }
    async fn revoke_api_key(&self, tenant: &TenantId, id: &str) -> BackendResult<()> {
        self.platform.revoke_api_key(tenant, id).await.map_err(logged)
    }

    async fn list_environments(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Environment>> {
        self.platform.list_environments(tenant, p).await.map_err(logged)
    }
    async fn get_environment(&self, tenant: &TenantId, id: &str) -> BackendResult<Environment> {
        self.platform.get_environment(tenant, id).await.map_err(logged)
    }
    async fn environment_build(&self, tenant: &TenantId, id: &str) -> BackendResult<Option<EnvironmentBuild>> {
        crate::environment_packages::build_of(self, tenant, id).await.map(Some).map_err(logged)
    }
    async fn list_vaults(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Vault>> {
        self.platform.list_vaults(tenant, p).await.map_err(logged)
    }
    async fn list_credentials(&self, tenant: &TenantId, vault_id: &str, p: &ListParams) -> BackendResult<Page<Credential>> {
        self.platform.list_credentials(tenant, vault_id, p).await.map_err(logged)
    }
    async fn create_credential(&self, tenant: &TenantId, vault_id: &str, req: &CreateCredentialRequest) -> BackendResult<Credential> {
        self.platform.create_credential(tenant, vault_id, req).await.map_err(logged)
    }
    async fn list_files(&self, tenant: &TenantId, p: &FileListParams) -> BackendResult<Page<FileMetadata>> {
        self.platform.list_files(tenant, p).await.map_err(logged)
    }
    async fn list_memory_stores(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<MemoryStore>> {
        self.platform.list_memory_stores(tenant, p).await.map_err(logged)
    }
    async fn get_memory_store(&self, tenant: &TenantId, id: &str) -> BackendResult<MemoryStore> {
        self.platform.get_memory_store(tenant, id).await.map_err(logged)
    }
    async fn list_memories(&self, tenant: &TenantId, store_id: &str, p: &MemoryListParams) -> BackendResult<Page<MemoryListItem>> {
        self.platform.list_memories(tenant, store_id, p).await.map_err(logged)
    }
    async fn list_memory_versions(&self, tenant: &TenantId, store_id: &str, filter: &VersionFilter, p: &ListParams) -> BackendResult<Page<MemoryVersion>> {
        self.platform.list_memory_versions(tenant, store_id, filter, p, false).await.map_err(logged)
    }
    async fn redact_memory_version(&self, tenant: &TenantId, store_id: &str, id: &str, by: &Actor) -> BackendResult<MemoryVersion> {
        self.platform.redact_memory_version(tenant, store_id, id, by).await.map_err(logged)
    }
    async fn list_skills(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Skill>> {
        self.platform.list_skills(tenant, p, None).await.map_err(logged)
    }
    async fn list_model_cards(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<ModelCard>> {
        self.platform.list_model_cards(tenant, p).await.map_err(logged)
    }
    async fn create_model_card(&self, tenant: &TenantId, req: &CreateModelCardRequest) -> BackendResult<ModelCard> {
        self.platform.create_model_card(tenant, req).await.map_err(logged)
    }
    async fn usage_report(&self, tenant: &TenantId, q: &UsageQuery) -> BackendResult<Vec<UsageRow>> {
        self.platform.store.usage_report(tenant, q).await.map_err(|e| logged(e.into()))
    }

    async fn list_integrations(&self, tenant: &TenantId, p: &ListParams) -> BackendResult<Page<Integration>> {
        self.platform.list_integrations(tenant, p).await.map_err(logged)
    }
    async fn create_integration(&self, tenant: &TenantId, req: &CreateIntegrationRequest) -> BackendResult<Integration> {
        if let Some(url) = &req.api_base_url
            && let Err(why) = crate::webhooks::check_destination(url, self.info.allow_private_fetch)
        {
            return Err(logged(openma_core::DomainError::invalid(format!("`api_base_url`: {why}"))));
        }
        self.platform.create_integration(tenant, req).await.map_err(logged)
    }
    async fn check_integration(&self, tenant: &TenantId, id: &str) -> Result<String, String> {
        crate::integrations::check(self, tenant, id).await
    }
    async fn delete_integration(&self, tenant: &TenantId, id: &str) -> BackendResult<()> {
        self.platform.delete_integration(tenant, id).await.map_err(logged)
    }
}
