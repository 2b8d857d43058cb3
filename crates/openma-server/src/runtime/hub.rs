//! Fan-out of a session's events to its stream subscribers.
//!
//! A bounded broadcast channel per session: the writer never waits for a reader. A
//! subscriber that falls behind is told it lagged and catches up from the log, so a slow
//! client costs itself time, never the session or the other clients.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Frames buffered per session before a slow subscriber must catch up from the log.
pub const HUB_CAPACITY: usize = 1024;

/// One item on a session's stream.
#[derive(Debug)]
pub enum Frame {
    /// A persisted event.
    Event { seq: i64, id: String, kind: &'static str, json: String, terminal: bool },
    /// A preview (`event_start` / `event_delta`) of an event still being produced.
    Preview { of: PreviewOf, kind: &'static str, json: String },
    /// The session was deleted: streams end after this.
    Deleted { json: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewOf {
    Message,
    Thinking,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    relay: Arc<Relay>,
}

/// Cluster mode: how far the events another node appended have been relayed to this hub.
#[derive(Default)]
pub struct Relay {
    /// The highest sequence number relayed or seen by a stream here; -1 until a stream
    /// says where it caught up to.
    pub seen: std::sync::atomic::AtomicI64,
    /// One relay at a time per hub, so frames go out in order.
    pub lock: tokio::sync::Mutex<()>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { tx: broadcast::channel(HUB_CAPACITY).0, relay: Arc::new(Relay { seen: (-1).into(), lock: Default::default() }) }
    }
}

impl Hub {
    pub fn publish(&self, frame: Frame) {
        // no subscriber is not an error: the log has everything
        let _ = self.tx.send(Arc::new(frame));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A stream read the log up to `seq`: what comes from other nodes after it is relayed.
    pub fn seen(&self, seq: i64) {
        self.relay.seen.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }
}
