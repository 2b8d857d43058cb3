//! MCP's older HTTP+SSE transport (the 2024-11-05 revision), for servers that predate
//! streamable HTTP: a `GET` opens an event stream whose first `endpoint` event names where to
//! `POST` messages, and the answers come back as `message` events on that stream. Tried only
//! after a streamable HTTP handshake failed, as the specification's compatibility note says
//! (and as the native server does).
//!
//! The stream is held with the client, in the object's memory, for the running interval; a
//! stream that ended (the server went away, or the runtime closed it) makes the exchange
//! [`Exchange::Gone`], so the caller opens a new one.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::future::{Either, select};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Url};

use super::Exchange;
use openma_worker_common::outbound::{NoAnswer, exchange};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<worker::Error>>>>>;

/// An open event stream and the endpoint its server takes messages at.
pub struct LegacyStream {
    endpoint: String,
    events: Events,
}

impl LegacyStream {
    /// Opens the event stream at `url` and waits for its `endpoint` event, which must name
    /// the same origin (the credential goes there).
    pub async fn open(url: &str, authorization: Option<&str>, timeout: Duration) -> Result<LegacyStream, Exchange> {
        let failed = |e: worker::Error| Exchange::Failed(e.to_string());
        let base = Url::parse(url).map_err(|e| Exchange::Failed(e.to_string()))?;
        let headers = Headers::new();
        headers.set("accept", "text/event-stream").map_err(failed)?;
        if let Some(a) = authorization {
            headers.set("authorization", a).map_err(failed)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers).with_redirect(RequestRedirect::Manual);
        let fetch = Fetch::Request(Request::new_with_init(url, &init).map_err(failed)?);
        let mut r = match select(Box::pin(fetch.send()), Box::pin(Delay::from(timeout))).await {
            Either::Left((r, _)) => r.map_err(failed)?,
            Either::Right(_) => return Err(Exchange::Failed("no answer to the event-stream request".into())),
        };
        match r.status_code() {
            401 | 403 => return Err(Exchange::Refused),
            s if !(200..300).contains(&s) => return Err(Exchange::Failed(format!("the event-stream request answered HTTP {s}"))),
            _ => {}
        }
        let mut events: Events = Box::pin(r.stream().map_err(failed)?.eventsource());
        let endpoint = loop {
            match next(&mut events, timeout).await {
                Next::Event(ev) if ev.event == "endpoint" => break base.join(ev.data.trim()).map_err(|e| Exchange::Failed(format!("a bad `endpoint` event: {e}")))?,
                Next::Event(_) => continue,
                Next::TimedOut => return Err(Exchange::Failed("no `endpoint` event on the stream".into())),
                Next::Ended(why) => return Err(Exchange::Failed(format!("the event stream ended before its `endpoint` event{why}"))),
            }
        };
        if endpoint.origin() != base.origin() {
            return Err(Exchange::Failed("the `endpoint` event names another origin".into()));
        }
        Ok(LegacyStream { endpoint: endpoint.to_string(), events })
    }

    /// POSTs one message; for a request, waits on the stream for its response (the body,
    /// as JSON text). What the server asks meanwhile is answered (`ping`; an error else).
    pub async fn exchange(&mut self, authorization: Option<&str>, message: &Value, timeout: Duration) -> Result<String, Exchange> {
        self.post(authorization, message, timeout).await?;
        let Some(id) = message.get("id").filter(|_| message.get("method").is_some()).cloned() else { return Ok(String::new()) };
        let deadline = worker::Date::now().as_millis() + timeout.as_millis() as u64;
        loop {
            let left = Duration::from_millis(deadline.saturating_sub(worker::Date::now().as_millis()));
            let ev = match next(&mut self.events, left).await {
                Next::Event(ev) => ev,
                Next::TimedOut => return Err(Exchange::TimedOut),
                Next::Ended(_) => return Err(Exchange::Gone),
            };
            if ev.event != "message" && !ev.event.is_empty() {
                continue;
            }
            let Ok(m) = serde_json::from_str::<Value>(&ev.data) else { continue };
            match (m.get("method").and_then(Value::as_str), m.get("id")) {
                (None, Some(i)) if *i == id => return Ok(ev.data),
                (Some(method), Some(i)) => {
                    let answer = if method == "ping" {
                        json!({"jsonrpc": "2.0", "id": i, "result": {}})
                    } else {
                        json!({"jsonrpc": "2.0", "id": i, "error": {"code": -32601, "message": format!("the client does not take `{method}` requests")}})
                    };
                    self.post(authorization, &answer, timeout).await?;
                }
                _ => {}
            }
        }
    }

    async fn post(&self, authorization: Option<&str>, message: &Value, timeout: Duration) -> Result<(), Exchange> {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(a) = authorization {
            headers.push(("authorization", a.to_owned()));
        }
        let (answer, _) = exchange(&self.endpoint, &headers, &message.to_string(), timeout).await.map_err(|e| match e {
            NoAnswer::TimedOut(_) => Exchange::TimedOut,
            NoAnswer::Failed(why) => Exchange::Failed(why),
        })?;
        match answer.status {
            401 | 403 => Err(Exchange::Refused),
            404 => Err(Exchange::Gone),
            s if !(200..300).contains(&s) => Err(Exchange::Failed(format!("answered {s}"))),
            _ => Ok(()),
        }
    }
}

enum Next {
    Event(Event),
    TimedOut,
    /// The stream ended, or failed (`: why`).
    Ended(String),
}

async fn next(events: &mut Events, timeout: Duration) -> Next {
    match select(events.next(), Box::pin(Delay::from(timeout))).await {
        Either::Left((Some(Ok(ev)), _)) => Next::Event(ev),
        Either::Left((Some(Err(e)), _)) => Next::Ended(format!(": {e}")),
        Either::Left((None, _)) => Next::Ended(String::new()),
        Either::Right(_) => Next::TimedOut,
    }
}
