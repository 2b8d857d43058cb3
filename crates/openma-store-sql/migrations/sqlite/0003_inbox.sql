-- Client events accepted while a session runs, waiting for the next model step. They are
-- durable from the moment the API acknowledged them and move into the event log (and
-- out of here) in one transaction.
CREATE TABLE session_inbox (
    tenant_id   TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    id          TEXT NOT NULL,
    accepted_at INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, session_id, id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES sessions (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX session_inbox_order ON session_inbox (tenant_id, session_id, accepted_at, id);
CREATE INDEX sessions_by_status ON sessions (status);
