//! Fan-out of a session's events to its open SSE streams, inside its Durable Object. The
//! object is single-threaded, so a subscriber is added and the log read for its catch-up
//! in one synchronous stretch: no event can fall between the two.

use std::cell::RefCell;
use std::time::Duration;

use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt, stream};
use openma_core::harness::step::{Preview, PreviewOf};
use openma_core::ports::StoredEvent;
use openma_types::events::EventPayload;
use worker::Delay;

/// One SSE frame on its way to a stream.
#[derive(Clone)]
enum Frame {
    Event { text: String, terminal: bool },
    Preview { text: String },
}

struct Subscriber {
    tx: UnboundedSender<Frame>,
    previews: Vec<PreviewOf>,
}

#[derive(Default)]
pub struct Subscribers {
    open: RefCell<Vec<Subscriber>>,
}

/// `event:`, `id:` and `data:` lines, as the native server writes them.
fn sse(kind: &str, id: Option<&str>, json: &str) -> String {
    let mut out = format!("event: {kind}\n");
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    for line in json.lines() {
        out.push_str(&format!("data: {line}\n"));
    }
    out.push('\n');
    out
}

fn event_frame(e: &StoredEvent) -> Frame {
    let json = serde_json::to_string(&e.event).unwrap_or_default();
    Frame::Event { text: sse(e.event.payload.kind(), Some(&e.event.id), &json), terminal: matches!(e.event.payload, EventPayload::StatusTerminated {}) }
}

/// How often an idle stream gets a `ping` event, as on the native server: proxies (and
/// Cloudflare's edge) close connections that stay silent.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// `frames` with a `ping` whenever `HEARTBEAT` passes; ends when `frames` does.
fn with_heartbeat(frames: impl Stream<Item = Vec<u8>> + 'static) -> impl Stream<Item = Vec<u8>> + 'static {
    let frames = frames.map(Some).chain(stream::once(futures::future::ready(None)));
    let pings = stream::unfold((), |()| async {
        Delay::from(HEARTBEAT).await;
        Some((Some(sse("ping", None, "{}").into_bytes()), ()))
    });
    stream::select(frames, pings).take_while(|f| futures::future::ready(f.is_some())).filter_map(futures::future::ready)
}

impl Subscribers {
    /// A stream of `catch_up` followed by every event published from now on; it ends after
    /// `session.status_terminated` (or at once when `ended`).
    pub fn subscribe(&self, catch_up: &[StoredEvent], previews: Vec<PreviewOf>, ended: bool) -> impl Stream<Item = Vec<u8>> + 'static {
        let first: Vec<Frame> = catch_up.iter().map(event_frame).collect();
        let done = ended || first.iter().any(|f| matches!(f, Frame::Event { terminal: true, .. }));
        let live = if done {
            None
        } else {
            let (tx, rx) = unbounded();
            self.open.borrow_mut().push(Subscriber { tx, previews });
            Some(rx)
        };
        let opening = stream::iter(first);
        let following = stream::iter(live).flatten();
        // stop after the terminal event
        let frames = opening.chain(following).scan(false, |over, frame| {
            if *over {
                return futures::future::ready(None);
            }
            let text = match frame {
                Frame::Event { text, terminal } => {
                    *over = terminal;
                    text
                }
                Frame::Preview { text } => text,
            };
            futures::future::ready(Some(text.into_bytes()))
        });
        with_heartbeat(frames)
    }

    pub fn publish(&self, events: &[StoredEvent]) {
        let frames: Vec<Frame> = events.iter().map(event_frame).collect();
        let terminal = frames.iter().any(|f| matches!(f, Frame::Event { terminal: true, .. }));
        // after the terminal event the streams end: their senders go
        self.open.borrow_mut().retain(|s| frames.iter().all(|f| s.tx.unbounded_send(f.clone()).is_ok()) && !terminal);
    }

    pub fn preview(&self, p: Preview) {
        let frame = Frame::Preview { text: sse(p.kind, None, &p.json) };
        self.open.borrow_mut().retain(|s| !s.previews.contains(&p.of) || s.tx.unbounded_send(frame.clone()).is_ok());
    }

    /// Ends every open stream with `session.deleted`, as the native server does.
    pub fn deleted(&self, session_id: &str) {
        let json = serde_json::json!({"type": "session.deleted", "id": format!("sevt_deleted_{session_id}")}).to_string();
        let frame = Frame::Event { text: sse("session.deleted", None, &json), terminal: true };
        for s in self.open.borrow_mut().drain(..) {
            let _ = s.tx.unbounded_send(frame.clone());
        }
    }
}
