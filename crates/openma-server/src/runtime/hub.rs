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

pub use openma_core::harness::step::PreviewOf;

/// Cluster mode: a preview on its way to the streams of other nodes.
pub struct RemotePreview {
    pub session_id: Arc<str>,
    pub of: PreviewOf,
    pub kind: &'static str,
    pub json: String,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Frame>>,
    relay: Arc<Relay>,
    session_id: Arc<str>,
    /// Cluster mode: where previews go when streams on other nodes want them.
    remote: Option<tokio::sync::mpsc::UnboundedSender<RemotePreview>>,
}

/// Cluster mode: how far the events another node appended have been relayed to this hub.
#[derive(Default)]
pub struct Relay {
    /// The highest sequence number relayed or seen by a stream here; -1 until a stream
    /// says where it caught up to.
    pub seen: std::sync::atomic::AtomicI64,
    /// One relay at a time per hub, so frames go out in order.
    pub lock: tokio::sync::Mutex<()>,
    /// Until when (ms since the Unix epoch) streams on other nodes want this session's
    /// previews (they say so every few seconds while they are open).
    pub remote_previews_until: std::sync::atomic::AtomicI64,
    /// This node's open streams of the session that asked for previews.
    pub preview_streams: std::sync::atomic::AtomicUsize,
    /// The session's tenant, known once `seen` is set.
    pub tenant: std::sync::OnceLock<openma_core::TenantId>,
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Hub {
    pub fn new(session_id: &str, remote: Option<tokio::sync::mpsc::UnboundedSender<RemotePreview>>) -> Self {
        let relay = Relay { seen: (-1).into(), ..Default::default() };
        Hub { tx: broadcast::channel(HUB_CAPACITY).0, relay: Arc::new(relay), session_id: Arc::from(session_id), remote }
    }
}

impl Hub {
    pub fn publish(&self, frame: Frame) {
        use std::sync::atomic::Ordering;
        if let (Frame::Preview { of, kind, json }, Some(remote)) = (&frame, &self.remote)
            && self.relay.remote_previews_until.load(Ordering::Relaxed) > unix_ms()
        {
            let _ = remote.send(RemotePreview { session_id: self.session_id.clone(), of: *of, kind, json: json.clone() });
        }
        self.publish_here(frame);
    }

    /// Publishes to this node's streams only (a preview that came from another node).
    pub fn publish_here(&self, frame: Frame) {
        // no subscriber is not an error: the log has everything
        let _ = self.tx.send(Arc::new(frame));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Frame>> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The log of the session (of `tenant`) was read or written up to `seq`: what comes
    /// from other nodes after it is relayed.
    pub fn seen(&self, tenant: &openma_core::TenantId, seq: i64) {
        self.relay.tenant.get_or_init(|| tenant.clone());
        self.relay.seen.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }
}
