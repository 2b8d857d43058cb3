//! An environment's packages, limits and stdio MCP servers as the sandbox takes them: which layer a session's
//! sandbox mounts, when that layer is built, and how its build is shown.
//!
//! Builds start in the background when an environment is created or updated with packages
//! (which also retries a failed one); a session records its environment's packages and
//! limits in its sandbox at create, and its sandbox waits for the layer when it first starts.
//! With a remote sandbox (`OPENMA_SANDBOX_URL`) the layers are the sandbox server's: this
//! module asks it (`POST /v1/layers`) instead of this host's builder.

use openma_core::{DomainError, TenantId};
use openma_sandbox::{PackageSet, SessionEnvironment};
use openma_types::Timestamp;
use openma_types::environments::{BuildState, Environment, EnvironmentBuild, EnvironmentConfig, Packages};
use openma_types::sandbox::{LayerBuild, LayerReport};

use crate::app::AppState;

/// The packages the layer builder installs for an environment.
pub fn package_set(env: &Environment) -> PackageSet {
    let EnvironmentConfig::Cloud(c) = &env.config;
    PackageSet::new(&c.packages.apt, &c.packages.npm, &c.packages.pip)
}

/// What a new session of `env` records in its sandbox.
pub fn session_environment(env: &Environment) -> SessionEnvironment {
    let EnvironmentConfig::Cloud(c) = &env.config;
    SessionEnvironment { packages: package_set(env), limits: c.limits.unwrap_or_default(), mcp_servers: c.mcp_servers.clone() }
}

/// How the layer of `set` stands where the sessions' sandboxes run — this host, or the
/// remote sandbox server (`OPENMA_SANDBOX_URL`), which builds its own — optionally starting
/// its build.
async fn layer(app: &AppState, set: &PackageSet, packages: &Packages, build: LayerBuild) -> Result<LayerReport, DomainError> {
    if let Some(remote) = &app.remote {
        return remote.layer(packages, build).await;
    }
    Ok(app.sandboxes.layers().query(set, build).report())
}

/// Starts building the environment's layer (after a create or update), retrying a failed
/// one; on a remote sandbox server, in the background.
pub fn start_build(app: &AppState, env: &Environment) {
    start(app, env, LayerBuild::Retry);
}

fn start(app: &AppState, env: &Environment, build: LayerBuild) {
    let set = package_set(env);
    if set.is_empty() {
        return;
    }
    let env_id = env.id.clone();
    let Some(remote) = app.remote.clone() else {
        // on this host a start only spawns the build
        let status = app.sandboxes.layers().query(&set, build);
        tracing::info!(environment_id = %env_id, layer = %status.hash, state = ?status.state, "environment packages");
        return;
    };
    let EnvironmentConfig::Cloud(c) = &env.config;
    let packages = c.packages.clone();
    tokio::spawn(async move {
        match remote.layer(&packages, build).await {
            Ok(status) => tracing::info!(environment_id = %env_id, layer = %status.hash, state = ?status.state, "environment packages, on the sandbox server"),
            Err(e) => tracing::warn!(environment_id = %env_id, error = %e, "cannot start building the environment's packages on the sandbox server"),
        }
    });
}

/// Refuses a session on an environment whose packages already failed to build.
pub async fn check_buildable(app: &AppState, env: &Environment) -> Result<(), DomainError> {
    let set = package_set(env);
    if set.is_empty() {
        return Ok(());
    }
    let EnvironmentConfig::Cloud(c) = &env.config;
    let status = match layer(app, &set, &c.packages, LayerBuild::Status).await {
        Ok(status) => status,
        // the sandbox server is away now: the session's first tool says so if it still is
        Err(e) => {
            tracing::warn!(environment_id = %env.id, error = %e, "cannot tell whether the environment's packages built");
            return Ok(());
        }
    };
    if status.state == BuildState::Failed {
        let failure = status.failure();
        return Err(DomainError::invalid_code(
            "environment_build_failed",
            format!(
                "environment `{}` cannot start sessions: its packages failed to build ({failure}); fix `config.packages` with an update, which builds them again",
                env.id
            ),
        ));
    }
    Ok(())
}

/// Records a new session's packages and limits in its sandbox (a remote sandbox server
/// gets them with the session's directory), and makes sure its layer is being built (after
/// a restart, nothing else would start it).
pub fn prepare(app: &AppState, env: &Environment, session_id: &str) -> std::io::Result<()> {
    start(app, env, LayerBuild::Start);
    app.sandboxes.set_environment(session_id, &session_environment(env))
}

/// The build of an environment's layer, for `GET /v1/environments/{id}/build`.
pub async fn build_of(app: &AppState, tenant: &TenantId, id: &str) -> Result<EnvironmentBuild, DomainError> {
    let env = app.platform.get_environment(tenant, id).await?;
    let set = package_set(&env);
    if set.is_empty() {
        return Ok(EnvironmentBuild {
            tag: Default::default(),
            environment_id: env.id,
            state: BuildState::Ready,
            packages_hash: None,
            started_at: None,
            finished_at: None,
            error: None,
            log: String::new(),
        });
    }
    let EnvironmentConfig::Cloud(c) = &env.config;
    let s = layer(app, &set, &c.packages, LayerBuild::Status).await?;
    Ok(EnvironmentBuild {
        tag: Default::default(),
        environment_id: env.id,
        state: s.state,
        packages_hash: Some(s.hash),
        started_at: s.started_at_us.map(Timestamp::from_micros),
        finished_at: s.finished_at_us.map(Timestamp::from_micros),
        error: s.error,
        log: s.log,
    })
}
