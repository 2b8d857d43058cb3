//! A session's event log in its Durable Object's SQLite: one row per event, in append
//! order (`seq`), holding the client-visible event and the harness-only data. Once the
//! session is archived, the events up to then live in R2 (the native archive format,
//! `openma_core::event_log`) and the rows are gone; reads put the two back together.

use openma_core::harness::step::Pending;
use openma_core::ports::StoredEvent;
use openma_types::Timestamp;
use openma_types::events::SessionEvent;
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

pub struct EventLog {
    sql: SqlStorage,
    /// The archived events (`seq` up to the archive's last), read from R2; empty when the
    /// session was never archived.
    archived: Vec<StoredEvent>,
}

#[derive(Deserialize)]
struct Row {
    seq: i64,
    event: String,
    internal: Option<String>,
}

#[derive(Deserialize)]
struct Seq {
    seq: i64,
}

fn decode(rows: Vec<Row>) -> worker::Result<Vec<StoredEvent>> {
    rows.into_iter()
        .map(|r| {
            let event: SessionEvent = serde_json::from_str(&r.event).map_err(|e| worker::Error::RustError(format!("event {}: {e}", r.seq)))?;
            let internal = r.internal.as_deref().map(serde_json::from_str).transpose().map_err(|e| worker::Error::RustError(e.to_string()))?;
            Ok(StoredEvent { seq: r.seq, event, internal })
        })
        .collect()
}

impl EventLog {
    pub fn open(sql: SqlStorage) -> worker::Result<Self> {
        sql.exec(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, \
             type TEXT NOT NULL, event TEXT NOT NULL, internal TEXT)",
            None,
        )?;
        Ok(EventLog { sql, archived: Vec::new() })
    }

    /// This log with its archived part (events with `seq` at most the archive's last).
    pub fn with_archive(mut self, archived: Vec<StoredEvent>) -> Self {
        self.archived = archived;
        self
    }

    pub fn all(&self) -> worker::Result<Vec<StoredEvent>> {
        let mut out = self.archived.clone();
        out.extend(decode(self.sql.exec("SELECT seq, event, internal FROM events ORDER BY seq", None)?.to_array()?)?);
        Ok(out)
    }

    /// Deletes the rows up to `last_seq`, now that the archive holds them.
    pub fn drop_archived_rows(&self, last_seq: i64) -> worker::Result<()> {
        self.sql.exec("DELETE FROM events WHERE seq <= ?", vec![last_seq.into()])?;
        Ok(())
    }

    /// Up to `limit` events after `after` (a seq), oldest first unless `descending`, of
    /// the given types (all when empty).
    pub fn page(&self, after: Option<i64>, descending: bool, limit: u32, types: &[String]) -> worker::Result<Vec<StoredEvent>> {
        if !self.archived.is_empty() {
            let mut all = self.all()?;
            if descending {
                all.reverse();
            }
            let wanted = |e: &StoredEvent| {
                after.is_none_or(|a| if descending { e.seq < a } else { e.seq > a }) && (types.is_empty() || types.iter().any(|t| t == e.event.payload.kind()))
            };
            return Ok(all.into_iter().filter(wanted).take(limit as usize).collect());
        }
        let mut args: Vec<SqlStorageValue> = Vec::new();
        let mut sql = String::from("SELECT seq, event, internal FROM events WHERE 1 = 1");
        if let Some(after) = after {
            sql.push_str(if descending { " AND seq < ?" } else { " AND seq > ?" });
            args.push(after.into());
        }
        if !types.is_empty() {
            sql.push_str(&format!(" AND type IN ({})", vec!["?"; types.len()].join(", ")));
            args.extend(types.iter().map(|t| SqlStorageValue::from(t.as_str())));
        }
        sql.push_str(if descending { " ORDER BY seq DESC LIMIT ?" } else { " ORDER BY seq LIMIT ?" });
        args.push(i64::from(limit).into());
        decode(self.sql.exec(&sql, args)?.to_array()?)
    }

    pub fn seq_of(&self, id: &str) -> worker::Result<Option<i64>> {
        if let Some(e) = self.archived.iter().find(|e| e.event.id == id) {
            return Ok(Some(e.seq));
        }
        let rows: Vec<Seq> = self.sql.exec("SELECT seq FROM events WHERE id = ?", vec![id.into()])?.to_array()?;
        Ok(rows.first().map(|r| r.seq))
    }

    pub fn last_seq(&self) -> worker::Result<i64> {
        let rows: Vec<Seq> = self.sql.exec("SELECT COALESCE(MAX(seq), 0) AS seq FROM events", None)?.to_array()?;
        let archived = self.archived.last().map_or(0, |e| e.seq);
        Ok(rows.first().map_or(0, |r| r.seq).max(archived))
    }

    /// Appends `pending` in order. The writes of one synchronous stretch of a Durable
    /// Object commit together, so a batch is never half written.
    pub fn append(&self, pending: Vec<Pending>, now: Timestamp, new_id: impl Fn() -> String) -> worker::Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            let event = SessionEvent { id: p.id.unwrap_or_else(&new_id), payload: p.payload, processed_at: Some(now) };
            let json = serde_json::to_string(&event)?;
            let internal = match &p.internal {
                Some(v) => SqlStorageValue::String(v.to_string()),
                None => SqlStorageValue::Null,
            };
            let seq: Seq = self
                .sql
                .exec(
                    "INSERT INTO events (id, type, event, internal) VALUES (?, ?, ?, ?) RETURNING seq",
                    vec![event.id.as_str().into(), event.payload.kind().into(), json.into(), internal],
                )?
                .one()?;
            out.push(StoredEvent { seq: seq.seq, event, internal: p.internal });
        }
        Ok(out)
    }
}
