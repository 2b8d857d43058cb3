-- The billing ledger: append-only. Each row is idempotent by (source, kind): the event
-- that caused it is written in the same transaction, so a retry, a crash or a takeover
-- can never count it twice or lose it. Amounts are integer micro-dollars.
CREATE TABLE ledger_entries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    model         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    quantity      INTEGER NOT NULL,
    unit_price    INTEGER NOT NULL,
    amount        INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    source        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX ledger_idempotent ON ledger_entries (tenant_id, source, kind);
CREATE INDEX ledger_by_time ON ledger_entries (tenant_id, created_at);
