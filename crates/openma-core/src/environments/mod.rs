//! Environments: resolving networking and package configuration.

use openma_types::environments::{
    CloudConfig, CloudConfigParams, CreateEnvironmentRequest, Environment, EnvironmentConfig,
    EnvironmentConfigParams, EnvironmentLimits, EnvironmentTag, LimitedNetworking, Networking, NetworkingParams, Packages,
    PackagesParams, PackagesTag, Scope, StdioMcpServer, StdioMcpServerParams, StdioTag, UpdateEnvironmentRequest,
};
use openma_types::{Metadata, Timestamp};

use crate::error::{DomainError, DomainResult};
use crate::validate;

mod service;
pub use service::Environments;

pub const NAME_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 2_048;
pub const HOSTS_MAX: usize = 256;
pub const PACKAGES_MAX: usize = 256;
/// Stdio MCP servers of one environment (as for an agent's `mcp_servers`).
pub const STDIO_SERVERS_MAX: usize = 20;
const COMMAND_ARGS_MAX: usize = 64;
const ARG_MAX: usize = 4_096;
const ENV_VARS_MAX: usize = 64;
const ENV_VALUE_MAX: usize = 8_192;

/// Variables the sandbox itself sets for every process (its paths, user, proxy and CA
/// settings): a stdio server may not replace them.
fn reserved_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(upper.as_str(), "PATH" | "HOME" | "USER" | "LOGNAME" | "SHELL" | "TMPDIR" | "LD_PRELOAD" | "LD_LIBRARY_PATH")
        || upper.contains("PROXY")
        || upper.starts_with("OPENMA_")
        || upper.ends_with("_CA_BUNDLE")
        || upper.starts_with("SSL_CERT")
        || upper == "NODE_EXTRA_CA_CERTS"
}

/// `config.mcp_servers`: each entry's name, command, variables and tool configs checked.
fn resolve_stdio_servers(params: &[StdioMcpServerParams]) -> DomainResult<Vec<StdioMcpServer>> {
    if params.len() > STDIO_SERVERS_MAX {
        return Err(DomainError::invalid(format!(
            "`config.mcp_servers` may hold at most {STDIO_SERVERS_MAX} servers, got {}",
            params.len()
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    params
        .iter()
        .map(|p| {
            validate::length("config.mcp_servers[].name", &p.name, 1, 255)?;
            if !names.insert(p.name.clone()) {
                return Err(DomainError::invalid(format!("MCP server name `{}` is used twice", p.name)));
            }
            let what = format!("`config.mcp_servers` `{}`", p.name);
            if p.command.is_empty() || p.command[0].trim().is_empty() {
                return Err(DomainError::invalid(format!("{what}: `command` must name a program")));
            }
            if p.command.len() > COMMAND_ARGS_MAX {
                return Err(DomainError::invalid(format!("{what}: `command` may hold at most {COMMAND_ARGS_MAX} arguments")));
            }
            if let Some(a) = p.command.iter().find(|a| a.len() > ARG_MAX || a.contains('\0')) {
                return Err(DomainError::invalid(format!(
                    "{what}: a `command` argument may hold at most {ARG_MAX} bytes and no NUL ({} bytes)",
                    a.len()
                )));
            }
            let env = p.env.clone().unwrap_or_default();
            if env.len() > ENV_VARS_MAX {
                return Err(DomainError::invalid(format!("{what}: `env` may hold at most {ENV_VARS_MAX} variables")));
            }
            for (k, v) in &env {
                let name_ok = k.len() <= 128
                    && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !name_ok {
                    return Err(DomainError::invalid(format!("{what}: `{k}` is not a valid variable name")));
                }
                if reserved_variable(k) {
                    return Err(DomainError::invalid(format!("{what}: `{k}` is set by the sandbox and cannot be replaced")));
                }
                if v.len() > ENV_VALUE_MAX || v.contains('\0') {
                    return Err(DomainError::invalid(format!("{what}: the value of `{k}` may hold at most {ENV_VALUE_MAX} bytes and no NUL")));
                }
            }
            let (configs, default_config) = crate::agents::resolve_mcp_tool_configs(p.configs.as_deref(), p.default_config.as_ref())?;
            Ok(StdioMcpServer { tag: StdioTag::Value, name: p.name.clone(), command: p.command.clone(), env, configs, default_config })
        })
        .collect()
}

/// The configuration of the environment a tenant gets when it names none.
pub fn default_config() -> EnvironmentConfig {
    EnvironmentConfig::Cloud(CloudConfig { networking: Networking::Unrestricted, packages: Packages::default(), limits: None, mcp_servers: Vec::new() })
}

/// Whether `spec` (a package name with an optional version or range, in the manager's own
/// syntax) is one the manager can only read as a registry package: no option (leading
/// `-`), no path, URL or VCS source, and none of the characters a shell would interpret
/// (specs are passed to the manager as separate arguments anyway, never through a shell).
/// pip's comparison operators (`<`, `>`, `!`) are allowed for pip only.
pub fn valid_package_spec(manager: &str, spec: &str) -> bool {
    let first_ok = spec.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || (manager == "npm" && c == '@'));
    let chars_ok = spec.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || match manager {
                // name[:arch][=version|/release]
                "apt" => matches!(c, '.' | '+' | '-' | ':' | '=' | '~' | '/'),
                // name[extras] with version specifiers
                "pip" => matches!(c, '.' | '_' | '-' | '[' | ']' | ',' | '=' | '<' | '>' | '!' | '~' | '*'),
                // [@scope/]name[@version|range|tag]
                "npm" => matches!(c, '.' | '_' | '-' | '@' | '/' | '^' | '~' | '*'),
                _ => matches!(c, '.' | '_' | '-' | '@' | '=' | '/' | ':'),
            }
    });
    // npm reads `user/repo` as a GitHub repository: only `@scope/name` may hold a slash
    let npm_ok = manager != "npm" || spec.matches('/').count() == usize::from(spec.starts_with('@'));
    first_ok && chars_ok && npm_ok && !spec.contains("..")
}

/// The managers whose packages this server installs; the others are refused at create and
/// update rather than accepted and ignored.
pub const BUILT_MANAGERS: [&str; 3] = ["apt", "npm", "pip"];

fn resolve_limits(l: &EnvironmentLimits, max: Option<&EnvironmentLimits>) -> DomainResult<Option<EnvironmentLimits>> {
    let fields = [
        ("memory_mb", l.memory_mb, max.and_then(|m| m.memory_mb)),
        ("processes", l.processes, max.and_then(|m| m.processes)),
        ("open_files", l.open_files, max.and_then(|m| m.open_files)),
        ("file_size_mb", l.file_size_mb, max.and_then(|m| m.file_size_mb)),
        ("bash_timeout_max_s", l.bash_timeout_max_s, max.and_then(|m| m.bash_timeout_max_s)),
    ];
    for (name, value, cap) in fields {
        let Some(v) = value else { continue };
        if v == 0 {
            return Err(DomainError::invalid(format!("`config.limits.{name}` must be at least 1")));
        }
        if let Some(cap) = cap
            && v > cap
        {
            return Err(DomainError::invalid(format!(
                "`config.limits.{name}` may be at most {cap} (this server's own limit), got {v}"
            )));
        }
    }
    Ok((!l.is_empty()).then_some(*l))
}

fn resolve_networking(p: &NetworkingParams, previous: Option<&Networking>) -> DomainResult<Networking> {
    Ok(match p {
        NetworkingParams::Unrestricted => Networking::Unrestricted,
        NetworkingParams::Limited(l) => {
            // on update, omitted keys of a limited policy keep their stored value
            let prev = match previous {
                Some(Networking::Limited(prev)) => Some(prev),
                _ => None,
            };
            let allowed_hosts = l
                .allowed_hosts
                .clone()
                .or_else(|| prev.map(|p| p.allowed_hosts.clone()))
                .unwrap_or_default();
            if allowed_hosts.len() > HOSTS_MAX {
                return Err(DomainError::invalid(format!("`allowed_hosts` may hold at most {HOSTS_MAX} hosts")));
            }
            for h in &allowed_hosts {
                validate::hostname("networking.allowed_hosts", h, true)?;
            }
            Networking::Limited(LimitedNetworking {
                allowed_hosts,
                allow_mcp_servers: l.allow_mcp_servers.or(prev.map(|p| p.allow_mcp_servers)).unwrap_or(false),
                allow_package_managers: l
                    .allow_package_managers
                    .or(prev.map(|p| p.allow_package_managers))
                    .unwrap_or(false),
            })
        }
    })
}

fn resolve_packages(p: &PackagesParams, previous: Option<&Packages>) -> DomainResult<Packages> {
    let pick = |new: &Option<Vec<String>>, old: Option<&Vec<String>>, manager: &str| -> DomainResult<Vec<String>> {
        let list = new.clone().or_else(|| old.cloned()).unwrap_or_default();
        if list.len() > PACKAGES_MAX {
            return Err(DomainError::invalid(format!("`packages.{manager}` may hold at most {PACKAGES_MAX} entries")));
        }
        for spec in &list {
            validate::length(&format!("packages.{manager}[]"), spec, 1, 512)?;
            if !valid_package_spec(manager, spec) {
                return Err(DomainError::invalid(format!(
                    "`packages.{manager}` entry `{spec}` must be a registry package name with an optional version, without spaces, options, paths, URLs or shell characters"
                )));
            }
        }
        if !list.is_empty() && !BUILT_MANAGERS.contains(&manager) {
            return Err(DomainError::unsupported(format!(
                "installing `packages.{manager}` (this server installs apt, npm and pip packages)"
            )));
        }
        Ok(list)
    };
    Ok(Packages {
        tag: PackagesTag::Value,
        apt: pick(&p.apt, previous.map(|o| &o.apt), "apt")?,
        cargo: pick(&p.cargo, previous.map(|o| &o.cargo), "cargo")?,
        gem: pick(&p.gem, previous.map(|o| &o.gem), "gem")?,
        go: pick(&p.go, previous.map(|o| &o.go), "go")?,
        npm: pick(&p.npm, previous.map(|o| &o.npm), "npm")?,
        pip: pick(&p.pip, previous.map(|o| &o.pip), "pip")?,
    })
}

/// Resolves a `cloud` configuration, keeping `previous` values for omitted keys. `max`
/// bounds the limits (the server's own).
fn resolve_cloud(p: &CloudConfigParams, previous: Option<&CloudConfig>, max: Option<&EnvironmentLimits>) -> DomainResult<CloudConfig> {
    let networking = match &p.networking {
        Some(Some(n)) => resolve_networking(n, previous.map(|c| &c.networking))?,
        Some(None) => Networking::Unrestricted,
        None => previous.map(|c| c.networking.clone()).unwrap_or(Networking::Unrestricted),
    };
    let packages = match &p.packages {
        Some(Some(pk)) => resolve_packages(pk, previous.map(|c| &c.packages))?,
        Some(None) => Packages::default(),
        None => previous.map(|c| c.packages.clone()).unwrap_or_default(),
    };
    if let Networking::Limited(l) = &networking
        && !packages.is_empty()
        && !l.allow_package_managers
    {
        return Err(DomainError::invalid(
            "`packages` under `limited` networking requires `networking.allow_package_managers: true`",
        ));
    }
    let limits = match &p.limits {
        Some(Some(l)) => resolve_limits(l, max)?,
        Some(None) => None,
        None => previous.and_then(|c| c.limits),
    };
    let mcp_servers = match &p.mcp_servers {
        Some(Some(list)) => resolve_stdio_servers(list)?,
        Some(None) => Vec::new(),
        None => previous.map(|c| c.mcp_servers.clone()).unwrap_or_default(),
    };
    Ok(CloudConfig { networking, packages, limits, mcp_servers })
}

fn resolve_config(
    p: &EnvironmentConfigParams,
    previous: Option<&EnvironmentConfig>,
    max: Option<&EnvironmentLimits>,
) -> DomainResult<EnvironmentConfig> {
    match p {
        EnvironmentConfigParams::SelfHosted {} => {
            if previous.is_some() {
                return Err(DomainError::invalid_code(
                    "invalid_config_type_change",
                    "an environment's `config.type` cannot change",
                ));
            }
            Err(DomainError::unsupported("`self_hosted` environments"))
        }
        EnvironmentConfigParams::Cloud(c) => {
            let prev = previous.map(|EnvironmentConfig::Cloud(c)| c);
            Ok(EnvironmentConfig::Cloud(resolve_cloud(c, prev, max)?))
        }
    }
}

fn check_scope(scope: Option<Scope>) -> DomainResult<Option<Scope>> {
    match scope {
        Some(Scope::Account) => Err(DomainError::invalid(
            "`scope` `account` is not available: environments are visible to the whole organization",
        )),
        other => Ok(other),
    }
}

fn check(env: &Environment) -> DomainResult<()> {
    validate::length("name", &env.name, 1, NAME_MAX)?;
    validate::max_length("description", env.description.as_deref(), DESCRIPTION_MAX)?;
    validate::metadata(&env.metadata)
}

/// A new environment; `max` bounds its `config.limits` (the server's own limits).
pub fn new_environment(
    req: &CreateEnvironmentRequest,
    id: String,
    now: Timestamp,
    max: Option<&EnvironmentLimits>,
) -> DomainResult<Environment> {
    let config = match &req.config {
        Some(c) => resolve_config(c, None, max)?,
        None => default_config(),
    };
    let env = Environment {
        id,
        tag: EnvironmentTag::Value,
        name: req.name.clone(),
        description: req.description.clone(),
        config,
        metadata: req.metadata.clone().unwrap_or_default(),
        scope: Some(check_scope(req.scope)?.unwrap_or(Scope::Organization)),
        created_at: now,
        updated_at: now,
        archived_at: None,
    };
    check(&env)?;
    Ok(env)
}

/// Applies an update. Archived environments are read-only.
pub fn apply_update(
    current: &Environment,
    req: &UpdateEnvironmentRequest,
    now: Timestamp,
    max: Option<&EnvironmentLimits>,
) -> DomainResult<Environment> {
    if current.archived_at.is_some() {
        return Err(DomainError::invalid_code("environment_archived", "archived environments cannot be updated"));
    }
    let mut env = current.clone();
    match &req.name {
        None => {}
        Some(None) => return Err(DomainError::invalid("`name` cannot be cleared")),
        Some(Some(n)) => env.name = n.clone(),
    }
    if let Some(d) = &req.description {
        env.description = d.clone();
    }
    if let Some(Some(c)) = &req.config {
        env.config = resolve_config(c, Some(&current.config), max)?;
    }
    if let Some(s) = &req.scope {
        env.scope = Some(check_scope(*s)?.unwrap_or(Scope::Organization));
    }
    if let Some(patch) = &req.metadata {
        env.metadata = match patch {
            Some(p) => validate::patch_metadata(&env.metadata, p, true)?,
            None => Metadata::new(),
        };
    }
    check(&env)?;
    if env != *current {
        env.updated_at = now;
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MAX: EnvironmentLimits = EnvironmentLimits {
        memory_mb: Some(8192),
        processes: Some(1024),
        open_files: Some(4096),
        file_size_mb: Some(4096),
        bash_timeout_max_s: Some(600),
    };

    #[test]
    fn package_specs_are_registry_names_never_options_paths_or_shell() {
        for (m, ok) in [("pip", "six"), ("pip", "requests[socks]>=2.31,<3"), ("pip", "numpy==1.26.*"), ("npm", "is-number"),
            ("npm", "@types/node@^20.1"), ("apt", "hello"), ("apt", "libc6:amd64=2.36-9"), ("apt", "git/bookworm-backports")]
        {
            assert!(valid_package_spec(m, ok), "{m} {ok}");
        }
        for (m, bad) in [("pip", "-r"), ("pip", "--index-url=x"), ("pip", "six; rm -rf /"), ("pip", "git+https://x/y"),
            ("pip", "./local"), ("npm", "user/repo"), ("npm", "file:../x"), ("npm", "a$(id)"), ("apt", "hello`id`"),
            ("apt", "../x.deb"), ("npm", "@scope/../../x"), ("pip", "a|b"), ("apt", "a&b"), ("pip", "")]
        {
            assert!(!valid_package_spec(m, bad), "{m} {bad}");
        }
    }

    #[test]
    fn unbuilt_managers_are_refused_not_ignored() {
        for m in ["cargo", "gem", "go"] {
            let err = create(json!({"name": "e", "config": {"type": "cloud", "packages": {m: ["x"]}}})).unwrap_err();
            assert!(matches!(err, DomainError::Invalid { code: Some("unsupported_feature"), .. }), "{m}: {err}");
        }
        assert!(create(json!({"name": "e", "config": {"type": "cloud", "packages": {"apt": ["hello"], "npm": ["is-number"], "pip": ["six"]}}})).is_ok());
    }

    #[test]
    fn limits_are_bounded_by_the_servers_and_shown_only_when_set() {
        let e = create(json!({"name": "e"})).unwrap();
        assert!(serde_json::to_value(&e).unwrap()["config"].get("limits").is_none());
        let e = create(json!({"name": "e", "config": {"type": "cloud", "limits": {"open_files": 256, "bash_timeout_max_s": 30}}})).unwrap();
        assert_eq!(serde_json::to_value(&e).unwrap()["config"]["limits"], json!({"open_files": 256, "bash_timeout_max_s": 30}));
        assert!(create(json!({"name": "e", "config": {"type": "cloud", "limits": {"open_files": 5000}}})).is_err());
        assert!(create(json!({"name": "e", "config": {"type": "cloud", "limits": {"processes": 0}}})).is_err());
        assert!(serde_json::from_value::<CreateEnvironmentRequest>(json!({"name": "e", "config": {"type": "cloud", "limits": {"cpus": 2}}})).is_err());
        let keep: UpdateEnvironmentRequest = serde_json::from_value(json!({"config": {"type": "cloud"}})).unwrap();
        let u = apply_update(&e, &keep, Timestamp::from_micros(1), Some(&MAX)).unwrap();
        assert_eq!(u.config, e.config, "omitted limits are kept");
        let clear: UpdateEnvironmentRequest = serde_json::from_value(json!({"config": {"type": "cloud", "limits": null}})).unwrap();
        let u = apply_update(&e, &clear, Timestamp::from_micros(1), Some(&MAX)).unwrap();
        assert!(serde_json::to_value(&u).unwrap()["config"].get("limits").is_none());
    }

    fn create(v: serde_json::Value) -> DomainResult<Environment> {
        new_environment(&serde_json::from_value(v).unwrap(), "env_1".into(), Timestamp::from_micros(0), Some(&MAX))
    }

    #[test]
    fn responses_carry_every_config_key() {
        let e = create(json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["api.example.com"]}}})).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["config"]["networking"], json!({"type": "limited", "allowed_hosts": ["api.example.com"], "allow_mcp_servers": false, "allow_package_managers": false}));
        assert_eq!(v["config"]["packages"], json!({"type": "packages", "apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": []}));
    }

    #[test]
    fn packages_under_limited_networking_need_package_managers() {
        assert!(create(json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited"}, "packages": {"pip": ["requests"]}}})).is_err());
        assert!(create(json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allow_package_managers": true}, "packages": {"pip": ["requests"]}}})).is_ok());
    }

    #[test]
    fn config_type_cannot_change_and_omitted_keys_are_kept() {
        let e = create(json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["a.example"]}, "packages": {"pip": ["x"]}}}));
        assert!(e.is_err()); // needs allow_package_managers
        let e = create(json!({"name": "e", "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["a.example"], "allow_package_managers": true}, "packages": {"pip": ["x"]}}})).unwrap();
        let to_self: UpdateEnvironmentRequest = serde_json::from_value(json!({"config": {"type": "self_hosted"}})).unwrap();
        let err = apply_update(&e, &to_self, Timestamp::from_micros(1), None).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: Some("invalid_config_type_change"), .. }));
        let keep: UpdateEnvironmentRequest = serde_json::from_value(json!({"config": {"type": "cloud", "networking": {"type": "limited", "allow_mcp_servers": true}}})).unwrap();
        let u = apply_update(&e, &keep, Timestamp::from_micros(1), None).unwrap();
        let EnvironmentConfig::Cloud(c) = &u.config;
        assert_eq!(c.packages.pip, vec!["x".to_string()]);
        let Networking::Limited(l) = &c.networking else { panic!() };
        assert_eq!(l.allowed_hosts, vec!["a.example".to_string()]);
        assert!(l.allow_mcp_servers && l.allow_package_managers);
    }
}
