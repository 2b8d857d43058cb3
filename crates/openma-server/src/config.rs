//! Settings: command-line flags and environment variables (the operator contract), then
//! an optional TOML file, then defaults. Secrets never appear in `Debug` output or logs.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use openma_core::pricing::PriceSchedule;
use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = ".openma";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Waits between webhook delivery attempts: 3 attempts in all, as the hosted platform makes.
pub const DEFAULT_WEBHOOK_RETRY_DELAYS_MS: [u64; 2] = [1_000, 10_000];

/// The optional TOML file (`--config` / `OPENMA_CONFIG`). Every key is optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub database_url: Option<SecretString>,
    pub blob_url: Option<String>,
    pub bootstrap_api_key: Option<SecretString>,
    pub log_format: Option<LogFormat>,
    pub model_max_retries: Option<u32>,
    pub model_retry_base_ms: Option<u64>,
    pub context_window_tokens: Option<u64>,
    pub search_url: Option<String>,
    /// A remote sandbox's URL (its token comes from the environment only).
    pub sandbox_url: Option<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub max_file_mb: Option<u64>,
    pub github_url: Option<String>,
    /// `[sandbox]` table of the file.
    #[serde(default)]
    pub sandbox: SandboxLimits,
    /// `[housekeeping]` table of the file.
    #[serde(default)]
    pub housekeeping: HousekeepingSettings,
    /// `[[prices.models]]` and `[[prices.rates]]`: the deployment's price overrides.
    #[serde(default)]
    pub prices: PriceOverrides,
    /// `[cluster]` table of the file.
    #[serde(default)]
    pub cluster: ClusterOverrides,
}

/// Cluster mode (`--cluster` and the `[cluster]` table): several nodes on one PostgreSQL.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterOverrides {
    #[serde(default)]
    pub enabled: bool,
    pub node_id: Option<String>,
    pub advertise_url: Option<String>,
    pub lease_ttl_ms: Option<u64>,
}

/// The deployment's prices over the built-in list, each from its `effective_from` on.
/// Money is in integer micro-dollars. A ledger row is priced when it is written, with the
/// price in effect then, so editing these never reprices a row already written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverrides {
    #[serde(default)]
    pub models: Vec<ModelPriceSetting>,
    #[serde(default)]
    pub rates: Vec<RateSetting>,
}

/// One model's price from a moment on (`model` is an exact model id).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPriceSetting {
    pub model: String,
    /// RFC 3339, quoted: `"2026-12-01T00:00:00Z"`.
    pub effective_from: openma_types::Timestamp,
    pub input_per_mtok_micros: u64,
    pub output_per_mtok_micros: u64,
    /// Absent: 0.1× the input rate.
    pub cache_read_per_mtok_micros: Option<u64>,
    /// Absent: 1.25× the input rate.
    pub cache_write_per_mtok_micros: Option<u64>,
}

/// One platform rate from a moment on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSetting {
    pub rate: RateName,
    pub effective_from: openma_types::Timestamp,
    pub micros: u64,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateName {
    /// Session running time, per hour (default 80000: $0.08).
    RuntimePerHour,
    /// Sandbox CPU time, per CPU-hour (default 50000: $0.05).
    SandboxCpuPerHour,
    /// One web search (default 10000: $10 per 1,000).
    WebSearchPerSearch,
    /// File storage, per GB-month of 730 hours (default 23000: $0.023).
    FileStoragePerGbMonth,
}

/// Above a million dollars per unit, a price is a typo.
const MAX_PRICE_MICROS: u64 = 1_000_000_000_000;

impl PriceOverrides {
    /// The schedule these overrides make of the built-in list.
    pub fn schedule(&self) -> anyhow::Result<PriceSchedule> {
        use openma_core::pricing::{ModelPrice, Rate};
        let mut s = PriceSchedule::default();
        for m in &self.models {
            let all = [Some(m.input_per_mtok_micros), Some(m.output_per_mtok_micros), m.cache_read_per_mtok_micros, m.cache_write_per_mtok_micros];
            if m.model.trim().is_empty() || all.iter().flatten().any(|v| *v > MAX_PRICE_MICROS) {
                anyhow::bail!("[[prices.models]] `{}`: a model id and prices of at most {MAX_PRICE_MICROS} micro-dollars are required", m.model);
            }
            let list = ModelPrice::list(m.input_per_mtok_micros, m.output_per_mtok_micros);
            let price = ModelPrice {
                cache_read_per_mtok: m.cache_read_per_mtok_micros.unwrap_or(list.cache_read_per_mtok),
                cache_write_per_mtok: m.cache_write_per_mtok_micros.unwrap_or(list.cache_write_per_mtok),
                ..list
            };
            s.override_model(&m.model, m.effective_from, price);
        }
        for r in &self.rates {
            if r.micros > MAX_PRICE_MICROS {
                anyhow::bail!("[[prices.rates]] {:?}: at most {MAX_PRICE_MICROS} micro-dollars", r.rate);
            }
            let rate = match r.rate {
                RateName::RuntimePerHour => Rate::RuntimePerHour,
                RateName::SandboxCpuPerHour => Rate::SandboxCpuPerHour,
                RateName::WebSearchPerSearch => Rate::WebSearchPerSearch,
                RateName::FileStoragePerGbMonth => Rate::FileStoragePerGbMonth,
            };
            s.override_rate(rate, r.effective_from, r.micros);
        }
        Ok(s)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FileSettings {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// The resolved settings of one process.
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: SecretString,
    pub blob_url: String,
    pub bootstrap_api_key: Option<SecretString>,
    pub log_format: LogFormat,
    /// Retries of a transient model failure before the turn ends (`retries_exhausted`).
    pub model_max_retries: Option<u32>,
    /// First back-off of those retries; it doubles each time.
    pub model_retry_base_ms: Option<u64>,
    /// Model provider credentials and endpoints (`ANTHROPIC_*`, `OPENAI_*`).
    pub providers: Providers,
    /// The context window compaction plans for.
    pub context_window_tokens: Option<u64>,
    /// A SearXNG-compatible JSON search endpoint for `web_search`.
    pub search_url: Option<String>,
    /// A remote sandbox (`openma-sandbox-server`) the tools run on, and its token.
    pub sandbox_url: Option<String>,
    pub sandbox_token: Option<SecretString>,
    /// Lets `web_fetch`, MCP OAuth validation and webhook deliveries reach private and
    /// loopback addresses. Only tests set this: it is not reachable from flags or the
    /// config file, only from the test-only `OPENMA_UNSAFE_ALLOW_PRIVATE_ADDRESSES=1`.
    pub unsafe_allow_private_fetch: bool,
    /// Waits between the attempts of a failed webhook delivery (one fewer than the
    /// attempts); tests shorten them.
    pub webhook_retry_delays: Vec<std::time::Duration>,
    /// The root of trust for secrets at rest (`PLATFORM_ROOT_SECRET`).
    pub root_secret: Option<SecretString>,
    /// A former root still accepted while a rotation is rolled out.
    pub previous_root_secret: Option<SecretString>,
    /// Requests per minute per API key (`None`: unlimited).
    pub rate_limit_per_minute: Option<u32>,
    /// Largest upload, in bytes.
    pub max_file_bytes: u64,
    /// Base URL repositories are cloned from (`https://github.com`).
    pub github_url: String,
    /// Limits of every session sandbox (unset fields keep the defaults).
    pub sandbox: SandboxLimits,
    /// The scheduler's shared jobs: their period, event log archival and retention.
    pub housekeeping: Housekeeping,
    /// The executable bound into networked sandboxes as their network bridge (it must
    /// answer `sandbox-bridge`); default: this very binary. In-process tests set it.
    pub sandbox_bridge: Option<PathBuf>,
    /// Test-only egress name overrides, `name=ip[:port],…` (like curl's `--resolve`): the
    /// listed names resolve to these addresses and are exempt from the private-address rule.
    /// Only from the environment variable `OPENMA_UNSAFE_EGRESS_RESOLVE`, never the file.
    pub unsafe_egress_resolve: Option<String>,
    /// Test-only: PEM file of an extra CA that upstream servers of intercepted (credential
    /// substitution) HTTPS requests may be signed by. Only from
    /// `OPENMA_UNSAFE_EGRESS_UPSTREAM_CA`, never the file.
    pub unsafe_egress_upstream_ca: Option<PathBuf>,
    /// The deployment's prices (the config file's `[prices]` over the built-in list).
    pub prices: PriceSchedule,
    /// Test-only: no ledger rows are written, to measure what metering costs (`openma bench
    /// --scenario metering`). Only from `OPENMA_UNSAFE_DISABLE_LEDGER=1`, never the file.
    pub unsafe_disable_ledger: bool,
    /// Cluster mode, when enabled.
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

/// The scheduler's shared jobs, as the operator gives them: durations such as `90s`,
/// `15m`, `12h` or `30d`; `archive_idle_after` may also be `off` (the default).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HousekeepingSettings {
    /// How often each shared job runs [default: 1m]. Give every node of a cluster the same:
    /// the node that runs a job sets when it is next due.
    pub period: Option<String>,
    /// Archive the event log of a session unchanged for this long [default: off; archived
    /// sessions' logs are archived whatever this says].
    pub archive_idle_after: Option<String>,
    /// Age after which memory versions go, the newest of each memory kept [default: 30d].
    pub memory_version_retention: Option<String>,
    /// Age after which finished webhook deliveries go [default: 30d].
    pub webhook_delivery_retention: Option<String>,
}

impl HousekeepingSettings {
    /// `self`'s values, else `file`'s, field by field.
    fn over(self, file: HousekeepingSettings) -> HousekeepingSettings {
        HousekeepingSettings {
            period: self.period.or(file.period),
            archive_idle_after: self.archive_idle_after.or(file.archive_idle_after),
            memory_version_retention: self.memory_version_retention.or(file.memory_version_retention),
            webhook_delivery_retention: self.webhook_delivery_retention.or(file.webhook_delivery_retention),
        }
    }

    fn resolve(self) -> anyhow::Result<Housekeeping> {
        let d = Housekeeping::default();
        let get = |name: &str, v: Option<String>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(v) => parse_duration(&v).with_context(|| format!("housekeeping `{name}`")),
        };
        Ok(Housekeeping {
            period: get("period", self.period, d.period)?,
            archive_idle_after: match self.archive_idle_after.as_deref().map(str::trim) {
                None | Some("off") | Some("") => None,
                Some(v) => Some(parse_duration(v).context("housekeeping `archive_idle_after`")?),
            },
            retention: openma_core::retention::RetentionPolicy {
                memory_versions: get("memory_version_retention", self.memory_version_retention, d.retention.memory_versions)?,
                webhook_deliveries: get("webhook_delivery_retention", self.webhook_delivery_retention, d.retention.webhook_deliveries)?,
            },
        })
    }
}

/// The resolved house-keeping settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Housekeeping {
    pub period: std::time::Duration,
    pub archive_idle_after: Option<std::time::Duration>,
    pub retention: openma_core::retention::RetentionPolicy,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Housekeeping { period: std::time::Duration::from_secs(60), archive_idle_after: None, retention: Default::default() }
    }
}

/// `500ms`, `90s`, `15m`, `12h` or `30d` (a positive whole number and a unit).
pub fn parse_duration(v: &str) -> anyhow::Result<std::time::Duration> {
    openma_core::retention::parse_duration(v).map_err(anyhow::Error::msg)
}

/// Operator overrides of the sandbox limits.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxLimits {
    pub memory_mb: Option<u64>,
    pub processes: Option<u64>,
    pub open_files: Option<u64>,
    pub file_size_mb: Option<u64>,
    pub command_timeout_secs: Option<u64>,
    pub max_command_timeout_secs: Option<u64>,
}

impl SandboxLimits {
    /// Applies the overrides to the sandbox crate's defaults.
    pub fn apply(&self, l: &mut openma_sandbox::Limits) {
        if let Some(v) = self.memory_mb {
            l.memory_bytes = v << 20;
        }
        if let Some(v) = self.processes {
            l.processes = v;
        }
        if let Some(v) = self.open_files {
            l.open_files = v;
        }
        if let Some(v) = self.file_size_mb {
            l.file_size_bytes = v << 20;
        }
        if let Some(v) = self.command_timeout_secs {
            l.default_timeout = std::time::Duration::from_secs(v);
        }
        if let Some(v) = self.max_command_timeout_secs {
            l.max_timeout = std::time::Duration::from_secs(v);
        }
        l.default_timeout = l.default_timeout.min(l.max_timeout);
    }
}

/// The deployment-wide model providers. A provider without a key is not configured.
#[derive(Clone, Default)]
pub struct Providers {
    pub anthropic_api_key: Option<SecretString>,
    pub anthropic_base_url: Option<String>,
    pub openai_api_key: Option<SecretString>,
    pub openai_base_url: Option<String>,
}

impl Providers {
    /// Looks a provider variable up by its environment name.
    pub fn lookup(&self, name: &str) -> Option<String> {
        match name {
            "ANTHROPIC_API_KEY" => self.anthropic_api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            "ANTHROPIC_BASE_URL" => self.anthropic_base_url.clone(),
            "OPENAI_API_KEY" => self.openai_api_key.as_ref().map(|k| k.expose_secret().to_owned()),
            "OPENAI_BASE_URL" => self.openai_base_url.clone(),
            _ => None,
        }
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Providers")
            .field("anthropic", &self.anthropic_api_key.as_ref().map(|_| self.anthropic_base_url.as_deref().unwrap_or("default")))
            .field("openai", &self.openai_api_key.as_ref().map(|_| self.openai_base_url.as_deref().unwrap_or("default")))
            .finish()
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("database_url", &openma_store_sql::redact_url(self.database_url.expose_secret()))
            .field("blob_url", &self.blob_url)
            .field("bootstrap_api_key", &self.bootstrap_api_key.as_ref().map(|_| "[redacted]"))
            .field("log_format", &self.log_format)
            .field("model_max_retries", &self.model_max_retries)
            .field("model_retry_base_ms", &self.model_retry_base_ms)
            .field("providers", &self.providers)
            .field("context_window_tokens", &self.context_window_tokens)
            .field("sandbox", &self.sandbox)
            .field("unsafe_egress_resolve", &self.unsafe_egress_resolve)
            .field("unsafe_egress_upstream_ca", &self.unsafe_egress_upstream_ca)
            .field("search_url", &self.search_url)
            .field("sandbox_url", &self.sandbox_url)
            .field("root_secret", &self.root_secret.as_ref().map(|_| "[redacted]"))
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// What the command line and environment said (each `None` when unset).
#[derive(Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    pub blob_url: Option<String>,
    pub bootstrap_api_key: Option<String>,
    pub log_format: Option<LogFormat>,
    pub model_max_retries: Option<u32>,
    pub model_retry_base_ms: Option<u64>,
    pub providers: Providers,
    pub context_window_tokens: Option<u64>,
    pub search_url: Option<String>,
    pub sandbox_url: Option<String>,
    pub sandbox_token: Option<String>,
    pub unsafe_allow_private_fetch: bool,
    /// Test-only: the waits between webhook delivery attempts, in milliseconds.
    pub webhook_retry_delays_ms: Option<Vec<u64>>,
    pub root_secret: Option<String>,
    pub previous_root_secret: Option<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub max_file_mb: Option<u64>,
    pub github_url: Option<String>,
    pub sandbox: SandboxLimits,
    pub housekeeping: HousekeepingSettings,
    pub sandbox_bridge: Option<PathBuf>,
    /// Test-only: `OPENMA_UNSAFE_EGRESS_RESOLVE`.
    pub unsafe_egress_resolve: Option<String>,
    /// Test-only: `OPENMA_UNSAFE_EGRESS_UPSTREAM_CA`.
    pub unsafe_egress_upstream_ca: Option<PathBuf>,
    /// Test-only: `OPENMA_UNSAFE_DISABLE_LEDGER=1`.
    pub unsafe_disable_ledger: bool,
    pub cluster: ClusterOverrides,
}

impl Settings {
    pub fn resolve(o: Overrides) -> anyhow::Result<Settings> {
        let file = match &o.config {
            Some(p) => FileSettings::load(p)?,
            None => FileSettings::default(),
        };
        let data_dir = o.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = match o.database_url.map(SecretString::from).or(file.database_url) {
            Some(u) => u,
            None => SecretString::from(format!("sqlite://{}", data_dir.join("openma.db").display())),
        };
        let blob_url = o
            .blob_url
            .or(file.blob_url)
            .unwrap_or_else(|| format!("file://{}", absolute(&data_dir.join("blobs")).display()));
        Ok(Settings {
            listen: o.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default listen")),
            database_url,
            blob_url,
            bootstrap_api_key: o.bootstrap_api_key.filter(|k| !k.is_empty()).map(SecretString::from).or(file.bootstrap_api_key),
            log_format: o.log_format.or(file.log_format).unwrap_or_default(),
            model_max_retries: o.model_max_retries.or(file.model_max_retries),
            model_retry_base_ms: o.model_retry_base_ms.or(file.model_retry_base_ms),
            providers: o.providers,
            context_window_tokens: o.context_window_tokens.or(file.context_window_tokens),
            search_url: o.search_url.or(file.search_url),
            sandbox_url: o.sandbox_url.or(file.sandbox_url).filter(|u| !u.trim().is_empty()),
            sandbox_token: o.sandbox_token.map(SecretString::from),
            unsafe_allow_private_fetch: o.unsafe_allow_private_fetch,
            webhook_retry_delays: o
                .webhook_retry_delays_ms
                .unwrap_or_else(|| DEFAULT_WEBHOOK_RETRY_DELAYS_MS.to_vec())
                .into_iter()
                .map(std::time::Duration::from_millis)
                .collect(),
            root_secret: o.root_secret.filter(|s| !s.is_empty()).map(SecretString::from),
            previous_root_secret: o.previous_root_secret.filter(|s| !s.is_empty()).map(SecretString::from),
            rate_limit_per_minute: o.rate_limit_per_minute.or(file.rate_limit_per_minute),
            max_file_bytes: o
                .max_file_mb
                .or(file.max_file_mb)
                .map_or(openma_core::files::DEFAULT_MAX_FILE_BYTES, |mb| mb.saturating_mul(1024 * 1024)),
            github_url: o.github_url.or(file.github_url).unwrap_or_else(|| "https://github.com".into()).trim_end_matches('/').to_owned(),
            sandbox: merge_sandbox(o.sandbox, file.sandbox),
            housekeeping: o.housekeeping.over(file.housekeeping).resolve()?,
            sandbox_bridge: o.sandbox_bridge,
            unsafe_egress_resolve: o.unsafe_egress_resolve.filter(|s| !s.trim().is_empty()),
            unsafe_egress_upstream_ca: o.unsafe_egress_upstream_ca,
            prices: file.prices.schedule().with_context(|| format!("invalid prices in config file {}", o.config.as_deref().unwrap_or(Path::new("")).display()))?,
            unsafe_disable_ledger: o.unsafe_disable_ledger,
            cluster: merge_cluster(o.cluster, file.cluster)?,
            data_dir,
        })
    }

    pub fn uses_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

/// Flags and environment win over the file, field by field.
fn merge_cluster(o: ClusterOverrides, f: ClusterOverrides) -> anyhow::Result<Option<crate::cluster::ClusterSettings>> {
    if !(o.enabled || f.enabled) {
        // options of a mode that is off would be ignored: say so instead
        let set = [("node_id", o.node_id.is_some() || f.node_id.is_some()), ("advertise_url", o.advertise_url.is_some() || f.advertise_url.is_some()), ("lease_ttl_ms", o.lease_ttl_ms.is_some() || f.lease_ttl_ms.is_some())];
        if let Some((name, _)) = set.iter().find(|(_, on)| *on) {
            anyhow::bail!("the cluster option `{name}` (--{}) only applies in cluster mode: add --cluster (OPENMA_CLUSTER=true) or remove it", name.replace('_', "-"));
        }
        return Ok(None);
    }
    let mut c = crate::cluster::ClusterSettings { node_id: o.node_id.or(f.node_id), advertise_url: o.advertise_url.or(f.advertise_url), ..Default::default() };
    if let Some(ms) = o.lease_ttl_ms.or(f.lease_ttl_ms) {
        anyhow::ensure!((300..=600_000).contains(&ms), "the cluster lease TTL must be between 300 ms and 10 minutes (got {ms} ms)");
        c.lease_ttl = std::time::Duration::from_millis(ms);
    }
    if let Some(url) = &c.advertise_url {
        anyhow::ensure!(url.starts_with("http://") || url.starts_with("https://"), "the advertised URL `{url}` must start with http:// or https://");
    }
    Ok(Some(c))
}

/// Flags and environment win over the file, field by field.
fn merge_sandbox(o: SandboxLimits, f: SandboxLimits) -> SandboxLimits {
    SandboxLimits {
        memory_mb: o.memory_mb.or(f.memory_mb),
        processes: o.processes.or(f.processes),
        open_files: o.open_files.or(f.open_files),
        file_size_mb: o.file_size_mb.or(f.file_size_mb),
        command_timeout_secs: o.command_timeout_secs.or(f.command_timeout_secs),
        max_command_timeout_secs: o.max_command_timeout_secs.or(f.max_command_timeout_secs),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_secrets() {
        let s = Settings::resolve(Overrides {
            database_url: Some("postgres://app:hunter2@db/openma".into()),
            bootstrap_api_key: Some("sk-oma-supersecretvalue".into()),
            ..Default::default()
        })
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("supersecretvalue"), "{shown}");
    }

    #[test]
    fn defaults_follow_the_operator_contract() {
        let s = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from(".openma"));
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert!(s.database_url.expose_secret().starts_with("sqlite://.openma/openma.db"));
    }

    #[test]
    fn housekeeping_durations_parse_and_archival_of_idle_sessions_is_off_by_default() {
        let s = Settings::resolve(Overrides::default()).unwrap();
        assert_eq!(s.housekeeping, Housekeeping::default());
        assert_eq!(s.housekeeping.archive_idle_after, None);
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(s.housekeeping.retention.memory_versions, 30 * day);
        let o = HousekeepingSettings { archive_idle_after: Some("7d".into()), period: Some("500ms".into()), ..Default::default() };
        let s = Settings::resolve(Overrides { housekeeping: o, ..Default::default() }).unwrap();
        assert_eq!(s.housekeeping.archive_idle_after, Some(7 * day));
        assert_eq!(s.housekeeping.period, std::time::Duration::from_millis(500));
        for bad in ["7", "d", "0s", "7w", "-1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
            let o = HousekeepingSettings { webhook_delivery_retention: Some(bad.into()), ..Default::default() };
            assert!(Settings::resolve(Overrides { housekeeping: o, ..Default::default() }).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_values_apply_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openma.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        let s = Settings::resolve(Overrides { config: Some(path.clone()), data_dir: Some("/tmp/y".into()), ..Default::default() }).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/y"));
        std::fs::write(&path, "lisen = 1\n").unwrap();
        assert!(Settings::resolve(Overrides { config: Some(path), ..Default::default() }).is_err());
    }

    #[test]
    fn file_prices_override_the_list_from_their_moment_and_typos_are_refused() {
        use openma_core::pricing::Rate;
        use openma_types::Timestamp;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openma.toml");
        let toml = "[[prices.models]]\nmodel = \"claude-sonnet-4-6\"\neffective_from = \"2026-12-01T00:00:00Z\"\n\
                    input_per_mtok_micros = 2500000\noutput_per_mtok_micros = 12000000\ncache_read_per_mtok_micros = 1\n\n\
                    [[prices.rates]]\nrate = \"web_search_per_search\"\neffective_from = \"2026-12-01T00:00:00Z\"\nmicros = 5000\n";
        std::fs::write(&path, toml).unwrap();
        let s = Settings::resolve(Overrides { config: Some(path.clone()), ..Default::default() }).unwrap();
        let (before, from): (Timestamp, Timestamp) = ("2026-11-30T23:59:59Z".parse().unwrap(), "2026-12-01T00:00:00Z".parse().unwrap());
        assert_eq!(s.prices.model_price("claude-sonnet-4-6", before, &[]).unwrap().input_per_mtok, 3_000_000);
        let p = s.prices.model_price("claude-sonnet-4-6", from, &[]).unwrap();
        assert_eq!((p.input_per_mtok, p.output_per_mtok, p.cache_read_per_mtok, p.cache_write_per_mtok), (2_500_000, 12_000_000, 1, 3_125_000));
        assert_eq!((s.prices.rate(Rate::WebSearchPerSearch, before), s.prices.rate(Rate::WebSearchPerSearch, from)), (10_000, 5_000));
        for bad in [
            toml.replace("micros = 5000", "micros = 5000\ncents = 1"),
            toml.replace("web_search_per_search", "web_searches"),
            toml.replace("effective_from = \"2026-12-01T00:00:00Z\"\nmicros", "micros"),
            toml.replace("input_per_mtok_micros = 2500000", "input_per_mtok_micros = -1"),
            toml.replace("micros = 5000", "micros = 5000000000000"),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert!(Settings::resolve(Overrides { config: Some(path.clone()), ..Default::default() }).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_options_without_cluster_mode_are_refused() {
        let o = Overrides { cluster: ClusterOverrides { node_id: Some("a".into()), ..Default::default() }, ..Default::default() };
        let e = Settings::resolve(o).unwrap_err().to_string();
        assert!(e.contains("node_id") && e.contains("--cluster"), "{e}");
        let o = Overrides { cluster: ClusterOverrides { enabled: true, lease_ttl_ms: Some(100), ..Default::default() }, ..Default::default() };
        assert!(Settings::resolve(o).is_err(), "a lease shorter than 300 ms");
        let o = Overrides { cluster: ClusterOverrides { enabled: true, node_id: Some("a".into()), lease_ttl_ms: Some(2000), ..Default::default() }, ..Default::default() };
        let c = Settings::resolve(o).unwrap().cluster.unwrap();
        assert_eq!((c.node_id.as_deref(), c.lease_ttl), (Some("a"), std::time::Duration::from_millis(2000)));
        assert!(Settings::resolve(Overrides::default()).unwrap().cluster.is_none());
    }
}
