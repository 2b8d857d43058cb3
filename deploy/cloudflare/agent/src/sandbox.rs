//! The session's sandbox: an `openma-sandbox-server` (the program `deploy/sandbox/Dockerfile`
//! packages), reached through this object's **container** (Cloudflare Containers: one per
//! SessionDO, started on demand, the server on port 8080) or, when `OPENMA_SANDBOX_URL` is
//! set, at that address with `OPENMA_SANDBOX_TOKEN` (a sandbox server run elsewhere; how the
//! tests run it, since Containers need Docker). Both speak `openma_types::sandbox`.
//!
//! The workspace outlives the container: after a turn that changed it, the server's pack of
//! the session (tar + gzip) is kept in R2 (`sandboxes/<tenant>/<session>`), and a server that
//! does not hold the session — a fresh container, or one that lost its disk — is given it
//! back before the next tool runs. The files the session mounts are laid into it before a
//! tool runs whenever they changed (`session_files`), and its memory stores are kept in step
//! around each tool (`session_memory`).

use std::time::Duration;

use openma_core::repositories::cannot_clone;
use openma_core::DomainError;
use openma_types::sandbox::{
    ErrorEnvelope, MemoryFile, MemoryFiles, MemoryLay, RepositoryClone, SESSION_UNKNOWN, SessionCredentials, SessionOpen, TOOLS, ToolCall, ToolResult,
};
use openma_worker_common::errors::ApiError;
use openma_worker_common::r2::BLOBS;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit, Response, Result};

use crate::model::text;
use crate::session::{Meta, SessionDO};
use crate::{session_credentials, session_files, session_memory};

/// The port the image's server listens on (`OPENMA_SANDBOX_LISTEN`).
const PORT: u16 = 8080;
/// How long a container may take to boot and listen.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Storage keys: the token this object's container was started with; a tool that may have
/// changed the workspace ran since the last snapshot.
const TOKEN: &str = "sandbox_token";
pub const DIRTY: &str = "sandbox_dirty";
/// Storage key: when this object's idle container stops (epoch ms).
const SLEEP_AT: &str = "sandbox_sleep_at";
/// How long a container idles before it stops (`OPENMA_SANDBOX_SLEEP_AFTER`, e.g. `30m`).
const SLEEP_AFTER: Duration = Duration::from_secs(600);

/// Whether `name` is a tool the sandbox runs; `Some(true)` when it may write.
pub fn writes(name: &str) -> Option<bool> {
    TOOLS.iter().find(|(n, _)| *n == name).map(|&(_, read_only)| !read_only)
}

enum Link {
    Container(worker::Container),
    Url(String),
}

/// The sandbox of one session, for one alarm or request.
pub struct Sandbox {
    link: Link,
    token: String,
    tenant: String,
    session_id: String,
}

/// The R2 key of a session's workspace snapshot.
fn snapshot_key(tenant: &str, session_id: &str) -> String {
    format!("sandboxes/{tenant}/{session_id}.tar.gz")
}

impl Sandbox {
    /// The session's sandbox, or `None` when this deployment has neither a sandbox URL nor a
    /// container for the object.
    pub async fn of(object: &SessionDO, tenant: &str, session_id: &str) -> Result<Option<Sandbox>> {
        let (tenant, session_id) = (tenant.to_owned(), session_id.to_owned());
        if let Some(url) = text(&object.env, "OPENMA_SANDBOX_URL") {
            let token = text(&object.env, "OPENMA_SANDBOX_TOKEN")
                .ok_or_else(|| worker::Error::RustError("OPENMA_SANDBOX_URL is set but the secret OPENMA_SANDBOX_TOKEN is not".into()))?;
            return Ok(Some(Sandbox { link: Link::Url(url.trim_end_matches('/').to_owned()), token, tenant, session_id }));
        }
        let Some(container) = object.state.container() else { return Ok(None) };
        // the container's token never leaves this object: made once, kept in its storage
        let storage = object.state.storage();
        let token = match storage.get::<String>(TOKEN).await? {
            Some(t) => t,
            None => {
                let mut bytes = [0u8; 24];
                getrandom::getrandom(&mut bytes).map_err(|e| worker::Error::RustError(e.to_string()))?;
                let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                storage.put(TOKEN, &t).await?;
                t
            }
        };
        Ok(Some(Sandbox { link: Link::Container(container), token, tenant, session_id }))
    }

    async fn send(&self, method: Method, path: &str, body: Option<worker::wasm_bindgen::JsValue>, json: bool) -> Result<Response> {
        self.send_with(method, path, body, json, &[]).await
    }

    async fn send_with(&self, method: Method, path: &str, body: Option<worker::wasm_bindgen::JsValue>, json: bool, extra: &[(&str, &str)]) -> Result<Response> {
        let request = || -> Result<Request> {
            let headers = Headers::new();
            headers.set("authorization", &format!("Bearer {}", self.token))?;
            if json {
                headers.set("content-type", "application/json")?;
            }
            for (name, value) in extra {
                headers.set(name, value)?;
            }
            let mut init = RequestInit::new();
            init.with_method(method.clone()).with_headers(headers).with_body(body.clone());
            let base = match &self.link {
                Link::Url(base) => base.as_str(),
                Link::Container(_) => "http://sandbox",
            };
            Request::new_with_init(&format!("{base}{path}"), &init)
        };
        match &self.link {
            Link::Url(_) => Fetch::Request(request()?).send().await,
            Link::Container(container) => {
                if !container.running() {
                    start(container, &self.token)?;
                }
                // a booting container refuses connections until its server listens
                let port = container.get_tcp_port(PORT)?;
                let started = worker::Date::now().as_millis();
                let mut pause = 100;
                loop {
                    match port.fetch_request(request()?).await {
                        Ok(r) => return Ok(r),
                        Err(_) if worker::Date::now().as_millis() - started < BOOT_TIMEOUT.as_millis() as u64 => {
                            Delay::from(Duration::from_millis(pause)).await;
                            pause = (pause * 2).min(2000);
                        }
                        Err(e) => return Err(worker::Error::RustError(format!("the session's container did not answer within {BOOT_TIMEOUT:?}: {e}"))),
                    }
                }
            }
        }
    }

    /// Makes the server hold the session, with its network policy (from the environment's
    /// `networking`) and, while the server says the session is fresh there (`201`), the
    /// workspace snapshot if any. Safe to cut short and repeat: until a tool runs, the server
    /// keeps answering `201`.
    pub async fn open(&self, object: &SessionDO, meta: &Meta) -> Result<()> {
        // the environment as the session took it at its first turn
        let environment = crate::session_environment::get(object, meta).await?;
        // the packages' layer starts building on the server now, while the model call runs
        let open = SessionOpen { networking: environment.networking, mcp_servers: meta.session.agent.mcp_servers.clone(), environment: Some(environment.sandbox) };
        let open = serde_json::to_string(&open)?;
        let path = format!("/v1/sessions/{}", self.session_id);
        let mut r = self.send(Method::Put, &path, Some(open.clone().into()), true).await?;
        let created = r.status_code() == 201;
        refused(&mut r).await?;
        if !created {
            return Ok(());
        }
        // a fresh session there: its mounts and memory are laid again before a tool runs
        object.mounts_laid.borrow_mut().take();
        session_memory::forget(object).await?;
        let Some(snapshot) = object.env.bucket(BLOBS)?.get(snapshot_key(&self.tenant, &self.session_id)).execute().await? else { return Ok(()) };
        let Some(body) = snapshot.body() else { return Ok(()) };
        let bytes = body.bytes().await?;
        let pack = worker::js_sys::Uint8Array::from(bytes.as_slice());
        let mut r = self.send(Method::Put, &format!("{path}/state?mode=full"), Some(pack.into()), false).await?;
        refused(&mut r).await?;
        // the pack replaced the directory: its policy is set again
        let mut r = self.send(Method::Put, &path, Some(open.into()), true).await?;
        refused(&mut r).await?;
        worker::console_log!("sandbox: session {} restored from its snapshot ({} bytes)", self.session_id, bytes.len());
        Ok(())
    }

    /// Posts one MCP message to the session's stdio MCP server `server` on the sandbox server
    /// (`openma_types::sandbox::mcp_path`). Before an `initialize` — which starts the program —
    /// the session is made ready there as before a tool, and opened again once if the server
    /// turns out not to hold it. The answer's status, content type, body and MCP session.
    pub async fn mcp(&self, object: &SessionDO, meta: &Meta, server: &str, message: &str, mcp_session: Option<&str>, initialize: bool) -> Result<McpAnswer> {
        let path = openma_types::sandbox::mcp_path(&self.session_id, server);
        let mut headers = vec![("accept", "application/json, text/event-stream")];
        if let Some(s) = mcp_session {
            headers.push((openma_types::sandbox::MCP_SESSION, s));
        }
        for attempt in 0..2 {
            if initialize {
                self.prepare(object, meta).await?;
            }
            let mut r = self.send_with(Method::Post, &path, Some(message.into()), true, &headers).await?;
            let status = r.status_code();
            let content_type = r.headers().get("content-type")?.unwrap_or_default();
            let session = r.headers().get(openma_types::sandbox::MCP_SESSION)?;
            let body = r.text().await?;
            let unknown = status == 404 && serde_json::from_str::<ErrorEnvelope>(&body).is_ok_and(|e| e.error.code.as_deref() == Some(SESSION_UNKNOWN));
            if initialize && unknown && attempt == 0 {
                // a new container, or a server that lost its disk
                object.sandbox_ready.set(false);
                continue;
            }
            return Ok(McpAnswer { status, content_type, body, session });
        }
        Err(Refusal::Unknown.into())
    }

    /// Runs a tool; a server that does not hold the session is given it, then asked again.
    /// Failures to reach the server are the tool's error result, for the model to see.
    pub async fn run(&self, object: &SessionDO, meta: &Meta, name: &str, call: &ToolCall) -> ToolResult {
        let failed = |message: String| ToolResult { content: vec![openma_core::harness::step::text_block(&message)], is_error: true, usage: None, running: false };
        let path = format!("/v1/sessions/{}/tools/{name}", self.session_id);
        let body = match serde_json::to_string(call) {
            Ok(b) => b,
            Err(e) => return failed(format!("the tool call cannot be sent: {e}")),
        };
        for attempt in 0..2 {
            // first in this object's lifetime (or after an open cut short, or a lost session):
            // a fresh server session gets the workspace snapshot and the mounts before any
            // tool can run in it
            if let Err(e) = self.prepare(object, meta).await {
                return failed(format!("The sandbox cannot be prepared: {e}"));
            }
            let mut r = match self.send(Method::Post, &path, Some(body.clone().into()), true).await {
                Ok(r) => r,
                Err(e) => return failed(format!("The sandbox cannot be reached: {e}")),
            };
            if r.status_code() == 200 {
                let result = match r.json::<ToolResult>().await {
                    Ok(result) => result,
                    Err(e) => return failed(format!("The sandbox answered oddly: {e}")),
                };
                // what the tool wrote in a read-write memory mount is a version by the time
                // its result is recorded
                if writes(name) == Some(true)
                    && let Err(e) = session_memory::push(object, self, meta).await
                {
                    worker::console_warn!("memory: session {}: changes in the mounts not saved: {e}", self.session_id);
                }
                return result;
            }
            match refused(&mut r).await {
                // a new container, or a server that lost its disk
                Err(Refusal::Unknown) if attempt == 0 => object.sandbox_ready.set(false),
                Err(e) => return failed(format!("The sandbox refused the call: {e}")),
                Ok(()) => return failed(format!("The sandbox answered {} to the call", r.status_code())),
            }
        }
        failed("The sandbox lost the session twice in a row".into())
    }

    /// Opens the session on the server unless this object did already, and lays its mounts,
    /// credentials and memory stores; once more from the start when the server turns out not to hold the
    /// session.
    async fn prepare(&self, object: &SessionDO, meta: &Meta) -> Result<()> {
        for attempt in 0..2 {
            if !object.sandbox_ready.get() {
                self.open(object, meta).await?;
                object.sandbox_ready.set(true);
            }
            let laid = async {
                self.lay_mounts(object, meta).await?;
                session_credentials::send(object, self, meta).await?;
                session_memory::pull(object, self, meta).await
            }
            .await;
            match laid {
                Ok(()) => return Ok(()),
                Err(Refusal::Unknown) if attempt == 0 => object.sandbox_ready.set(false),
                Err(e) => return Err(worker::Error::RustError(format!("cannot mount the session's files: {e}"))),
            }
        }
        Err(Refusal::Unknown.into())
    }

    /// Makes the server's `uploads/` what the session mounts now, unless this object laid
    /// exactly that since the server last opened the session fresh.
    async fn lay_mounts(&self, object: &SessionDO, meta: &Meta) -> std::result::Result<(), Refusal> {
        let mounts: Vec<_> = openma_core::files::file_resources(&meta.session).collect();
        let skills = &meta.session.agent.skills;
        let now = session_files::fingerprint(&mounts, skills);
        if object.mounts_laid.borrow().as_deref() == Some(now.as_str()) {
            return Ok(());
        }
        let other = |e: worker::Error| Refusal::Other(e.to_string());
        let pack = session_files::mounts_pack(&object.env, &self.tenant, &mounts, skills).await.map_err(other)?;
        let body = worker::js_sys::Uint8Array::from(pack.as_slice());
        let path = format!("/v1/sessions/{}/state?mode=mounts", self.session_id);
        let mut r = self.send(Method::Put, &path, Some(body.into()), false).await.map_err(other)?;
        refused(&mut r).await?;
        *object.mounts_laid.borrow_mut() = Some(now);
        Ok(())
    }

    /// Records the session's memory mounts on the server and lays files into them.
    pub async fn lay_memory(&self, lay: &MemoryLay) -> std::result::Result<(), Refusal> {
        let other = |e: worker::Error| Refusal::Other(e.to_string());
        let body = serde_json::to_string(lay).map_err(|e| Refusal::Other(e.to_string()))?;
        let mut r = self.send(Method::Put, &format!("/v1/sessions/{}/memory", self.session_id), Some(body.into()), true).await.map_err(other)?;
        refused(&mut r).await
    }

    /// Gives the server the session's credentials: its shell's variables, its egress proxy's
    /// substitutions.
    pub async fn put_credentials(&self, credentials: &SessionCredentials) -> std::result::Result<(), Refusal> {
        let other = |e: worker::Error| Refusal::Other(e.to_string());
        let body = serde_json::to_string(credentials).map_err(|e| Refusal::Other(e.to_string()))?;
        let mut r = self.send(Method::Put, &format!("/v1/sessions/{}/credentials", self.session_id), Some(body.into()), true).await.map_err(other)?;
        refused(&mut r).await
    }

    /// The files of one memory mount as the last tool left them.
    pub async fn memory_files(&self, slug: &str) -> std::result::Result<Vec<MemoryFile>, Refusal> {
        let other = |e: worker::Error| Refusal::Other(e.to_string());
        let mut r = self.send(Method::Get, &format!("/v1/sessions/{}/memory/{slug}", self.session_id), None, false).await.map_err(other)?;
        refused(&mut r).await?;
        Ok(r.json::<MemoryFiles>().await.map_err(other)?.files)
    }

    /// Keeps the session's workspace in R2, for a container that starts without it; the
    /// pack kept, or `None` when the server had nothing.
    pub async fn snapshot(&self, object: &SessionDO) -> Result<Option<Vec<u8>>> {
        let mut r = self.send(Method::Get, &format!("/v1/sessions/{}/state", self.session_id), None, false).await?;
        if r.status_code() != 200 {
            refused(&mut r).await?;
            return Ok(None);
        }
        let bytes = r.bytes().await?;
        object.env.bucket(BLOBS)?.put(snapshot_key(&self.tenant, &self.session_id), bytes.clone()).execute().await?;
        Ok(Some(bytes))
    }

    /// Ends the session's sandbox: its shell and files on the server, its snapshot, and the
    /// container itself.
    pub async fn delete(&self, object: &SessionDO) -> Result<()> {
        object.env.bucket(BLOBS)?.delete(snapshot_key(&self.tenant, &self.session_id)).await?;
        match &self.link {
            Link::Url(_) => {
                let mut r = self.send(Method::Delete, &format!("/v1/sessions/{}", self.session_id), None, false).await?;
                refused(&mut r).await?;
            }
            Link::Container(c) if c.running() => c.destroy(None).await?,
            Link::Container(_) => {}
        }
        Ok(())
    }
}

/// Clones a new session's repositories into its workspace, and keeps the workspace in R2 at
/// once (a container may stop before the first turn). The sandbox server runs git outside the
/// session's sandbox with the token as a header; the token is in this request only. A clone
/// that fails is the caller's error (400).
pub async fn clone_repositories(object: &SessionDO, meta: &Meta, clones: &[(String, RepositoryClone)]) -> std::result::Result<(), ApiError> {
    let backend = |e: worker::Error| ApiError::from(DomainError::Store(openma_core::StoreError::Backend(e.to_string())));
    let Some(sandbox) = Sandbox::of(object, &meta.tenant, &meta.session.id).await.map_err(backend)? else {
        return Err(DomainError::unsupported("`github_repository` resources on a deployment without a sandbox (no container binding nor OPENMA_SANDBOX_URL)").into());
    };
    let path = format!("/v1/sessions/{}/repositories", meta.session.id);
    for (url, clone) in clones {
        let body = serde_json::to_string(clone).map_err(|e| ApiError::new(500, e.to_string()))?;
        let mut attempt = 0;
        loop {
            sandbox.prepare(object, meta).await.map_err(backend)?;
            let mut r = sandbox.send(Method::Post, &path, Some(body.clone().into()), true).await.map_err(backend)?;
            match refused(&mut r).await {
                Ok(()) => break,
                // a new container, or a server that lost its disk: opened again, once
                Err(Refusal::Unknown) if attempt == 0 => object.sandbox_ready.set(false),
                Err(Refusal::Unknown) => return Err(backend(Refusal::Unknown.into())),
                Err(Refusal::Other(why)) => {
                    let why = why.split_once(": ").map_or(why.as_str(), |(_, m)| m);
                    return Err(cannot_clone(url, clone, why).into());
                }
            }
            attempt += 1;
        }
        worker::console_log!("sandbox: session {}: cloned {url} into {}", meta.session.id, clone.mount_path);
    }
    sandbox.snapshot(object).await.map_err(backend)?;
    Ok(())
}

/// Starts the container: `ctx.container.start({env, enableInternet})` as workerd documents
/// it, with `env` a plain object (workers-rs' options type hands it a `Map`). The internet
/// is on: the sandbox server's own egress policy, per session, decides what a command
/// may reach.
fn start(container: &worker::Container, token: &str) -> Result<()> {
    use worker::js_sys::{Function, Object, Reflect};
    use worker::wasm_bindgen::{JsCast, JsValue};
    let js = |e: JsValue| worker::Error::RustError(format!("cannot start the session's container: {e:?}"));
    let env = Object::new();
    Reflect::set(&env, &"OPENMA_SANDBOX_TOKEN".into(), &token.into()).map_err(js)?;
    Reflect::set(&env, &"OPENMA_SANDBOX_LISTEN".into(), &format!("0.0.0.0:{PORT}").into()).map_err(js)?;
    let options = Object::new();
    Reflect::set(&options, &"env".into(), &env).map_err(js)?;
    Reflect::set(&options, &"enableInternet".into(), &JsValue::TRUE).map_err(js)?;
    let this: &JsValue = container.as_ref();
    let start: Function = Reflect::get(this, &"start".into()).map_err(js)?.dyn_into().map_err(js)?;
    start.call1(this, &options).map_err(js)?;
    Ok(())
}

/// The sandbox server's answer to an MCP message.
pub struct McpAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    /// `Mcp-Session-Id`, when given.
    pub session: Option<String>,
}

/// Why the server refused a request.
#[derive(Debug)]
pub enum Refusal {
    /// It does not hold the session.
    Unknown,
    Other(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unknown => f.write_str("the sandbox server does not hold the session"),
            Refusal::Other(m) => f.write_str(m),
        }
    }
}

impl From<Refusal> for worker::Error {
    fn from(r: Refusal) -> Self {
        worker::Error::RustError(r.to_string())
    }
}

/// `Ok` for a success status, else what the server's error envelope says.
async fn refused(r: &mut Response) -> std::result::Result<(), Refusal> {
    let status = r.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = r.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorEnvelope>(&text) {
        Ok(e) if e.error.code.as_deref() == Some(SESSION_UNKNOWN) => Err(Refusal::Unknown),
        Ok(e) => Err(Refusal::Other(format!("{status}: {}", e.error.message))),
        Err(_) => Err(Refusal::Other(format!("{status}: {}", text.chars().take(200).collect::<String>()))),
    }
}

/// When the session goes idle with a container: its stop is scheduled (the object's alarm;
/// a turn that starts meanwhile moves the alarm, and the next idle schedules it again).
pub async fn schedule_sleep(object: &SessionDO) -> Result<()> {
    if object.state.container().is_none() {
        return Ok(());
    }
    let after = text(&object.env, "OPENMA_SANDBOX_SLEEP_AFTER").and_then(|v| openma_core::retention::parse_duration(&v).ok()).unwrap_or(SLEEP_AFTER);
    let storage = object.state.storage();
    storage.put(SLEEP_AT, worker::Date::now().as_millis() + after.as_millis() as u64).await?;
    storage.set_alarm(after.as_millis() as i64).await
}

/// Stops the idle container once its time has come.
pub async fn sleep_if_due(object: &SessionDO) -> Result<()> {
    let storage = object.state.storage();
    let Some(at) = storage.get::<u64>(SLEEP_AT).await? else { return Ok(()) };
    if worker::Date::now().as_millis() < at {
        return Ok(());
    }
    storage.delete(SLEEP_AT).await?;
    if let Some(container) = object.state.container().filter(|c| c.running()) {
        container.destroy(None).await?;
        object.sandbox_ready.set(false);
        worker::console_log!("sandbox: idle container stopped");
    }
    Ok(())
}
