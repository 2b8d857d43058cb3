-- Tenants, API keys, agents (with version history), environments and sessions.
-- Timestamps are microseconds since the Unix epoch; `body` holds the resource as JSON,
-- the other columns are copies used to filter, order and guard writes.

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE agents (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX agents_by_created ON agents (tenant_id, created_at, id);

CREATE TABLE agent_versions (
    tenant_id TEXT NOT NULL,
    agent_id  TEXT NOT NULL,
    version   BIGINT NOT NULL,
    body      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, version),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
);

CREATE TABLE environments (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX environments_by_created ON environments (tenant_id, created_at, id);
CREATE UNIQUE INDEX environments_one_default ON environments (tenant_id) WHERE is_default AND NOT archived;

CREATE TABLE sessions (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    id             TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    agent_version  BIGINT NOT NULL,
    environment_id TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    archived       BOOLEAN NOT NULL DEFAULT FALSE,
    body           TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX sessions_by_created ON sessions (tenant_id, created_at, id);
CREATE INDEX sessions_by_agent ON sessions (tenant_id, agent_id, agent_version);
CREATE INDEX sessions_by_environment ON sessions (tenant_id, environment_id);
