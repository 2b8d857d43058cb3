//! Archived event logs. The events of an archived (or long idle) session move out of the
//! database into one gzip-compressed JSON-lines blob; the session row keeps where it is and
//! the highest `seq` it holds. Reads merge that blob with the rows after it and apply the
//! same [`EventQuery`], so the events API, the stream and the console see the log exactly
//! as before. Archival writes the blob first and only then, in one transaction, records it
//! and deletes the rows: a crash in between leaves the rows and a blob the next run rewrites.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use openma_types::Timestamp;
use openma_types::events::SessionEvent;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, DomainResult, StoreError};
use crate::ports::{EventLogArchive, EventQuery, StoredEvent};
use crate::{Platform, TenantId};

/// Sessions archived per store scan.
const ARCHIVE_BATCH: u32 = 100;
/// Rows read per page while a log is gathered.
const PAGE: u32 = 1000;

/// Where a session's archived log (gzip-compressed JSON lines) lives in the blob store. One
/// key per session: a later archival rewrites it with a superset, and readers only take
/// `seq <= last_seq` from it.
pub fn archive_key(tenant: &TenantId, session_id: &str) -> String {
    format!("event-logs/{}/{}", tenant.as_str(), session_id)
}

/// One line of an archive: an event as the log keeps it.
#[derive(Serialize, Deserialize)]
struct Line {
    seq: i64,
    event: SessionEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    internal: Option<serde_json::Value>,
}

/// The events as gzip-compressed JSON lines, in `seq` order.
pub fn encode(events: &[StoredEvent]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for e in events {
        let line = Line { seq: e.seq, event: e.event.clone(), internal: e.internal.clone() };
        serde_json::to_writer(&mut gz, &line).expect("events serialise to JSON");
        gz.write_all(b"\n").expect("writes to memory do not fail");
    }
    gz.finish().expect("writes to memory do not fail")
}

/// The events of an archive, in `seq` order.
pub fn decode(bytes: &[u8]) -> Result<Vec<StoredEvent>, String> {
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(bytes));
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| format!("corrupt event log archive: {e}"))?;
        if line.is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&line).map_err(|e| format!("corrupt event log archive: {e}"))?;
        out.push(StoredEvent { seq: l.seq, event: l.event, internal: l.internal });
    }
    Ok(out)
}

/// What `query` selects of `events` (ascending by `seq`) among those up to `last_seq`,
/// as the SQL stores select rows: the same bounds, filters, order and limit.
pub fn select(events: &[StoredEvent], query: &EventQuery, last_seq: i64) -> Vec<StoredEvent> {
    let p = &query.processed;
    let keep = |e: &&StoredEvent| {
        let at = e.event.processed_at.map(Timestamp::as_micros).unwrap_or_default();
        e.seq <= last_seq
            && query.after_seq.is_none_or(|a| if query.descending { e.seq < a } else { e.seq > a })
            && (query.types.is_empty() || query.types.iter().any(|t| t == e.event.payload.kind()))
            && p.gt.is_none_or(|v| at > v)
            && p.gte.is_none_or(|v| at >= v)
            && p.lt.is_none_or(|v| at < v)
            && p.lte.is_none_or(|v| at <= v)
    };
    let limit = query.limit as usize;
    if query.descending {
        events.iter().rev().filter(keep).take(limit).cloned().collect()
    } else {
        events.iter().filter(keep).take(limit).cloned().collect()
    }
}

/// Recently read archives, decoded: paging through an archived log (or a stream's
/// catch-up) must not decompress the whole blob for every page. Bounded by count.
pub struct ArchiveCache {
    capacity: usize,
    /// Most recently used last.
    entries: Mutex<VecDeque<CachedArchive>>,
}

/// A decoded archive, keyed by its blob key and the `last_seq` it was read for.
type CachedArchive = (String, i64, Arc<Vec<StoredEvent>>);

impl ArchiveCache {
    pub fn new(capacity: usize) -> Self {
        ArchiveCache { capacity, entries: Mutex::new(VecDeque::new()) }
    }

    fn get(&self, key: &str, last_seq: i64) -> Option<Arc<Vec<StoredEvent>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let at = entries.iter().position(|(k, s, _)| k == key && *s == last_seq)?;
        let hit = entries.remove(at)?;
        let events = hit.2.clone();
        entries.push_back(hit);
        Some(events)
    }

    fn put(&self, key: &str, last_seq: i64, events: Arc<Vec<StoredEvent>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(k, _, _)| k != key);
        entries.push_back((key.to_owned(), last_seq, events));
        while entries.len() > self.capacity {
            entries.pop_front();
        }
    }
}

impl Default for ArchiveCache {
    fn default() -> Self {
        ArchiveCache::new(32)
    }
}

/// What one archival pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchivalReport {
    /// Sessions whose log moved (wholly or its new tail) into the blob store.
    pub sessions: usize,
    /// Event rows removed from the database.
    pub events: u64,
}

impl Platform {
    /// A read of a session's event log, wherever its events are kept.
    pub async fn list_events(&self, tenant: &TenantId, session_id: &str, query: &EventQuery) -> DomainResult<Vec<StoredEvent>> {
        let Some(archive) = self.store.event_log_archive(tenant, session_id).await? else {
            return Ok(self.store.list_events(tenant, session_id, query).await?);
        };
        let limit = query.limit as usize;
        // rows all follow the archive: descending reads take them first, ascending ones last
        let rows = |after_seq: Option<i64>, limit: usize| {
            let q = EventQuery { after_seq, limit: limit as u32, ..query.clone() };
            async move { self.store.list_events(tenant, session_id, &q).await }
        };
        if query.descending {
            let mut out = rows(query.after_seq, limit).await?;
            if out.len() < limit && query.after_seq.is_none_or(|a| a > 1) {
                let archived = self.archived_events(&archive).await?;
                let q = EventQuery { limit: (limit - out.len()) as u32, ..query.clone() };
                out.extend(select(&archived, &q, archive.last_seq));
            }
            Ok(out)
        } else {
            let mut out = Vec::new();
            if query.after_seq.is_none_or(|a| a < archive.last_seq) {
                out = select(&self.archived_events(&archive).await?, query, archive.last_seq);
            }
            if out.len() < limit {
                let after = query.after_seq.unwrap_or(0).max(archive.last_seq);
                out.extend(rows(Some(after), limit - out.len()).await?);
            }
            Ok(out)
        }
    }

    /// The sequence number of an event, by id, wherever it is kept.
    pub async fn event_seq(&self, tenant: &TenantId, session_id: &str, event_id: &str) -> DomainResult<Option<i64>> {
        if let Some(seq) = self.store.event_seq(tenant, session_id, event_id).await? {
            return Ok(Some(seq));
        }
        let Some(archive) = self.store.event_log_archive(tenant, session_id).await? else { return Ok(None) };
        let archived = self.archived_events(&archive).await?;
        Ok(archived.iter().find(|e| e.event.id == event_id && e.seq <= archive.last_seq).map(|e| e.seq))
    }

    /// The highest sequence number of a session's log (0 when empty).
    pub async fn last_event_seq(&self, tenant: &TenantId, session_id: &str) -> DomainResult<i64> {
        let rows = self.store.last_event_seq(tenant, session_id).await?;
        let archived = self.store.event_log_archive(tenant, session_id).await?.map_or(0, |a| a.last_seq);
        Ok(rows.max(archived))
    }

    async fn archived_events(&self, archive: &EventLogArchive) -> DomainResult<Arc<Vec<StoredEvent>>> {
        if let Some(hit) = self.event_archives.get(&archive.blob_key, archive.last_seq) {
            return Ok(hit);
        }
        let missing = || DomainError::Store(StoreError::Backend(format!("the archived event log `{}` is missing", archive.blob_key)));
        let body = self.blob_store()?.get(&archive.blob_key).await.map_err(crate::files::blob_error)?.ok_or_else(missing)?;
        let bytes = collect(body).await?;
        let events = Arc::new(decode(&bytes).map_err(|e| DomainError::Store(StoreError::Backend(e)))?);
        self.event_archives.put(&archive.blob_key, archive.last_seq, events.clone());
        Ok(events)
    }

    /// Archives the logs of archived sessions, and of sessions unchanged since before
    /// `idle_before` when given, until none is left (a batch that archives nothing ends it).
    pub async fn archive_event_logs(&self, idle_before: Option<Timestamp>) -> DomainResult<ArchivalReport> {
        let mut report = ArchivalReport::default();
        loop {
            let batch = self.store.sessions_to_archive(idle_before, ARCHIVE_BATCH).await?;
            let mut progressed = false;
            for (tenant, session_id, seen) in &batch {
                if let Some(events) = self.archive_session_log(tenant, session_id, *seen).await? {
                    progressed = true;
                    if events > 0 {
                        report.sessions += 1;
                        report.events += events;
                    }
                }
            }
            if batch.len() < ARCHIVE_BATCH as usize || !progressed {
                return Ok(report);
            }
        }
    }

    /// Moves the rows of one session's log into its archive blob. `seen` is the session's
    /// `updated_at` when it was picked. The rows moved, or None when the session was
    /// running, rescheduling or had inbox entries by the time it was recorded.
    pub async fn archive_session_log(&self, tenant: &TenantId, session_id: &str, seen: Timestamp) -> DomainResult<Option<u64>> {
        let current = self.store.event_log_archive(tenant, session_id).await?;
        let archived_seq = current.as_ref().map_or(0, |a| a.last_seq);
        let mut rows = Vec::new();
        loop {
            let q = EventQuery { after_seq: Some(rows.last().map_or(archived_seq, |e: &StoredEvent| e.seq)), limit: PAGE, ..Default::default() };
            let page = self.store.list_events(tenant, session_id, &q).await?;
            let n = page.len();
            rows.extend(page);
            if n < PAGE as usize {
                break;
            }
        }
        let Some(last_seq) = rows.last().map(|e| e.seq) else {
            return Ok(self.store.archive_event_log(tenant, session_id, None, seen).await?.then_some(0));
        };
        let mut all: Vec<StoredEvent> = match &current {
            Some(a) => self.archived_events(a).await?.iter().filter(|e| e.seq <= a.last_seq).cloned().collect(),
            None => Vec::new(),
        };
        let moved = rows.len() as u64;
        all.extend(rows);
        let key = archive_key(tenant, session_id);
        let bytes = encode(&all);
        let body: crate::ports::ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        self.blob_store()?.put(&key, body, u64::MAX).await.map_err(crate::files::blob_error)?;
        let archive = EventLogArchive { blob_key: key, events: all.len() as i64, last_seq };
        if !self.store.archive_event_log(tenant, session_id, Some(&archive), seen).await? {
            return Ok(None);
        }
        self.event_archives.put(&archive.blob_key, last_seq, Arc::new(all));
        Ok(Some(moved))
    }
}

async fn collect(mut body: crate::ports::ByteStream) -> DomainResult<Vec<u8>> {
    use futures::StreamExt;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend(chunk.map_err(crate::files::blob_error)?);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openma_types::events::EventPayload;

    fn event(seq: i64, kind: EventPayload) -> StoredEvent {
        StoredEvent {
            seq,
            event: SessionEvent { id: format!("sevt_{seq}"), payload: kind, processed_at: Some(Timestamp::from_micros(seq * 10)) },
            internal: (seq % 2 == 0).then(|| serde_json::json!({"n": seq})),
        }
    }

    fn log() -> Vec<StoredEvent> {
        (1..=9)
            .map(|s| event(s, if s % 3 == 0 { EventPayload::StatusIdle { stop_reason: openma_types::events::StopReason::EndTurn } } else { EventPayload::StatusRunning {} }))
            .collect()
    }

    #[test]
    fn archives_round_trip_every_field() {
        let events = log();
        assert_eq!(decode(&encode(&events)).unwrap(), events);
        assert!(decode(b"not gzip").is_err());
    }

    #[test]
    fn selection_applies_bounds_filters_order_and_limit_like_the_stores() {
        let events = log();
        let seqs = |q: EventQuery, last| select(&events, &q, last).iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(EventQuery { limit: 100, ..Default::default() }, 7), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(seqs(EventQuery { after_seq: Some(2), limit: 3, ..Default::default() }, 9), [3, 4, 5]);
        assert_eq!(seqs(EventQuery { after_seq: Some(5), descending: true, limit: 10, ..Default::default() }, 9), [4, 3, 2, 1]);
        assert_eq!(seqs(EventQuery { descending: true, limit: 2, ..Default::default() }, 8), [8, 7]);
        let idle = vec!["session.status_idle".to_owned()];
        assert_eq!(seqs(EventQuery { types: idle, limit: 10, ..Default::default() }, 9), [3, 6, 9]);
        let processed = crate::ports::TimeRange { gte: Some(20), lt: Some(50), ..Default::default() };
        assert_eq!(seqs(EventQuery { processed, limit: 10, ..Default::default() }, 9), [2, 3, 4]);
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_logs() {
        let cache = ArchiveCache::new(2);
        let one = Arc::new(log());
        cache.put("a", 1, one.clone());
        cache.put("b", 1, one.clone());
        assert!(cache.get("a", 1).is_some());
        cache.put("c", 1, one.clone());
        assert!(cache.get("b", 1).is_none(), "the least recently used entry goes first");
        assert!(cache.get("a", 1).is_some() && cache.get("c", 1).is_some());
        assert!(cache.get("a", 2).is_none(), "an entry read for another last seq does not answer");
    }
}
