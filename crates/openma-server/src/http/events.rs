//! `/v1/sessions/{id}/events` (list, send) and `/v1/sessions/{id}/events/stream` (SSE),
//! plus the primary thread's views of the same log.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use openma_core::paging::{MAX_LIMIT, PageRequest};
use openma_core::ports::{EventQuery, Order, Position};
use openma_core::{DomainError, TenantId};
use openma_types::events::{ALL_EVENT_TYPES, SendEventsRequest, SentEvents, SessionEvent};
use openma_types::{ErrorEnvelope, ListPage};
use openma_types::query::{EventListParams, StreamParams};
use tokio::sync::broadcast::error::RecvError;

use super::{CreatedFilter, PageParams};
use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::runtime::{Frame, Hub, PreviewOf, Runtime};

/// SSE heartbeat period: well inside any proxy's and the SDK's read timeout.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{session_id}/events", get(list_events).post(send_events))
        .route("/v1/sessions/{session_id}/events/stream", get(stream_events))
}

/// List a session's events (oldest first by default).
#[utoipa::path(get, path = "/v1/sessions/{session_id}/events", tag = "events",
    params(("session_id" = String, Path, description = "The session id"), PageParams, CreatedFilter, EventListParams),
    responses((status = 200, body = ListPage<SessionEvent>), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list_events(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(created): ApiQuery<CreatedFilter>,
    ApiQuery(q): ApiQuery<EventListParams>,
) -> Result<Json<ListPage<SessionEvent>>, ApiError> {
    app.platform.get_session(&tenant, &id).await?;
    if let Some(bad) = q.types.iter().find(|t| !ALL_EVENT_TYPES.contains(&t.as_str())) {
        return Err(DomainError::invalid(format!("`types[]` value `{bad}` is not an event type")).into());
    }
    let order = q.order.map(Order::from).unwrap_or(Order::Asc);
    let req = PageRequest::new(page.limit, order, page.page.as_deref(), 1000.max(MAX_LIMIT))?;
    let (store_order, after, _) = req.store_order();
    let rows = app
        .platform
        .list_events(
            &tenant,
            &id,
            &EventQuery {
                after_seq: after.map(|p| p.created_at),
                descending: store_order == Order::Desc,
                limit: req.limit + 1,
                types: q.types,
                processed: openma_core::ports::TimeRange::from(&created),
            },
        )
        .await?;
    let p = req.finish(rows, |e| Position { created_at: e.seq, id: e.event.id.clone() });
    Ok(Json(ListPage { data: p.data.into_iter().map(|e| e.event).collect(), next_page: p.next_page }))
}

/// Send events: user messages, interrupts, tool confirmations, custom tool results,
/// system messages.
#[utoipa::path(post, path = "/v1/sessions/{session_id}/events", tag = "events", request_body = SendEventsRequest,
    params(("session_id" = String, Path, description = "The session id")),
    responses((status = 200, body = SentEvents), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn send_events(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<SendEventsRequest>,
) -> Result<Json<SentEvents>, ApiError> {
    let inputs = app.platform.accept_events(&tenant, req.events).await?;
    let data = app.runtime.submit(&tenant, &id, inputs).await?;
    Ok(Json(SentEvents { data }))
}

/// Stream a session's events as Server-Sent Events. Without `Last-Event-ID` the stream
/// starts now; with it, it replays what came after that event, then goes live, gap-free.
#[utoipa::path(get, path = "/v1/sessions/{session_id}/events/stream", tag = "events",
    params(("session_id" = String, Path, description = "The session id"), StreamParams),
    responses((status = 200, description = "text/event-stream of session events", content_type = "text/event-stream"), (status = 404, body = ErrorEnvelope)))]
pub async fn stream_events(
    State(app): State<AppState>,
    Caller(tenant): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let session = app.platform.get_session(&tenant, &id).await?;
    let mut previews = Vec::new();
    for d in &q.event_deltas {
        match d.as_str() {
            "agent.message" => previews.push(PreviewOf::Message),
            "agent.thinking" => previews.push(PreviewOf::Thinking),
            other => return Err(DomainError::invalid(format!("`event_deltas[]` value `{other}` must be `agent.message` or `agent.thinking`")).into()),
        }
    }
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(q.last_event_id);
    // subscribe before reading the position, so nothing falls in between
    let rx = app.runtime.hub(&id).subscribe();
    let start = match resume {
        Some(r) => match r.parse::<i64>() {
            Ok(seq) => seq,
            Err(_) => app
                .platform
                .event_seq(&tenant, &id, &r)
                .await?
                .ok_or_else(|| ApiError::bad_request(format!("`Last-Event-ID` `{r}` is not an event of this session")))?,
        },
        None => app.platform.last_event_seq(&tenant, &id).await?,
    };
    let terminated = session.status == openma_types::sessions::SessionStatus::Terminated;
    let stream = live_stream(app.runtime.clone(), tenant, id, start, rx, previews, terminated);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).event(Event::default().event("ping").data("{}"))))
}

/// Counts a stream that wants previews on its session's hub, while it is open.
struct PreviewStream(Hub);

impl PreviewStream {
    fn new(hub: &Hub) -> Self {
        hub.relay().preview_streams.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PreviewStream(hub.clone())
    }
}

impl Drop for PreviewStream {
    fn drop(&mut self) {
        self.0.relay().preview_streams.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Keeps `openma_sse_streams` equal to the number of open streams.
struct OpenStream;

impl OpenStream {
    fn new() -> Self {
        metrics::gauge!("openma_sse_streams").increment(1.0);
        OpenStream
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("openma_sse_streams").decrement(1.0);
    }
}

fn sse_event(kind: &str, id: Option<&str>, json: &str) -> Event {
    let e = Event::default().event(kind).data(json);
    match id {
        Some(id) => e.id(id),
        None => e,
    }
}

/// Replays the log after `start`, then follows the hub; a lagging subscriber re-reads
/// the log, so the stream has no gaps and no duplicates.
fn live_stream(
    runtime: Arc<Runtime>,
    tenant: TenantId,
    session_id: String,
    start: i64,
    mut rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    previews: Vec<PreviewOf>,
    already_terminated: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    async_stream::stream! {
        // counted while the stream is open (the guard drops with the stream)
        let _open = OpenStream::new();
        // the platform reads archived logs too
        let store = runtime.platform.clone();
        let mut last = start;
        let mut done = false;
        // catch-up from the log
        loop {
            let page = match store.list_events(&tenant, &session_id, &EventQuery { after_seq: Some(last), limit: 500, ..Default::default() }).await {
                Ok(p) => p,
                Err(e) => { tracing::warn!(error = %e, "stream catch-up failed"); break; }
            };
            let n = page.len();
            for e in page {
                last = e.seq;
                let json = serde_json::to_string(&e.event).unwrap_or_default();
                done |= matches!(e.event.payload, openma_types::events::EventPayload::StatusTerminated {});
                yield Ok(sse_event(e.event.payload.kind(), Some(&e.event.id), &json));
            }
            if n < 500 { break; }
        }
        if done || (already_terminated && start >= last) {
            return;
        }
        // cluster mode: events appended on other nodes after this point are relayed here,
        // and their owner sends its previews while this stream wants them
        let hub = runtime.hub(&session_id);
        hub.seen(&tenant, last);
        let _previews = (!previews.is_empty()).then(|| PreviewStream::new(&hub));
        loop {
            match rx.recv().await {
                Ok(frame) => match frame.as_ref() {
                    Frame::Event { seq, id, kind, json, terminal } => {
                        if *seq <= last { continue; }
                        if *seq > last + 1 {
                            // missed frames (lag): read them from the log
                            if let Ok(page) = store.list_events(&tenant, &session_id, &EventQuery { after_seq: Some(last), limit: (*seq - last - 1) as u32, ..Default::default() }).await {
                                for e in page {
                                    let json = serde_json::to_string(&e.event).unwrap_or_default();
                                    yield Ok(sse_event(e.event.payload.kind(), Some(&e.event.id), &json));
                                }
                            }
                        }
                        last = *seq;
                        yield Ok(sse_event(kind, Some(id), json));
                        if *terminal { return; }
                    }
                    Frame::Preview { of, kind, json } => {
                        if previews.contains(of) {
                            yield Ok(sse_event(kind, None, json));
                        }
                    }
                    Frame::Deleted { json } => {
                        yield Ok(sse_event("session.deleted", None, json));
                        return;
                    }
                },
                Err(RecvError::Lagged(_)) => {
                    loop {
                        let page = match store.list_events(&tenant, &session_id, &EventQuery { after_seq: Some(last), limit: 500, ..Default::default() }).await {
                            Ok(p) => p,
                            Err(_) => break,
                        };
                        let n = page.len();
                        for e in page {
                            last = e.seq;
                            let json = serde_json::to_string(&e.event).unwrap_or_default();
                            yield Ok(sse_event(e.event.payload.kind(), Some(&e.event.id), &json));
                        }
                        if n < 500 { break; }
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}
