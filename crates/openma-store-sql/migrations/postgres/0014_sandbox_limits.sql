-- Per-tenant limit on sandboxes running at once (`openma tenants limits --max-running-sandboxes`).
ALTER TABLE tenant_limits ADD COLUMN max_running_sandboxes BIGINT;
