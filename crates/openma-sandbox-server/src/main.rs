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
    let sandboxes = openma_sandbox::Sandboxes::new(config);
    match openma_sandbox::Sandboxes::check().and_then(|v| sandboxes.preflight().map(|()| v)) {
        Ok(v) => tracing::info!(isolation = %v, "sandboxes ready"),
        Err(e) => tracing::warn!(error = %e, "sandboxes cannot start here: tool calls will fail until this is fixed"),
    }
    let reaped = sandboxes.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let stopped = reaped.reap_idle().await;
            if stopped > 0 {
                tracing::info!(stopped, "stopped idle shells");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, root = %args.root.display(), "openma-sandbox-server listening");
    println!("openma-sandbox-server listening on http://{addr}");
    openma_sandbox_server::Server::new(sandboxes, token)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
