-- Vaults and their credentials. `secrets` holds only sealed values (see openma-core's
-- secrets module); `unique_key` is unique among a vault's active credentials.
CREATE TABLE vaults (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX vaults_by_created ON vaults (tenant_id, created_at, id);

CREATE TABLE credentials (
    tenant_id  TEXT NOT NULL,
    vault_id   TEXT NOT NULL,
    id         TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    unique_key TEXT NOT NULL,
    body       TEXT NOT NULL,
    secrets    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, vault_id) REFERENCES vaults (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX credentials_by_vault ON credentials (tenant_id, vault_id, created_at, id);
CREATE UNIQUE INDEX credentials_unique_active ON credentials (tenant_id, vault_id, unique_key) WHERE NOT archived;
