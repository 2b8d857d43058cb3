//! Sandbox networking, enforced by the kernel: a sandbox keeps its own network namespace
//! with nothing but loopback, so it has no route anywhere. A session whose environment has
//! networking gets exactly one way out: the bridge ([`bridge`]) on the sandbox's loopback,
//! which relays to the session's egress proxy ([`proxy`]) on the host through a Unix socket
//! bound into the sandbox; the proxy applies the session's [`EgressPolicy`] and the address
//! rule, then connects. `HTTP_PROXY` and friends point clients at the bridge; a client that
//! ignores them has no network at all (no route, no DNS) — the variables are convenience,
//! the namespace is the enforcement.

pub mod bridge;
/// The policy itself is the core's (pure rules, so the Workers judge hosts the same way).
pub use openma_core::egress_policy as policy;
pub(crate) mod proxy;

use std::path::Path;

pub use policy::{EgressPolicy, LimitedEgress, PACKAGE_REGISTRIES, Refusal, ResolveOverrides};
pub use proxy::{EgressHook, EgressSettings, EgressTarget, HttpRequestHead};

/// Where the bridge listens inside the sandbox (its own loopback).
pub const BRIDGE_LISTEN: &str = "127.0.0.1:3128";
/// The proxy URL the sandbox's environment names.
pub const PROXY_URL: &str = "http://127.0.0.1:3128";
/// The bridge executable inside the sandbox.
pub(crate) const BRIDGE_PATH: &str = "/run/openma/bridge";
/// The directory holding the proxy's socket inside the sandbox.
pub(crate) const SOCKET_DIR: &str = "/run/openma/egress";

/// What a networked sandbox is started with: its running proxy and the bridge to bind.
pub(crate) struct SandboxNet {
    pub proxy: proxy::EgressProxy,
    pub bridge: std::path::PathBuf,
    /// Host directory of the proxy's socket.
    pub socket_dir: std::path::PathBuf,
    /// The CA bundle the sandbox trusts (the host's roots and the egress CA), when the proxy
    /// may intercept HTTPS to put credentials in; bound at [`CA_BUNDLE`].
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// Where a networked sandbox finds its CA bundle.
pub const CA_BUNDLE: &str = "/etc/openma-ca-bundle.pem";

/// The variables that point common clients at [`CA_BUNDLE`].
pub(crate) fn ca_env() -> [(&'static str, &'static str); 6] {
    [
        ("SSL_CERT_FILE", CA_BUNDLE),
        ("CURL_CA_BUNDLE", CA_BUNDLE),
        ("REQUESTS_CA_BUNDLE", CA_BUNDLE),
        ("PIP_CERT", CA_BUNDLE),
        ("GIT_SSL_CAINFO", CA_BUNDLE),
        ("NODE_EXTRA_CA_CERTS", CA_BUNDLE),
    ]
}

/// The environment variables that point clients at the bridge.
pub(crate) fn proxy_env() -> [(&'static str, &'static str); 10] {
    [
        ("HTTP_PROXY", PROXY_URL),
        ("HTTPS_PROXY", PROXY_URL),
        ("ALL_PROXY", PROXY_URL),
        ("http_proxy", PROXY_URL),
        ("https_proxy", PROXY_URL),
        ("all_proxy", PROXY_URL),
        ("NO_PROXY", "localhost,127.0.0.1,::1"),
        ("no_proxy", "localhost,127.0.0.1,::1"),
        // npm reads its own names first
        ("npm_config_proxy", PROXY_URL),
        ("npm_config_https_proxy", PROXY_URL),
    ]
}

/// The path of the socket inside the sandbox.
pub(crate) fn socket_in_sandbox() -> String {
    format!("{SOCKET_DIR}/{}", proxy::SOCKET_NAME)
}

/// Whether the session uid can execute the bridge: every directory above it traversable by
/// others, the file itself executable by others. Checked at start-up.
pub(crate) fn check_bridge(bridge: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(bridge).map_err(|e| format!("the sandbox network bridge {}: {e}", bridge.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o001 == 0 {
        return Err(format!("the sandbox network bridge {} must be a file executable by other users", bridge.display()));
    }
    for dir in bridge.ancestors().skip(1).filter(|d| !d.as_os_str().is_empty()) {
        let mode = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(format!(
                "{} (mode {:o}) cannot be traversed by other users, but sandboxes run as their own uid and bind the network bridge {} from it: `chmod o+x {}`",
                dir.display(),
                mode & 0o7777,
                bridge.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}
