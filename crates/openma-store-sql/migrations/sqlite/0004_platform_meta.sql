-- Platform-wide facts, such as the sealed verifier of the root secret.
CREATE TABLE platform_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
