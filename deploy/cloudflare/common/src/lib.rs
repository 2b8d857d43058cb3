//! What openma's Workers share (`openma-main`, `openma-agent`, `openma-integrations`): the D1 adapters of the
//! core's ports (the control-plane schema is the native server's SQLite migrations), the
//! clock and id ports inside workerd, and the one place errors become HTTP responses.

pub mod adapters;
pub mod d1;
mod d1_accounts;
mod d1_agents;
mod d1_environments;
mod d1_files;
mod d1_integrations;
mod d1_keys;
mod d1_ledger;
mod d1_memory;
mod d1_model_cards;
mod d1_sessions;
mod d1_skills;
mod d1_vaults;
mod d1_webhooks;
pub mod errors;
pub mod files;
pub mod outbound;
pub mod provider_api;
pub mod quota;
pub mod r2;
pub mod root_secret;
pub mod sessions;
pub mod webhooks;

/// The optional tools this deployment can run: `web_search` once `OPENMA_SEARCH_URL` is set
/// (agents enabling it are refused without one, as natively).
pub fn capabilities(env: &worker::Env) -> openma_core::harness::tools::Capabilities {
    openma_core::harness::tools::Capabilities { web_search: text(env, "OPENMA_SEARCH_URL").is_some() }
}

/// `OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES=1`, as natively: private and loopback addresses may
/// be called (`web_fetch`, an integration's API base). For local development only.
pub fn allow_private_addresses(env: &worker::Env) -> bool {
    text(env, "OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES").is_some_and(|v| v == "1")
}

/// A text binding (a secret, or a var from wrangler.jsonc or `.dev.vars`), unless empty.
pub fn text(env: &worker::Env, name: &str) -> Option<String> {
    let value = env.secret(name).map(|s| s.to_string()).or_else(|_| env.var(name).map(|v| v.to_string()));
    value.ok().filter(|s| !s.is_empty())
}
