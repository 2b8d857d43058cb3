-- Skills and their versions. A skill's `name` (its SKILL.md slug) is unique per tenant;
-- `latest_version_id` lives in `body`. Each version's files are one zip archive in the
-- blob store (`blob_key`). Deleting a skill deletes its versions.
CREATE TABLE skills (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX skills_by_name ON skills (tenant_id, name);
CREATE INDEX skills_by_created ON skills (tenant_id, created_at, id);

CREATE TABLE skill_versions (
    tenant_id  TEXT NOT NULL,
    skill_id   TEXT NOT NULL,
    id         TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    blob_key   TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, skill_id) REFERENCES skills (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX skill_versions_by_skill ON skill_versions (tenant_id, skill_id, created_at, id);
