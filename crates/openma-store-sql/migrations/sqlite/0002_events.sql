-- The per-session event log. `seq` is assigned by the session's single writer and is
-- strictly increasing; `body` is the event as clients see it, `internal` holds what only
-- the harness needs (e.g. thinking text and signatures to send back to the model).
CREATE TABLE events (
    tenant_id    TEXT NOT NULL,
    session_id   TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    type         TEXT NOT NULL,
    processed_at INTEGER NOT NULL,
    body         TEXT NOT NULL,
    internal     TEXT,
    PRIMARY KEY (tenant_id, session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX events_by_id ON events (tenant_id, session_id, id);
