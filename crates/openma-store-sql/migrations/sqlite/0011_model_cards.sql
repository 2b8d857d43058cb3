-- Model cards (BYOK): a tenant's own provider configurations. `sealed_key` holds only the
-- sealed API key (see openma-core's secrets module), NULL once the card is archived. A
-- tenant has at most one unarchived default card.
CREATE TABLE model_cards (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    archived   BOOLEAN NOT NULL DEFAULT FALSE,
    is_default BOOLEAN NOT NULL DEFAULT FALSE,
    body       TEXT NOT NULL,
    sealed_key TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX model_cards_by_created ON model_cards (tenant_id, created_at, id);
CREATE UNIQUE INDEX model_cards_one_default ON model_cards (tenant_id) WHERE is_default AND NOT archived;
