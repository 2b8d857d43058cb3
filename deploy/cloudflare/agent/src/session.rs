//! The SessionDO: the only writer of one session's event log. `openma-main` forwards a
//! session's event requests here after authenticating them and loading the session row
//! (sent along, so the object always runs the latest agent snapshot); turns run from the
//! object's alarm.

use std::cell::RefCell;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use openma_core::harness::file_blocks::FileBlockCache;
use openma_core::harness::input::{Input, parse_events};
use openma_core::harness::step::{self, PreviewOf};
use openma_core::paging::{MAX_LIMIT, PageRequest};
use openma_core::ports::{Order, Position};
use openma_core::{Clock, DomainError, IdGen};
use openma_types::ListPage;
use openma_types::events::{ALL_EVENT_TYPES, ClientEvent, EventPayload, SentEvents, SessionEvent, StopReason};
use openma_types::query::{EventListParams, PageParams, StreamParams};
use openma_types::sessions::{Session, SessionStatus};
use openma_worker_common::adapters::{WorkerClock, WorkerIds};
use openma_worker_common::errors::ApiError;
use openma_worker_common::files::WorkerFiles;
use openma_worker_common::r2::BLOBS;
use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Method, Request, Response, Result, State, durable_object};

use crate::event_log::EventLog;
use crate::housekeeping::ArchiveReport;
use crate::subscribers::Subscribers;

/// What `openma-main` sends with a session's events.
#[derive(Deserialize)]
pub struct Forwarded {
    pub tenant: String,
    pub session: Session,
    #[serde(default)]
    pub events: Vec<ClientEvent>,
    /// A change made through the API, recorded in the log (`session.updated`, or
    /// `session.status_terminated` on archive).
    #[serde(default)]
    pub note: Option<openma_types::events::EventPayload>,
    /// A new session's repositories: each resource's URL and its clone (token included).
    #[serde(default)]
    pub clones: Vec<(String, openma_types::sandbox::RepositoryClone)>,
}

/// The session this object runs, as last forwarded.
#[derive(Clone, Serialize, Deserialize)]
pub struct Meta {
    pub tenant: String,
    pub session: Session,
}

pub const META: &str = "meta";

/// Where the archived part of the log is (storage key `archived`).
#[derive(Serialize, Deserialize)]
struct Archived {
    key: String,
    last_seq: i64,
}

const ARCHIVED: &str = "archived";

/// Named as the deployment guide names it (the class wrangler.jsonc binds).
#[allow(clippy::upper_case_acronyms)]
#[durable_object]
pub struct SessionDO {
    pub(crate) state: State,
    pub(crate) env: Env,
    pub(crate) subscribers: Subscribers,
    /// Wakes a model call or tool run in flight when an interrupt arrives.
    pub(crate) interrupt: RefCell<Option<UnboundedSender<()>>>,
    /// The sandbox server held the session at the last look (in this object's lifetime).
    pub(crate) sandbox_ready: std::cell::Cell<bool>,
    /// The content of the files the conversation names, read from R2 once per object.
    pub(crate) file_blocks: RefCell<FileBlockCache>,
    /// The mounts laid into the sandbox server's session since it last opened it fresh
    /// (`session_files::fingerprint`), in this object's lifetime.
    pub(crate) mounts_laid: RefCell<Option<String>>,
    /// The sandbox server was told in this object's lifetime that the session has no
    /// credentials (`session_credentials`).
    pub(crate) credentials_clear: std::cell::Cell<bool>,
    /// The note about the agent's skills, by the skills it is for (`session_files::skills_note`).
    pub(crate) skills_note: RefCell<Option<(String, Option<String>)>>,
    /// The MCP sessions this object holds open, by server name (`mcp::Clients`).
    pub(crate) mcp: crate::mcp::Clients,
}

/// Storage keys: client events that arrived during a model call (appended after it, as
/// the native inbox does), and an interrupt waiting for the loop (its event id).
pub const INBOX: &str = "inbox";
pub const INTERRUPT: &str = "interrupt";

impl DurableObject for SessionDO {
    fn new(state: State, env: Env) -> Self {
        SessionDO {
            state,
            env,
            subscribers: Subscribers::default(),
            interrupt: RefCell::new(None),
            sandbox_ready: Default::default(),
            file_blocks: Default::default(),
            mounts_laid: RefCell::new(None),
            skills_note: RefCell::new(None),
            credentials_clear: Default::default(),
            mcp: Default::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let request_id = req.headers().get("request-id")?.unwrap_or_default();
        let served = async {
            let url = req.url().map_err(internal)?;
            let query = url.query().unwrap_or("").to_owned();
            match (req.method(), url.path()) {
                (Method::Post, "/events") => self.send(forwarded(&mut req).await?).await,
                (Method::Post, "/note") => self.note(forwarded(&mut req).await?).await,
                (Method::Post, "/session") => {
                    // a change not in the log (mounted files): the next tool run sees it
                    let f = forwarded(&mut req).await?;
                    self.remember(f.tenant, f.session).await.map_err(internal)?;
                    Response::from_json(&serde_json::json!({})).map_err(internal)
                }
                (Method::Post, "/repositories") => {
                    // a new session's repositories, cloned before anyone is handed the session
                    let f = forwarded(&mut req).await?;
                    let meta = self.remember(f.tenant, f.session).await.map_err(internal)?;
                    crate::sandbox::clone_repositories(self, &meta, &f.clones).await?;
                    Response::from_json(&serde_json::json!({})).map_err(internal)
                }
                (Method::Post, "/archive") => {
                    // the cron: archive what the log holds now
                    let header = |name: &str| req.headers().get(name).ok().flatten().ok_or_else(|| ApiError::new(400, format!("`{name}` is required")));
                    let (tenant, session_id) = (header("openma-tenant")?, header("openma-session-id")?);
                    let report = self.archive(&tenant, &session_id).await.map_err(internal)?;
                    Response::from_json(&report).map_err(internal)
                }
                (Method::Get, "/events") => self.list(&query).await,
                (Method::Get, "/stream") => {
                    let last = req.headers().get("last-event-id").map_err(internal)?;
                    self.stream(&query, last).await
                }
                (Method::Delete, "/") => {
                    if let Some(id) = req.headers().get("openma-session-id").map_err(internal)? {
                        self.subscribers.deleted(&id);
                    }
                    self.end_sandbox().await;
                    if let Some(archive) = self.state.storage().get::<Archived>(ARCHIVED).await.map_err(internal)? {
                        self.env.bucket(BLOBS).map_err(internal)?.delete(&archive.key).await.map_err(internal)?;
                    }
                    self.state.storage().delete_alarm().await.map_err(internal)?;
                    self.state.storage().delete_all().await.map_err(internal)?;
                    Response::empty().map_err(internal)
                }
                _ => Err(ApiError::not_found("no such session route")),
            }
        };
        let r: std::result::Result<Response, ApiError> = served.await;
        r.or_else(|e| e.into_response(&request_id))
    }

    async fn alarm(&self) -> Result<Response> {
        crate::turn::run(self).await?;
        Response::empty()
    }
}

impl SessionDO {
    /// The session's log: its rows, after the archived part when there is one (read from R2).
    pub(crate) async fn log(&self) -> Result<EventLog> {
        let log = EventLog::open(self.state.storage().sql())?;
        let Some(archive) = self.state.storage().get::<Archived>(ARCHIVED).await? else { return Ok(log) };
        let blob = self.env.bucket(BLOBS)?.get(&archive.key).execute().await?;
        let bytes = match blob {
            Some(object) => object.body().ok_or_else(|| worker::Error::RustError("archived log without a body".into()))?.bytes().await?,
            None => return Err(worker::Error::RustError(format!("archived log `{}` is missing from R2", archive.key))),
        };
        let events = openma_core::event_log::decode(&bytes).map_err(worker::Error::RustError)?;
        Ok(log.with_archive(events.into_iter().filter(|e| e.seq <= archive.last_seq).collect()))
    }

    /// Moves the log into R2 (gzip-compressed JSON lines, as the native archival writes)
    /// and empties the object's SQLite of it: the blob first, then the record of it, then
    /// the rows, so a failure in between leaves the rows and a blob the next try rewrites.
    async fn archive(&self, tenant: &str, session_id: &str) -> Result<ArchiveReport> {
        let log = self.log().await?;
        let events = log.all()?;
        let key = openma_core::event_log::archive_key(&openma_core::TenantId::from_trusted(tenant), session_id);
        let Some(last_seq) = events.last().map(|e| e.seq) else { return Ok(ArchiveReport { key, last_seq: 0, events: 0 }) };
        self.env.bucket(BLOBS)?.put(&key, openma_core::event_log::encode(&events)).execute().await?;
        self.state.storage().put(ARCHIVED, Archived { key: key.clone(), last_seq }).await?;
        log.drop_archived_rows(last_seq)?;
        Ok(ArchiveReport { key, last_seq, events: events.len() as i64 })
    }

    /// Ends the session's sandbox (server session, snapshot, container); a failure is logged
    /// (the sandbox server's idle reaping and the container's stop are the fallback).
    async fn end_sandbox(&self) {
        let ended = async {
            let Some(meta) = self.state.storage().get::<Meta>(META).await? else { return Ok(()) };
            match crate::sandbox::Sandbox::of(self, &meta.tenant, &meta.session.id).await? {
                Some(sandbox) => sandbox.delete(self).await,
                None => Ok(()),
            }
        };
        if let Err(e) = ended.await {
            worker::console_error!("sandbox: not ended: {e}");
        }
    }

    /// Keeps the forwarded session row as the one to run, with the usage this object
    /// counted (the row's copy can lag behind a running turn).
    async fn remember(&self, tenant: String, mut session: Session) -> Result<Meta> {
        let storage = self.state.storage();
        if let Some(old) = storage.get::<Meta>(META).await? {
            session.usage = old.session.usage;
        }
        let meta = Meta { tenant, session };
        storage.put(META, meta.clone()).await?;
        Ok(meta)
    }

    pub(crate) fn new_id(&self) -> String {
        WorkerIds.new_id("sevt")
    }

    pub(crate) fn now(&self) -> openma_types::Timestamp {
        WorkerClock.now()
    }

    /// Applies client input, as the native actor does: to an idle session all or nothing
    /// (starting a turn when it brings work); while a turn runs, messages join it and an
    /// interrupt stops it.
    async fn send(&self, f: Forwarded) -> std::result::Result<Response, ApiError> {
        if f.session.archived_at.is_some() || f.session.status == SessionStatus::Terminated {
            return Err(DomainError::Conflict { message: "the session is archived or terminated and accepts no events".into(), code: Some("session_terminated") }.into());
        }
        let inputs = parse_events(f.events)?;
        // each named file exists for the tenant, is live and fits its block (as natively)
        WorkerFiles::new(&self.env)?.files().check_file_blocks(&openma_core::TenantId::from_trusted(f.tenant.clone()), &inputs, "events").await?;
        let storage = self.state.storage();
        let meta = self.remember(f.tenant, f.session).await.map_err(internal)?;
        let log = self.log().await.map_err(internal)?;
        let events = log.all().map_err(internal)?;
        if crate::turn::is_running(&events) {
            return self.send_while_running(inputs).await;
        }
        let applied = step::idle_inputs(&events, inputs, || self.new_id())?;
        if applied.starts_work && crate::turn::budget_reached(&meta, &events, self.now()) {
            return Err(openma_core::sessions::budget_reached_error().into());
        }
        let (pending, echo_ids, starts) = (applied.events, applied.echo_ids, applied.starts_running);
        let written = log.append(pending, self.now(), || self.new_id()).map_err(internal)?;
        self.subscribers.publish(&written);
        if starts {
            crate::turn::set_status(self, SessionStatus::Running, None).await.map_err(internal)?;
            storage.set_alarm(0).await.map_err(internal)?;
        }
        let data = written.into_iter().filter(|e| echo_ids.contains(&e.event.id)).map(|e| e.event).collect();
        Response::from_json(&SentEvents { data }).map_err(internal)
    }

    /// While a turn runs, messages wait in the inbox for the end of the model call (they
    /// are durable, and the turn answers them before it goes idle); an interrupt stops the
    /// call in flight. Answers to tool calls are refused: none is awaited while running.
    async fn send_while_running(&self, inputs: Vec<Input>) -> std::result::Result<Response, ApiError> {
        if let Some(id) = inputs.iter().find_map(|i| match i {
            Input::Confirmation { tool_use_id, .. } | Input::CustomResult { tool_use_id, .. } => Some(tool_use_id.clone()),
            _ => None,
        }) {
            return Err(DomainError::invalid(format!("`{id}` is not awaiting an answer: the session is running")).into());
        }
        let storage = self.state.storage();
        let mut inbox: Vec<SessionEvent> = storage.get(INBOX).await.map_err(internal)?.unwrap_or_default();
        let mut echo = Vec::new();
        let mut interrupted = None;
        for input in inputs {
            let event = SessionEvent { id: self.new_id(), payload: step::client_payload(input), processed_at: None };
            if matches!(event.payload, EventPayload::UserInterrupt {}) {
                interrupted.get_or_insert(event.id.clone());
            } else {
                inbox.push(event.clone());
            }
            echo.push(event);
        }
        storage.put(INBOX, &inbox).await.map_err(internal)?;
        if let Some(id) = interrupted {
            storage.put(INTERRUPT, id).await.map_err(internal)?;
            if let Some(tx) = self.interrupt.borrow().as_ref() {
                let _ = tx.unbounded_send(());
            }
        }
        // the loop takes the input at its next step; should the turn be ending just now, or
        // backing off until a later alarm, this run picks it up
        storage.set_alarm(0).await.map_err(internal)?;
        Response::from_json(&SentEvents { data: echo }).map_err(internal)
    }

    /// Records a change made through the API; the session row already holds it.
    async fn note(&self, f: Forwarded) -> std::result::Result<Response, ApiError> {
        let Some(note) = f.note else { return Err(ApiError::new(400, "`note` is required")) };
        let archives = matches!(note, EventPayload::StatusTerminated {});
        let meta = self.remember(f.tenant, f.session).await.map_err(internal)?;
        let log = self.log().await.map_err(internal)?;
        let written = log.append(vec![note.into()], self.now(), || self.new_id()).map_err(internal)?;
        self.subscribers.publish(&written);
        // a session stopped by its budget runs on once the budget is raised or removed
        let events = log.all().map_err(internal)?;
        let stopped_by_budget = events.iter().rev().find_map(|e| match &e.event.payload {
            EventPayload::StatusIdle { stop_reason } => Some(matches!(stop_reason, StopReason::BudgetReached)),
            _ => None,
        });
        if !archives
            && stopped_by_budget == Some(true)
            && !crate::turn::is_running(&events)
            && !crate::turn::budget_reached(&meta, &events, self.now())
        {
            let running = log.append(vec![EventPayload::StatusRunning {}.into()], self.now(), || self.new_id()).map_err(internal)?;
            self.subscribers.publish(&running);
            crate::turn::set_status(self, SessionStatus::Running, None).await.map_err(internal)?;
            self.state.storage().set_alarm(0).await.map_err(internal)?;
        }
        if archives {
            // an archived session runs no more tools; its log goes to R2 and leaves the
            // object's storage
            self.end_sandbox().await;
            self.archive(&meta.tenant, &meta.session.id).await.map_err(internal)?;
        }
        Response::from_json(&serde_json::json!({})).map_err(internal)
    }

    async fn list(&self, query: &str) -> std::result::Result<Response, ApiError> {
        let page: PageParams = openma_core::edge::query(query)?;
        let q: EventListParams = openma_core::edge::query(query)?;
        if let Some(bad) = q.types.iter().find(|t| !ALL_EVENT_TYPES.contains(&t.as_str())) {
            return Err(DomainError::invalid(format!("`types[]` value `{bad}` is not an event type")).into());
        }
        let order = q.order.map(Order::from).unwrap_or(Order::Asc);
        let req = PageRequest::new(page.limit, order, page.page.as_deref(), 1000.max(MAX_LIMIT))?;
        let (store_order, after, _) = req.store_order();
        let rows = self.log().await.map_err(internal)?.page(after.map(|p| p.created_at), store_order == Order::Desc, req.limit + 1, &q.types).map_err(internal)?;
        let p = req.finish(rows, |e| Position { created_at: e.seq, id: e.event.id.clone() });
        Response::from_json(&ListPage { data: p.data.into_iter().map(|e| e.event).collect(), next_page: p.next_page }).map_err(internal)
    }

    /// Without `Last-Event-ID` the stream starts now; with it, it replays what came after
    /// that event, then goes live, gap-free.
    async fn stream(&self, query: &str, last_event_id: Option<String>) -> std::result::Result<Response, ApiError> {
        let q: StreamParams = openma_core::edge::query(query)?;
        let mut previews = Vec::new();
        for d in &q.event_deltas {
            match PreviewOf::parse(d) {
                Some(of) => previews.push(of),
                None => return Err(DomainError::invalid(format!("`event_deltas[]` value `{d}` must be `agent.message` or `agent.thinking`")).into()),
            }
        }
        let log = self.log().await.map_err(internal)?;
        let start = match last_event_id.or(q.last_event_id) {
            Some(r) => match r.parse::<i64>() {
                Ok(seq) => seq,
                Err(_) => log
                    .seq_of(&r)
                    .map_err(internal)?
                    .ok_or_else(|| ApiError::new(400, format!("`Last-Event-ID` `{r}` is not an event of this session")))?,
            },
            None => log.last_seq().map_err(internal)?,
        };
        // read and subscribe in one synchronous stretch: nothing can be appended between
        let catch_up = log.page(Some(start), false, u32::MAX, &[]).map_err(internal)?;
        // a terminated session's stream ends once it has replayed what came after `start`
        let terminated = !log.page(None, true, 1, &["session.status_terminated".to_owned()]).map_err(internal)?.is_empty();
        let ended = terminated && catch_up.is_empty();
        let frames = self.subscribers.subscribe(&catch_up, previews, ended).map(Ok::<Vec<u8>, worker::Error>);
        let mut response = Response::from_stream(frames).map_err(internal)?;
        let headers = response.headers_mut();
        headers.set("content-type", "text/event-stream").map_err(internal)?;
        headers.set("cache-control", "no-cache").map_err(internal)?;
        Ok(response)
    }
}

async fn forwarded(req: &mut Request) -> std::result::Result<Forwarded, ApiError> {
    serde_json::from_slice(&req.bytes().await.map_err(internal)?).map_err(|e| ApiError::new(400, format!("forwarded session request: {e}")))
}

/// A workerd failure: a 500 whose detail only the log sees.
pub(crate) fn internal(e: worker::Error) -> ApiError {
    ApiError::from(DomainError::Store(openma_core::StoreError::Backend(e.to_string())))
}
