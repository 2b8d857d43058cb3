-- Cluster mode: the nodes serving one database, and which node owns each active session.
CREATE TABLE cluster_nodes (
    node_id      TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- One row per session ever leased. `token` grows with every taking and every release: an
-- append commits only while the row still names the appending node and its token.
CREATE TABLE session_leases (
    session_id TEXT PRIMARY KEY,
    node_id    TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX session_leases_by_node ON session_leases (node_id);
