-- Memory stores, their live memories, and the versions every change leaves behind.
-- Paths compare as bytes (COLLATE "C"): listings walk them in UTF-8 order.
-- Contents are BYTEA holding UTF-8, so any text (NUL included) round-trips.
CREATE TABLE memory_stores (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX memory_stores_by_created ON memory_stores (tenant_id, created_at, id);

CREATE TABLE memories (
    tenant_id      TEXT NOT NULL,
    store_id       TEXT NOT NULL,
    id             TEXT NOT NULL,
    path           TEXT COLLATE "C" NOT NULL,
    content        BYTEA NOT NULL,
    content_sha256 TEXT NOT NULL,
    content_size   BIGINT NOT NULL,
    version_id     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, store_id) REFERENCES memory_stores (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX memories_by_path ON memories (tenant_id, store_id, path);

-- `body` is the version without its content; `actor_*` and `operation` serve the filters.
CREATE TABLE memory_versions (
    tenant_id  TEXT NOT NULL,
    store_id   TEXT NOT NULL,
    id         TEXT NOT NULL,
    memory_id  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    actor_type TEXT,
    actor_id   TEXT,
    created_at BIGINT NOT NULL,
    content    BYTEA,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, store_id) REFERENCES memory_stores (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX memory_versions_by_created ON memory_versions (tenant_id, store_id, created_at, id);
CREATE INDEX memory_versions_by_memory ON memory_versions (tenant_id, store_id, memory_id, created_at, id);
