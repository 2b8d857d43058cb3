-- Files: uploads, the session-scoped copies that mount them, and captured session outputs.
-- Copies share their original's blob (`blob_key`); a blob is deleted with its last row.
-- `archived` is always false: it only lets the file list share every list's page filter.
CREATE TABLE files (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    scope_id   TEXT,
    origin     TEXT NOT NULL,
    path       TEXT,
    blob_key   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    expires_at BIGINT,
    purged     BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX files_unscoped ON files (tenant_id, created_at, id) WHERE scope_id IS NULL;
CREATE INDEX files_by_scope ON files (tenant_id, scope_id, created_at, id);
CREATE INDEX files_by_blob ON files (blob_key);
CREATE INDEX files_expiring ON files (expires_at) WHERE expires_at IS NOT NULL AND NOT purged;
