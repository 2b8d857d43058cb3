//! The command line: `serve`, `migrate`, the admin commands and `bench`.
//!
//! Admin commands open the database directly (`--data-dir` / `OPENMA_DATABASE_URL`), so
//! they work without a running server and while one runs.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use openma_core::Platform;
use openma_core::tenancy::DEFAULT_TENANT;

use secrecy::SecretString;

use crate::config::{LogFormat, Overrides, Providers, Settings};
use crate::{app, bench, telemetry};

#[derive(Parser)]
#[command(
    name = "openma",
    version,
    about = "Self-hostable agent platform, wire-compatible with Anthropic's Managed Agents API.",
    long_about = "Self-hostable agent platform, wire-compatible with Anthropic's Managed Agents API.\n\n\
        `openma serve` runs everything in one process with zero configuration: SQLite and blobs in ./.openma,\n\
        listening on 127.0.0.1:8080. Point the official SDKs at it by changing only their base URL.\n\
        Create an API key with `openma api-keys create --name me` (it works while the server runs)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct GlobalArgs {
    #[command(flatten)]
    pub connection: crate::client::Connection,
    /// A TOML file with settings; flags and environment variables override it.
    #[arg(long, env = "OPENMA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Where embedded mode keeps its database and blobs [default: ./.openma].
    #[arg(long, env = "OPENMA_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST/DB` [default: SQLite in the data dir].
    #[arg(long, env = "OPENMA_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Log line format on stderr.
    #[arg(long, env = "OPENMA_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Root secret for secrets at rest (≥ 32 characters) [default: generated into the data dir].
    #[arg(long, env = "PLATFORM_ROOT_SECRET", global = true, hide_env_values = true)]
    pub root_secret: Option<String>,
    /// A former root secret still accepted during a rotation.
    #[arg(long, env = "PLATFORM_ROOT_SECRET_PREVIOUS", global = true, hide_env_values = true)]
    pub previous_root_secret: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the platform: HTTP API, session runtime and sandboxes.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit (serve applies them too).
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage API keys (stored only as hashes; a new key is shown once).
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Manage the people who sign in to the web console (`/console`).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Back up an embedded deployment (database snapshot, blobs, root secret) while it runs.
    Backup {
        /// An empty or new directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into the data dir (stop the server first).
    Restore {
        #[arg(long)]
        from: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Manage the root secret.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Manage agents on a server (`--url`, `--api-key`).
    #[command(subcommand)]
    Agents(crate::client::AgentsCommand),
    /// Manage sessions on a server.
    #[command(subcommand)]
    Sessions(crate::client::SessionsCommand),
    /// Manage environments on a server.
    #[command(subcommand)]
    Environments(crate::client::EnvironmentsCommand),
    /// Manage vaults on a server (credentials are written through the API, never shown).
    #[command(subcommand)]
    Vaults(crate::client::VaultsCommand),
    /// Upload, list, download and delete files on a server.
    #[command(subcommand)]
    Files(crate::client::FilesCommand),
    /// Memory stores and their memories on a server.
    #[command(subcommand)]
    Memory(crate::client::MemoryCommand),
    /// Publish agents to Slack, GitHub or Linear on a server.
    #[command(subcommand)]
    Integrations(crate::client::IntegrationsCommand),
    /// Talk with an agent: start or continue a session and follow it live.
    Chat(crate::chat::ChatArgs),
    /// Usage and list cost from a server's ledger.
    Usage(crate::client::UsageArgs),
    /// Print the version.
    Version,
    /// Measure the API: start a server and time agent and session creation.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]; port 0 picks a free one.
    #[arg(long, env = "OPENMA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Blob store: `file://DIR` [default: the data dir's blobs/].
    #[arg(long, env = "OPENMA_BLOB_URL")]
    pub blob_url: Option<String>,
    /// Ensure this API key exists for the default tenant (for scripts and CI).
    #[arg(long, env = "OPENMA_BOOTSTRAP_API_KEY", hide_env_values = true)]
    pub bootstrap_api_key: Option<String>,
    /// Retries of a transient model failure (429, 5xx, overloaded, cut stream) [default: 5].
    #[arg(long, env = "OPENMA_MODEL_MAX_RETRIES")]
    pub model_max_retries: Option<u32>,
    /// First back-off between those retries in milliseconds, doubling each time [default: 1000].
    #[arg(long, env = "OPENMA_MODEL_RETRY_BASE_MS")]
    pub model_retry_base_ms: Option<u64>,
    /// Context window (tokens) that compaction plans for [default: 200000].
    #[arg(long, env = "OPENMA_CONTEXT_WINDOW_TOKENS")]
    pub context_window_tokens: Option<u64>,
    /// Address-space limit of each sandbox process, in MiB [default: 8192].
    #[arg(long, env = "OPENMA_SANDBOX_MEMORY_MB")]
    pub sandbox_memory_mb: Option<u64>,
    /// Processes per sandbox [default: 1024].
    #[arg(long, env = "OPENMA_SANDBOX_PROCESSES")]
    pub sandbox_processes: Option<u64>,
    /// Default bash command timeout in seconds [default: 120].
    #[arg(long, env = "OPENMA_SANDBOX_COMMAND_TIMEOUT_SECS")]
    pub sandbox_command_timeout_secs: Option<u64>,
    /// Largest bash timeout a call may ask for, in seconds [default: 600].
    #[arg(long, env = "OPENMA_SANDBOX_MAX_COMMAND_TIMEOUT_SECS")]
    pub sandbox_max_command_timeout_secs: Option<u64>,
    /// Requests per minute allowed to each API key; over it: 429 with `retry-after`.
    #[arg(long, env = "OPENMA_RATE_LIMIT_PER_MINUTE")]
    pub rate_limit_per_minute: Option<u32>,
    /// Where `github_repository` resources are cloned from [default: https://github.com]
    /// (GitHub Enterprise: its base URL).
    #[arg(long, env = "OPENMA_GITHUB_URL")]
    pub github_url: Option<String>,
    /// Largest file `POST /v1/files` accepts, in MiB [default: 500].
    #[arg(long, env = "OPENMA_MAX_FILE_MB")]
    pub max_file_mb: Option<u64>,
    /// How often the shared house-keeping jobs run, once across the cluster [default: 1m].
    #[arg(long, env = "OPENMA_HOUSEKEEPING_PERIOD")]
    pub housekeeping_period: Option<String>,
    /// Archive the event log of sessions unchanged for this long (e.g. `30d`) into the blob
    /// store [default: off; archived sessions' logs are always archived].
    #[arg(long, env = "OPENMA_ARCHIVE_IDLE_AFTER")]
    pub archive_idle_after: Option<String>,
    /// Age after which memory versions go, the newest of each memory kept [default: 30d].
    #[arg(long, env = "OPENMA_MEMORY_VERSION_RETENTION")]
    pub memory_version_retention: Option<String>,
    /// Age after which delivered and failed webhook deliveries go [default: 30d].
    #[arg(long, env = "OPENMA_WEBHOOK_DELIVERY_RETENTION")]
    pub webhook_delivery_retention: Option<String>,
    /// SearXNG-compatible JSON search endpoint that `web_search` queries.
    #[arg(long, env = "OPENMA_SEARCH_URL")]
    pub search_url: Option<String>,
    /// Run the sessions' tools on an `openma-sandbox-server` at this URL instead of in
    /// bubblewrap on this host (its token: OPENMA_SANDBOX_TOKEN, from the environment only).
    #[arg(long, env = "OPENMA_SANDBOX_URL")]
    pub sandbox_url: Option<String>,
    /// Anthropic API key (per-tenant model cards override it).
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,
    /// Anthropic API base URL [default: https://api.anthropic.com].
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// Key of an OpenAI-compatible provider (OpenAI, vLLM, Ollama, OpenRouter, …).
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Base URL of the OpenAI-compatible provider [default: https://api.openai.com].
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// Cluster mode: run as one of several nodes on the same PostgreSQL database (sessions
    /// are leased to one node at a time and taken over when it dies). Every node needs the
    /// same PLATFORM_ROOT_SECRET.
    #[arg(long, env = "OPENMA_CLUSTER")]
    pub cluster: bool,
    /// Cluster mode: this node's name [default: random at every start].
    #[arg(long, env = "OPENMA_NODE_ID")]
    pub node_id: Option<String>,
    /// Cluster mode: the base URL other nodes reach this one at [default: http://LISTEN].
    #[arg(long, env = "OPENMA_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Cluster mode: how long a session lease lasts without renewal, in milliseconds; a dead
    /// node's sessions are taken over within about this long [default: 6000].
    #[arg(long, env = "OPENMA_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
}

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Re-seal every stored secret under a new root secret, then retire the old one.
    Rotate {
        /// The new root secret (≥ 32 characters) [default: generated].
        #[arg(long, env = "OPENMA_NEW_ROOT_SECRET", hide_env_values = true)]
        new_secret: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Create a tenant (1-64 characters of a-z, 0-9, `-`, `_`).
    Create { name: String },
    /// List tenants.
    List,
    /// Show or set a tenant's quotas (omit a flag to keep its value).
    Limits {
        /// Tenant name or id.
        name: String,
        /// Monthly spend (USD) above which a warning is logged and counted.
        #[arg(long)]
        monthly_soft_usd: Option<f64>,
        /// Monthly spend (USD) above which new sessions and turns are refused (402).
        #[arg(long)]
        monthly_hard_usd: Option<f64>,
        /// Sessions that may run at once (more new turns get 429).
        #[arg(long)]
        max_running_sessions: Option<i64>,
        /// Sandboxes that may run at once (a new turn that could start one more gets 429;
        /// a `bash` call that would start one more gets an error result).
        #[arg(long)]
        max_running_sandboxes: Option<i64>,
        /// Remove every limit.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user (or add an existing one to a tenant). The password (at least 12
    /// characters) comes from `OPENMA_PASSWORD` or the first line of stdin.
    Create {
        #[arg(long)]
        email: String,
        /// Tenant name or id [default: the default tenant].
        #[arg(long)]
        tenant: Option<String>,
        /// `owner`, `admin` or `member`.
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Set a user's password (from `OPENMA_PASSWORD` or stdin) and sign it out everywhere.
    Passwd {
        #[arg(long)]
        email: String,
    },
    /// Print the SQL that adds a user to a tenant in a database this command cannot reach:
    /// a Workers deployment's D1 (`wrangler d1 execute openma-control --remote --command
    /// "$(openma users sql …)"`). As `create`, an existing e-mail keeps its password; the
    /// tenant must exist (the bootstrap key's first request creates `default`), or the
    /// statement fails. The password comes from `OPENMA_PASSWORD` or stdin.
    Sql {
        #[arg(long)]
        email: String,
        /// Tenant name or id.
        #[arg(long, default_value = openma_core::tenancy::DEFAULT_TENANT)]
        tenant: String,
        /// `owner`, `admin` or `member`.
        #[arg(long, default_value = "member")]
        role: String,
    },
}

/// SQLite's quoting of a text value.
fn sql_text(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The statements that add `email` (with `hash`) to `tenant` as `role` (`users sql`).
fn member_sql(email: &str, hash: &str, tenant: &str, role: openma_core::accounts::Role) -> anyhow::Result<String> {
    let email = openma_core::accounts::normalize_email(email)?;
    let id = format!("user_{}", ulid::Ulid::new());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros();
    let (e, t) = (sql_text(&email), sql_text(tenant));
    Ok(format!(
        "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ({}, {e}, {}, {now}, {now}) ON CONFLICT (email) DO NOTHING;\n\
         INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ((SELECT id FROM users WHERE email = {e}), \
         (SELECT id FROM tenants WHERE id = {t} OR name = {t}), {}, {now}) ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role;",
        sql_text(&id),
        sql_text(hash),
        sql_text(role.as_str()),
    ))
}

/// A new password: `OPENMA_PASSWORD`, else the first line of stdin.
fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("OPENMA_PASSWORD") {
        return Ok(p);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[derive(Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key; the key itself is the last line of the output.
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Tenant name or id [default: the default tenant].
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (prefix, name, last use; never the key).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id or prefix.
    Revoke {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn settings(global: &GlobalArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
    Settings::resolve(Overrides {
        config: global.config.clone(),
        data_dir: global.data_dir.clone(),
        listen: serve.and_then(|s| s.listen),
        database_url: global.database_url.clone(),
        blob_url: serve.and_then(|s| s.blob_url.clone()),
        bootstrap_api_key: serve.and_then(|s| s.bootstrap_api_key.clone()),
        log_format: global.log_format,
        model_max_retries: serve.and_then(|s| s.model_max_retries),
        model_retry_base_ms: serve.and_then(|s| s.model_retry_base_ms),
        context_window_tokens: serve.and_then(|s| s.context_window_tokens),
        search_url: serve.and_then(|s| s.search_url.clone()),
        sandbox_url: serve.and_then(|s| s.sandbox_url.clone()),
        sandbox_token: std::env::var("OPENMA_SANDBOX_TOKEN").ok().filter(|t| !t.is_empty()),
        // test-only (the conformance suite's local webhook receivers): never set it in production
        unsafe_allow_private_fetch: std::env::var("OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES").is_ok_and(|v| v == "1"),
        webhook_retry_delays_ms: None,
        rate_limit_per_minute: serve.and_then(|s| s.rate_limit_per_minute),
        max_file_mb: serve.and_then(|s| s.max_file_mb),
        github_url: serve.and_then(|s| s.github_url.clone()),
        sandbox_bridge: None,
        // test-only (sandbox egress to fake "outside" servers on loopback): never set it in production
        unsafe_egress_resolve: std::env::var("OPENMA_UNSAFE_EGRESS_RESOLVE").ok(),
        unsafe_egress_upstream_ca: std::env::var_os("OPENMA_UNSAFE_EGRESS_UPSTREAM_CA").map(PathBuf::from),
        // bench-only (`openma bench --scenario metering`): never set it in production
        unsafe_disable_ledger: std::env::var("OPENMA_UNSAFE_DISABLE_LEDGER").is_ok_and(|v| v == "1"),
        sandbox: crate::config::SandboxLimits {
            memory_mb: serve.and_then(|s| s.sandbox_memory_mb),
            processes: serve.and_then(|s| s.sandbox_processes),
            command_timeout_secs: serve.and_then(|s| s.sandbox_command_timeout_secs),
            max_command_timeout_secs: serve.and_then(|s| s.sandbox_max_command_timeout_secs),
            ..Default::default()
        },
        housekeeping: crate::config::HousekeepingSettings {
            period: serve.and_then(|s| s.housekeeping_period.clone()),
            archive_idle_after: serve.and_then(|s| s.archive_idle_after.clone()),
            memory_version_retention: serve.and_then(|s| s.memory_version_retention.clone()),
            webhook_delivery_retention: serve.and_then(|s| s.webhook_delivery_retention.clone()),
        },
        root_secret: global.root_secret.clone(),
        previous_root_secret: global.previous_root_secret.clone(),
        cluster: serve
            .map(|s| crate::config::ClusterOverrides {
                enabled: s.cluster,
                node_id: s.node_id.clone(),
                advertise_url: s.advertise_url.clone(),
                lease_ttl_ms: s.lease_ttl_ms,
            })
            .unwrap_or_default(),
        providers: serve
            .map(|s| Providers {
                anthropic_api_key: s.anthropic_api_key.clone().map(SecretString::from),
                anthropic_base_url: s.anthropic_base_url.clone(),
                openai_api_key: s.openai_api_key.clone().map(SecretString::from),
                openai_base_url: s.openai_base_url.clone(),
            })
            .unwrap_or_default(),
    })
}

async fn tenant(platform: &Platform, name: Option<&str>) -> anyhow::Result<openma_core::Tenant> {
    match name {
        None => Ok(platform.ensure_tenant(DEFAULT_TENANT).await?),
        Some(n) => Ok(platform.find_tenant(n).await?),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let settings = settings(&cli.global, Some(args))?;
            telemetry::init_logging(settings.log_format);
            tracing::info!(?settings, "starting openma {}", env!("CARGO_PKG_VERSION"));
            let prepared = app::prepare(&settings).await?;
            let addr = prepared.addr;
            tracing::info!(%addr, "listening");
            let mut out = std::io::stdout();
            writeln!(out, "openma listening on http://{addr}")?;
            out.flush()?;
            app::serve(prepared, app::shutdown_signal()).await
        }
        Command::Migrate => {
            let settings = settings(&cli.global, None)?;
            telemetry::init_logging(settings.log_format);
            let platform = app::open_platform(&settings).await?;
            println!("migrations applied: {}", platform.store.describe().await?);
            Ok(())
        }
        Command::Tenants(cmd) => {
            let settings = settings(&cli.global, None)?;
            let platform = app::open_platform(&settings).await?;
            match cmd {
                TenantsCommand::Create { name } => {
                    let t = platform.create_tenant(name).await?;
                    println!("created tenant {} ({})", t.name, t.id);
                }
                TenantsCommand::List => {
                    for t in platform.list_tenants().await? {
                        println!("{}\t{}\t{}", t.id, t.name, t.created_at);
                    }
                }
                TenantsCommand::Limits { name, monthly_soft_usd, monthly_hard_usd, max_running_sessions, max_running_sandboxes, clear } => {
                    let t = platform.find_tenant(name).await?;
                    let mut l = if *clear { Default::default() } else { platform.tenant_limits(&t.id).await? };
                    let micros = |usd: f64| (usd * 1e6).round() as i64;
                    if let Some(v) = monthly_soft_usd {
                        l.monthly_soft_micros = Some(micros(*v));
                    }
                    if let Some(v) = monthly_hard_usd {
                        l.monthly_hard_micros = Some(micros(*v));
                    }
                    if let Some(v) = max_running_sessions {
                        l.max_running_sessions = Some(*v);
                    }
                    if let Some(v) = max_running_sandboxes {
                        anyhow::ensure!(*v >= 0, "--max-running-sandboxes must be 0 or more");
                        l.max_running_sandboxes = Some(*v);
                    }
                    platform.set_tenant_limits(&t.id, &l).await?;
                    let usd = |m: Option<i64>| m.map(|m| format!("${:.2}", m as f64 / 1e6)).unwrap_or_else(|| "none".into());
                    let spent = platform.month_spend_micros(&t.id).await?;
                    println!(
                        "tenant {}: monthly soft {}, monthly hard {}, running sessions {}, running sandboxes {}; spent this month ${:.6}",
                        t.name,
                        usd(l.monthly_soft_micros),
                        usd(l.monthly_hard_micros),
                        l.max_running_sessions.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
                        l.max_running_sandboxes.map(|n| n.to_string()).unwrap_or_else(|| "unlimited".into()),
                        spent as f64 / 1e6
                    );
                }
            }
            Ok(())
        }
        Command::Users(UsersCommand::Sql { email, tenant, role }) => {
            let role = openma_core::accounts::Role::parse(role).ok_or_else(|| anyhow::anyhow!("--role is owner, admin or member"))?;
            let hash = crate::console::hash_password(&read_password()?)?;
            println!("{}", member_sql(email, &hash, tenant, role)?);
            Ok(())
        }
        Command::Users(cmd) => {
            let settings = settings(&cli.global, None)?;
            let platform = app::open_platform(&settings).await?;
            match cmd {
                UsersCommand::Create { email, tenant: t, role } => {
                    let t = tenant(&platform, t.as_deref()).await?;
                    let role = openma_core::accounts::Role::parse(role).ok_or_else(|| anyhow::anyhow!("--role is owner, admin or member"))?;
                    let hash = crate::console::hash_password(&read_password()?)?;
                    let user = platform.add_member(email, &hash, &t.id, role).await?;
                    println!("user {} ({}) is {} of tenant {}", user.email, user.id, role.as_str(), t.name);
                }
                UsersCommand::Passwd { email } => {
                    let hash = crate::console::hash_password(&read_password()?)?;
                    platform.set_password(email, &hash).await?;
                    println!("password of {email} changed; its console sessions are signed out");
                }
                UsersCommand::Sql { .. } => unreachable!("answered without a database above"),
            }
            Ok(())
        }
        Command::ApiKeys(cmd) => {
            let settings = settings(&cli.global, None)?;
            let platform = app::open_platform(&settings).await?;
            match cmd {
                ApiKeysCommand::Create { name, tenant: t } => {
                    let t = tenant(&platform, t.as_deref()).await?;
                    let (key, secret) = platform.create_api_key(&t.id, name).await?;
                    println!("created API key {} for tenant {} — store it now, it is not shown again:", key.id, t.name);
                    println!("{secret}");
                }
                ApiKeysCommand::List { tenant: t } => {
                    let t = tenant(&platform, t.as_deref()).await?;
                    for k in platform.list_api_keys(&t.id).await? {
                        let last = k.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
                        let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                        println!("{}\t{}…\t{}\t{}\tlast used {}", k.id, k.prefix, k.name, state, last);
                    }
                }
                ApiKeysCommand::Revoke { id, tenant: t } => {
                    let t = tenant(&platform, t.as_deref()).await?;
                    platform.revoke_api_key(&t.id, id).await.context("cannot revoke")?;
                    println!("revoked {id}");
                }
            }
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate { new_secret }) => {
            let settings = settings(&cli.global, None)?;
            let platform = app::open_platform(&settings).await?;
            println!("{}", crate::secrets::rotate(&platform, &settings, new_secret.clone()).await?);
            Ok(())
        }
        Command::Backup { to } => {
            let settings = settings(&cli.global, None)?;
            let m = crate::backup::backup(&settings, to).await?;
            println!("backed up {} files to {} (database sha256 {})", m.files.len(), to.display(), m.database_sha256);
            if m.root_secret_included {
                println!("the backup includes the root secret: keep it as safe as the secret itself");
            }
            Ok(())
        }
        Command::Restore { from, force } => {
            let settings = settings(&cli.global, None)?;
            let m = crate::backup::restore(&settings, from, *force)?;
            println!("restored the backup of {} into {}", m.created_at, settings.data_dir.display());
            Ok(())
        }
        Command::Agents(cmd) => crate::client::agents(&cli.global.connection, cmd).await,
        Command::Sessions(cmd) => crate::client::sessions(&cli.global.connection, cmd).await,
        Command::Environments(cmd) => crate::client::environments(&cli.global.connection, cmd).await,
        Command::Vaults(cmd) => crate::client::vaults(&cli.global.connection, cmd).await,
        Command::Files(cmd) => crate::client::files(&cli.global.connection, cmd).await,
        Command::Memory(cmd) => crate::client::memory(&cli.global.connection, cmd).await,
        Command::Integrations(cmd) => crate::client::integrations(&cli.global.connection, cmd).await,
        Command::Chat(args) => crate::chat::chat(&cli.global.connection, args).await,
        Command::Usage(args) => crate::client::usage(&cli.global.connection, args).await,
        Command::Version => {
            println!("openma {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Bench(args) => bench::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_sql_quotes_its_values_and_names_the_tenant_by_id_or_name() {
        let sql = member_sql(" O'Neil@Example.com ", "$argon2id$v=19$x", "ops' team", openma_core::accounts::Role::Admin).unwrap();
        assert!(sql.contains("'o''neil@example.com'"), "{sql}");
        assert!(sql.contains("WHERE id = 'ops'' team' OR name = 'ops'' team'"), "{sql}");
        assert!(sql.contains("'admin'") && sql.contains("'$argon2id$v=19$x'"), "{sql}");
        assert_eq!(sql.matches(';').count(), 2);
        assert!(member_sql("not an address", "h", "t", openma_core::accounts::Role::Member).is_err());
    }
}
