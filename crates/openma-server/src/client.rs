//! The client commands: `openma agents …`, `openma sessions …`, `openma integrations …` and
//! `openma chat`, which talk to a running server over its public API (the same one the SDKs use).


use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Clone)]
pub struct Connection {
    /// The server to talk to.
    #[arg(long, env = "OPENMA_URL", global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API key of the server.
    #[arg(long, env = "OPENMA_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// List agents.
    List,
    /// Show an agent.
    Get { id: String },
    /// Create an agent.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "claude-sonnet-4-6")]
        model: String,
        #[arg(long)]
        system: Option<String>,
        /// Built-in tools to enable, comma-separated (e.g. `bash,read,write`).
        #[arg(long, value_delimiter = ',')]
        tools: Vec<String>,
    },
    /// Archive an agent.
    Archive { id: String },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List sessions.
    List,
    /// Show a session.
    Get { id: String },
    /// Create a session.
    Create {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        title: Option<String>,
    },
    /// Print a session's events.
    Events { id: String },
    /// Follow a session's events as they happen (resuming after a disconnect).
    Tail(crate::chat::TailArgs),
    /// Archive a session.
    Archive { id: String },
    /// Delete a session.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum EnvironmentsCommand {
    /// List environments.
    List,
    /// Show an environment (its configuration with `--json`).
    Get { id: String },
    /// Create an environment.
    Create {
        #[arg(long)]
        name: String,
        /// Limit the sandbox's network to these hosts (unrestricted without).
        #[arg(long = "allowed-host")]
        allowed_hosts: Vec<String>,
        /// Packages to install with pip, npm or apt: `pip:requests`, `npm:left-pad`, `apt:jq`.
        #[arg(long = "package")]
        packages: Vec<String>,
    },
    /// Archive an environment.
    Archive { id: String },
    /// Delete an environment.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum VaultsCommand {
    /// List vaults.
    List,
    /// Show a vault.
    Get { id: String },
    /// Create a vault.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List a vault's credentials (never their secrets).
    Credentials { id: String },
    /// Archive a vault.
    Archive { id: String },
    /// Delete a vault.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum FilesCommand {
    /// List files.
    List,
    /// Show a file's metadata.
    Get { id: String },
    /// Upload a file.
    Upload { path: std::path::PathBuf },
    /// Download a file's content (to `--out`, else to stdout).
    Download {
        id: String,
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Delete a file.
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// List memory stores.
    Stores,
    /// Create a memory store.
    CreateStore {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List a store's memories (paths and sizes).
    List { store: String },
    /// Write a memory (creates it; the content comes from `--content` or stdin).
    Write {
        store: String,
        path: String,
        #[arg(long)]
        content: Option<String>,
    },
    /// Delete a memory store.
    DeleteStore { id: String },
}

// parsed once per invocation: the size of a variant costs nothing worth boxing for
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum IntegrationsCommand {
    /// List integrations.
    List,
    /// Show an integration (never its secrets).
    Get { id: String },
    /// Publish an agent to Slack, GitHub or Linear. Secrets are read from files or the
    /// environment, never from the command line.
    Create {
        /// `slack`, `github` or `linear`.
        #[arg(long)]
        provider: String,
        /// The agent that answers.
        #[arg(long)]
        agent: String,
        /// The environment its sessions run in.
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// The provider's signing (webhook) secret.
        #[arg(long, env = "OPENMA_INTEGRATION_SIGNING_SECRET", hide_env_values = true)]
        signing_secret: Option<String>,
        /// A file holding the signing secret.
        #[arg(long, conflicts_with = "signing_secret")]
        signing_secret_file: Option<std::path::PathBuf>,
        /// Slack bot token or Linear token.
        #[arg(long, env = "OPENMA_INTEGRATION_BOT_TOKEN", hide_env_values = true)]
        bot_token: Option<String>,
        /// GitHub: the App's id.
        #[arg(long)]
        app_id: Option<String>,
        /// GitHub: the App's slug.
        #[arg(long)]
        app_slug: Option<String>,
        /// GitHub: the App's private key (PEM file).
        #[arg(long)]
        private_key_file: Option<std::path::PathBuf>,
        /// GitHub: a label that engages the agent.
        #[arg(long)]
        trigger_label: Option<String>,
        /// The provider's API base URL (GitHub Enterprise).
        #[arg(long)]
        api_base_url: Option<String>,
    },
    /// Delete an integration.
    Delete { id: String },
}

#[derive(Args)]
pub struct UsageArgs {
    /// Group by these dimensions: agent, session, model, kind, day (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "day,model")]
    pub group_by: Vec<String>,
    /// Only usage at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only usage before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: String,
}

impl Api {
    pub(crate) fn new(c: &Connection) -> anyhow::Result<Api> {
        let key = c.api_key.clone().context("an API key is needed: pass --api-key or set OPENMA_API_KEY")?;
        Ok(Api { http: reqwest::Client::new(), base: c.url.trim_end_matches('/').to_owned(), key })
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{} ({status})", v["error"]["message"].as_str().unwrap_or("request failed"));
        }
        Ok(v)
    }
}

fn print(json_out: bool, v: &Value, line: impl Fn(&Value) -> String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else if let Some(items) = v["data"].as_array() {
        for i in items {
            println!("{}", line(i));
        }
    } else {
        println!("{}", line(v));
    }
}

fn agent_line(a: &Value) -> String {
    format!("{}\t{}\tv{}\t{}", a["id"].as_str().unwrap_or(""), a["name"].as_str().unwrap_or(""), a["version"], a["model"]["id"].as_str().unwrap_or(""))
}

fn session_line(s: &Value) -> String {
    format!("{}\t{}\t{}\t{}", s["id"].as_str().unwrap_or(""), s["status"].as_str().unwrap_or(""), s["agent"]["name"].as_str().unwrap_or(""), s["title"].as_str().unwrap_or(""))
}

pub async fn agents(c: &Connection, cmd: &AgentsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    let v = match cmd {
        AgentsCommand::List => api.call(Method::GET, "/v1/agents?limit=100", None).await?,
        AgentsCommand::Get { id } => api.call(Method::GET, &format!("/v1/agents/{id}"), None).await?,
        AgentsCommand::Create { name, model, system, tools } => {
            let tools: Vec<Value> = tools.iter().map(|t| json!({"type": t})).collect();
            api.call(Method::POST, "/v1/agents", Some(json!({"name": name, "model": model, "system": system, "tools": tools}))).await?
        }
        AgentsCommand::Archive { id } => api.call(Method::POST, &format!("/v1/agents/{id}/archive"), None).await?,
    };
    print(c.json, &v, agent_line);
    Ok(())
}

pub async fn sessions(c: &Connection, cmd: &SessionsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    match cmd {
        SessionsCommand::List => print(c.json, &api.call(Method::GET, "/v1/sessions?limit=100", None).await?, session_line),
        SessionsCommand::Get { id } => print(c.json, &api.call(Method::GET, &format!("/v1/sessions/{id}"), None).await?, session_line),
        SessionsCommand::Create { agent, title } => {
            print(c.json, &api.call(Method::POST, "/v1/sessions", Some(json!({"agent": agent, "title": title}))).await?, session_line)
        }
        SessionsCommand::Events { id } => {
            let v = api.call(Method::GET, &format!("/v1/sessions/{id}/events?limit=1000"), None).await?;
            print(c.json, &v, |e| format!("{}\t{}\t{}", e["processed_at"].as_str().unwrap_or(""), e["type"].as_str().unwrap_or(""), describe(e)));
        }
        SessionsCommand::Tail(args) => return crate::chat::tail(c, args).await,
        SessionsCommand::Archive { id } => print(c.json, &api.call(Method::POST, &format!("/v1/sessions/{id}/archive"), None).await?, session_line),
        SessionsCommand::Delete { id } => print(c.json, &api.call(Method::DELETE, &format!("/v1/sessions/{id}"), None).await?, |v| format!("deleted {}", v["id"].as_str().unwrap_or(""))),
    }
    Ok(())
}

fn integration_line(i: &Value) -> String {
    format!(
        "{}\t{}\t{}\t{}",
        i["id"].as_str().unwrap_or(""),
        i["provider"].as_str().unwrap_or(""),
        i["agent_id"].as_str().unwrap_or(""),
        i["events_path"].as_str().unwrap_or("")
    )
}

fn environment_line(e: &Value) -> String {
    let networking = e["config"]["networking"]["type"].as_str().unwrap_or("");
    format!("{}\t{}\t{networking}", e["id"].as_str().unwrap_or(""), e["name"].as_str().unwrap_or(""))
}

fn vault_line(v: &Value) -> String {
    let name = v["display_name"].as_str().or(v["auth"]["type"].as_str()).unwrap_or("");
    format!("{}\t{name}", v["id"].as_str().unwrap_or(""))
}

fn file_line(f: &Value) -> String {
    format!("{}\t{}\t{}\t{}", f["id"].as_str().unwrap_or(""), f["filename"].as_str().unwrap_or(""), f["size_bytes"], f["mime_type"].as_str().unwrap_or(""))
}

fn deleted_line(v: &Value) -> String {
    format!("deleted {}", v["id"].as_str().unwrap_or(""))
}

pub async fn environments(c: &Connection, cmd: &EnvironmentsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    match cmd {
        EnvironmentsCommand::List => print(c.json, &api.call(Method::GET, "/v1/environments?limit=100", None).await?, environment_line),
        EnvironmentsCommand::Get { id } => print(c.json, &api.call(Method::GET, &format!("/v1/environments/{id}"), None).await?, environment_line),
        EnvironmentsCommand::Create { name, allowed_hosts, packages } => {
            let mut config = json!({"type": "cloud"});
            if !allowed_hosts.is_empty() {
                config["networking"] = json!({"type": "limited", "allowed_hosts": allowed_hosts, "allow_package_managers": !packages.is_empty()});
            }
            if !packages.is_empty() {
                let mut by: serde_json::Map<String, Value> = serde_json::Map::new();
                for p in packages {
                    let Some((manager, spec)) = p.split_once(':') else { bail!("`{p}`: write packages as MANAGER:SPEC, e.g. pip:requests") };
                    if let Some(a) = by.entry(manager.to_owned()).or_insert_with(|| json!([])).as_array_mut() {
                        a.push(json!(spec));
                    }
                }
                by.insert("type".into(), json!("packages"));
                config["packages"] = Value::Object(by);
            }
            print(c.json, &api.call(Method::POST, "/v1/environments", Some(json!({"name": name, "config": config}))).await?, environment_line)
        }
        EnvironmentsCommand::Archive { id } => print(c.json, &api.call(Method::POST, &format!("/v1/environments/{id}/archive"), None).await?, environment_line),
        EnvironmentsCommand::Delete { id } => print(c.json, &api.call(Method::DELETE, &format!("/v1/environments/{id}"), None).await?, deleted_line),
    }
    Ok(())
}

pub async fn vaults(c: &Connection, cmd: &VaultsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    match cmd {
        VaultsCommand::List => print(c.json, &api.call(Method::GET, "/v1/vaults?limit=100", None).await?, vault_line),
        VaultsCommand::Get { id } => print(c.json, &api.call(Method::GET, &format!("/v1/vaults/{id}"), None).await?, vault_line),
        VaultsCommand::Create { name } => print(c.json, &api.call(Method::POST, "/v1/vaults", Some(json!({"display_name": name}))).await?, vault_line),
        VaultsCommand::Credentials { id } => print(c.json, &api.call(Method::GET, &format!("/v1/vaults/{id}/credentials?limit=100"), None).await?, vault_line),
        VaultsCommand::Archive { id } => print(c.json, &api.call(Method::POST, &format!("/v1/vaults/{id}/archive"), None).await?, vault_line),
        VaultsCommand::Delete { id } => print(c.json, &api.call(Method::DELETE, &format!("/v1/vaults/{id}"), None).await?, deleted_line),
    }
    Ok(())
}

pub async fn files(c: &Connection, cmd: &FilesCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    match cmd {
        FilesCommand::List => print(c.json, &api.call(Method::GET, "/v1/files?limit=100", None).await?, file_line),
        FilesCommand::Get { id } => print(c.json, &api.call(Method::GET, &format!("/v1/files/{id}"), None).await?, file_line),
        FilesCommand::Upload { path } => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "upload".into());
            let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
            let len = file.metadata().await?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let part = reqwest::multipart::Part::stream_with_length(body, len).file_name(name);
            let resp = api
                .http
                .post(format!("{}/v1/files", api.base))
                .bearer_auth(&api.key)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .with_context(|| format!("cannot reach {}", api.base))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{} ({status})", v["error"]["message"].as_str().unwrap_or("upload failed"));
            }
            print(c.json, &v, file_line);
        }
        FilesCommand::Download { id, out } => {
            let resp = api.http.get(format!("{}/v1/files/{id}/content", api.base)).bearer_auth(&api.key).send().await?;
            let status = resp.status();
            if !status.is_success() {
                let v: Value = resp.json().await.unwrap_or(Value::Null);
                bail!("{} ({status})", v["error"]["message"].as_str().unwrap_or("download failed"));
            }
            let mut stream = resp.bytes_stream();
            let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin> = match out {
                Some(p) => Box::new(tokio::fs::File::create(p).await.with_context(|| format!("cannot create {}", p.display()))?),
                None => Box::new(tokio::io::stdout()),
            };
            use futures::StreamExt;
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = stream.next().await {
                sink.write_all(&chunk?).await?;
            }
            sink.flush().await?;
        }
        FilesCommand::Delete { id } => print(c.json, &api.call(Method::DELETE, &format!("/v1/files/{id}"), None).await?, deleted_line),
    }
    Ok(())
}

pub async fn memory(c: &Connection, cmd: &MemoryCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    let store_line = |s: &Value| format!("{}\t{}", s["id"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or(""));
    match cmd {
        MemoryCommand::Stores => print(c.json, &api.call(Method::GET, "/v1/memory_stores?limit=100", None).await?, store_line),
        MemoryCommand::CreateStore { name, description } => {
            print(c.json, &api.call(Method::POST, "/v1/memory_stores", Some(json!({"name": name, "description": description}))).await?, store_line)
        }
        MemoryCommand::List { store } => print(c.json, &api.call(Method::GET, &format!("/v1/memory_stores/{store}/memories?limit=100"), None).await?, |m| {
            format!("{}\t{}\t{}", m["id"].as_str().unwrap_or(""), m["path"].as_str().unwrap_or(""), m["content_size_bytes"])
        }),
        MemoryCommand::Write { store, path, content } => {
            let content = match content {
                Some(c) => c.clone(),
                None => tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin())).await??,
            };
            let v = api.call(Method::POST, &format!("/v1/memory_stores/{store}/memories"), Some(json!({"path": path, "content": content}))).await?;
            print(c.json, &v, |m| format!("{}\t{}", m["id"].as_str().unwrap_or(""), m["path"].as_str().unwrap_or("")));
        }
        MemoryCommand::DeleteStore { id } => print(c.json, &api.call(Method::DELETE, &format!("/v1/memory_stores/{id}"), None).await?, deleted_line),
    }
    Ok(())
}

fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim_end().to_owned())
}

pub async fn integrations(c: &Connection, cmd: &IntegrationsCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(c)?;
    let v = match cmd {
        IntegrationsCommand::List => api.call(Method::GET, "/v1/integrations?limit=100", None).await?,
        IntegrationsCommand::Get { id } => api.call(Method::GET, &format!("/v1/integrations/{id}"), None).await?,
        IntegrationsCommand::Create {
            provider,
            agent,
            environment,
            name,
            signing_secret,
            signing_secret_file,
            bot_token,
            app_id,
            app_slug,
            private_key_file,
            trigger_label,
            api_base_url,
        } => {
            let signing_secret = match (signing_secret, signing_secret_file) {
                (Some(s), _) => s.clone(),
                (None, Some(f)) => read_secret(f)?,
                (None, None) => bail!("a signing secret is needed: --signing-secret-file or OPENMA_INTEGRATION_SIGNING_SECRET"),
            };
            let private_key = private_key_file.as_deref().map(read_secret).transpose()?;
            let mut body = json!({"provider": provider, "agent_id": agent, "signing_secret": signing_secret});
            for (k, v) in [
                ("environment_id", environment),
                ("name", name),
                ("bot_token", bot_token),
                ("app_id", app_id),
                ("app_slug", app_slug),
                ("private_key", &private_key),
                ("trigger_label", trigger_label),
                ("api_base_url", api_base_url),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            api.call(Method::POST, "/v1/integrations", Some(body)).await?
        }
        IntegrationsCommand::Delete { id } => api.call(Method::DELETE, &format!("/v1/integrations/{id}"), None).await?,
    };
    if matches!(cmd, IntegrationsCommand::Delete { .. }) {
        print(c.json, &v, |v| format!("deleted {}", v["id"].as_str().unwrap_or("")));
    } else {
        print(c.json, &v, integration_line);
    }
    Ok(())
}

/// `openma usage`: the ledger summed, as a table, JSON or CSV.
pub async fn usage(c: &Connection, args: &UsageArgs) -> anyhow::Result<()> {
    let api = Api::new(c)?;
    let mut query: Vec<(String, String)> = args.group_by.iter().map(|g| ("group_by[]".to_owned(), g.trim().to_owned())).collect();
    if let Some(s) = &args.since {
        query.push(("starting_at".into(), s.clone()));
    }
    if let Some(u) = &args.until {
        query.push(("ending_at".into(), u.clone()));
    }
    if args.csv {
        query.push(("format".into(), "csv".into()));
    }
    let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&query).finish();
    let resp = api.http.get(format!("{}/v1/usage?{qs}", api.base)).bearer_auth(&api.key).send().await.with_context(|| format!("cannot reach {}", api.base))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        bail!("{} ({status})", v["error"]["message"].as_str().unwrap_or("request failed"));
    }
    if args.csv {
        print!("{text}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text)?;
    if c.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for l in v["data"].as_array().into_iter().flatten() {
        let dims: Vec<String> = ["day", "agent_id", "session_id", "model", "kind"]
            .iter()
            .filter_map(|k| l[*k].as_str().map(str::to_owned))
            .collect();
        println!("{}\t{}\t${:.6}", dims.join("\t"), l["quantity"], l["amount_micros"].as_i64().unwrap_or(0) as f64 / 1e6);
    }
    println!("total\t${:.6}", v["total_amount_micros"].as_i64().unwrap_or(0) as f64 / 1e6);
    Ok(())
}

/// A one-line human description of an event.
pub(crate) fn describe(e: &Value) -> String {
    let text = |v: &Value| v.as_array().map(|a| a.iter().filter_map(|b| b["text"].as_str()).collect::<Vec<_>>().join(" ")).unwrap_or_default();
    match e["type"].as_str().unwrap_or("") {
        "user.message" | "agent.message" => text(&e["content"]),
        "agent.tool_use" | "agent.custom_tool_use" => format!("{} {}", e["name"].as_str().unwrap_or(""), e["input"]),
        "agent.tool_result" | "user.custom_tool_result" => {
            let t = text(&e["content"]);
            let short: String = t.chars().take(300).collect();
            if e["is_error"] == true { format!("error: {short}") } else { short }
        }
        "session.status_idle" => e["stop_reason"]["type"].as_str().unwrap_or("").to_owned(),
        "session.error" => e["error"]["message"].as_str().unwrap_or("").to_owned(),
        _ => String::new(),
    }
}
