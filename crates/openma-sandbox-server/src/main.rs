//! `openma-sandbox-server`: serves one host's session sandboxes to a control plane elsewhere.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};

/// Serves session sandboxes (bubblewrap, a persistent bash, the file tools) over HTTP to an
/// openma control plane: the native server with OPENMA_SANDBOX_URL pointing here, or a
/// Cloudflare SessionDO through the Containers binding.
#[derive(Parser)]
#[command(name = "openma-sandbox-server", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "OPENMA_SANDBOX_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Directory holding one subdirectory per session (created if missing).
    #[arg(long, env = "OPENMA_SANDBOX_ROOT", default_value = "/var/lib/openma-sandbox/sessions")]
    root: PathBuf,
    /// Stop a shell unused for this many seconds (its files stay).
    #[arg(long, env = "OPENMA_SANDBOX_IDLE_SECS", default_value_t = 1800)]
    idle_secs: u64,
    /// Default time limit of one bash command, in seconds.
    #[arg(long, env = "OPENMA_SANDBOX_COMMAND_TIMEOUT_SECS")]
    command_timeout_secs: Option<u64>,
    /// Tests only: sandbox egress to these names goes to the given addresses, even private
    /// or loopback ones (`name=ip:port,…`). Never set it in production.
    #[arg(long, env = "OPENMA_UNSAFE_EGRESS_RESOLVE", hide = true)]
    unsafe_egress_resolve: Option<String>,
    /// Tests only: a PEM CA that intercepted egress trusts besides the system roots.
    #[arg(long, env = "OPENMA_UNSAFE_EGRESS_UPSTREAM_CA", hide = true)]
    unsafe_egress_upstream_ca: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    // the network bridge of networked sandboxes is this very binary (see openma-sandbox)
    if std::env::args_os().nth(1).is_some_and(|a| a == "sandbox-bridge") {
        return openma_sandbox::network::bridge::bridge_main(std::env::args().skip(1));
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // logs on stderr; stdout carries only the ready line
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // the token is read from the environment only, never a flag (flags show in `ps`)
    let token = SecretString::from(std::env::var("OPENMA_SANDBOX_TOKEN").unwrap_or_default());
    anyhow::ensure!(token.expose_secret().len() >= 16, "OPENMA_SANDBOX_TOKEN must be set to a secret of at least 16 characters shared with the control plane");
    tokio::runtime::Runtime::new()?.block_on(serve(args, token))
}

async fn serve(args: Args, token: SecretString) -> anyhow::Result<()> {
    let mut config = openma_sandbox::SandboxConfig::new(&args.root);
    config.idle_timeout = std::time::Duration::from_secs(args.idle_secs);
    if let Some(s) = args.command_timeout_secs {
        config.limits.default_timeout = std::time::Duration::from_secs(s);
    }
    std::fs::create_dir_all(&args.root).with_context(|| format!("cannot create {}", args.root.display()))?;
    if let Some(spec) = &args.unsafe_egress_resolve {
        config.egress.resolve = openma_sandbox::ResolveOverrides::parse(spec).map_err(|e| anyhow::anyhow!("invalid OPENMA_UNSAFE_EGRESS_RESOLVE: {e}"))?;
        tracing::warn!("OPENMA_UNSAFE_EGRESS_RESOLVE is set: sandbox egress to its names goes to the given addresses. For tests only");
    }
    // credential substitution at egress: a CA of this server, trusted only by its sandboxes
    // (kept beside the sessions, in a directory no session is named after)
    let ca = openma_sandbox::intercept::EgressCa::load_or_create(&args.root.join(".egress-ca")).context("cannot open the sandbox egress CA")?;
    config.egress.ca = Some(std::sync::Arc::new(ca));
    if let Some(path) = &args.unsafe_egress_upstream_ca {
        let pem = std::fs::read_to_string(path).with_context(|| format!("OPENMA_UNSAFE_EGRESS_UPSTREAM_CA {}", path.display()))?;
        config.egress.upstream_roots = Some(openma_sandbox::intercept::upstream_roots(&[pem]));
        tracing::warn!(path = %path.display(), "OPENMA_UNSAFE_EGRESS_UPSTREAM_CA is set: intercepted egress trusts an extra CA. For tests only");
    }
    let credentials = openma_sandbox_server::HeldCredentials::install(&mut config);
    let sandboxes = openma_sandbox::Sandboxes::new(config);
    match openma_sandbox::Sandboxes::check().and_then(|v| sandboxes.preflight().map(|()| v)) {
        Ok(v) => tracing::info!(isolation = %v, "sandboxes ready"),
        Err(e) => tracing::warn!(error = %e, "sandboxes cannot start here: tool calls will fail until this is fixed"),
    }
    let reaped = sandboxes.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        for minute in 0u64.. {
            tick.tick().await;
            let stopped = reaped.reap_idle().await;
            if stopped > 0 {
                tracing::info!(stopped, "stopped idle shells");
            }
            // hourly: package layers no session used for a week
            if minute % 60 == 59 {
                let sandboxes = reaped.clone();
                let _ = tokio::task::spawn_blocking(move || sandboxes.collect_layers(openma_sandbox::LAYER_UNUSED_FOR)).await;
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, root = %args.root.display(), "openma-sandbox-server listening");
    println!("openma-sandbox-server listening on http://{addr}");
    openma_sandbox_server::Server::new(sandboxes, token, credentials)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
