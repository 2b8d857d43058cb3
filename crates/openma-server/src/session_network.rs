//! Where a session's sandbox may connect: its environment's `networking` (unrestricted, or
//! limited to `allowed_hosts`, the package registries and the agent's MCP servers) turned
//! into the sandbox's [`EgressPolicy`], which the sandbox crate enforces (and persists, so a
//! sandbox restarted later gets the same policy).

use openma_core::{DomainError, Platform, TenantId};
use openma_sandbox::{EgressPolicy, LimitedEgress, Sandboxes};
use openma_types::agents::McpServer;
use openma_types::environments::{Environment, EnvironmentConfig, Networking};
use openma_types::sessions::{Session, SessionAgent};

/// The egress policy of a session of `agent` in `environment`.
pub fn egress_policy(environment: &Environment, agent: &SessionAgent) -> EgressPolicy {
    let EnvironmentConfig::Cloud(config) = &environment.config;
    match &config.networking {
        Networking::Unrestricted => EgressPolicy::Unrestricted,
        Networking::Limited(l) => EgressPolicy::Limited(LimitedEgress {
            allowed_hosts: l.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            package_managers: l.allow_package_managers,
            mcp_hosts: if l.allow_mcp_servers { mcp_hosts(&agent.mcp_servers) } else { Vec::new() },
        }),
    }
}

/// The hosts of the agent's MCP server URLs, normalised and deduplicated.
fn mcp_hosts(servers: &[McpServer]) -> Vec<String> {
    let mut hosts: Vec<String> = servers
        .iter()
        .filter_map(|s| url::Url::parse(&s.url).ok()?.host_str().map(openma_sandbox::network::policy::normalize_host))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Records the session's egress policy with its sandbox (at create, and when its agent's MCP
/// servers change).
pub async fn apply(platform: &Platform, sandboxes: &Sandboxes, tenant: &TenantId, session: &Session) -> Result<(), DomainError> {
    let environment = platform.get_environment(tenant, &session.environment_id).await?;
    sandboxes
        .set_egress_policy(&session.id, &egress_policy(&environment, &session.agent))
        .map_err(|e| DomainError::Store(openma_core::StoreError::Backend(format!("cannot record the sandbox's network policy: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_hosts_are_the_url_hosts_normalised_once_each() {
        let servers: Vec<McpServer> = serde_json::from_value(serde_json::json!([
            {"type": "url", "name": "a", "url": "https://MCP.Example.com/sse"},
            {"type": "url", "name": "b", "url": "https://mcp.example.com:8443/other"},
            {"type": "url", "name": "c", "url": "http://[2001:db8::1]:9000/mcp"},
            {"type": "url", "name": "d", "url": "not a url"},
        ]))
        .unwrap();
        assert_eq!(mcp_hosts(&servers), vec!["2001:db8::1".to_string(), "mcp.example.com".to_string()]);
    }
}
