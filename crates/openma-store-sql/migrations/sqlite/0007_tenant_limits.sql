-- Per-tenant quotas, set by the operator (`openma tenants limits`).
CREATE TABLE tenant_limits (
    tenant_id            TEXT PRIMARY KEY REFERENCES tenants(id),
    monthly_soft_micros  INTEGER,
    monthly_hard_micros  INTEGER,
    max_running_sessions INTEGER
);
