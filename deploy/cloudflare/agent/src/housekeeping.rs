//! The cron (`triggers.crons` in wrangler.jsonc): what the native server's scheduler does,
//! on Workers. Sessions that are archived, or idle longer than `OPENMA_ARCHIVE_IDLE_AFTER`
//! (off unless set, as natively), have their logs moved to R2 by their SessionDO — the
//! same scan as the native `sessions_to_archive`, so a session changed since its last
//! archival is archived again and an unchanged one is skipped; then retention forgets
//! memory versions older than 30 days, keeping each memory's newest, and finished webhook
//! deliveries older than 30 days, and the bytes of expired files are deleted from R2.

use openma_core::retention::{RetentionPolicy, before, parse_duration};
use openma_core::{Clock, TenantId};
use openma_types::Timestamp;
use openma_worker_common::adapters::WorkerClock;
use openma_worker_common::d1::{D1, micros, num};
use openma_worker_common::files::WorkerFiles;
use serde::Deserialize;
use worker::{Env, Headers, Method, Request, RequestInit, Result};

use crate::model::text;

/// Sessions archived per run, and memory versions deleted per statement.
const BATCH: i64 = 100;
const PURGE_BATCH: i64 = 1000;
/// Expired files emptied per run (as the native scheduler's job).
const FILE_BATCH: u32 = 500;

#[derive(Deserialize)]
struct Due {
    tenant_id: String,
    id: String,
    updated_at: i64,
}

/// What a SessionDO reports after archiving.
#[derive(serde::Serialize, Deserialize)]
pub struct ArchiveReport {
    pub key: String,
    pub last_seq: i64,
    pub events: i64,
}

fn failed(e: openma_core::StoreError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

pub async fn run(env: &Env) -> Result<()> {
    let db = D1::new(env.d1("DB")?);
    let now = WorkerClock.now();
    let idle_before = match text(env, "OPENMA_ARCHIVE_IDLE_AFTER").filter(|v| v.trim() != "off") {
        Some(v) => Some(before(now, parse_duration(&v).map_err(worker::Error::RustError)?)),
        None => None,
    };
    let due: Vec<Due> = db
        .all(
            "SELECT tenant_id, id, updated_at FROM sessions \
             WHERE status NOT IN ('running', 'rescheduling') AND (archived OR updated_at < ?1) \
             AND (log_checked_at IS NULL OR log_checked_at <> updated_at) ORDER BY updated_at, id LIMIT ?2",
            &[num(idle_before.map_or(i64::MIN / 2, Timestamp::as_micros)), num(BATCH)],
        )
        .await
        .map_err(failed)?;
    let mut archived = 0;
    for s in &due {
        match archive(env, &s.tenant_id, &s.id).await {
            Ok(report) => {
                db.run(
                    "UPDATE sessions SET log_archive_key = ?3, log_archived_seq = ?4, log_archived_events = ?5, log_checked_at = updated_at \
                     WHERE tenant_id = ?1 AND id = ?2 AND updated_at = ?6",
                    &[s.tenant_id.as_str().into(), s.id.as_str().into(), report.key.as_str().into(), num(report.last_seq), num(report.events), num(s.updated_at)],
                )
                .await
                .map_err(failed)?;
                archived += 1;
            }
            Err(e) => worker::console_error!("housekeeping: session {}: cannot archive its log: {e}", s.id),
        }
    }
    let policy = RetentionPolicy::default();
    let purged = purge(
        &db,
        "DELETE FROM memory_versions WHERE (tenant_id, id) IN ( \
           SELECT v.tenant_id, v.id FROM memory_versions v WHERE v.created_at < ?1 AND EXISTS ( \
             SELECT 1 FROM memory_versions n WHERE n.tenant_id = v.tenant_id AND n.store_id = v.store_id \
             AND n.memory_id = v.memory_id AND (n.created_at > v.created_at OR (n.created_at = v.created_at AND n.id > v.id))) \
           LIMIT ?2)",
        before(now, policy.memory_versions),
    )
    .await?;
    // finished webhook deliveries (the delivery log) after the same 30 days, as natively
    let forgotten = purge(
        &db,
        "DELETE FROM webhook_deliveries WHERE (tenant_id, id) IN ( \
           SELECT tenant_id, id FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < ?1 LIMIT ?2)",
        before(now, policy.webhook_deliveries),
    )
    .await?;
    // the bytes of expired uploads (their rows stay, answering downloads with `file_expired`)
    let files = WorkerFiles::new(env).map_err(|_| worker::Error::RustError("the file store's bindings are missing".into()))?;
    let emptied = files.files().purge_expired(FILE_BATCH).await.map_err(|e| worker::Error::RustError(e.to_string()))?;
    worker::console_log!(
        "housekeeping: archived {archived} of {} due session logs, purged {purged} memory versions and {forgotten} webhook deliveries, emptied {emptied} expired files",
        due.len()
    );
    Ok(())
}

/// Runs a batched delete (`?1` the cutoff, `?2` the batch) until a batch falls short; how
/// many rows went.
async fn purge(db: &D1, sql: &str, cutoff: Timestamp) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = db.run(sql, &[micros(cutoff), num(PURGE_BATCH)]).await.map_err(failed)?;
        total += n;
        if n < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Asks the session's object to archive its log.
async fn archive(env: &Env, tenant: &str, session_id: &str) -> Result<ArchiveReport> {
    let tenant = TenantId::from_trusted(tenant);
    let stub = env.durable_object("SESSIONS")?.id_from_name(&format!("{}/{session_id}", tenant.as_str()))?.get_stub()?;
    let headers = Headers::new();
    headers.set("openma-tenant", tenant.as_str())?;
    headers.set("openma-session-id", session_id)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers);
    let mut answer = stub.fetch_with_request(Request::new_with_init("https://session/archive", &init)?).await?;
    if answer.status_code() != 200 {
        return Err(worker::Error::RustError(format!("{} {}", answer.status_code(), answer.text().await?)));
    }
    answer.json().await
}
