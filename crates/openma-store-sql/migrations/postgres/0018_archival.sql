-- House-keeping shared by every node: the scheduler's jobs (a run is claimed with a
-- conditional UPDATE, so each period runs on exactly one node), and the archive of a
-- session's event log (its events up to `log_archived_seq` live in one compressed blob,
-- `log_archive_key`, and no longer in `events`). `log_checked_at` is the session's
-- `updated_at` when its log was last archived: the scan skips sessions unchanged since.
CREATE TABLE scheduled_jobs (
    name         TEXT PRIMARY KEY,
    next_run_at  BIGINT NOT NULL,
    locked_by    TEXT,
    locked_until BIGINT,
    last_run_at  BIGINT,
    last_error   TEXT
);

ALTER TABLE sessions ADD COLUMN log_archive_key TEXT;
ALTER TABLE sessions ADD COLUMN log_archived_events BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN log_archived_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN log_checked_at BIGINT;

-- retention scans by age across tenants
CREATE INDEX memory_versions_by_age ON memory_versions (created_at);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (updated_at);
