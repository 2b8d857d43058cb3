-- Integrations (an agent published to Slack, …). The body is the wire object; the secrets
-- columns hold only sealed values (see openma-core's secrets module). A provider thread maps
-- to one session; deliveries are remembered so that a retried or replayed one runs once.
CREATE TABLE integrations (
    tenant_id             TEXT NOT NULL REFERENCES tenants(id),
    id                    TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    -- always false: integrations are deleted, not archived (the list query's filter reads it)
    archived              BOOLEAN NOT NULL DEFAULT FALSE,
    body                  TEXT NOT NULL,
    sealed_signing_secret TEXT NOT NULL,
    sealed_credential      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX integrations_by_id ON integrations (id);
CREATE INDEX integrations_by_created ON integrations (tenant_id, created_at, id);

CREATE TABLE integration_threads (
    tenant_id      TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    thread         TEXT NOT NULL,
    session_id     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (integration_id, thread)
);
CREATE INDEX integration_threads_by_session ON integration_threads (session_id);

CREATE TABLE integration_deliveries (
    integration_id TEXT NOT NULL,
    delivery_id    TEXT NOT NULL,
    received_at    BIGINT NOT NULL,
    PRIMARY KEY (integration_id, delivery_id)
);
